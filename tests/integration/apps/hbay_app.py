"""hbay_app.py: the WSGI app the HTTP bay tests serve through
examples/bays/http_bay.py (python3 http_bay.py hbay_app:app, with this
directory on PYTHONPATH).

Routes (PATH_INFO):
  /                 "hello"
  /env, /env/...    every HAIL param (str values of environ) as JSON, the
                    body's length and sha256 too; values are latin-1, so a
                    byte \\xff shows as "\\u00ff"
  /osenv            the MS_* variables of the bay's process environment
  /echo             the request body back, as sent
  /status/N         status N, no body (204, 304, ...)
  /cookies          two Set-Cookie headers
  /big/N            N bytes of a repeating pattern, in 10000-byte chunks
  /stream/N         N chunks "chunk i\\n", no Content-Length
  /header?v=HEX     a response header X-Value with the bytes of HEX
  /file/NAME        wsgi.file_wrapper on NAME (a path relative to the cwd,
                    or absolute): the bay replies with kind file;
  /fileabs?p=PATH   the same for an absolute PATH (percent-encoded)
  /gate/NAME        waits until the file NAME.go exists in the cwd (NAME.in
                    is created when the request arrives), then "gated"
  /slowgate/NAME    "first\\n" at once (the head goes out), then like /gate
                    "last\\n" once NAME.go exists
  /exit             a head with Content-Length 100, 7 bytes, then the whole
                    bay process exits
  /ws               a WebSocket echo through a tunnel
Every request appends one JSON line to $HBAY_APP_LOG (when set): method,
path, query, body length; so the tests see what reached the bay."""
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "examples", "bays"))
import http_bay  # noqa: E402


def pattern(n):
    base = bytes(range(256))
    return (base * (n // 256 + 1))[:n]


def log(environ, body):
    path = os.environ.get("HBAY_APP_LOG")
    if not path:
        return
    line = json.dumps({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
                       "query": environ["QUERY_STRING"], "body_len": len(body),
                       "pid": os.getpid()})
    with open(path, "a") as f:
        f.write(line + "\n")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    body = environ["wsgi.input"].read()
    log(environ, body)
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]
    if path == "/env" or path.startswith("/env/"):
        params = {k: v for k, v in environ.items() if isinstance(v, str)}
        params["_body_len"] = str(len(body))
        params["_body_sha256"] = hashlib.sha256(body).hexdigest()
        out = json.dumps(params, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out]
    if path == "/osenv":
        out = json.dumps({k: v for k, v in os.environ.items() if k.startswith("MS_")}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out]
    if path == "/echo":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path.startswith("/status/"):
        start_response(path[len("/status/"):] + " X", [("X-Status", "set")])
        return []
    if path == "/cookies":
        start_response("200 OK", [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/"),
                                  ("Content-Length", "2")])
        return [b"ok"]
    if path.startswith("/big/"):
        n = int(path[len("/big/"):])
        data = pattern(n)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n))])
        return (data[i:i + 10000] for i in range(0, n, 10000))
    if path.startswith("/stream/"):
        n = int(path[len("/stream/"):])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (("chunk %d\n" % i).encode() for i in range(n))
    if path == "/header":
        value = bytes.fromhex(environ["QUERY_STRING"].split("=", 1)[1]).decode("latin-1")
        start_response("200 OK", [("X-Value", value), ("Content-Length", "2")])
        return [b"ok"]
    if path.startswith("/file/") or path == "/fileabs":
        from urllib.parse import unquote
        name = path[len("/file/"):] if path != "/fileabs" else unquote(environ["QUERY_STRING"][2:])
        f = open(name, "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f)
    if path.startswith("/gate/"):
        name = path[len("/gate/"):]
        open(name + ".in", "a").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(name + ".go") and time.monotonic() < deadline:
            time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"gated"]
    if path.startswith("/slowgate/"):
        name = path[len("/slowgate/"):]
        open(name + ".in", "a").close()

        def gen():
            yield b"first\n"
            deadline = time.monotonic() + 60
            while not os.path.exists(name + ".go") and time.monotonic() < deadline:
                time.sleep(0.01)
            yield b"last\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/exit":
        def dying():
            yield b"partial"
            os._exit(1)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return dying()
    if path == "/ws":
        return http_bay.websocket_echo(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
