"""The ACME client (issue 18) against a hostile or broken ACME server: a
fake one on a thread (plain http:// directory URLs are allowed) that
answers what each test asks. For each case: what Mothership logs, that it
keeps serving (its data plane still answers a normal request), that it
backs off (the requests the fake server counts stay bounded over a few
seconds) and that its memory stays bounded."""
import base64
import datetime
import http.server
import json
import socket
import threading
import time

import pytest

from fleet_helpers import free_port, http_get, rss_kib, toml_str
from http_helpers import recv_to_eof

NAME = "site.example.com"
HELLO = b"hello while the CA misbehaves\n"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class FakeAcme:
    """An ACME server that does what `mode` says. hits: (time, method,
    path) of every request."""

    def __init__(self, mode, **opts):
        self.mode, self.opts = mode, opts
        self.hits = []
        self.lock = threading.Lock()
        self.nonce = 0
        self.csr_key = None
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                fake.handle(self, "GET")

            def do_HEAD(self):
                fake.handle(self, "HEAD")

            def do_POST(self):
                fake.handle(self, "POST")

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    @property
    def directory(self):
        return self.base + "/dir"

    def stop(self):
        self.srv.shutdown()

    def count(self, path=None, since=0.0):
        with self.lock:
            return sum(1 for t, _, p in self.hits if t >= since and (path is None or p == path))

    # ---------------------------------------------------------------- answers
    def send(self, h, status, body=b"", ctype="application/json", headers=(), nonce=True):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        if nonce and self.mode != "no_nonce":
            with self.lock:
                self.nonce += 1
                n = self.nonce
            h.send_header("Replay-Nonce", f"nonce{n}")
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def payload(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        try:
            jws = json.loads(raw)
            return json.loads(unb64u(jws["payload"])) if jws.get("payload") else None
        except Exception:
            return None

    def order(self, status, **extra):
        o = {"status": status, "identifiers": [{"type": "dns", "value": NAME}],
             "authorizations": [self.base + "/authz/1"], "finalize": self.base + "/finalize"}
        o.update(extra)
        return o

    def handle(self, h, method):
        path = h.path
        with self.lock:
            self.hits.append((time.monotonic(), method, path))
        mode, b = self.mode, self.base
        pl = self.payload(h) if method == "POST" else None
        if path == "/dir":
            if mode == "hang":
                time.sleep(3600)
                return
            if mode == "redirect":
                return self.send(h, 302, b"", headers=[("Location", "http://127.0.0.1:1/dir")])
            d = {"newNonce": b + "/nonce", "newAccount": b + "/acct", "newOrder": b + "/order"}
            if mode == "dir_missing":
                del d["newOrder"]
            if mode == "dir_nonhttp":
                d["newNonce"] = "ftp://127.0.0.1/nonce"
            return self.send(h, 200, d, nonce=False)
        if path == "/nonce":
            return self.send(h, 200 if method == "HEAD" else 204)
        if mode == "bad_nonce" and method == "POST":
            return self.send(h, 400, {"type": "urn:ietf:params:acme:error:badNonce", "detail": "no"},
                             ctype="application/problem+json")
        if path == "/acct":
            loc = b + ("/acct/\xff1" if mode == "acct_bad_location" else "/acct/1")
            return self.send(h, 201, {"status": "valid"}, headers=[("Location", loc)])
        if path == "/order":
            o = self.order("pending")
            if mode == "authz_many":
                o["authorizations"] = [b + "/authz/1"] * 100
            if mode == "authz_huge":
                o["authorizations"] = [b + f"/authz/{i}" for i in range(1000)]
            if mode.startswith("cert_") or mode == "finalize_invalid":
                o = self.order("ready")
            return self.send(h, 201, o, headers=[("Location", b + "/order/1")])
        if path == "/order/1":
            if mode.startswith("cert_") and self.csr_key is not None:
                return self.send(h, 200, self.order("valid", certificate=b + "/cert"))
            return self.send(h, 200, self.order("pending"))
        if path.startswith("/authz/"):
            if mode in ("authz_many", "authz_huge"):
                return self.send(h, 200, {"status": "valid", "identifier": {"type": "dns", "value": NAME},
                                          "challenges": []})
            tok = self.opts.get("token", "tok_" + "A" * 40)
            hdr = [("Retry-After", "0")] if mode == "retry_after_0" else []
            return self.send(h, 200, {"status": "pending", "identifier": {"type": "dns", "value": NAME},
                                      "challenges": [{"type": "http-01", "url": b + "/chall/1",
                                                      "status": "pending", "token": tok}]}, headers=hdr)
        if path == "/chall/1":
            hdr = [("Retry-After", "0")] if mode == "retry_after_0" else []
            return self.send(h, 200, {"type": "http-01", "url": b + "/chall/1", "status": "processing",
                                      "token": self.opts.get("token", "tok_" + "A" * 40)}, headers=hdr)
        if path == "/finalize":
            if mode == "finalize_invalid":
                return self.send(h, 200, self.order("invalid", error={
                    "type": "urn:ietf:params:acme:error:badCSR", "detail": "no thanks"}))
            self.csr_key = self.csr_public_key(pl)
            return self.send(h, 200, self.order("valid", certificate=b + "/cert"))
        if path == "/cert":
            return self.send(h, 200, self.chain(), ctype="application/pem-certificate-chain")
        return self.send(h, 404, {"type": "urn:ietf:params:acme:error:malformed", "detail": path},
                         ctype="application/problem+json")

    def csr_public_key(self, pl):
        from cryptography import x509
        return x509.load_der_x509_csr(unb64u(pl["csr"])).public_key()

    def chain(self):
        mode = self.mode
        if mode == "cert_empty":
            return b""
        if mode == "cert_huge":
            return b"-----BEGIN CERTIFICATE-----\n" + b"A" * (1 << 20) + b"\n-----END CERTIFICATE-----\n"
        from cryptography.hazmat.primitives.asymmetric import ec
        if mode == "cert_other_key":
            leaf = make_cert(ec.generate_private_key(ec.SECP256R1()).public_key(), NAME)
        elif mode == "cert_other_name":
            leaf = make_cert(self.csr_key, "evil.example.net")
        else:
            leaf = make_cert(self.csr_key, NAME)
        if mode == "cert_10000":
            return leaf * 10000
        if mode == "cert_1000":  # each issuing the one before, under 1 MiB
            return make_chain(self.csr_key, NAME, 1000)
        return leaf


def make_cert(pub, name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    ca = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    c = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake CA")]))
         .public_key(pub).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
         .sign(ca, hashes.SHA256()))
    return c.public_bytes(serialization.Encoding.PEM)


def make_chain(pub, name, n):
    """A chain of n certificates in order: a leaf for pub and name, then
    each issuer, the last one self-signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(n)]  # keys[i] signs cert i
    out = []
    for i in range(n):
        subject = name if i == 0 else f"CA {i}"
        issuer = f"CA {i + 1}" if i + 1 < n else subject
        signer = keys[i + 1] if i + 1 < n else keys[i]
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(pub if i == 0 else keys[i].public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=30)))
        if i == 0:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        else:
            b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        out.append(b.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return b"".join(out)


@pytest.fixture
def fake():
    made = []

    def start(mode, **opts):
        f = FakeAcme(mode, **opts)
        made.append(f)
        return f

    yield start
    for f in made:
        f.stop()


SITES = []


@pytest.fixture(autouse=True)
def clean_exit():
    """Every Mothership of a test stops cleanly at its end, without a
    sanitizer's report (MS_BUILD may be an ASan build)."""
    SITES.clear()
    yield
    for site in SITES:
        site.ms.stop(timeout=15)
        out = site.ms.output()
        assert "Sanitizer" not in out and "runtime error" not in out, out[-5000:]


class Site:
    def __init__(self, fleet, tmp_path, directory, backoff="2s", max_backoff="4s"):
        self.hport, self.tport, self.mport = free_port(), free_port(), free_port()
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "hello.txt").write_bytes(HELLO)
        self.text = "\n".join([
            "[mothership]",
            f"metrics_port = {self.mport}",
            f"state_dir = {toml_str(tmp_path / 'state')}",
            'shutdown_timeout = "5s"',
            "",
            "[mothership.bind]",
            f'http = "127.0.0.1:{self.hport}"',
            f'https = "127.0.0.1:{self.tport}"',
            "",
            "[mothership.acme]",
            'email = "ops@example.com"',
            f"domains = [{toml_str(NAME)}]",
            f"directory = {toml_str(directory)}",
            'challenge = "http-01"',
            f"backoff = {toml_str(backoff)}",
            f"max_backoff = {toml_str(max_backoff)}",
            "",
            "[[mothership.static_dirs]]",
            f"path = {toml_str(site)}",
            'prefix = "/"',
            "",
        ])
        self.ms = fleet(self.text, name="ship-manifest.toml")
        SITES.append(self)
        start = 0
        for _ in range(2):
            start = self.ms.event("listening", start=start, timeout=15)["_i"] + 1
        self.ms.event("fleet_ready", start=start, timeout=15)

    def serves(self):
        status, body = http_get(self.hport, "/hello.txt")
        assert status == 200 and body.encode() == HELLO, (status, body)

    def get(self, path):
        s = socket.create_connection(("127.0.0.1", self.hport), timeout=5)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
        data = recv_to_eof(s)
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    def rss(self):
        return rss_kib(self.ms.proc.pid)


def failed(site, event, timeout=20, start=0):
    return site.ms.event(event, start=start, timeout=timeout)


def bounded(site, f, seconds, most, path=None):
    """Over `seconds`, the fake counts at most `most` requests (to path),
    Mothership serving all along; returns the count."""
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        site.serves()
        time.sleep(0.25)
    n = f.count(path, since=t0)
    assert n <= most, (n, f.hits[-20:], site.ms.output()[-3000:])
    return n


# ------------------------------------------------------------------ the directory
@pytest.mark.parametrize("mode,why", [
    ("dir_missing", "newOrder"),
    ("dir_nonhttp", "newNonce"),
    ("redirect", "HTTP 302"),
])
def test_a_broken_directory_fails_the_account_with_backoff(fleet, tmp_path, fake, mode, why):
    f = fake(mode)
    site = Site(fleet, tmp_path, f.directory)
    e = failed(site, "acme_account_failed")
    assert why in e["msg"], e
    site.serves()
    bounded(site, f, 5, 4)
    assert f.count("/dir") <= 4, f.hits
    if mode == "redirect":
        assert all(p == "/dir" for _, _, p in f.hits), f.hits


def test_no_replay_nonce_ever(fleet, tmp_path, fake):
    f = fake("no_nonce")
    site = Site(fleet, tmp_path, f.directory)
    e = failed(site, "acme_account_failed")
    assert "Replay-Nonce" in e["msg"], e
    bounded(site, f, 5, 8)


@pytest.mark.parametrize("mode", ["acct_bad_location"])
def test_an_account_url_that_cannot_be_used_is_refused(fleet, tmp_path, fake, mode):
    """A Location that is no URL to send requests to (a non-ASCII byte: it
    cannot go into a JWS's "kid") fails the account, which is registered
    again after the backoff, instead of being kept (and stored) for every
    order to fail on ("cannot sign the request") until a restart."""
    f = fake(mode)
    site = Site(fleet, tmp_path, f.directory)
    e = failed(site, "acme_account_failed")
    assert "account URL" in e["msg"], e
    assert f.count("/order") == 0, f.hits
    assert not list((tmp_path / "state").rglob("account.json"))
    site.serves()
    bounded(site, f, 4, 8)


def test_bad_nonce_forever_stops_after_five_and_backs_off(fleet, tmp_path, fake):
    f = fake("bad_nonce")
    site = Site(fleet, tmp_path, f.directory)
    e = failed(site, "acme_account_failed")
    assert "badNonce" in e["msg"], e
    t = time.monotonic()
    time.sleep(0.5)
    # one attempt: the first POST and 5 more
    assert f.count("/acct") == 6, f.hits
    bounded(site, f, 5, 14, "/acct")
    assert f.count("/acct", since=t) <= 14


# ------------------------------------------------------------------ the order
def test_an_order_of_100_times_the_same_authorization(fleet, tmp_path, fake):
    f = fake("authz_many")
    site = Site(fleet, tmp_path, f.directory)
    site.ms.event("acme_account", timeout=15)
    time.sleep(2)
    n = f.count("/authz/1")
    assert n <= 100, n  # each fetched once at most, then the order is polled
    bounded(site, f, 4, 6, "/order/1")


def test_an_order_of_1000_authorizations_is_refused(fleet, tmp_path, fake):
    f = fake("authz_huge")
    site = Site(fleet, tmp_path, f.directory)
    e = failed(site, "acme_order_failed")
    assert "more than 100 authorizations" in e["msg"], e
    assert f.count("/authz/0") == 0
    bounded(site, f, 3, 6)


@pytest.mark.parametrize("mode", ["authz_pending", "retry_after_0"])
def test_a_pending_authorization_is_polled_with_pauses(fleet, tmp_path, fake, mode):
    f = fake(mode)
    site = Site(fleet, tmp_path, f.directory)
    e = site.ms.event("acme_challenge", timeout=15)
    assert e["name"] == NAME
    # the token is on the board exactly at its path
    tok = "tok_" + "A" * 40
    wait = time.monotonic() + 5
    while site.get("/.well-known/acme-challenge/" + tok)[0] != 200 and time.monotonic() < wait:
        time.sleep(0.1)
    status, body = site.get("/.well-known/acme-challenge/" + tok)
    assert status == 200 and body.startswith(tok.encode() + b"."), (status, body)
    for p in ("/.well-known/acme-challenge/" + tok + "/", "/.well-known/acme-challenge/" + tok[:-1],
              "/.well-known/acme-challenge/",
              "/.well-known/acme-challenge/" + tok + "%00"):
        assert site.get(p)[0] in (400, 404), p
    r0 = site.rss()
    # Retry-After: 0 counts as 1 s; without it 1, 2, 4, 8 s: at most ~8 in 7 s
    n = bounded(site, f, 7, 9, "/authz/1")
    assert n >= 2, f.hits
    assert site.rss() - r0 < 8 * 1024


# ------------------------------------------------------------------ the certificate
@pytest.mark.parametrize("mode,why", [
    ("cert_other_key", "another key"),
    ("cert_other_name", NAME),
    ("cert_empty", "certificate"),
    ("cert_huge", "over 1 MiB"),
    ("cert_10000", "certificate"),
    ("cert_1000", "more than"),
    ("finalize_invalid", "badCSR"),
])
def test_a_bad_certificate_or_finalize_fails_the_order(fleet, tmp_path, fake, mode, why):
    pytest.importorskip("cryptography")
    f = fake(mode)
    site = Site(fleet, tmp_path, f.directory)
    r0 = site.rss()
    e = failed(site, "acme_order_failed", timeout=30)
    assert why in e["msg"], e
    assert e["result"] in ("error", "invalid"), e
    site.serves()
    status, body = http_get(site.mport, "/ready")
    assert status == 503, body
    bounded(site, f, 3, 20)
    assert site.rss() - r0 < 16 * 1024


# ------------------------------------------------------------------ tokens
@pytest.mark.parametrize("token", ["../x", "a/b", "x y", "a%2fb"])
def test_a_token_with_path_characters_is_refused(fleet, tmp_path, fake, token):
    f = fake("authz_pending", token=token)
    site = Site(fleet, tmp_path, f.directory)
    e = failed(site, "acme_order_failed")
    assert "token" in e["msg"], e
    assert f.count("/chall/1") == 0, f.hits
    for p in ("/.well-known/acme-challenge/" + token, "/.well-known/acme-challenge/x",
              "/.well-known/acme-challenge/b", "/x"):
        assert site.get(p)[0] in (400, 404), p
    site.serves()


# ------------------------------------------------------------------ a silent server
@pytest.mark.slow
def test_a_server_that_never_answers_times_out(fleet, tmp_path, fake):
    f = fake("hang")
    site = Site(fleet, tmp_path, f.directory)
    t = time.monotonic()
    site.serves()
    e = failed(site, "acme_account_failed", timeout=45)
    assert "timed out" in e["msg"], e
    assert 25 <= time.monotonic() - t <= 40
    site.serves()
