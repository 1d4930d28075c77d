"""Certificates for the TLS tests, made with the openssl command: a key and
a self-signed certificate for some names, valid for some days (-1: expired
yesterday)."""
import ipaddress
import os
import subprocess


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_cert(directory, stem, names=("localhost",), days=30, key=None):
    """Write DIR/STEM.crt and (unless key names an existing key file to
    certify) DIR/STEM.key; returns (cert path, key path)."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    crt = os.path.join(directory, stem + ".crt")
    if key is None:
        key = os.path.join(directory, stem + ".key")
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key,
                 cwd=directory)
    san = []
    for n in names:
        try:
            ipaddress.ip_address(n)
            san.append("IP:" + n)
        except ValueError:
            san.append("DNS:" + n)
    ext = os.path.join(directory, stem + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join(san) + "\n")
    csr = os.path.join(directory, stem + ".csr")
    _openssl("req", "-new", "-key", key, "-subj", "/CN=" + names[0], "-out", csr, cwd=directory)
    _openssl("x509", "-req", "-in", csr, "-key", key, "-days", str(days), "-extfile", ext, "-out", crt,
             cwd=directory)
    os.unlink(csr)
    os.unlink(ext)
    return crt, key
