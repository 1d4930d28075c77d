"""docs/deploy.md's examples, run where they can be: the manifest passes
clearance and serves (/ready 200 on the metrics listener, a request
proxied to its ship, SIGTERM exit 0); the systemd drop-in verifies clean
on top of the unit; the Pod spec's probes are /health and /ready on the
manifest's metrics port, and its grace period covers the preStop pause
plus shutdown_timeout; the Dockerfile installs a package for every
library the binary links."""
import os
import re
import shutil
import subprocess

import pytest
import requests

from conftest import BINARY, ROOT, run_ms
from fleet_helpers import free_port, http_get

DEPLOY_MD = os.path.join(ROOT, "docs", "deploy.md")
UNIT = os.path.join(ROOT, "contrib", "systemd", "mothership.service")


def blocks(lang):
    with open(DEPLOY_MD) as f:
        text = f.read()
    out = re.findall(r"^```" + lang + r"\n(.*?)^```$", text, re.M | re.S)
    assert out, f"docs/deploy.md has no ```{lang} block"
    return out


def the_manifest():
    [m] = blocks("toml")
    return m


def duration_s(v):
    m = re.fullmatch(r"(\d+)s", v)
    assert m, v
    return int(m.group(1))


def test_manifest_passes_clearance(tmp_path):
    path = tmp_path / "ship-manifest.toml"
    path.write_text(the_manifest())
    r = run_ms("clearance", "-c", str(path))
    assert r.code == 0, r


def test_manifest_serves_and_stops(fleet):
    http, metrics, app = free_port(), free_port(), free_port()
    text = (the_manifest().replace("0.0.0.0:8080", f"127.0.0.1:{http}")
            .replace("metrics_port = 9090", f"metrics_port = {metrics}")
            .replace('"8000"', f'"{app}"').replace("127.0.0.1:8000", f"127.0.0.1:{app}"))
    assert str(http) in text and str(metrics) in text and str(app) in text
    ms = fleet(text)
    ms.event("fleet_ready", timeout=20)
    assert http_get(metrics, "/ready")[0] == 200
    assert http_get(metrics, "/health")[0] == 200
    r = requests.get(f"http://127.0.0.1:{http}/", timeout=5)
    assert r.status_code == 200 and "Directory listing" in r.text, r.text[:200]
    assert ms.stop(timeout=30) == 0, ms.output()


def test_systemd_drop_in_verifies_on_top_of_the_unit(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    [drop_in] = blocks("ini")
    assert drop_in.startswith("# /etc/systemd/system/mothership.service.d/"), drop_in
    with open(UNIT) as f:
        unit = f.read().replace("/usr/bin/mothership", os.path.abspath(BINARY))
    path = tmp_path / "mothership.service"
    path.write_text(unit + "\n" + drop_in)   # a drop-in's sections merge into the unit's
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout, r.stderr)


def test_pod_spec_probes_and_grace_period():
    yaml = pytest.importorskip("yaml")
    [spec] = blocks("yaml")
    pod = yaml.safe_load(spec)
    manifest = the_manifest()
    metrics_port = int(re.search(r"^metrics_port = (\d+)", manifest, re.M).group(1))
    shutdown = duration_s(re.search(r'^shutdown_timeout = "(\w+)"', manifest, re.M).group(1))
    [c] = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == metrics_port
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[c[probe]["httpGet"]["port"]] == metrics_port, probe
    pause = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pause + shutdown


def test_dockerfile_installs_every_library_the_binary_links():
    if not shutil.which("ldd") or not shutil.which("dpkg-query"):
        pytest.skip("ldd or dpkg-query missing")
    [dockerfile] = blocks("dockerfile")
    listed = set(re.search(r"apt-get install -y --no-install-recommends(.*?)&&", dockerfile, re.S)
                 .group(1).replace("\\", " ").split())
    ldd = subprocess.run(["ldd", os.path.abspath(BINARY)], capture_output=True, text=True, check=True).stdout
    libs = [l.split("=>")[1].split()[0] for l in ldd.splitlines() if "=>" in l and "/" in l.split("=>")[1]]
    if any("libasan" in lib for lib in libs):
        # a sanitized build: its runtime (and the C++ and gcc ones it pulls in)
        # is the build's, not something a packaged binary needs
        libs = [lib for lib in libs if not re.search(r"/lib(asan|ubsan|gcc_s|stdc\+\+)\.so", lib)]

    # one dpkg -S for all (each call reads every package's file list)
    paths = sorted({q for lib in libs for q in (lib, os.path.realpath(lib))})
    owner = {}
    for line in subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True).stdout.splitlines():
        pkg, _, path = line.partition(": ")
        owner[path.strip()] = pkg.split(":")[0]

    def package_of(path):
        return owner.get(path) or owner.get(os.path.realpath(path))

    def depends(pkg):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", pkg], capture_output=True, text=True)
        return {d.strip().split()[0].split(":")[0] for d in r.stdout.replace("|", ",").split(",") if d.strip()}

    def required(pkg):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Priority} ${Essential}", pkg], capture_output=True,
                           text=True)
        return r.stdout.startswith("required") or r.stdout.endswith("yes")

    covered = set(listed)
    for p in listed:
        covered |= depends(p)
    missing = []
    for lib in libs:
        pkg = package_of(lib)
        if pkg is None:
            pytest.skip(f"{lib} belongs to no Debian package here (not a Debian build?)")
        if pkg not in covered and not required(pkg):
            missing.append((lib, pkg))
    assert not missing, f"the Dockerfile sketch misses {missing}"
