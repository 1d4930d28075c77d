"""A real ACME server for the ACME tests (test_acme.py): pebble, the test CA
Let's Encrypt publishes (Debian package pebble), with pebble-challtestsrv
as its DNS server, both started per test on free ports and killed at
teardown.

    def test_x(pebble, fleet, tmp_path):
        pb = pebble()                 # or pebble(validity=90, nonce_reject=50)
        # Mothership binds its plain bind on pb.http_port (where pebble
        # checks http-01) and its TLS bind on pb.tls_port (tls-alpn-01), and
        # [mothership.acme] has directory = pb.directory, ca_root = pb.ca_root
        ...
        subprocess.run(["curl", "--cacert", pb.root_pem(), "--resolve",
                        f"{name}:{pb.tls_port}:127.0.0.1", f"https://{name}:{pb.tls_port}/"])

- challtestsrv answers DNS only (its challenge servers are off): every A
  query with 127.0.0.1, no AAAA answers (pebble would try ::1 first).
  pb.add_a(name, "127.0.0.2") points one name elsewhere, pb.clear_a(name)
  brings it back.
- pebble serves its ACME directory over HTTPS with a certificate made here
  by openssl (a CA, then a server certificate for 127.0.0.1 and localhost
  signed by it): that CA file is pb.ca_root, what Mothership is told to
  trust. The certificates pebble issues chain to a root pebble generates
  at each start: pb.root_pem() fetches it from pebble's management API.
- The environment: PEBBLE_VA_NOSLEEP=1 (no random validation delays),
  PEBBLE_WFE_NONCEREJECT=0 unless the test asks (pebble rejects 5% of good
  nonces by default: a test of badNonce asks for more, the others want no
  noise), PEBBLE_AUTHZREUSE=0 (every order proves its names again).
- Readiness is awaited by polling the ports (and a DNS query), with a
  deadline; a process that exits early fails the test with its output.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from fleet_helpers import free_port

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")
START_TIMEOUT = 30.0  # pebble makes RSA keys at start: slow on a busy machine


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"


def make_pebble_tls(directory):
    """A CA and a server certificate for 127.0.0.1 and localhost signed by
    it, in directory: (ca.pem, server.pem, server.key)."""
    d = str(directory)
    os.makedirs(d, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pebble test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=d)
    return os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), os.path.join(d, "server.key")


# ------------------------------------------------------------------ DNS
def dns_query_a(port, name, timeout=1.0):
    """The A records (dotted strings) challtestsrv on 127.0.0.1:port gives
    for name, over UDP; raises OSError (socket.timeout) when nothing
    answers."""
    qid = os.getpid() & 0xFFFF
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        resp, _ = s.recvfrom(4096)
    rid, _flags, qd, an = struct.unpack("!HHHH", resp[:8])
    assert rid == qid, "a DNS answer to another query"

    def skip_name(i):
        while True:
            n = resp[i]
            if n == 0:
                return i + 1
            if n & 0xC0 == 0xC0:  # a compression pointer ends the name
                return i + 2
            i += 1 + n

    i = 12
    for _ in range(qd):
        i = skip_name(i) + 4
    out = []
    for _ in range(an):
        i = skip_name(i)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", resp[i:i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(resp[i:i + 4]))
        i += rdlen
    return out


# ------------------------------------------------------------------ processes
class Proc:
    """A child in its own process group, its output read by a thread."""

    def __init__(self, name, argv, cwd, env=None):
        self.name = name
        self.argv = argv
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.env = env or {}
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            with self.lock:
                self.lines.append(raw.decode("utf-8", errors="replace").rstrip("\n"))

    def output(self):
        with self.lock:
            return "\n".join(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(3)
            except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.thread.join(2)
        self.proc.stdout.close()


def _await(proc, ready, what, timeout=START_TIMEOUT):
    """Poll ready() until it is true, failing when proc exits first or the
    deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if proc.proc.poll() is not None:
            pytest.fail(f"{proc.name} exited ({proc.proc.returncode}) before {what}:\n"
                        f"$ {' '.join(proc.argv)}\n{proc.output()}", pytrace=False)
        if time.monotonic() >= deadline:
            pytest.fail(f"{proc.name}: no {what} within {timeout}s:\n{proc.output()}", pytrace=False)
        time.sleep(0.05)


def _tcp_listens(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


# ------------------------------------------------------------------ pebble
class Pebble:
    """One pebble and its challtestsrv; see the module's comment."""

    def __init__(self, workdir, http_port=None, tls_port=None, validity=None, nonce_reject=0, env=None):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.ca_root, self.server_cert, self.server_key = make_pebble_tls(os.path.join(self.dir, "tls"))
        self.port, self.mgmt_port = free_port(), free_port()
        self.http_port = http_port or free_port()
        self.tls_port = tls_port or free_port()
        self.dns_port, self.dns_mgmt_port = free_port(), free_port()
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        self.procs = []
        self._root = None

        self.challtestsrv_argv = [
            CHALLTESTSRV, "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
            "-tlsalpn01", "", "-management", f"127.0.0.1:{self.dns_mgmt_port}",
            "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]
        self.config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": self.server_cert,
            "privateKey": self.server_key,
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}
        if validity:
            # seconds: pebble 2.4 gives every certificate this lifetime
            self.config["pebble"]["certificateValidityPeriod"] = int(validity)
        self.config_path = os.path.join(self.dir, "pebble-config.json")
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
        self.pebble_argv = [PEBBLE, "-config", self.config_path, "-dnsserver", f"127.0.0.1:{self.dns_port}"]
        self.pebble_env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(nonce_reject),
                           "PEBBLE_AUTHZREUSE": "0", **(env or {})}

    def start(self):
        cts = Proc("pebble-challtestsrv", self.challtestsrv_argv, self.dir)
        self.procs.append(cts)
        _await(cts, lambda: dns_query_a(self.dns_port, "ready.check", timeout=0.3) == ["127.0.0.1"],
               "answer to a DNS query")
        _await(cts, lambda: _tcp_listens(self.dns_mgmt_port), "management port")
        self.challtestsrv = cts
        pb = Proc("pebble", self.pebble_argv, self.dir, env=self.pebble_env)
        self.procs.append(pb)
        self.pebble = pb
        _await(pb, lambda: _tcp_listens(self.mgmt_port) and _tcp_listens(self.port), "listening ports")
        return self

    def stop(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs = []

    # -------------------------------------------------------------- HTTPS
    def _ctx(self):
        return ssl.create_default_context(cafile=self.ca_root)

    def get(self, url, timeout=5):
        """GET an https URL of pebble (its directory, management API),
        trusting ca_root: (status, bytes)."""
        with urllib.request.urlopen(url, context=self._ctx(), timeout=timeout) as r:
            return r.status, r.read()

    def root_pem(self):
        """Path of the root the certificates pebble issues chain to (from
        its management API, /roots/0): what curl --cacert verifies them
        with."""
        if self._root is None:
            status, pem = self.get(f"https://127.0.0.1:{self.mgmt_port}/roots/0")
            assert status == 200 and b"BEGIN CERTIFICATE" in pem, pem[:200]
            self._root = os.path.join(self.dir, "pebble-root.pem")
            with open(self._root, "wb") as f:
                f.write(pem)
        return self._root

    def log_count(self, needle):
        """How many lines of pebble's output contain needle (pebble logs
        every request: "POST /order-plz -> calling handler()")."""
        with self.pebble.lock:
            return sum(needle in l for l in self.pebble.lines)

    def orders(self):
        """How many newOrder requests pebble received."""
        return self.log_count("POST /order-plz")

    def output(self):
        return "\n".join(f"--- {p.name} ---\n{p.output()}" for p in self.procs)

    # -------------------------------------------------------------- DNS
    def _mgmt(self, path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{self.dns_mgmt_port}{path}",
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200, r.status

    def add_a(self, host, *addresses):
        """challtestsrv answers host's A queries with these addresses."""
        self._mgmt("/add-a", {"host": host.rstrip(".") + ".", "addresses": list(addresses)})

    def clear_a(self, host):
        """host is answered with the default (127.0.0.1) again."""
        self._mgmt("/clear-a", {"host": host.rstrip(".") + "."})

    def resolve(self, host):
        return dns_query_a(self.dns_port, host)


def pebble_missing_reason():
    if not PEBBLE or not CHALLTESTSRV:
        return ("pebble is not installed (Debian package pebble: /usr/bin/pebble and "
                "/usr/bin/pebble-challtestsrv; scripts/deps.sh installs it)")
    if not shutil.which("openssl"):
        return "the openssl command is not installed (it makes pebble's HTTPS certificate)"
    return None


@pytest.fixture
def pebble(tmp_path):
    """A factory: pebble(http_port=None, tls_port=None, validity=None,
    nonce_reject=0, env=None) starts challtestsrv and pebble (ports picked
    free unless given) and returns the started Pebble. The test is skipped
    when pebble is not installed; every process is killed at teardown."""
    reason = pebble_missing_reason()
    if reason:
        pytest.skip(reason)
    started = []

    def start(**kw):
        pb = Pebble(tmp_path / f"pebble-{len(started)}", **kw)
        started.append(pb)
        return pb.start()

    yield start
    for pb in started:
        pb.stop()


# ------------------------------------------------------------------ a reference client
class MiniAcme:
    """The smallest ACME client (RFC 8555) that gets a certificate by
    http-01 or tls-alpn-01 from pebble: the harness's own check that pebble,
    its DNS and its ports fit together (a name resolved to 127.0.0.1,
    validated on pb.http_port or pb.tls_port), independent of Mothership's
    client. Needs python3-cryptography."""

    def __init__(self, pb):
        from cryptography.hazmat.primitives.asymmetric import ec
        self.pb = pb
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = None
        self.nonce = None
        self.dir = json.loads(pb.get(pb.directory)[1])

    @staticmethod
    def b64(data):
        import base64
        if isinstance(data, str):
            data = data.encode()
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def jwk(self):
        n = self.key.public_key().public_numbers()
        return {"crv": "P-256", "kty": "EC", "x": self.b64(n.x.to_bytes(32, "big")),
                "y": self.b64(n.y.to_bytes(32, "big"))}

    def thumbprint(self):
        import hashlib
        text = json.dumps(self.jwk(), sort_keys=True, separators=(",", ":"))
        return self.b64(hashlib.sha256(text.encode()).digest())

    def _request(self, url, data=None, method=None):
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/jose+json"})
        try:
            r = urllib.request.urlopen(req, context=self.pb._ctx(), timeout=10)
        except urllib.error.HTTPError as e:
            r = e
        body = r.read()
        if r.headers.get("Replay-Nonce"):
            self.nonce = r.headers["Replay-Nonce"]
        return r.status, r.headers, body

    def post(self, url, payload):
        """A signed POST (payload None: POST-as-GET); (status, headers,
        body), a badNonce retried."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        for _ in range(5):
            if self.nonce is None:
                self._request(self.dir["newNonce"], method="HEAD")
            protected = {"alg": "ES256", "nonce": self.nonce, "url": url}
            if self.kid:
                protected["kid"] = self.kid
            else:
                protected["jwk"] = self.jwk()
            self.nonce = None
            p = self.b64(json.dumps(protected))
            body = "" if payload is None else self.b64(json.dumps(payload))
            r, s = decode_dss_signature(self.key.sign(f"{p}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
            sig = self.b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
            jws = json.dumps({"protected": p, "payload": body, "signature": sig}).encode()
            status, headers, data = self._request(url, jws)
            if status == 400 and b"badNonce" in data:
                continue
            return status, headers, data
        raise AssertionError(f"badNonce 5 times for {url}")

    def poll(self, url, want, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.post(url, None)
            obj = json.loads(body)
            if obj.get("status") == want:
                return obj
            assert obj.get("status") in ("pending", "processing", "ready"), obj
            assert time.monotonic() < deadline, obj
            time.sleep(0.1)  # polling the CA, as every ACME client does

    def _http01(self, chal, answer):
        """A server answering the http-01 challenge on pb.http_port; its
        stop function."""
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                ok = self.path == "/.well-known/acme-challenge/" + chal["token"]
                self.send_response(200 if ok else 404)
                self.end_headers()
                if ok:
                    self.wfile.write(answer)

            def log_message(self, *a):
                pass

        srv = http.server.HTTPServer(("127.0.0.1", self.pb.http_port), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()

        def stop():
            srv.shutdown()
            srv.server_close()
        return stop

    def _tls_alpn01(self, name, answer):
        """A TLS server on pb.tls_port that answers acme-tls/1 handshakes
        with the challenge certificate (RFC 8737); its stop function."""
        import datetime
        import hashlib
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        # id-pe-acmeIdentifier: an OCTET STRING of the key authorization's SHA-256
        acme_id = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"),
                                             b"\x04\x20" + hashlib.sha256(answer).digest())
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(acme_id, critical=True)
                .sign(key, hashes.SHA256()))
        path = os.path.join(self.pb.dir, f"alpn-{name}.pem")
        with open(path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(path)
        ctx.set_alpn_protocols(["acme-tls/1"])
        lsock = socket.create_server(("127.0.0.1", self.pb.tls_port))
        lsock.settimeout(0.2)
        done = threading.Event()

        def serve():
            while not done.is_set():
                try:
                    conn, _ = lsock.accept()
                except (socket.timeout, OSError):
                    continue
                try:
                    conn.settimeout(5)
                    with ctx.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    conn.close()
        t = threading.Thread(target=serve, daemon=True)
        t.start()

        def stop():
            done.set()
            t.join(2)
            lsock.close()
        return stop

    def certificate(self, name, challenge="http-01"):
        """Order, prove by challenge (http-01 on 127.0.0.1:pb.http_port,
        tls-alpn-01 on pb.tls_port), finalize and download: the PEM
        chain."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        status, headers, body = self.post(self.dir["newAccount"], {"termsOfServiceAgreed": True})
        assert status in (200, 201), body
        self.kid = headers["Location"]
        status, headers, body = self.post(self.dir["newOrder"],
                                          {"identifiers": [{"type": "dns", "value": name}]})
        assert status == 201, body
        order_url, order = headers["Location"], json.loads(body)
        [authz_url] = order["authorizations"]
        authz = json.loads(self.post(authz_url, None)[2])
        [chal] = [c for c in authz["challenges"] if c["type"] == challenge]
        answer = f"{chal['token']}.{self.thumbprint()}".encode()
        stop = self._http01(chal, answer) if challenge == "http-01" else self._tls_alpn01(name, answer)
        try:
            status, _, body = self.post(chal["url"], {})
            assert status == 200, body
            self.poll(authz_url, "valid")
        finally:
            stop()
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
               .sign(key, hashes.SHA256()))
        status, _, body = self.post(order["finalize"],
                                    {"csr": self.b64(csr.public_bytes(serialization.Encoding.DER))})
        assert status == 200, body
        order = self.poll(order_url, "valid")
        status, _, pem = self.post(order["certificate"], None)
        assert status == 200, pem
        return pem.decode()
