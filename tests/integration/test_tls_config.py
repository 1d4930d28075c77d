"""TLS configuration through the real binary: the manifest keys of TLS
binds and certificates (errors at file:line:col), clearance's offline
checks of the certificate files (PEM, key match, validity, hosts covered),
chart's tls/h2/h2c per bind, the self-signed certificate `run` generates
and reuses, and the reload of certificates on SIGHUP (which needs a data
plane that serves TLS: skipped, with the reason, while `run` refuses TLS
binds)."""
import json
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import time

import pytest

from conftest import run_ms
from fleet_helpers import free_port
from tls_helpers import make_cert

MANIFEST = "ship-manifest.toml"


def clearance(tmp_path, text):
    (tmp_path / MANIFEST).write_text(text)
    return run_ms("clearance", "-c", MANIFEST, cwd=str(tmp_path))


def errors_of(r):
    return [ln for ln in r.err.splitlines() if not ln.endswith("problems found")]


# ------------------------------------------------------------------ manifest keys
KEY_CASES = [
    ("bind-tls-bad-string",
     '[mothership.bind]\nweb = { address = "127.0.0.1:8443", tls = "yes" }\n',
     '2:43: bind "web": "tls" must be true, false, "self-signed" or a table { cert, key, hosts } or '
     '{ acme = [names] }, not "yes"'),
    ("bind-tls-integer",
     '[mothership.bind]\nweb = { address = "127.0.0.1:8443", tls = 1 }\n',
     '2:43: bind "web": "tls" must be true, false, "self-signed" or a table { cert, key, hosts } or '
     '{ acme = [names] }, not an integer'),
    ("bind-h2c-on-tls",
     '[mothership.bind]\nweb = { address = "127.0.0.1:8443", tls = "self-signed", h2c = true }\n',
     '2:58: bind "web": "h2c" is for plain binds; a TLS bind offers HTTP/2 by ALPN ("h2")'),
    ("bind-h2-on-plain",
     '[mothership.bind]\nweb = { address = "127.0.0.1:8080", h2 = true }\n',
     '2:37: bind "web": "h2" is for TLS binds (ALPN); a plain bind speaks HTTP/2 with prior knowledge '
     'when "h2c" is true'),
    ("bind-redirect-on-tls",
     '[mothership.bind]\nhttps = { address = "127.0.0.1:8443", tls = "self-signed", redirect_to_https = true }\n',
     '2:60: bind "https": "redirect_to_https" is for plain binds; this bind terminates TLS'),
    ("bind-redirect-nowhere",
     '[mothership.bind]\nhttp = { address = "127.0.0.1:8080", redirect_to_https = true }\n',
     '2:1: bind "http": redirect_to_https needs a TCP bind that terminates TLS to redirect to'),
    ("bind-key-typo",
     '[mothership.bind]\nweb = { address = "127.0.0.1:8080", h2cc = true }\n',
     '2:37: bind "web": unknown key "h2cc" (did you mean "h2c"?)'),
    ("tls-key-typo",
     '[mothership.tls]\ncert = "c.pem"\nkey = "k.pem"\nsession_ticket = true\n',
     '4:1: [mothership.tls]: unknown key "session_ticket" (did you mean "session_tickets"?)'),
    ("tls-rotation-short",
     '[mothership.tls]\ncert = "c.pem"\nkey = "k.pem"\nticket_key_rotation = "10s"\n',
     '4:23: [mothership.tls]: "ticket_key_rotation" must be at least 1m'),
    ("tls-certs-typo",
     '[mothership.tls]\n[[mothership.tls.certs]]\ncert = "c.pem"\nkey = "k.pem"\nhost = ["a.example"]\n',
     '5:1: [[mothership.tls.certs]] #1: unknown key "host" (did you mean "hosts"?)'),
    ("tls-certs-missing-key",
     '[mothership.tls]\n[[mothership.tls.certs]]\ncert = "c.pem"\n',
     '2:1: [[mothership.tls.certs]] #1: missing required key "key"'),
    ("tls-certs-bad-host",
     '[mothership.tls]\n[[mothership.tls.certs]]\ncert = "c.pem"\nkey = "k.pem"\nhosts = ["a.*.example"]\n',
     '5:10: [[mothership.tls.certs]] #1: "hosts": "a.*.example" is not a host name (letters, digits, '
     '\'-\' and \'.\', or "*." and a domain, like "*.example.com")'),
    ("tls-nothing",
     '[mothership.tls]\nsession_tickets = false\n',
     '1:1: [mothership.tls]: missing required key "cert" (or [[mothership.tls.certs]])'),
    ("certs-file-missing",
     '[mothership.tls]\n[[mothership.tls.certs]]\ncert = "nope.pem"\nkey = "k.pem"\n',
     '3:8: [[mothership.tls.certs]] #1: cert "nope.pem" does not exist'),
    ("bind-table-file-missing",
     '[mothership.bind]\nadmin = { address = "127.0.0.1:9443", tls = { cert = "c.pem", key = "no.pem" } }\n',
     '2:69: bind "admin": tls: key "no.pem" does not exist'),
]


@pytest.mark.parametrize("text,expected", [pytest.param(t, e, id=i) for i, t, e in KEY_CASES])
def test_manifest_tls_keys(tmp_path, text, expected):
    (tmp_path / "c.pem").write_text("")
    (tmp_path / "k.pem").write_text("")
    r = clearance(tmp_path, text)
    assert r.code == 1, r
    assert f"{MANIFEST}:{expected}" in errors_of(r), r


def test_manifest_tls_keys_accepted(tmp_path):
    make_cert(tmp_path, "a", names=("a.example", "*.b.example"))
    make_cert(tmp_path, "c", names=("c.example",))
    r = clearance(tmp_path, """\
[mothership]
state_dir = "./state"

[mothership.bind]
https = "127.0.0.1:8443"
dev = { address = "127.0.0.1:8444", tls = "self-signed", h2 = false }
admin = { address = "127.0.0.1:9443", tls = { cert = "c.crt", key = "c.key", hosts = ["c.example"] } }
http = { address = "127.0.0.1:8080", h2c = true, redirect_to_https = true }

[mothership.tls]
cert = "a.crt"
key = "a.key"
session_tickets = true
ticket_key_rotation = "6h"

[[mothership.tls.certs]]
cert = "c.crt"
key = "c.key"
hosts = ["C.example"]
""")
    assert r.code == 0, r
    lines = {ln.split()[0]: ln.split()[1:] for ln in r.out.splitlines() if ln.startswith("      ")}
    assert lines["https"] == ["tcp://127.0.0.1:8443", "(tls,", "h2)"]
    assert lines["dev"] == ["tcp://127.0.0.1:8444", "(tls", "self-signed)"]
    assert lines["admin"] == ["tcp://127.0.0.1:9443", "(tls,", "h2)"]
    assert lines["http"] == ["tcp://127.0.0.1:8080", "(h2c,", "redirect_to_https)"]


# ------------------------------------------------------------------ clearance's file checks
def test_clearance_checks_certificate_files(tmp_path):
    make_cert(tmp_path / "certs", "good", names=("good.example", "*.good.example"))
    make_cert(tmp_path / "certs", "other", names=("other.example",))
    make_cert(tmp_path / "certs", "old", names=("old.example",), days=-1)
    (tmp_path / "certs" / "junk.crt").write_text("this is not PEM\n")
    date = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "certs" / "old.crt"), "-noout", "-enddate",
                           "-dateopt", "iso_8601"], capture_output=True, text=True)
    r = clearance(tmp_path, """\
[mothership.bind]
https = "127.0.0.1:8443"

[mothership.tls]
cert = "certs/good.crt"
key = "certs/other.key"

[[mothership.tls.certs]]
cert = "certs/old.crt"
key = "certs/old.key"

[[mothership.tls.certs]]
cert = "certs/good.crt"
key = "certs/good.key"
hosts = ["good.example", "a.good.example", "a.b.good.example"]

[[mothership.tls.certs]]
cert = "certs/junk.crt"
key = "certs/good.key"
""")
    assert r.code == 1, r
    errs = errors_of(r)
    assert errs[0] == (f'{MANIFEST}:6:7: [mothership.tls]: key "certs/other.key" does not match cert '
                       '"certs/good.crt"')
    assert re.fullmatch(re.escape(f'{MANIFEST}:9:8: [[mothership.tls.certs]] #1: cert "certs/old.crt" expired on ')
                        + r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", errs[1]), errs
    if date.returncode == 0:  # the same date openssl reads
        assert date.stdout.split("=")[1][:10] in errs[1]
    assert errs[2] == (f'{MANIFEST}:15:9: [[mothership.tls.certs]] #2: cert "certs/good.crt" does not cover host '
                       '"a.b.good.example" (the certificate\'s names: good.example, *.good.example)')
    assert errs[3] == (f'{MANIFEST}:18:8: [[mothership.tls.certs]] #3: cert "certs/junk.crt" holds no PEM '
                       'certificate (expected -----BEGIN CERTIFICATE-----)')
    assert r.err.splitlines()[-1] == f"{MANIFEST}: 4 problems found"


def test_clearance_checks_a_binds_own_certificate(tmp_path):
    make_cert(tmp_path, "admin", names=("admin.example",))
    r = clearance(tmp_path, """\
[mothership.bind]
admin = { address = "127.0.0.1:9443", tls = { cert = "admin.crt", key = "admin.key", hosts = ["x.example"] } }
""")
    assert r.code == 1, r
    assert errors_of(r) == [f'{MANIFEST}:2:94: bind "admin": tls: cert "admin.crt" does not cover host '
                            '"x.example" (the certificate\'s names: admin.example)']


# ------------------------------------------------------------------ chart
CHART_MANIFEST = """\
[mothership.bind]
https = "127.0.0.1:8443"
dev = { address = "127.0.0.1:8444", tls = "self-signed", h2 = false }
http = { address = "127.0.0.1:8080", h2c = true }

[mothership.tls]
cert = "s.crt"
key = "s.key"
"""


def test_chart_shows_tls_h2_h2c(tmp_path):
    make_cert(tmp_path, "s")
    (tmp_path / MANIFEST).write_text(CHART_MANIFEST)
    r = run_ms("chart", "-c", MANIFEST, cwd=str(tmp_path))
    assert r.code == 0, r
    heads = [ln for ln in r.out.splitlines() if ln.startswith("bind ")]
    assert heads == ["bind https  tcp://127.0.0.1:8443 (tls, h2)",
                     "bind dev  tcp://127.0.0.1:8444 (tls self-signed)",
                     "bind http  tcp://127.0.0.1:8080 (h2c)"]
    r = run_ms("chart", "-c", MANIFEST, "--json", cwd=str(tmp_path))
    assert r.code == 0, r
    binds = json.loads(r.out)["binds"]
    got = [(b["name"], b["tls"], b["self_signed"], b["h2"], b["h2c"], b["redirect_to_https"]) for b in binds]
    assert got == [("https", True, False, True, False, False),
                   ("dev", True, True, False, False, False),
                   ("http", False, False, False, True, False)]


# ------------------------------------------------------------------ run
def fingerprint(path):
    r = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-fingerprint", "-sha256"],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip().split("=", 1)[1]


def test_self_signed_generated_then_reused(fleet, tmp_path):
    port = free_port()
    text = f"""
        [mothership]
        state_dir = "./state"

        [mothership.bind]
        dev = {{ address = "127.0.0.1:{port}", tls = "self-signed" }}
    """
    ms = fleet(text, json_logs=False)
    hit = ms.wait_for(r'bind "dev": generated self-signed certificate (\S+), SHA-256 fingerprint ([0-9A-F:]{95})')
    path = tmp_path / hit.group(1)
    assert path == tmp_path / "state" / "self-signed-dev.crt"
    assert hit.group(2) == fingerprint(path)
    for f in ("self-signed-dev.crt", "self-signed-dev.key"):
        assert stat.S_IMODE(os.stat(tmp_path / "state" / f).st_mode) == 0o600
    names = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-ext", "subjectAltName"],
                           capture_output=True, text=True, check=True).stdout
    assert "DNS:localhost" in names and "IP Address:127.0.0.1" in names and "IP Address:0:0:0:0:0:0:0:1" in names
    key = subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "state" / "self-signed-dev.key"), "-noout",
                          "-text"], capture_output=True, text=True, check=True).stdout
    assert "prime256v1" in key or "P-256" in key
    ms.kill()
    ms2 = fleet(text, json_logs=False)
    hit2 = ms2.wait_for(r'bind "dev": reusing self-signed certificate (\S+), SHA-256 fingerprint ([0-9A-F:]{95})')
    assert hit2.group(2) == hit.group(2)


def test_run_refuses_a_bad_certificate(fleet, tmp_path):
    make_cert(tmp_path, "old", names=("localhost",), days=-1)
    ms = fleet(f"""
        [mothership.bind]
        https = "127.0.0.1:{free_port()}"

        [mothership.tls]
        cert = "old.crt"
        key = "old.key"
    """, json_logs=False)
    assert ms.wait_exit() == 1
    assert re.search(r'\[mothership.tls\]: cert "[^"]*old.crt" expired on \d{4}-', ms.output()), ms.output()


# ------------------------------------------------------------------ SIGHUP reload
def run_serves_tls(fleet, tmp_path):
    """Whether `run` serves TLS binds (the data plane of this build)."""
    make_cert(tmp_path / "probe", "p")
    ms = fleet(f"""
        [mothership.bind]
        https = "127.0.0.1:{free_port()}"

        [mothership.tls]
        cert = "probe/p.crt"
        key = "probe/p.key"
    """, json_logs=False)
    hit = ms.wait_for(r"listening on|does not serve yet|nothing was launched")
    ms.kill()
    return "listening on" in hit.text


def s_client_subject(port):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost"],
                       input="", capture_output=True, text=True, timeout=10)
    m = re.search(r"subject=.*CN ?= ?([^,\n/]+)", r.stdout)
    return m.group(1).strip() if m else None


def test_sighup_reloads_certificates(fleet, tmp_path):
    if not run_serves_tls(fleet, tmp_path):
        pytest.skip("`run` does not serve TLS binds in this build (the data plane refuses them)")
    certs = tmp_path / "certs"
    make_cert(certs, "a", names=("first.example", "localhost"))
    make_cert(certs, "b", names=("second.example", "localhost"))
    os.replace(certs / "a.crt", certs / "live.crt")
    os.replace(certs / "a.key", certs / "live.key")
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("hello\n")
    port = free_port()
    ms = fleet(f"""
        [mothership.bind]
        https = "127.0.0.1:{port}"

        [mothership.tls]
        cert = "certs/live.crt"
        key = "certs/live.key"

        [[mothership.static_dirs]]
        path = "./public"
        prefix = "/"
    """, json_logs=False)
    ms.wait_for("listening on")
    assert s_client_subject(port) == "first.example"
    # a connection open across the reload keeps working
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")

    os.replace(certs / "b.crt", certs / "live.crt")
    os.replace(certs / "b.key", certs / "live.key")
    start = len(ms.lines)
    ms.signal(signal.SIGHUP)
    ms.wait_for("received SIGHUP: reloading the manifest", start=start)
    ms.wait_for("TLS certificates reloaded", start=start)
    assert s_client_subject(port) == "second.example"
    conn.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello\n"), data
    conn.close()

    # a bad file: the reload is refused (the manifest is checked as
    # clearance checks it), the certificate loaded before stays, and the log
    # says why
    (certs / "live.crt").write_text("not a certificate\n")
    start = len(ms.lines)
    ms.signal(signal.SIGHUP)
    ms.wait_for(r"reload refused \(SIGHUP\): 1 problem in .*, the fleet keeps running on the old manifest",
                start=start)
    assert ms.wait_for(r"\[mothership.tls\]: cert .* holds no PEM certificate", start=start)
    assert s_client_subject(port) == "second.example"
