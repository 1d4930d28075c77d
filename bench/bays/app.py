"""bench/bays/app.py: the WSGI application both servers run in the bays
benchmark: GET / answers "hello" (text/plain), GET /json a 16 KiB JSON
document built once at import; anything else is a 404."""
import json

_items = []
_doc = b""
while True:
    _items.append({"id": len(_items), "name": f"item-{len(_items):05d}", "tags": ["a", "b"], "ok": True})
    doc = json.dumps({"items": _items}, separators=(",", ":")).encode()
    if len(doc) > 16384:
        break
    _doc = doc
JSON_BODY = _doc + b" " * (16384 - len(_doc))   # exactly 16 KiB, still valid JSON
HELLO = b"hello\n"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/":
        body, ctype = HELLO, "text/plain"
    elif path == "/json":
        body, ctype = JSON_BODY, "application/json"
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
