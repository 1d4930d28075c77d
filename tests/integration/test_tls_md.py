"""docs/tls.md's examples, run against the real binary and the real pebble:

- every ```toml block is a complete manifest that passes `clearance` (the
  files it names are made first: certificates covering the names it uses,
  the static dir, the pebble CA file);
- the "Testing locally with pebble" recipe runs as written, command by
  command, in an empty directory, on free ports instead of the documented
  ones: the openssl commands make the CA and pebble's certificate, the
  ```json pebble-config block is pebble's configuration, challtestsrv and
  pebble start with the documented command lines, and the curl commands
  fetch the directory and pebble's root and change the DNS answers;
- with Mothership on the ```toml pebble manifest, the recipe's last curl
  gets the page over the certificate pebble issued (needs the ACME
  client)."""
import json
import os
import re
import shlex
import subprocess

import pytest

from conftest import ROOT, run_ms
from fleet_helpers import free_port
from pebble_helpers import Proc, _await, _tcp_listens, dns_query_a, pebble_missing_reason
from test_docs import fenced_blocks
from tls_helpers import make_cert

TLS_MD = os.path.join(ROOT, "docs", "tls.md")
PEBBLE_HEADING = "### Testing locally with pebble"
# the ports the recipe is written with
DOC_PORTS = (14000, 15000, 8053, 8055, 8080, 8443, 9090)


def toml_examples():
    return [pytest.param(body, id=f"tls.md:{line}") for info, body, line in fenced_blocks(TLS_MD)
            if info.split()[:1] == ["toml"]]


def prepare_tree(root, body):
    """The files a documented manifest names: its certificates (covering
    every name the page uses), the static dir, a CA file as ca_root."""
    (root / "public").mkdir(exist_ok=True)
    (root / "public" / "index.html").write_text("hello\n")
    for stem in set(re.findall(r'"certs/([A-Za-z0-9_.-]+)\.crt"', body)):
        make_cert(root / "certs", stem,
                  names=("localhost", "example.com", "www.example.com", "example.org", "*.example.org"))
    for ca in set(re.findall(r'ca_root = "([A-Za-z0-9_.-]+\.pem)"', body)):
        make_cert(root, ca[:-len(".pem")], names=("localhost",))
        os.rename(root / (ca[:-len(".pem")] + ".crt"), root / ca)


def test_tls_md_has_acme_examples():
    bodies = [p.values[0] for p in toml_examples()]
    assert sum("[mothership.acme]" in b for b in bodies) >= 4
    assert any("acme-staging-v02" in b for b in bodies)
    assert any("acme = [" in b for b in bodies)


@pytest.mark.parametrize("body", toml_examples())
def test_tls_md_manifest_passes_clearance(tmp_path, body):
    prepare_tree(tmp_path, body)
    (tmp_path / "ship-manifest.toml").write_text(body)
    r = run_ms("clearance", "-c", "ship-manifest.toml", cwd=str(tmp_path))
    assert r.code == 0, r
    assert "cleared for launch" in r.out, r


# ------------------------------------------------------------------ the pebble recipe
def pebble_section():
    """[(info, body)] of the blocks under the pebble heading."""
    with open(TLS_MD, encoding="utf-8") as f:
        text = f.read()
    start = text.count("\n", 0, text.index(PEBBLE_HEADING)) + 1
    return [(info, body) for info, body, line in fenced_blocks(TLS_MD) if line > start]


def port_map():
    return {p: free_port() for p in DOC_PORTS}


def on_ports(text, ports):
    return re.sub(r"(?<![\d.])(\d{4,5})(?!\d)", lambda m: str(ports.get(int(m.group(1)), m.group(1))), text)


class Recipe:
    """The recipe's commands, run in order in tmp: `cmd &` starts a process
    (killed at teardown), others run in bash and must exit 0."""

    def __init__(self, tmp, ports):
        self.tmp, self.ports = tmp, ports
        self.procs = []
        self.outputs = []

    def run(self, line):
        line = on_ports(line, self.ports)
        if line.endswith(" &"):
            argv = shlex.split(line[:-2])
            env = {}
            while re.fullmatch(r"[A-Z_]+=.*", argv[0]):
                k, v = argv.pop(0).split("=", 1)
                env[k] = v
            p = Proc(argv[0], argv, str(self.tmp), env=env)
            self.procs.append(p)
            if argv[0] == "pebble-challtestsrv":
                _await(p, lambda: dns_query_a(self.ports[8053], "x.example.com", timeout=0.3), "DNS answers")
                _await(p, lambda: _tcp_listens(self.ports[8055]), "management port")
            elif argv[0] == "pebble":
                _await(p, lambda: _tcp_listens(self.ports[14000]) and _tcp_listens(self.ports[15000]),
                       "listening ports")
            return None
        r = subprocess.run(["bash", "-c", line], cwd=str(self.tmp), capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, (line, r.stdout, r.stderr)
        self.outputs.append((line, r.stdout))
        return r.stdout

    def stop(self):
        for p in reversed(self.procs):
            p.stop()


@pytest.fixture
def recipe(tmp_path):
    reason = pebble_missing_reason()
    if reason:
        pytest.skip(reason)
    r = Recipe(tmp_path, port_map())
    yield r
    r.stop()


def commands(blocks):
    return [l[2:] for info, body in blocks if info == "console" for l in body.splitlines() if l.startswith("$ ")]


def start_pebble_as_documented(recipe):
    """Everything of the recipe up to the manifest: the CA, pebble's
    config, challtestsrv and pebble; the remaining commands."""
    blocks = pebble_section()
    [config] = [b for info, b in blocks if info == "json pebble-config"]
    cmds = commands(blocks)
    i = 0
    while not cmds[i].startswith("pebble-challtestsrv"):
        recipe.run(cmds[i])
        i += 1
    (recipe.tmp / "pebble-config.json").write_text(on_ports(config, recipe.ports))
    while i < len(cmds) and "/dir" not in cmds[i]:
        recipe.run(cmds[i])
        i += 1
    return config, cmds[i:]


def test_the_pebble_recipe_starts_pebble_as_documented(recipe):
    config, rest = start_pebble_as_documented(recipe)
    # the config is the one the harness writes, on the documented ports
    cfg = json.loads(config)["pebble"]
    assert cfg["httpPort"] == 8080 and cfg["tlsPort"] == 8443
    manifest = next(b for info, b in pebble_section() if info == "toml pebble")
    assert 'http = "127.0.0.1:8080"' in manifest and 'https = "127.0.0.1:8443"' in manifest
    assert 'directory = "https://127.0.0.1:14000/dir"' in manifest and 'ca_root = "ca.pem"' in manifest
    # the directory answers through ca.pem
    d = json.loads(recipe.run(rest[0]))
    assert {"newNonce", "newAccount", "newOrder"} <= set(d), d
    # pebble's root, for curl --cacert
    [roots] = [c for c in rest if "/roots/0" in c]
    recipe.run(roots)
    assert (recipe.tmp / "pebble-root.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    # the DNS answers, changed and back
    [add] = [c for c in rest if "/add-a" in c]
    [clear] = [c for c in rest if "/clear-a" in c]
    dns = recipe.ports[8053]
    assert dns_query_a(dns, "site.example.com") == ["127.0.0.1"]
    recipe.run(add)
    assert dns_query_a(dns, "site.example.com") == ["127.0.0.2"]
    recipe.run(clear)
    assert dns_query_a(dns, "site.example.com") == ["127.0.0.1"]


def test_the_pebble_recipe_serves_a_page_over_the_issued_certificate(recipe, fleet):
    config, rest = start_pebble_as_documented(recipe)
    manifest = next(b for info, b in pebble_section() if info == "toml pebble")
    (recipe.tmp / "public").mkdir()
    (recipe.tmp / "public" / "index.html").write_text("hello from the recipe\n")
    ms = fleet(on_ports(manifest, recipe.ports), name="ship-manifest.toml")
    cert = ms.event("acme_certificate", timeout=60)
    assert cert["name"] == "site.example.com" and cert["how"] == "obtained", cert
    recipe.run(rest[0])
    [roots] = [c for c in rest if "/roots/0" in c]
    recipe.run(roots)
    [page] = [c for c in rest if "--resolve" in c]
    assert recipe.run(page) == "hello from the recipe\n"
    assert ms.stop() == 0, ms.output()
