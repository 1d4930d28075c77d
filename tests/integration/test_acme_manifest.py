"""[mothership.acme] through the real binary's `clearance`: the errors a user
sees at file:line:col, the warnings about ports a public CA connects to,
and the offline checks of ca_root and of what an earlier run stored in the
ACME state directory (account key, certificates and their keys)."""
import json
import os
import subprocess

from conftest import run_ms
from tls_helpers import make_cert

MANIFEST = "ship-manifest.toml"
DIRECTORY = "https://127.0.0.1:14000/dir"
STATE = os.path.join("acme", "127.0.0.1_14000_dir")  # under state_dir = "./acme"

BINDS = '[mothership.bind]\nhttp = "0.0.0.0:80"\nhttps = "0.0.0.0:443"\n'


def clearance(tmp_path, text):
    (tmp_path / MANIFEST).write_text(text)
    return run_ms("clearance", "-c", MANIFEST, cwd=str(tmp_path), env={"MS_STATE_DIR": str(tmp_path / "state")})


def acme(extra=""):
    return (BINDS + '[mothership.acme]\ndirectory = "%s"\nstate_dir = "./acme"\n'
            'domains = ["example.com", "WWW.example.com"]\n%s' % (DIRECTORY, extra))


def test_clears_without_warnings_on_80_and_443(tmp_path):
    r = clearance(tmp_path, acme('email = "ops@example.com"\n'))
    assert r.code == 0, r
    assert "cleared for launch" in r.out, r
    assert r.err == "", r


def test_warns_when_the_challenge_bind_is_not_on_the_public_port(tmp_path):
    r = clearance(tmp_path, '[mothership.bind]\nhttp = "127.0.0.1:8080"\nhttps = "127.0.0.1:8443"\n'
                  '[mothership.acme]\ndomains = ["example.com"]\n')
    assert r.code == 0, r
    assert (f'{MANIFEST}:4:1: warning: [mothership.acme]: challenge "http-01": no plain bind is on port 80 '
            '(bind "http" is on 8080)') in r.err, r
    r = clearance(tmp_path, '[mothership.bind]\nhttp = "0.0.0.0:80"\nhttps = "127.0.0.1:8443"\n'
                  '[mothership.acme]\ndomains = ["example.com"]\nchallenge = "tls-alpn-01"\n')
    assert r.code == 0, r
    assert (f'{MANIFEST}:6:13: warning: [mothership.acme]: challenge "tls-alpn-01": no TLS bind is on port 443 '
            '(bind "https" is on 8443)') in r.err, r


def test_errors_at_their_place(tmp_path):
    cases = [
        (BINDS + '[mothership.acme]\ndomains = ["example.com", "*.example.com"]\n',
         '5:27: [mothership.acme]: "domains": "*.example.com" is a wildcard'),
        (BINDS + '[mothership.acme]\ndomains = ["127.0.0.1"]\n',
         '5:12: [mothership.acme]: "domains": "127.0.0.1" is an IP address'),
        (BINDS + '[mothership.acme]\ndomains = ["example.com."]\n',
         '5:12: [mothership.acme]: "domains": "example.com." ends with a dot'),
        (BINDS + '[mothership.acme]\ndomains = ["example.com"]\nemial = "ops@example.com"\n',
         '6:1: [mothership.acme]: unknown key "emial" (did you mean "email"?)'),
        (BINDS + '[mothership.acme]\ndomains = ["example.com"]\nemail = "ops@example.com dev@example.com"\n',
         '6:9: [mothership.acme]: "email" "ops@example.com dev@example.com" must be one address'),
        (BINDS + '[mothership.acme]\ndomains = ["example.com"]\ndirectory = "ftp://ca.example/dir"\n',
         '6:13: [mothership.acme]: "directory" "ftp://ca.example/dir": must be an http:// or https:// URL'),
        ('[mothership.bind]\nhttps = "0.0.0.0:443"\n[mothership.acme]\ndomains = ["example.com"]\n',
         '3:1: [mothership.acme]: challenge "http-01" is answered on a plain (not TLS) TCP bind, and there is none'),
        ('[mothership.bind]\nhttp = "0.0.0.0:80"\n[mothership.acme]\ndomains = ["example.com"]\n'
         'challenge = "tls-alpn-01"\n',
         '5:13: [mothership.acme]: challenge "tls-alpn-01" is answered in the TLS handshake, and no TCP bind '
         'terminates TLS with the ACME certificates'),
        ('[mothership.bind]\nhttp = "0.0.0.0:80"\nadmin = { address = "0.0.0.0:443", tls = { acme = ["a.example.com"] } }\n',
         '3:42: bind "admin": tls.acme names certificates to order, but there is no [mothership.acme]'),
        ('[mothership.bind]\nhttp = "0.0.0.0:80"\nadmin = { address = "0.0.0.0:443", tls = { acm = ["a.example.com"] } }\n',
         '3:44: bind "admin": unknown key "acm" (did you mean "acme"?)'),
        (BINDS + '[mothership.acme]\ndomains = ["example.com"]\nca_root = "./missing.pem"\n',
         '6:11: [mothership.acme]: ca_root "missing.pem" does not exist'),
    ]
    for text, error in cases:
        r = clearance(tmp_path, text)
        assert r.code == 1, (text, r)
        assert f"{MANIFEST}:{error}" in r.err, (text, r)


def test_ca_root_must_hold_a_certificate(tmp_path):
    crt, key = make_cert(tmp_path / "ca", "root", names=("ca.example",))
    r = clearance(tmp_path, acme('ca_root = "./ca/root.crt"\n'))
    assert r.code == 0, r
    r = clearance(tmp_path, acme('ca_root = "./ca/root.key"\n'))
    assert r.code == 1, r
    assert f'{MANIFEST}:8:11: [mothership.acme]: ca_root "ca/root.key" holds no PEM certificate' in r.err, r
    (tmp_path / "ca" / "broken.pem").write_text(open(crt).read() + "-----BEGIN CERTIFICATE-----\nnot base64\n"
                                                "-----END CERTIFICATE-----\n")
    r = clearance(tmp_path, acme('ca_root = "./ca/broken.pem"\n'))
    assert r.code == 1, r
    assert 'ca_root "ca/broken.pem": certificate 2 does not parse' in r.err, r


def test_stored_state_is_checked(tmp_path):
    state = tmp_path / STATE
    (state / "certs").mkdir(parents=True)
    # nothing stored yet, or a matching certificate: clear
    r = clearance(tmp_path, acme())
    assert r.code == 0, r
    make_cert(state / "certs", "example.com", names=("example.com",))
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(state / "account.key")], check=True, capture_output=True)
    r = clearance(tmp_path, acme())
    assert r.code == 0, r
    # a certificate for another name than its file's
    make_cert(state / "certs", "www.example.com", names=("other.example.com",))
    r = clearance(tmp_path, acme())
    assert r.code == 1, r
    assert (f'{MANIFEST}:6:13: [mothership.acme]: "www.example.com": the certificate "acme/127.0.0.1_14000_dir/'
            'certs/www.example.com.crt" does not fit: it does not cover "www.example.com"') in r.err, r
    # a certificate whose key file is another key
    make_cert(state / "certs", "www.example.com", names=("www.example.com",))
    make_cert(state / "certs", "spare", names=("spare.example",))
    os.replace(state / "certs" / "spare.key", state / "certs" / "www.example.com.key")
    r = clearance(tmp_path, acme())
    assert r.code == 1, r
    assert "does not fit: it is for another key than its .key file" in r.err, r
    # a certificate without its key
    os.unlink(state / "certs" / "www.example.com.key")
    r = clearance(tmp_path, acme())
    assert r.code == 1, r
    assert 'the certificate "acme/127.0.0.1_14000_dir/certs/www.example.com.crt" has no key' in r.err, r
    os.unlink(state / "certs" / "www.example.com.crt")
    # an account key that is not ECDSA P-256
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(state / "account.key")], check=True, capture_output=True)
    r = clearance(tmp_path, acme())
    assert r.code == 1, r
    assert ('[mothership.acme]: the account key "acme/127.0.0.1_14000_dir/account.key" does not load: is an RSA '
            'key: ACME keys here are ECDSA P-256') in r.err, r


def test_default_state_dir_is_under_the_state_dir(tmp_path):
    """Without acme.state_dir: <state dir>/acme/<directory>, where a bad
    account key is found too."""
    state = tmp_path / "state" / "acme" / "127.0.0.1_14000_dir"
    state.mkdir(parents=True)
    (state / "account.key").write_text("not a key\n")
    r = clearance(tmp_path, BINDS + '[mothership.acme]\ndirectory = "%s"\ndomains = ["example.com"]\n' % DIRECTORY)
    assert r.code == 1, r
    assert f'the account key "{state}/account.key" does not load: not a PEM private key' in r.err, r


def test_encrypted_account_key_does_not_prompt(tmp_path):
    """An encrypted account key is refused with its reason; clearance never
    asks for a passphrase on the terminal (it waited there forever)."""
    import pty
    state = tmp_path / STATE
    state.mkdir(parents=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-aes-128-cbc", "-pass", "pass:secret", "-out", str(state / "account.key")],
                   check=True, capture_output=True)
    (tmp_path / MANIFEST).write_text(acme())
    try:
        master, slave = pty.openpty()
    except OSError as e:  # no pseudo-terminals in this sandbox
        import pytest
        pytest.skip(f"no pty: {e}")
    slave_name = os.ttyname(slave)

    def controlling_tty():
        os.setsid()
        os.close(os.open(slave_name, os.O_RDWR))  # the pty becomes the controlling terminal

    env = dict(os.environ, MS_STATE_DIR=str(tmp_path / "state"))
    try:
        p = subprocess.run([os.path.join(os.environ["MS_BUILD"], "mothership"), "clearance", "-c", MANIFEST],
                           cwd=str(tmp_path), env=env, stdin=slave, capture_output=True, text=True,
                           preexec_fn=controlling_tty, timeout=15)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 1, p
    assert ('the account key "acme/127.0.0.1_14000_dir/account.key" does not load: is encrypted; a passphrase '
            'is not supported') in p.stderr, p


def test_stored_certificate_must_name_it_in_its_san(tmp_path):
    """A stored certificate is held to the client's rule: the name in its
    subjectAltName; a subject CN alone does not cover it."""
    certs = tmp_path / STATE / "certs"
    certs.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=example.com", "-days", "30", "-keyout", str(certs / "example.com.key"),
                    "-out", str(certs / "example.com.crt")], check=True, capture_output=True)
    r = clearance(tmp_path, acme())
    assert r.code == 1, r
    assert ('"example.com": the certificate "acme/127.0.0.1_14000_dir/certs/example.com.crt" does not fit: it does '
            'not cover "example.com" in its subjectAltName') in r.err, r


def test_state_dir_that_cannot_be_made_is_named_at_its_place(tmp_path):
    """A state_dir under a file used to pass clearance, then stop the run
    with "cannot set up ACME: cannot make the state directory ..." and no
    place in the manifest nor what to do."""
    (tmp_path / "file").write_text("not a directory\n")
    text = acme().replace('state_dir = "./acme"', 'state_dir = "./file/acme"')
    r = clearance(tmp_path, text)
    assert r.code == 1, r
    assert (f'{MANIFEST}:6:13: [mothership.acme]: cannot make the state directory "file/acme/127.0.0.1_14000_dir": '
            '"file" is not a directory (state_dir must be a directory Mothership\'s user can create and write)'
            in r.err), r
    r = run_ms("run", "-c", MANIFEST, cwd=str(tmp_path), env={"MS_STATE_DIR": str(tmp_path / "state")}, timeout=10)
    assert r.code != 0, r
    assert f'{MANIFEST}:6:13: [mothership.acme]: cannot make the state directory' in r.err, r


def test_chart_shows_the_acme_setup(tmp_path):
    """chart used to say nothing of ACME: not that http-01 is answered
    first on the plain binds, nor which names a TLS bind gets from the CA."""
    (tmp_path / MANIFEST).write_text(
        BINDS + 'admin = { address = "0.0.0.0:8443", tls = { acme = ["admin.example.com"] } }\n'
        '[mothership.acme]\ndirectory = "%s"\nstate_dir = "./acme"\ndomains = ["example.com"]\n' % DIRECTORY)
    env = {"MS_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"}
    r = run_ms("chart", "-c", MANIFEST, cwd=str(tmp_path), env=env)
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0].startswith("bind http "), r
    assert lines[1].split() == ["acme", "/.well-known/acme-challenge/", "->", "ACME", "http-01", "challenges,",
                                "answered", "first"], r
    https = lines.index(next(x for x in lines if x.startswith("bind https ")))
    assert lines[https + 1].strip() == "certificates from ACME: example.com, admin.example.com", r
    admin = lines.index(next(x for x in lines if x.startswith("bind admin ")))
    assert lines[admin + 1].strip() == "certificates from ACME: admin.example.com", r
    r = run_ms("chart", "-c", MANIFEST, "--json", cwd=str(tmp_path), env=env)
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert doc["acme"] == {"directory": DIRECTORY, "challenge": "http-01",
                           "domains": ["example.com", "admin.example.com"]}, doc
    acme_of = {b["name"]: b["acme"] for b in doc["binds"]}
    assert acme_of == {"http": {"names": [], "challenge": "http-01"},
                       "https": {"names": ["example.com", "admin.example.com"], "challenge": None},
                       "admin": {"names": ["admin.example.com"], "challenge": None}}, doc


def test_chart_without_acme_has_no_acme_keys(tmp_path):
    (tmp_path / MANIFEST).write_text('[mothership.bind]\nhttp = "0.0.0.0:80"\n')
    r = run_ms("chart", "-c", MANIFEST, "--json", cwd=str(tmp_path), env={"MS_STATE_DIR": str(tmp_path / "s")})
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert "acme" not in doc and all("acme" not in b for b in doc["binds"]), doc


def test_no_port_warning_about_a_challenge_that_is_misspelt(tmp_path):
    """challenge = "dns-01" with binds off port 80 printed a warning about
    challenge "http-01" (the default left in place) next to the error."""
    text = ('[mothership.bind]\nhttp = "127.0.0.1:8080"\nhttps = "127.0.0.1:8443"\n'
            '[mothership.acme]\ndomains = ["example.com"]\nchallenge = "dns-01"\n')
    r = clearance(tmp_path, text)
    assert r.code == 1, r
    assert r.err == f'{MANIFEST}:6:13: [mothership.acme]: unknown challenge "dns-01" ("http-01" or "tls-alpn-01")\n', r


def test_clearance_summary_lists_the_acme_names(tmp_path):
    """The summary listed binds and metrics but no word of ACME: what will
    be ordered, how and from where."""
    r = clearance(tmp_path, acme())
    assert r.code == 0, r
    lines = r.out.splitlines()
    i = lines.index("  acme     2")
    assert lines[i + 1].split() == ["example.com", "http-01", DIRECTORY], r
    assert lines[i + 2].split() == ["www.example.com", "http-01", DIRECTORY], r
