"""testssl.sh (the Debian package testssl.sh, /usr/bin/testssl) against a
TLS bind of Mothership: protocols, cipher categories, forward secrecy, the
server's preferences and defaults, and the known vulnerabilities, with no
finding rated MEDIUM, HIGH or CRITICAL.

The certificate is made here: a throwaway CA (given to testssl with
--add-ca) signs an ECDSA P-256 certificate for localhost and 127.0.0.1 with
a year's validity and revocation URLs (never fetched), so the certificate
checks judge the server, not a self-signed test certificate. testssl runs
offline: the address is an IP (no DNS: --nodns none), and without
--phone-out it fetches no CRL or OCSP answer. Left out: client simulation
and per-cipher listings (-c, -e, -E), for time, and the HTTP header checks
(-h: HSTS, security headers, cookies), which judge what the application
answers rather than the TLS termination (a static page without
X-Frame-Options or CSP is a MEDIUM there). The scan takes 1.5-3 minutes
on 2 busy cores; --fast saved nothing and skips the RC4 check.

Skipped, with the reason, when testssl.sh is not installed or when this
build's `run` refuses TLS binds."""
import json
import os
import shutil
import subprocess

import pytest

from fleet_helpers import free_port, toml_str

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
BAD = ("MEDIUM", "HIGH", "CRITICAL")
CHECKS = ["-p", "-s", "-f", "-P", "-S", "-U"]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_ca_and_cert(d):
    """(ca.crt, server.crt, server.key) in directory d."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "400",
            "-subj", "/CN=Mothership test CA", cwd=d)
    openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature\n"
                "extendedKeyUsage = serverAuth\n"
                "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                # where a client would check revocation (never fetched:
                # testssl runs without --phone-out)
                "authorityInfoAccess = OCSP;URI:http://127.0.0.1:9/ocsp\n"
                "crlDistributionPoints = URI:http://127.0.0.1:9/ca.crl\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "365", "-sha256", "-extfile", "server.ext",
            "-out", "server.crt", cwd=d)
    os.chmod(os.path.join(d, "server.key"), 0o600)
    return tuple(os.path.join(d, n) for n in ("ca.crt", "server.crt", "server.key"))


def run_testssl(host, port, cafile, workdir, timeout=600):
    """Run testssl against host:port; its JSON findings (a list of dicts with
    id, severity, finding)."""
    out = os.path.join(workdir, "testssl.json")
    if os.path.exists(out):
        os.unlink(out)
    argv = [TESTSSL, "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
            "--add-ca", cafile,
            "--jsonfile", out, *CHECKS, f"{host}:{port}"]
    p = subprocess.run(argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    text = p.stdout.decode("utf-8", "replace")
    assert os.path.exists(out), f"testssl wrote no JSON (exit {p.returncode}):\n{text[-3000:]}"
    with open(out) as f:
        findings = json.load(f)
    assert isinstance(findings, list) and findings, f"testssl JSON is empty:\n{text[-3000:]}"
    fatal = [x for x in findings if x.get("severity") == "FATAL"]
    assert not fatal, f"testssl could not scan: {fatal}\n{text[-3000:]}"
    return findings


def rated_medium_or_worse(findings):
    return [f"{x['severity']} {x['id']}: {x.get('finding', '')}" for x in findings
            if x.get("severity") in BAD]


def start_tls_mothership(fleet, tmp_path, cert, key):
    """Mothership with one `https` bind serving a static directory; skips the
    test when this build's `run` refuses TLS binds."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<!doctype html><title>tls</title><p>hello over TLS\n")
    port = free_port()
    text = (f"[mothership]\nmetrics_port = {free_port()}\nshutdown_timeout = \"5s\"\n\n"
            f"[mothership.bind]\nhttps = \"127.0.0.1:{port}\"\n\n"
            f"[mothership.tls]\ncert = {toml_str(cert)}\nkey = {toml_str(key)}\n\n"
            f"[[mothership.static_dirs]]\npath = {toml_str(str(www))}\nprefix = \"/\"\n"
            f"bind = \"https\"\n")
    ms = fleet(text)
    # Either the bind listens or `run` exits: wait for whichever comes first.
    while True:
        if ms.events("listening"):
            return ms, port
        if ms.proc.poll() is not None:
            ms.wait_exit()
            out = ms.output()
            refusal = [e.get("msg", "") for e in ms.events() if "does not serve yet" in e.get("msg", "")]
            if refusal:
                pytest.skip("`run` refuses TLS binds in this build: " + refusal[0])
            pytest.fail(f"mothership exited (status {ms.proc.returncode}) before listening:\n{out}")
        with ms.cond:
            ms.cond.wait(0.1)


@pytest.mark.skipif(TESTSSL is None,
                    reason="testssl.sh is not installed (Debian package testssl.sh; scripts/deps.sh installs it)")
def test_testssl_finds_nothing_medium_or_worse(fleet, tmp_path):
    ca, cert, key = make_ca_and_cert(str(tmp_path))
    ms, port = start_tls_mothership(fleet, tmp_path, cert, key)
    findings = run_testssl("127.0.0.1", port, ca, str(tmp_path))
    ids = {x["id"] for x in findings}
    # the scan really ran the protocol and vulnerability checks
    for want in ("TLS1_2", "TLS1_3", "heartbleed", "secure_renego"):
        assert want in ids, f"testssl did not report {want}: {sorted(ids)}"
    bad = rated_medium_or_worse(findings)
    assert not bad, "testssl findings rated MEDIUM or worse:\n" + "\n".join(bad)
    assert ms.proc.poll() is None, "mothership exited during the scan:\n" + ms.output()
