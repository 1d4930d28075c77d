"""The hostile-input case table and the machinery to judge a proxy on it,
shared by tests/integration/test_http_hostile.py (Mothership) and
bench/hostile/compare.py (Mothership, nginx and HAProxy on the same table).

The setting every case assumes (SETUP): one HTTP bind; a static directory
on /static holding index.html; two recording upstreams
(apps/recording_upstream.py): "api" routed on /api/.* with strip_prefix
/api, "app" on everything else (/.*); and an auth check on
/app/admin(/.*)? that answers 401 unless `Authorization: Bearer s3cret`
(in Mothership the example payload auth.wasm).

A case is raw client bytes, the statuses the client must get (one per
pipelined request; a tuple is a choice, CLOSED a close without an answer),
and what the upstreams must receive: a list of Fwd (ship, request line,
body), checked on the exact bytes each upstream recorded, parsed strictly,
or [] for "not one byte". Expectations follow the hardening rules of
docs/proxy.md; a case marked silent=True is one those rules do not decide,
where the conservative answer is expected (refused, nothing upstream)."""
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field

TOKEN = "s3cret"
ADMIN = re.compile(r"^/app/admin(/.*)?$")
CLOSED = 0          # "the connection closed without an answer"
SHIPS = ("app", "api")


@dataclass
class Fwd:
    ship: str
    line: str                      # the request line the ship must receive
    body: bytes = b""
    absent: tuple = ()             # header names it must not receive
    present: dict = field(default_factory=dict)   # header name -> exact value


@dataclass
class Case:
    name: str
    group: str
    send: bytes
    status: list                   # per response: int, tuple of ints, CLOSED
    expect: list                   # [Fwd, ...]; [] = nothing reaches a ship
    silent: bool = False           # the rules are silent: conservative answer


def req(method, target, headers=(), body=b"", version="HTTP/1.1", host="t"):
    """Request bytes; target and headers are latin-1 str or bytes, sent as is."""
    def b(x):
        return x if isinstance(x, bytes) else x.encode("latin-1")
    out = [b(method) + b" " + b(target) + b" " + b(version)]
    if host is not None:
        out.append(b"Host: " + b(host))
    for h in headers:
        out.append(b(h) if not isinstance(h, tuple) else b(h[0]) + b": " + b(h[1]))
    return b"\r\n".join(out) + b"\r\n\r\n" + b(body)


def get(target, *headers, **kw):
    return req("GET", target, headers, **kw)


def post(target, body, *headers, **kw):
    return req("POST", target, headers, body=body, **kw)


def chunked(*parts):
    return b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


AUTH = ("Authorization", "Bearer " + TOKEN)
INNER = b"GET /app/admin HTTP/1.1\r\nHost: t\r\n\r\n"   # a request hidden in a body
HIDDEN = INNER[:-2] + b"X: "     # one a lenient ship waits on, prefixing the next request


def ok(ship, line, body=b"", **kw):
    return Fwd(ship, line, body, **kw)


def _cases():
    C = []

    def add(name, group, send, status, expect, silent=False):
        C.append(Case(name, group, send, status if isinstance(status, list) else [status], expect, silent))

    # ---------------------------------------------------------------- controls
    add("control-get", "control", get("/app/x"), 200, [ok("app", "GET /app/x HTTP/1.1")])
    add("control-post-cl", "control", post("/app/x", b"hello", "Content-Length: 5"), 200,
        [ok("app", "POST /app/x HTTP/1.1", b"hello")])
    add("control-post-chunked", "control", post("/app/x", chunked(b"hello", b" world"), "Transfer-Encoding: chunked"),
        200, [ok("app", "POST /app/x HTTP/1.1", b"hello world")])
    add("control-chunked-upper-hex-ext-trailer", "control",
        post("/app/x", b"A;name=value\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n", "Transfer-Encoding: Chunked"),
        200, [ok("app", "POST /app/x HTTP/1.1", b"0123456789")])
    add("control-strip-prefix", "control", get("/api/v1?q=1"), 200, [ok("api", "GET /v1?q=1 HTTP/1.1")])
    add("control-admin-with-token", "payload", get("/app/admin", AUTH), 200,
        [ok("app", "GET /app/admin HTTP/1.1")])
    add("control-admin-without-token", "payload", get("/app/admin"), 401, [])
    add("control-pipelined", "control", get("/app/a") + post("/app/b", b"hello", "Content-Length: 5") + get("/app/c"),
        [200, 200, 200], [ok("app", "GET /app/a HTTP/1.1"), ok("app", "POST /app/b HTTP/1.1", b"hello"),
                          ok("app", "GET /app/c HTTP/1.1")])
    add("control-connection-named-header", "control", get("/app/x", "Connection: X-Secret", "X-Secret: 1"), 200,
        [ok("app", "GET /app/x HTTP/1.1", absent=("x-secret",))])
    add("control-cl-ows", "cl",
        # OWS around a field value is not part of it (RFC 9110 5.5): this is 5
        post("/app/x", b"hello", "Content-Length:  5 "), 200, [ok("app", "POST /app/x HTTP/1.1", b"hello")])

    # ---------------------------------------------------------------- 1. Connection naming framing / Host
    for conn in ("Content-Length", "keep-alive, Content-Length", "content-length", "close, Content-Length"):
        add(f"conn-names-cl[{conn}]", "connection",
            post("/app/public", INNER, f"Connection: {conn}", f"Content-Length: {len(INNER)}"), 200,
            [ok("app", "POST /app/public HTTP/1.1", INNER)])
    add("conn-names-cl-get-body", "connection",
        get("/app/public", "Connection: Content-Length", f"Content-Length: {len(INNER)}", body=INNER), 200,
        [ok("app", "GET /app/public HTTP/1.1", INNER)])
    add("conn-names-cl-partial-hidden", "connection",
        post("/app/public", HIDDEN, "Connection: Content-Length", f"Content-Length: {len(HIDDEN)}"),
        200, [ok("app", "POST /app/public HTTP/1.1", HIDDEN)])
    add("conn-names-cl-http10", "connection",
        post("/app/public", INNER, "Connection: Content-Length", f"Content-Length: {len(INNER)}",
             version="HTTP/1.0"), 200, [ok("app", "POST /app/public HTTP/1.1", INNER)])
    add("conn-names-te", "connection",
        post("/app/public", chunked(INNER), "Connection: Transfer-Encoding", "Transfer-Encoding: chunked"), 200,
        [ok("app", "POST /app/public HTTP/1.1", INNER)])
    add("conn-names-host", "connection", get("/app/x", "Connection: Host"), 200,
        [ok("app", "GET /app/x HTTP/1.1", present={"host": "t"})])
    add("conn-names-cl-then-pipelined", "connection",
        post("/app/public", INNER, "Connection: Content-Length", f"Content-Length: {len(INNER)}") + get("/app/next"),
        [200, 200], [ok("app", "POST /app/public HTTP/1.1", INNER), ok("app", "GET /app/next HTTP/1.1")])
    add("response-conn-names-cl", "connection", get("/app/r?mode=conncl") + get("/app/after"), [200, 200],
        [ok("app", "GET /app/r?mode=conncl HTTP/1.1"), ok("app", "GET /app/after HTTP/1.1")])
    add("response-conn-names-te", "connection", get("/app/r?mode=connte") + get("/app/after"), [200, 200],
        [ok("app", "GET /app/r?mode=connte HTTP/1.1"), ok("app", "GET /app/after HTTP/1.1")])

    # ---------------------------------------------------------------- 2. whitespace and controls in the target
    for name, byte in (("tab", b"\t"), ("vt", b"\x0b"), ("ff", b"\x0c"), ("nul", b"\x00"), ("soh", b"\x01"),
                       ("esc", b"\x1b"), ("us", b"\x1f"), ("del", b"\x7f"), ("cr", b"\r")):
        add(f"target-{name}-after-admin", "target", get(b"/app/admin" + byte), 400, [])
    for name, byte in (("tab", b"\t"), ("nul", b"\x00"), ("ff", b"\x0c")):
        add(f"target-{name}-inside-admin", "target", get(b"/app/ad" + byte + b"min"), 400, [])
    # no SP before the version: http-parser reads an HTTP/0.9 request line, so
    # the version check (505) may answer before the target check (400)
    add("target-tab-no-space-before-version", "target", b"GET /app/admin\tHTTP/1.1\r\nHost: t\r\n\r\n",
        (400, 505), [])
    add("target-vt-ff-separators", "target", b"GET\x0b/app/admin\x0cHTTP/1.1\r\nHost: t\r\n\r\n", 400, [])
    add("target-tab-public", "target", get(b"/app/public\t"), 400, [])
    add("target-tab-in-query", "target", get(b"/app/x?a=\tb"), 400, [])
    add("target-high-bytes-kept", "target", get(b"/app/caf\xc3\xa9"), 200,
        [ok("app", "GET /app/caf\xc3\xa9 HTTP/1.1")])

    # ---------------------------------------------------------------- 3. path normalisation (route /.* -> app)
    norm = [
        ("/%61dmin", "/admin"), ("/x/../admin", "/admin"), ("//admin", "/admin"), ("/a/%2e%2e/admin", "/admin"),
        ("/%7Euser/caf%c3%a9?q=%2e%2E", "/~user/caf%C3%A9?q=%2e%2E"), ("/a/./b", "/a/b"), ("/a/.", "/a/"),
        ("/a/b/..", "/a/"), ("/a//b", "/a/b"), ("///", "/"), ("/%41%42", "/AB"), ("/%5F%2D%2E%7e", "/_-.~"),
        ("/a/..?x=/../y", "/?x=/../y"), ("/%2e", "/"), ("/a%2e%2e", "/a.."), ("/%25", "/%25"),
        ("/%3b", "/%3B"), ("/%c3%A9", "/%C3%A9"), ("/a/%2E%2e/b", "/b"),
    ]
    for target, path in norm:
        add(f"path[{target}]", "path", get(target), 200, [ok("app", f"GET {path} HTTP/1.1")])
    for target in ("/%2e%2e/admin", "/../x", "/a/../../x", "/.%2e/x", "/admin;x", "/a;b=c/d", "/x#/../admin",
                   "/a#", "/a?b#c", "/a%2fb", "/a%2Fb", "/a%5cb", "/a%5Cb", "/a%00b", "/a\\b", "/a%zzb",
                   "/a%2", "/a%"):
        add(f"path-refused[{target}]", "path", get(target), 400, [])
    add("path-strip-prefix-after-merge", "path", get("//api//x"), 200, [ok("api", "GET /x HTTP/1.1")])
    add("path-strip-prefix-decoded", "path", get("/%61pi/x"), 200, [ok("api", "GET /x HTTP/1.1")])
    add("path-dotdot-leaves-api", "path", get("/api/../app/x"), 200, [ok("app", "GET /app/x HTTP/1.1")])

    # ---------------------------------------------------------------- payload bypass: /app/admin without the token
    for target in ("/app/%61dmin", "/app/adm%69n", "/%61pp/admin", "/app/x/../admin", "/app/./admin", "//app/admin",
                   "/app//admin", "/app/admin/", "/app/admin/.", "/app/admin/x/..", "/app/admin?x=1",
                   "/api/../app/admin", "/api/%2e%2e/app/admin", "/%2e/app/admin", "/app/%2e/admin",
                   "/app/admin/%2e", "/app/x/%2e%2e/admin/y"):
        add(f"admin-bypass[{target}]", "payload", get(target), 401, [])
    for target in ("/app/admin;x", "/app/admin;/", "/app/admin%2f", "/app%2fadmin", "/app\\admin", "/app%5cadmin",
                   "/app/admin%00", "/app/admin#", "/x#/../app/admin", "/app/admin/..;/admin"):
        add(f"admin-bypass-refused[{target}]", "payload", get(target), 400, [])
    add("admin-bypass-http10", "payload", get("/app/%61dmin", version="HTTP/1.0", host=None), 401, [])
    add("admin-bypass-absolute-form", "payload", get("http://t/app/admin"), 400, [])

    # ---------------------------------------------------------------- 4. Transfer-Encoding refused before anything goes up
    for te in ("xchunked", "chunked, identity", "chunked\t", "identity", "chunked,", ",chunked", "chunked;q=1",
               "\x0bchunked"):
        add(f"te-refused[{te!r}]", "te", post("/app/x", chunked(b"hello"), f"Transfer-Encoding: {te}"), 400, [])
    add("te-two-headers-ending-identity", "te",
        post("/app/x", chunked(b"hello"), "Transfer-Encoding: chunked", "Transfer-Encoding: identity"), 400, [])
    add("te-chunked-twice", "te",
        post("/app/x", chunked(b"hello"), "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), 400, [])
    add("te-case-variants", "te",
        post("/app/x", chunked(b"hello"), "Transfer-encoding: chunked", "Transfer-Encoding: x"), 400, [])
    add("te-space-before-colon", "te", post("/app/x", chunked(b"hello"), "Transfer-Encoding : chunked"), 400, [])
    # http-parser reads this empty-valued name as a Transfer-Encoding (found by fuzz_proxy_diff)
    add("te-name-with-suffix-empty-value", "te", post("/app/x", chunked(b"hello"), "Transfer-Encodingccc:"), 400, [])
    # the same name with a value, next to a real one: forwarded, a ship that
    # parses like http-parser reads two Transfer-Encodings (found by fuzz_proxy_diff)
    add("te-name-with-suffix-beside-te", "te",
        post("/app/x", chunked(b"hello"), "Transfer-Encoding.: chunked", "Transfer-Encoding: chunked"), 400, [])
    add("cl-name-with-suffix", "cl", post("/app/x", b"hello", "Content-Lengthx: 5", "Content-Length: 5"), 400, [])
    add("te-gzip-chunked-501", "te", post("/app/x", chunked(b"hello"), "Transfer-Encoding: gzip, chunked"), 501, [])
    add("te-in-http10", "te", post("/app/x", chunked(b"hello"), "Transfer-Encoding: chunked", version="HTTP/1.0"),
        400, [])

    # ---------------------------------------------------------------- classic smuggling
    add("cl-te", "smuggling", post("/app/x", b"0\r\n\r\nG", "Content-Length: 6", "Transfer-Encoding: chunked"), 400, [])
    add("te-cl", "smuggling", post("/app/x", b"8\r\nSMUGGLED\r\n0\r\n\r\n", "Transfer-Encoding: chunked",
                                   "Content-Length: 3"), 400, [])
    add("te-te-cl-obfuscated", "smuggling",
        post("/app/x", b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n", "Content-Length: 4", "Transfer-Encoding: chunked",
             "Transfer-encoding: cow"), 400, [])
    add("cl-te-vt", "smuggling", post("/app/x", b"0\r\n\r\nG", "Content-Length: 6", "Transfer-Encoding:\x0bchunked"),
        400, [])
    add("cl-te-space-before-colon", "smuggling",
        post("/app/x", b"0\r\n\r\nG", "Content-Length: 6", "Transfer-Encoding : chunked"), 400, [])
    add("cl-te-smuggled-admin", "smuggling",
        post("/app/x", b"0\r\n\r\n" + INNER, f"Content-Length: {5 + len(INNER)}", "Transfer-Encoding: chunked"),
        400, [])

    # ---------------------------------------------------------------- Content-Length forms
    add("cl-duplicate-equal", "cl", post("/app/x", b"hello", "Content-Length: 5", "Content-Length: 5"), 400, [])
    add("cl-duplicate-different", "cl", post("/app/x", b"hello", "Content-Length: 5", "Content-Length: 6"), 400, [])
    add("cl-list", "cl", post("/app/x", b"hello", "Content-Length: 5, 5"), 400, [])
    for v in ("+5", "-1", "0x5", "5 5", "5a", ""):
        add(f"cl-bad[{v!r}]", "cl", post("/app/x", b"hello", f"Content-Length: {v}"), 400, [])
    # silent: a length past 2^64 is a bad value (400) or over max_body_size (413)
    add("cl-overflow", "cl", post("/app/x", b"hello", "Content-Length: 99999999999999999999999"), (400, 413), [],
        silent=True)

    # ---------------------------------------------------------------- bad chunked bodies (buffered: nothing goes up)
    te = "Transfer-Encoding: chunked"
    bad_chunks = {
        "size-g": b"g\r\nhello\r\n0\r\n\r\n",
        "size-0x5": b"0x5\r\nhello\r\n0\r\n\r\n",
        "size-overflow": b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "size-negative": b"-5\r\nhello\r\n0\r\n\r\n",
        "size-leading-space": b" 5\r\nhello\r\n0\r\n\r\n",
        "size-empty": b"\r\nhello\r\n0\r\n\r\n",
        "missing-crlf-after-data": b"5\r\nhelloXX0\r\n\r\n",
        "data-longer-than-size": b"3\r\nhello\r\n0\r\n\r\n",
        "bare-lf": b"5\nhello\n0\n\n",
        "junk-in-last-chunk": b"5\r\nhello\r\n0\r\nX\r\n\r\n",
    }
    for name, body in bad_chunks.items():
        add(f"chunk-bad[{name}]", "chunks", post("/app/x", body, te), 400, [])
    # silent on chunk extensions: control bytes in one are refused
    add("chunk-ext-control-bytes", "chunks", post("/app/x", b"5;a=\x01\x7f\r\nhello\r\n0\r\n\r\n", te), 400, [],
        silent=True)

    # ---------------------------------------------------------------- malformed heads
    add("obs-fold", "head", get("/app/x", "X-A: a", " b"), 400, [])
    add("obs-fold-te", "head", post("/app/x", chunked(b"hello"), "X-A: a", " Transfer-Encoding: chunked"), 400, [])
    add("header-space-before-colon", "head", get("/app/x", "X-A : b"), 400, [])
    add("header-nul-in-value", "head", get("/app/x", "X-A: a\x00b"), 400, [])
    add("header-cr-in-value", "head", get("/app/x", "X-A: a\rb"), 400, [])
    add("header-no-colon", "head", get("/app/x", "X-A"), 400, [])
    add("host-twice", "head", get("/app/x", "Host: u"), 400, [])
    add("host-missing-http11", "head", get("/app/x", host=None), 400, [])
    add("absolute-form", "head", get("http://t/app/x"), 400, [])
    # silent on CONNECT: refused (400, 405) or closed, never forwarded
    add("authority-form", "head", req("CONNECT", "t:80"), (400, 405, CLOSED), [], silent=True)
    # silent on HTTP/0.9 and the HTTP/2 preface on an http bind: refused
    # (505 is the documented answer to a version other than 1.x) or closed
    add("http09", "head", b"GET /app/x\r\n\r\n", (400, 505, CLOSED), [], silent=True)
    add("http2-preface", "head", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (400, 505, CLOSED), [], silent=True)

    # ---------------------------------------------------------------- pipelining after a refusal
    add("pipeline-after-bad-target", "pipeline", get(b"/app/x\t") + get("/app/admin", AUTH), 400, [])
    add("pipeline-after-bad-te", "pipeline",
        post("/app/x", b"0\r\n\r\n", "Transfer-Encoding: xchunked") + get("/app/next"), 400, [])
    add("pipeline-after-dup-cl", "pipeline",
        post("/app/x", b"hello", "Content-Length: 5", "Content-Length: 5") + get("/app/next"), 400, [])
    add("pipeline-after-bad-chunk", "pipeline", post("/app/x", b"g\r\n\r\n", te) + get("/app/next"), 400, [])
    add("pipeline-after-ambiguous-path", "pipeline", get("/app%2fadmin") + get("/app/next"), 400, [])
    add("pipeline-after-401", "pipeline", get("/app/admin") + get("/app/next"), [401, 200],
        [ok("app", "GET /app/next HTTP/1.1")])

    # ---------------------------------------------------------------- Upgrade other than websocket
    h2c = ("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__")
    add("upgrade-h2c-dropped", "upgrade", get("/app/x", *h2c), 200,
        [ok("app", "GET /app/x HTTP/1.1", absent=("upgrade", "http2-settings"))])
    add("upgrade-h2c-static", "upgrade", get("/static/index.html", *h2c), 200, [])
    add("upgrade-h2c-without-connection", "upgrade", get("/app/x", "Upgrade: h2c"), 200,
        [ok("app", "GET /app/x HTTP/1.1", absent=("upgrade",))])
    add("upgrade-tls", "upgrade", get("/app/x", "Connection: Upgrade", "Upgrade: TLS/1.0"), 200,
        [ok("app", "GET /app/x HTTP/1.1", absent=("upgrade",))])
    add("upgrade-h2c-post-body", "upgrade", post("/app/x", b"hello", "Content-Length: 5", *h2c), 200,
        [ok("app", "POST /app/x HTTP/1.1", b"hello", absent=("upgrade", "http2-settings"))])
    return C


CASES = _cases()


# ====================================================================== the strict view of what a ship got
TOKEN_RX = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
REQLINE_RX = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) (HTTP/1\.[01])$")


class Malformed(Exception):
    pass


def _line(data, pos):
    end = data.find(b"\r\n", pos)
    if end < 0:
        raise Malformed(f"incomplete line at byte {pos}: {data[pos:pos + 60]!r}")
    ln = data[pos:end]
    if b"\n" in ln or b"\r" in ln:
        raise Malformed(f"bare CR or LF in line {ln[:60]!r}")
    return ln, end + 2


def parse_forwarded(data):
    """The requests in data (bytes one upstream connection received), parsed
    strictly; raises Malformed with the reason when they are not complete,
    well-framed HTTP/1.1 requests."""
    out = []
    pos = 0
    while pos < len(data):
        ln, pos = _line(data, pos)
        m = REQLINE_RX.match(ln)
        if not m:
            raise Malformed(f"bad request line {ln[:80]!r}")
        target = m.group(2)
        if b"#" in target:
            raise Malformed(f"'#' in the target {target!r}")
        headers = []
        while True:
            h, pos = _line(data, pos)
            if h == b"":
                break
            if h[:1] in (b" ", b"\t"):
                raise Malformed(f"obs-fold {h[:60]!r}")
            name, sep, value = h.partition(b":")
            if not sep or not TOKEN_RX.match(name):
                raise Malformed(f"bad header line {h[:60]!r}")
            value = value.strip(b" \t")
            if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value):
                raise Malformed(f"control byte in header {name!r}: {value[:60]!r}")
            headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
        names = [k for k, _ in headers]
        cls = [v for k, v in headers if k == "content-length"]
        tes = [v for k, v in headers if k == "transfer-encoding"]
        if names.count("host") > 1:
            raise Malformed(f"{names.count('host')} Host headers")
        for v in (v for k, v in headers if k == "connection"):
            for tok in v.lower().replace(" ", "").split(","):
                if tok in ("content-length", "transfer-encoding", "host"):
                    raise Malformed(f"Connection names {tok}")
        if len(cls) > 1 or len(tes) > 1 or (cls and tes):
            raise Malformed(f"ambiguous framing: Content-Length {cls}, Transfer-Encoding {tes}")
        if tes:
            if tes[0].lower() != "chunked":
                raise Malformed(f"Transfer-Encoding {tes[0]!r}")
            body, pos = _chunked(data, pos)
            framing = "chunked"
        elif cls:
            if not re.fullmatch(r"[0-9]+", cls[0]):
                raise Malformed(f"Content-Length {cls[0]!r}")
            n = int(cls[0])
            if pos + n > len(data):
                raise Malformed(f"body of {n} bytes cut at {len(data) - pos}")
            body, pos = data[pos:pos + n], pos + n
            framing = f"CL {n}"
        else:
            body, framing = b"", "none"
        out.append({"line": ln.decode("latin-1"), "method": m.group(1).decode(), "target": target.decode("latin-1"),
                    "headers": headers, "body": body, "framing": framing})
    return out


def _chunked(data, pos):
    parts = []
    while True:
        ln, pos = _line(data, pos)
        size, _, ext = ln.partition(b";")
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size):
            raise Malformed(f"bad chunk size line {ln[:60]!r}")
        if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", ext):
            raise Malformed("control byte in a chunk extension")
        n = int(size, 16)
        if n == 0:
            while True:
                t, pos = _line(data, pos)
                if t == b"":
                    return b"".join(parts), pos
                if b":" not in t or not TOKEN_RX.match(t.split(b":")[0]):
                    raise Malformed(f"bad trailer {t[:60]!r}")
        if pos + n + 2 > len(data):
            raise Malformed("chunk cut short")
        parts.append(data[pos:pos + n])
        if data[pos + n:pos + n + 2] != b"\r\n":
            raise Malformed("chunk data not followed by CRLF")
        pos += n + 2


def is_sentinel(target):
    return "/_sentinel/" in target


# ====================================================================== the recording directory
class Recorder:
    """What the recording upstreams (one directory) received since mark()."""

    def __init__(self, directory):
        self.dir = directory
        self.sizes = {}
        self.nlines = {}

    def _raw_files(self):
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(".raw"))

    def mark(self):
        self.sizes = {n: os.path.getsize(os.path.join(self.dir, n)) for n in self._raw_files()}
        self.nlines = {s: len(self.log(s)) for s in SHIPS}

    def log(self, ship):
        try:
            with open(os.path.join(self.dir, f"{ship}.requests.jsonl")) as f:
                return [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []

    def raw_since(self):
        """{file name: new bytes} for every connection that got bytes."""
        out = {}
        for n in self._raw_files():
            with open(os.path.join(self.dir, n), "rb") as f:
                f.seek(self.sizes.get(n, 0))
                d = f.read()
            if d:
                out[n] = d
        return out

    def log_since(self):
        return {s: self.log(s)[self.nlines.get(s, 0):] for s in SHIPS}

    def wait_for(self, ship, path, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("path") == path for e in self.log(ship)):
                return True
            time.sleep(0.01)
        return False


# ====================================================================== the client side
def exchange(port, data, nresp, timeout=3.0, host="127.0.0.1"):
    """Send data on a new connection, read nresp responses (each one
    {"status", "headers", "body", "framing"}; status CLOSED when the
    connection ended first, "timeout" when nothing complete came), then shut
    the write side and collect anything more until the close. Returns
    (responses, extra bytes)."""
    s = socket.create_connection((host, port), timeout=timeout)
    buf = bytearray()
    out = []
    eof = False

    def fill():
        nonlocal eof
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            eof = True
            return False
        buf.extend(d)
        return True

    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + timeout
        for _ in range(nresp):
            r = _read_response(s, buf, fill, lambda: eof, deadline)
            out.append(r)
            if r["status"] in (CLOSED, "timeout", "garbage"):
                break
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        s.settimeout(1.0)
        try:
            while fill():
                pass
        except socket.timeout:
            pass
        return out, bytes(buf)
    finally:
        s.close()


def _read_response(s, buf, fill, is_eof, deadline):
    def need(pred):
        while not pred():
            if time.monotonic() >= deadline:
                raise socket.timeout
            s.settimeout(max(0.01, deadline - time.monotonic()))
            if not fill():
                return False
        return True

    try:
        while True:
            if not need(lambda: b"\r\n\r\n" in buf):
                return {"status": CLOSED if not buf else "garbage", "raw": bytes(buf[:200])}
            end = buf.index(b"\r\n\r\n")
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[:end + 4]
            m = re.match(r"HTTP/1\.[01] (\d{3})", head[0])
            if not m:
                return {"status": "garbage", "raw": head[0][:200]}
            status = int(m.group(1))
            headers = [(k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in head[1:])]
            if status >= 200:
                break
        hd = dict(headers)
        te, cl = hd.get("transfer-encoding"), hd.get("content-length")
        if status in (204, 304):
            return {"status": status, "headers": headers, "body": b"", "framing": "none"}
        if te and te.lower() == "chunked":
            body = b""
            while True:
                if not need(lambda: b"\r\n" in buf):
                    return {"status": status, "headers": headers, "body": body, "framing": "cut"}
                i = buf.index(b"\r\n")
                n = int(bytes(buf[:i]).split(b";")[0], 16)
                del buf[:i + 2]
                if n == 0:
                    need(lambda: b"\r\n\r\n" in buf or bytes(buf[:2]) == b"\r\n")
                    j = 2 if bytes(buf[:2]) == b"\r\n" else buf.index(b"\r\n\r\n") + 4
                    del buf[:j]
                    return {"status": status, "headers": headers, "body": body, "framing": "chunked"}
                if not need(lambda: len(buf) >= n + 2):
                    return {"status": status, "headers": headers, "body": body, "framing": "cut"}
                body += bytes(buf[:n])
                del buf[:n + 2]
        if cl is not None:
            n = int(cl)
            if not need(lambda: len(buf) >= n):
                return {"status": status, "headers": headers, "body": bytes(buf), "framing": "cut"}
            body = bytes(buf[:n])
            del buf[:n]
            return {"status": status, "headers": headers, "body": body, "framing": f"CL {n}"}
        # neither: delimited by the close, which must come
        try:
            need(lambda: False)
        except socket.timeout:
            return {"status": status, "headers": headers, "body": bytes(buf), "framing": "unframed, not closed"}
        body = bytes(buf)
        buf.clear()
        return {"status": status, "headers": headers, "body": body, "framing": "close"}
    except socket.timeout:
        return {"status": "timeout"}
    except ValueError as e:
        return {"status": "garbage", "raw": str(e)}


# per ship: the target sent through the proxy, and the path the ship gets
SENTINELS = {"app": ("/_sentinel/{}", "/_sentinel/{}"), "api": ("/api/_sentinel/{}", "/_sentinel/{}")}


def sentinel(port, target, host="127.0.0.1"):
    """A request through the proxy that the caller then waits for at the
    ship: by then, everything the proxy wrote upstream before it has been
    recorded."""
    exchange(port, get(target, "Connection: close"), 1, host=host)


# ====================================================================== judging one case
def run_case(case, port, rec, seq, strict_framing=True, sentinels=None):
    """Run case against the proxy on port; returns a dict with "responses",
    "forwarded" (per ship: request lines / "MALFORMED ..."), "admin_leaks"
    and "problems" (empty when the proxy did what the case expects)."""
    rec.mark()
    responses, extra = exchange(port, case.send, len(case.status))
    for ship, (target, path) in (sentinels or SENTINELS).items():
        sentinel(port, target.format(f"{seq}-{ship}"))
        if not rec.wait_for(ship, path.format(f"{seq}-{ship}")):
            return {"responses": responses, "forwarded": {}, "admin_leaks": [],
                    "problems": [f"the sentinel did not reach {ship}: the proxy is stuck"]}
    problems = []
    forwarded, got = {}, []
    for fname, data in rec.raw_since().items():
        ship = fname.split(".")[0]
        try:
            reqs = parse_forwarded(data)
        except Malformed as e:
            forwarded.setdefault(ship, []).append(f"MALFORMED ({e}) in {data[:300]!r}")
            problems.append(f"{ship} received malformed bytes: {e}: {data[:300]!r}")
            continue
        for r in reqs:
            if is_sentinel(r["target"]):
                continue
            forwarded.setdefault(ship, []).append(f"{r['line']} [{r['framing']}]")
            got.append((ship, r))
    leaks = []
    for ship, entries in rec.log_since().items():
        for e in entries:
            if "error" in e or is_sentinel(e.get("target", "")):
                continue
            auth = [v for k, v in e["headers"] if k.lower() == "authorization"]
            if ADMIN.match(e["path"]) and auth != ["Bearer " + TOKEN]:
                leaks.append(f"{ship} served {e['method']} {e['path']} (sent as {e['target']!r}) without the token")
    problems += leaks

    # the client's side
    statuses = [r["status"] for r in responses]
    for i, want in enumerate(case.status):
        allowed = want if isinstance(want, tuple) else (want,)
        have = statuses[i] if i < len(statuses) else CLOSED
        if have not in allowed:
            problems.append(f"response {i + 1}: got {have}, want {' or '.join(map(str, allowed))}")
        if i < len(responses) and str(responses[i].get("framing", "")).startswith(("unframed", "cut")):
            problems.append(f"response {i + 1} is {responses[i]['framing']}")
    if extra.startswith(b"HTTP/"):
        problems.append(f"more answers than requests accepted: {extra[:120]!r}")

    # the ships' side
    if not case.expect:
        if got:
            problems.append("nothing may reach a ship, but: " + "; ".join(f"{s}: {r['line']}" for s, r in got))
    else:
        want = [(f.ship, f.line, f.body) for f in case.expect]
        have = [(s, r["line"], r["body"]) for s, r in got]
        if sorted(want) != sorted(have):
            problems.append(f"ships got {have}, want {want}")
        for f in case.expect:
            for s, r in got:
                if (s, r["line"]) != (f.ship, f.line):
                    continue
                hd = dict(r["headers"])
                for name in f.absent:
                    if name in hd:
                        problems.append(f"{s} got {name}: {hd[name]!r} for {r['line']}")
                for name, value in f.present.items():
                    if hd.get(name) != value:
                        problems.append(f"{s} got {name}: {hd.get(name)!r}, want {value!r}")
                if strict_framing:
                    allowed = ("none", "CL 0") if not f.body else (f"CL {len(f.body)}",)
                    if r["framing"] not in allowed:
                        problems.append(f"{s} got {r['line']} framed as {r['framing']}, want {' or '.join(allowed)}")
    return {"responses": responses, "forwarded": forwarded, "admin_leaks": leaks, "problems": problems}


def write_corpus(directory):
    """Every case's bytes as a seed for tests/fuzz/fuzz_proxy_diff (one file
    per case, named after it)."""
    import hashlib
    os.makedirs(directory, exist_ok=True)
    for c in CASES:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", c.name).strip("_")[:40]
        with open(os.path.join(directory, f"{name}-{hashlib.sha1(c.send).hexdigest()[:8]}"), "wb") as f:
            f.write(c.send)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3 or sys.argv[1] != "corpus":
        sys.exit("usage: hostile_cases.py corpus DIR   (e.g. tests/fuzz/corpus/proxy_diff)")
    write_corpus(sys.argv[2])
    print(f"{len(CASES)} seeds in {sys.argv[2]}")
