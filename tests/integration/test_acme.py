"""ACME end to end (issue 18, docs/tls.md "ACME"): Mothership gets its
certificates from a real ACME server, pebble (pebble_helpers.py), with the
names resolved to 127.0.0.1 by pebble-challtestsrv, and serves them:

- http-01 and tls-alpn-01: a certificate per name, verified by curl
  against pebble's root; stored under state_dir (dirs 0700, files 0600);
- a self-signed placeholder and /ready 503 with acme_pending while a name
  has none;
- a failed challenge (the name pointed at 127.0.0.2, where nothing
  listens) retried with a doubling backoff and counted as invalid, then
  obtained once the name points back;
- renewal of a short-lived certificate with a connection kept open across
  it (it keeps its certificate, new handshakes get the new one);
- a restart that uses the stored certificate without a new order;
- pebble rejecting half of the nonces (badNonce retried).

The first tests (test_harness_*) check the harness itself: they pass with
or without the ACME client."""
import os
import re
import socket
import ssl
import stat
import subprocess
import time
from datetime import datetime, timezone

import pytest

from fleet_helpers import free_port, http_get, metric, parse_metrics, toml_str
from http_helpers import Raw, msum
from pebble_helpers import MiniAcme, pebble  # noqa: F401 (pebble: the fixture)

NAME = "site.example.com"
OTHER = "www.example.com"
HELLO = b"hello over ACME\n"


# ------------------------------------------------------------------ the harness
def test_harness_pebble_answers_its_directory_through_ca_root(pebble):  # noqa: F811
    pb = pebble()
    out = subprocess.run(["curl", "-sS", "--fail", "--cacert", pb.ca_root, pb.directory],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, (out.stderr, pb.output())
    import json
    d = json.loads(out.stdout)
    for k in ("newNonce", "newAccount", "newOrder"):
        assert d[k].startswith(f"https://127.0.0.1:{pb.port}/"), d
    # without ca_root the directory is not trusted
    out = subprocess.run(["curl", "-sS", "--fail", pb.directory], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 60, out  # SSL certificate problem
    # the issuing root, for curl --cacert, is a certificate
    root = open(pb.root_pem()).read()
    assert root.startswith("-----BEGIN CERTIFICATE-----"), root[:100]


def test_harness_challtestsrv_resolves_every_name_to_loopback(pebble):  # noqa: F811
    pb = pebble()
    assert pb.resolve(NAME) == ["127.0.0.1"]
    assert pb.resolve("anything.at.all.test") == ["127.0.0.1"]
    pb.add_a(NAME, "127.0.0.2")
    assert pb.resolve(NAME) == ["127.0.0.2"]
    assert pb.resolve(OTHER) == ["127.0.0.1"]
    pb.clear_a(NAME)
    assert pb.resolve(NAME) == ["127.0.0.1"]


def test_harness_pebble_gets_its_settings(pebble):  # noqa: F811
    pb = pebble(validity=90, nonce_reject=50)
    assert pb.config["pebble"]["certificateValidityPeriod"] == 90
    out = pb.pebble.output
    wait = time.monotonic() + 10
    while "certificate validity period of 90 seconds" not in out() and time.monotonic() < wait:
        time.sleep(0.05)  # pebble logs its settings before it listens; the thread may lag
    text = out()
    assert "certificate validity period of 90 seconds" in text, text
    assert f"Using custom DNS resolver for ACME challenges: 127.0.0.1:{pb.dns_port}" in text, text
    assert "Disabling random VA sleeps" in text, text
    assert "reject 50% of good nonces" in text, text


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_harness_pebble_validates_on_mothership_ports_through_its_dns(pebble, tmp_path, challenge):  # noqa: F811
    """The harness end to end with a reference client of its own: pebble
    looks the name up at challtestsrv (127.0.0.1), checks the http-01
    answer on pb.http_port or the tls-alpn-01 handshake on pb.tls_port, and
    issues a certificate that pebble's root verifies."""
    pytest.importorskip("cryptography", reason="python3-cryptography (the reference ACME client)")
    pb = pebble()
    chain = MiniAcme(pb).certificate(NAME, challenge)
    leaf = tmp_path / "chain.pem"
    leaf.write_text(chain)
    out = subprocess.run(["openssl", "verify", "-CAfile", pb.root_pem(), "-untrusted", str(leaf), str(leaf)],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out
    assert cert_info(first_pem_der(leaf))["names"] == [NAME]
    assert pb.orders() == 1


# ------------------------------------------------------------------ Mothership with ACME
class Site:
    """Mothership serving a static site on the binds pebble validates:
    `http` on pb.http_port (http-01), `https` on pb.tls_port (the ACME
    certificates, tls-alpn-01)."""

    def __init__(self, fleet, pb, tmp_path, domains, challenge="http-01", plain=True,
                 backoff="2s", max_backoff="8s"):
        self.fleet, self.pb, self.domains = fleet, pb, list(domains)
        self.mport = free_port()
        self.state = tmp_path / "state"
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "hello.txt").write_bytes(HELLO)
        binds = [f'https = "127.0.0.1:{pb.tls_port}"']
        if plain:
            binds.insert(0, f'http = "127.0.0.1:{pb.http_port}"')
        self.nbinds = len(binds)
        self.text = "\n".join([
            "[mothership]",
            f"metrics_port = {self.mport}",
            f"state_dir = {toml_str(self.state)}",
            'shutdown_timeout = "5s"',
            "",
            "[mothership.bind]",
            *binds,
            "",
            "[mothership.acme]",
            'email = "ops@example.com"',
            "domains = [" + ", ".join(toml_str(d) for d in self.domains) + "]",
            f"directory = {toml_str(pb.directory)}",
            f"ca_root = {toml_str(pb.ca_root)}",
            f"challenge = {toml_str(challenge)}",
            f"backoff = {toml_str(backoff)}",
            f"max_backoff = {toml_str(max_backoff)}",
            "",
            "[[mothership.static_dirs]]",
            f"path = {toml_str(site)}",
            'prefix = "/"',
            "",
        ])
        self.ms = None

    def start(self):
        self.ms = self.fleet(self.text, name="ship-manifest.toml")
        start = 0
        for _ in range(self.nbinds):
            start = self.ms.event("listening", start=start, timeout=15)["_i"] + 1
        self.ms.event("fleet_ready", start=start, timeout=15)  # the metrics listener answers
        return self.ms

    def metrics(self):
        status, body = http_get(self.mport, "/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def ready(self):
        import json
        status, body = http_get(self.mport, "/ready")
        return status, json.loads(body)

    def curl(self, name, path="/hello.txt"):
        """curl https://name:tls_port/path, name resolved to 127.0.0.1,
        verified against pebble's root."""
        return subprocess.run(["curl", "-sS", "--fail", "--cacert", self.pb.root_pem(), "--resolve",
                               f"{name}:{self.pb.tls_port}:127.0.0.1",
                               f"https://{name}:{self.pb.tls_port}{path}"],
                              capture_output=True, timeout=20)


def wait_certificate(site, name, how="obtained", timeout=60, start=0):
    """Block until the acme_certificate event of name with this how; the
    event."""
    ms = site.ms
    deadline = time.monotonic() + timeout
    i = start
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no acme_certificate {how!r} for {name} within {timeout}s\n"
                        f"{ms.output()}\n{site.pb.output()}", pytrace=False)
        e = ms.event("acme_certificate", start=i, timeout=left)
        if e.get("name") == name and e.get("how") == how:
            return e
        i = e["_i"] + 1


def served(port, name, cafile=None):
    """(DER of the leaf, the TLS socket) of a handshake with SNI name on
    127.0.0.1:port; verified against cafile when given."""
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=name)
    return s.getpeercert(binary_form=True), s


def by_name(samples, family, name):
    """The sample of family labelled name="name" (metric() takes name as
    its own argument), or None."""
    return samples.get((family, frozenset({("name", name)})))


def cert_info(der):
    """subject, issuer, names (subjectAltName DNS names) and not_after
    (Unix time) of a DER certificate, read with the openssl command."""
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-issuer", "-enddate",
                          "-ext", "subjectAltName", "-nameopt", "RFC2253"],
                         input=der, capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    subject = re.search(r"^subject=(.*)$", text, re.M).group(1)
    issuer = re.search(r"^issuer=(.*)$", text, re.M).group(1)
    end = re.search(r"^notAfter=(.*)$", text, re.M).group(1)
    not_after = datetime.strptime(end, "%b %d %H:%M:%S %Y GMT").replace(tzinfo=timezone.utc).timestamp()
    return {"subject": subject, "issuer": issuer, "not_after": not_after,
            "names": re.findall(r"DNS:([^,\s]+)", text)}


def first_pem_der(path):
    text = open(path).read()
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    assert m, path
    return ssl.PEM_cert_to_DER_cert(m.group(0))


def stored_files(state):
    """{relative path: mode} of everything under the state dir."""
    out = {}
    for root, dirs, files in os.walk(state):
        for n in dirs + files:
            p = os.path.join(root, n)
            out[os.path.relpath(p, state)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def stored_cert(state, name):
    """The path of name's stored certificate (<dir>/certs/<name>.crt, one
    directory per ACME directory URL, acme/acme.h)."""
    hits = [p for p in stored_files(state) if p.endswith(f"certs/{name}.crt")]
    assert len(hits) == 1, stored_files(state)
    return os.path.join(state, hits[0])


def wait_renewed(ms, after, name, seconds):
    """The acme_certificate "renewed" event of name logged after line
    index after, waiting for it up to seconds; None if none came."""
    end = time.monotonic() + seconds
    while True:
        for e in ms.events("acme_certificate"):
            if e["_i"] > after and e.get("name") == name and e.get("how") == "renewed":
                return e
        left = end - time.monotonic()
        if left <= 0:
            return None
        with ms.cond:
            ms.cond.wait(left)


def get(sock_raw, host, path="/hello.txt"):
    sock_raw.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
    return sock_raw.response()


# ------------------------------------------------------------------ the tests
def test_http01_gets_a_certificate_per_name_that_curl_verifies(pebble, fleet, tmp_path):  # noqa: F811
    pb = pebble()
    site = Site(fleet, pb, tmp_path, [NAME, OTHER])
    ms = site.start()
    account = ms.event("acme_account", timeout=30)
    assert account["msg"], account
    for name in (NAME, OTHER):
        e = wait_certificate(site, name)
        out = site.curl(name)
        assert out.returncode == 0, (out.stderr, ms.output())
        assert out.stdout == HELLO
        # one certificate per name, from pebble, for that name only
        der, s = served(pb.tls_port, name, cafile=pb.root_pem())
        s.close()
        info = cert_info(der)
        assert info["names"] == [name], info
        assert "Pebble Intermediate CA" in info["issuer"], info
        assert der == first_pem_der(stored_cert(site.state, name))
        m = site.metrics()
        assert by_name(m, "mothership_acme_certificate_expiry_timestamp_seconds", name) == \
            pytest.approx(info["not_after"], abs=1), m
        renewal = by_name(m, "mothership_acme_certificate_renewal_timestamp_seconds", name)
        assert renewal is not None and time.time() < renewal < info["not_after"], m
        assert e.get("not_after"), e
    m = site.metrics()
    assert metric(m, "mothership_acme_orders_total", result="valid") == 2, m
    assert not msum(m, "mothership_acme_orders_total", result="invalid"), m
    assert pb.orders() == 2
    for c in ms.events("acme_challenge"):
        assert c["type"] == "http-01", c
    # a name not ordered gets no certificate of its own: the bind's default
    # (tls.h: the first in SNI order, here the first ACME name's), or no
    # handshake
    try:
        der, s = served(pb.tls_port, "other.example.org")
        s.close()
        assert "other.example.org" not in cert_info(der)["names"]
    except (ssl.SSLError, ConnectionResetError):
        pass
    # readiness: nothing pending
    status, body = site.ready()
    assert status == 200 and not body.get("acme_pending"), body
    # stored: account key and certificates, dirs 0700, files 0600
    files = stored_files(site.state)
    assert any(p.endswith("account.key") for p in files), files
    assert any(p.endswith(f"certs/{NAME}.key") for p in files), files
    for p, mode in files.items():
        want = 0o700 if os.path.isdir(os.path.join(site.state, p)) else 0o600
        assert mode == want, (p, oct(mode))
    assert ms.stop() == 0, ms.output()


def test_tls_alpn01_is_answered_in_the_handshake(pebble, fleet, tmp_path):  # noqa: F811
    pb = pebble()
    # only the TLS bind: the certificate can only come by tls-alpn-01
    site = Site(fleet, pb, tmp_path, [NAME], challenge="tls-alpn-01", plain=False)
    ms = site.start()
    wait_certificate(site, NAME)
    out = site.curl(NAME)
    assert out.returncode == 0, (out.stderr, ms.output())
    assert out.stdout == HELLO
    for c in ms.events("acme_challenge"):
        assert c["type"] == "tls-alpn-01", c
    m = site.metrics()
    assert metric(m, "mothership_acme_orders_total", result="valid") == 1, m
    assert ms.stop() == 0, ms.output()


def test_placeholder_and_ready_503_while_pending(pebble, fleet, tmp_path):  # noqa: F811
    pb = pebble()
    pb.add_a(NAME, "127.0.0.2")  # the challenge cannot succeed: the name stays pending
    site = Site(fleet, pb, tmp_path, [NAME], backoff="30s", max_backoff="1m")
    ms = site.start()
    # handshakes for the name get a self-signed placeholder at once
    der, s = served(pb.tls_port, NAME)
    s.close()
    info = cert_info(der)
    assert info["subject"] == info["issuer"], info
    assert "Pebble" not in info["issuer"], info
    with pytest.raises(ssl.SSLError):
        served(pb.tls_port, NAME, cafile=pb.root_pem())
    status, body = site.ready()
    assert status == 503, body
    assert body["acme_pending"] == [NAME], body
    m = site.metrics()
    assert by_name(m, "mothership_acme_certificate_expiry_timestamp_seconds", NAME) is None, m
    # still pending after the first failure
    ms.event("acme_order_failed", timeout=30)
    status, body = site.ready()
    assert status == 503 and body["acme_pending"] == [NAME], body
    # the account key is stored with mode 0600 already
    files = stored_files(site.state)
    assert any(p.endswith("account.key") for p in files), files
    for p, mode in files.items():
        want = 0o700 if os.path.isdir(os.path.join(site.state, p)) else 0o600
        assert mode == want, (p, oct(mode))
    assert ms.stop() == 0, ms.output()


def test_a_failed_challenge_is_retried_with_backoff_then_succeeds(pebble, fleet, tmp_path):  # noqa: F811
    pb = pebble()
    pb.add_a(NAME, "127.0.0.2")  # pebble connects there: nothing listens
    site = Site(fleet, pb, tmp_path, [NAME], backoff="2s", max_backoff="8s")
    ms = site.start()
    first = ms.event("acme_order_failed", timeout=30)
    second = ms.event("acme_order_failed", start=first["_i"] + 1, timeout=30)
    for e in (first, second):
        assert e["name"] == NAME, e
        assert e["error"], e  # the CA's reason
    # the first retry after the backoff (with jitter), the next one doubled
    assert 1 <= first["retry_in"] <= 3, first
    assert second["retry_in"] > first["retry_in"], (first, second)
    assert second["_t"] - first["_t"] >= first["retry_in"] * 0.8, (first, second)
    assert "127.0.0.2" in first["error"] or "connect" in first["error"].lower() \
        or "refused" in first["error"].lower(), first
    m = site.metrics()
    assert metric(m, "mothership_acme_orders_total", result="invalid") >= 2, m
    assert not metric(m, "mothership_acme_orders_total", result="valid"), m
    # the name points here again: the next retry gets the certificate
    pb.clear_a(NAME)
    wait_certificate(site, NAME, timeout=40)
    out = site.curl(NAME)
    assert out.returncode == 0, (out.stderr, ms.output())
    m = site.metrics()
    assert metric(m, "mothership_acme_orders_total", result="valid") == 1, m
    status, body = site.ready()
    assert status == 200, body
    assert ms.stop() == 0, ms.output()


def test_renewal_of_a_short_lived_certificate_drops_no_connection(pebble, fleet, tmp_path):  # noqa: F811
    validity = 90  # seconds: renewed at 2/3 of it minus jitter, or earlier
    pb = pebble(validity=validity)
    site = Site(fleet, pb, tmp_path, [NAME])
    ms = site.start()
    got = wait_certificate(site, NAME)
    old_der, old_sock = served(pb.tls_port, NAME, cafile=pb.root_pem())
    old = cert_info(old_der)
    assert old["not_after"] - time.time() <= validity + 5, old
    kept = Raw.wrap(old_sock)
    r = get(kept, NAME)
    assert r.status == 200 and r.body == HELLO, r
    renewal = by_name(site.metrics(), "mothership_acme_certificate_renewal_timestamp_seconds", NAME)
    assert renewal is not None and renewal < old["not_after"], renewal
    # the kept connection keeps working (a request each half second) until
    # the renewal is logged
    deadline = time.monotonic() + validity
    renewed = None
    while renewed is None:
        assert time.monotonic() < deadline, f"not renewed before expiry\n{ms.output()}\n{pb.output()}"
        r = get(kept, NAME)
        assert r.status == 200 and r.body == HELLO, r
        renewed = wait_renewed(ms, got["_i"], NAME, 0.5)
    # the open connection still works, on the certificate it started with
    r = get(kept, NAME)
    assert r.status == 200 and r.body == HELLO, r
    assert kept.s.getpeercert(binary_form=True) == old_der
    kept.close()
    # new handshakes get the new certificate
    new_der, s = served(pb.tls_port, NAME, cafile=pb.root_pem())
    s.close()
    assert new_der != old_der
    new = cert_info(new_der)
    assert new["not_after"] > old["not_after"], (old, new)
    assert new_der == first_pem_der(stored_cert(site.state, NAME))
    out = site.curl(NAME)
    assert out.returncode == 0, out.stderr
    m = site.metrics()
    assert by_name(m, "mothership_acme_certificate_expiry_timestamp_seconds", NAME) == \
        pytest.approx(new["not_after"], abs=1), m
    assert metric(m, "mothership_acme_orders_total", result="valid") == 2, m
    assert pb.orders() == 2
    assert ms.stop() == 0, ms.output()


def test_a_restart_uses_the_stored_certificate_without_a_new_order(pebble, fleet, tmp_path):  # noqa: F811
    pb = pebble()
    site = Site(fleet, pb, tmp_path, [NAME])
    ms = site.start()
    wait_certificate(site, NAME)
    der, s = served(pb.tls_port, NAME, cafile=pb.root_pem())
    s.close()
    assert ms.stop() == 0, ms.output()
    orders = pb.orders()
    assert orders == 1

    ms = site.start()
    loaded = wait_certificate(site, NAME, how="loaded", timeout=15)
    assert loaded.get("not_after"), loaded
    # the stored certificate is served from the first handshake on
    again, s = served(pb.tls_port, NAME, cafile=pb.root_pem())
    s.close()
    assert again == der
    status, body = site.ready()
    assert status == 200 and not body.get("acme_pending"), body
    # the client has started and ordered nothing: the name waits for its renewal
    m = site.metrics()
    assert not msum(m, "mothership_acme_orders_total"), m
    renewal = by_name(m, "mothership_acme_certificate_renewal_timestamp_seconds", NAME)
    assert renewal is not None and renewal > time.time(), m
    assert pb.orders() == orders
    assert not [e for e in ms.events("acme_certificate") if e.get("how") != "loaded"], ms.output()
    out = site.curl(NAME)
    assert out.returncode == 0, out.stderr
    assert pb.orders() == orders
    assert not msum(site.metrics(), "mothership_acme_orders_total")
    assert ms.stop() == 0, ms.output()


def test_bad_nonces_are_retried(pebble, fleet, tmp_path):  # noqa: F811
    pb = pebble(nonce_reject=50)  # pebble refuses half of the good nonces (badNonce)
    site = Site(fleet, pb, tmp_path, [NAME], backoff="1s", max_backoff="2s")
    ms = site.start()
    wait_certificate(site, NAME, timeout=60)
    out = site.curl(NAME)
    assert out.returncode == 0, (out.stderr, ms.output())
    m = site.metrics()
    assert metric(m, "mothership_acme_orders_total", result="valid") == 1, m
    # a badNonce is retried at once, not turned into a failed order (one
    # run of 6 refusals in a row, 1 in 64 per request, may fail one order)
    assert msum(m, "mothership_acme_orders_total", result="error") <= 1, m
    assert ms.stop() == 0, ms.output()


def test_a_renewal_failing_past_expiry_says_the_certificate_expired(pebble, fleet, tmp_path):  # noqa: F811
    """While renewal fails the old certificate is kept (a warning says it
    stays); once it has expired the failures must not keep saying it
    stays: they are errors naming the expiry."""
    validity = 20  # seconds: renewal due at half of it (under a minute left)
    pb = pebble(validity=validity)
    site = Site(fleet, pb, tmp_path, [NAME], backoff="2s", max_backoff="2s")
    ms = site.start()
    got = wait_certificate(site, NAME)
    pb.add_a(NAME, "127.0.0.2")  # the renewals fail from now on
    not_after = got["not_after_unix"]

    def at(e):
        return datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    fails = []
    deadline = time.monotonic() + validity + 30
    while time.monotonic() < deadline:
        fails = ms.events("acme_order_failed")
        if any(at(e) > not_after + 1 for e in fails):
            break
        time.sleep(0.5)
    before = [e for e in fails if at(e) < not_after - 1]
    after = [e for e in fails if at(e) > not_after + 1]
    assert before and after, (fails, ms.output())
    assert all(e["level"] == "warn" and "stays" in e["msg"] for e in before), before
    for e in after:
        assert e["level"] == "error", e
        assert "stays" not in e["msg"] and "expired" in e["msg"], e
    assert ms.stop() == 0, ms.output()


def test_promtool_reads_the_page_with_acme_series(pebble, fleet, tmp_path):  # noqa: F811
    """The ACME series pass `promtool check metrics` (test_metrics_ops.py
    checks the rest of the page), before and after a certificate."""
    from test_metrics_ops import PROMTOOL, promtool_findings
    if not os.path.exists(PROMTOOL):
        pytest.skip("no promtool")
    pb = pebble()
    site = Site(fleet, pb, tmp_path, [NAME, OTHER])
    ms = site.start()
    for name in (NAME, OTHER):
        wait_certificate(site, name)
        status, body = http_get(site.mport, "/metrics")
        assert status == 200
        assert "mothership_acme_certificate_expiry_timestamp_seconds" in body, body
        assert promtool_findings(body) == [], body
    assert ms.stop() == 0, ms.output()


def test_a_renewal_with_the_authorization_reused_finalizes_at_once(pebble, fleet, tmp_path):  # noqa: F811
    """RFC 8555 7.4: a CA may reuse a valid authorization, so the new order
    is "ready" at once (pebble with PEBBLE_AUTHZREUSE=100): the renewal
    finalizes it without a challenge."""
    validity = 20  # seconds: renewal due at half of it
    pb = pebble(validity=validity, env={"PEBBLE_AUTHZREUSE": "100"})
    site = Site(fleet, pb, tmp_path, [NAME])
    ms = site.start()
    got = wait_certificate(site, NAME)
    renewed = wait_certificate(site, NAME, how="renewed", start=got["_i"] + 1, timeout=validity + 20)
    assert renewed["not_after_unix"] > got["not_after_unix"], renewed
    assert len(ms.events("acme_challenge")) == 1, ms.output()
    assert not ms.events("acme_order_failed"), ms.output()
    assert ms.stop() == 0, ms.output()


def test_a_certificate_that_cannot_be_stored_leaves_the_stored_pair_whole(pebble, fleet, tmp_path):  # noqa: F811
    """A renewed certificate whose file cannot be written (a full disk)
    must not leave its new key beside the old certificate: clearance
    refuses a stored pair that does not fit, so the next start would fail
    instead of ordering again as the log promises."""
    validity = 20  # seconds: renewal due at half of it
    pb = pebble(validity=validity)
    site = Site(fleet, pb, tmp_path, [NAME])
    ms = site.start()
    got = wait_certificate(site, NAME)
    crt = stored_cert(site.state, NAME)
    key = crt[:-len(".crt")] + ".key"
    old_key = open(key).read()
    # the certificate's temporary file cannot be made: writing it fails
    blocks = [crt + ".tmp", crt + ".new.tmp"]
    for b in blocks:
        os.mkdir(b)
    e = ms.event("acme_store", start=got["_i"] + 1, timeout=validity + 20)
    assert "cannot store the certificate" in e["msg"], e
    assert open(key).read() == old_key  # the stored pair is the old one, whole
    assert ms.stop() == 0, ms.output()
    for b in blocks:
        os.rmdir(b)
    again = site.start()  # clearance passes: it starts
    assert again.stop() == 0, again.output()
