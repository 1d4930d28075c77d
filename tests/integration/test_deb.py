"""The Debian packages: scripts/build-deb.sh (what `make deb` runs) builds
mothership, libdock1 and libdock-dev from a copy of the tree; their contents,
their relations, the packaged binary, and lintian. About a minute on an idle
two-core machine, most of it compiling: marked slow, still part of make test."""
import glob
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("dpkg-buildpackage") and shutil.which("lintian")),
                       reason="dpkg-dev or lintian not installed (scripts/deps.sh installs them)"),
]

# What slice of the tree brings the man pages and the completions; the
# package carries them once the tree has them.
HAS_MAN = os.path.exists(os.path.join(ROOT, "scripts/md2man.py"))
HAS_COMPLETIONS = os.path.isdir(os.path.join(ROOT, "contrib/completions"))


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    before = _droppings()
    env = dict(os.environ, DEB_BUILD_OPTIONS="noddebs")
    p = subprocess.run([os.path.join(ROOT, "scripts/build-deb.sh"), str(out)], env=env,
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    # The build ran on a copy: nothing of it in the tree.
    assert _droppings() == before
    found = {}
    for f in glob.glob(os.path.join(out, "*.deb")):
        found[os.path.basename(f).split("_")[0]] = f
    return found


def _droppings():
    return sorted(glob.glob(os.path.join(ROOT, "obj-*")) + glob.glob(os.path.join(ROOT, "debian/tmp"))
                  + glob.glob(os.path.join(ROOT, "debian/files"))
                  + glob.glob(os.path.join(ROOT, "debian/*/DEBIAN")))


def _contents(deb):
    """Paths in the package (without the leading "."), links as "path -> target"."""
    out = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    paths = set()
    for line in out.splitlines():
        name = line.split(None, 5)[5]
        paths.add(name[1:] if name.startswith(".") else name)
    return paths


def _field(deb, name):
    return subprocess.run(["dpkg-deb", "-f", deb, name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_deb_packages_built(debs):
    assert sorted(debs) == ["libdock-dev", "libdock1", "mothership"]
    assert re.fullmatch(r"mothership_[0-9][^_]*_[a-z0-9]+\.deb", os.path.basename(debs["mothership"]))
    # debian/changelog and meson.build say the same version.
    with open(os.path.join(ROOT, "meson.build")) as f:
        version = re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)
    for deb in debs.values():
        assert _field(deb, "Version") == version


def test_deb_mothership_contents(debs):
    files = _contents(debs["mothership"])
    for want in ("/usr/bin/mothership", "/lib/systemd/system/mothership.service",
                 "/usr/share/doc/mothership/copyright", "/usr/share/doc/mothership/README.md.gz",
                 "/usr/share/doc/mothership/docs/cli.md.gz",
                 "/usr/share/doc/mothership/docs/manifest.md.gz"):
        assert want in files, (want, sorted(files))
    assert not any("libdock" in f and "/doc/" not in f for f in files), sorted(files)
    if HAS_MAN:
        for page in ("man1/mothership.1.gz", "man5/ship-manifest.toml.5.gz",
                     "man7/mothership-docking.7.gz"):
            assert "/usr/share/man/" + page in files, page
    if HAS_COMPLETIONS:
        for c in ("/usr/share/bash-completion/completions/mothership",
                  "/usr/share/zsh/vendor-completions/_mothership",
                  "/usr/share/fish/vendor_completions.d/mothership.fish"):
            assert c in files, c
    # The unit is installed, not enabled: postinst enables it only where it was.
    postinst = subprocess.run(["dpkg-deb", "--ctrl-tarfile", debs["mothership"]],
                              capture_output=True, check=True).stdout
    assert b"was-enabled 'mothership.service'" in postinst


def test_deb_libdock_contents(debs):
    lib = _contents(debs["libdock1"])
    arch_lib = [f for f in lib if re.fullmatch(r"/usr/lib/[a-z0-9_-]+/libdock\.so\.1\.\d+\.\d+", f)]
    assert len(arch_lib) == 1, sorted(lib)
    libdir = os.path.dirname(arch_lib[0])
    assert f"{libdir}/libdock.so.1 -> {os.path.basename(arch_lib[0])}" in lib
    assert not any(f.startswith("/usr/include") or f.endswith(".pc") for f in lib)
    dev = _contents(debs["libdock-dev"])
    for want in ("/usr/include/libdock/dock.h", f"{libdir}/pkgconfig/libdock.pc",
                 f"{libdir}/libdock.so -> libdock.so.1"):
        assert want in dev, (want, sorted(dev))
    version = _field(debs["libdock1"], "Version")
    assert f"libdock1 (= {version})" in _field(debs["libdock-dev"], "Depends")
    assert _field(debs["libdock1"], "Multi-Arch") == "same"
    assert _field(debs["libdock1"], "Section") == "libs"


def test_deb_binary_runs(debs, tmp_path):
    subprocess.run(["dpkg-deb", "-x", debs["mothership"], str(tmp_path)], check=True)
    p = subprocess.run([str(tmp_path / "usr/bin/mothership"), "--version"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("mothership "), p.stdout
    assert "libdock1" not in _field(debs["mothership"], "Depends")


def test_deb_lintian_clean(debs):
    """No error and no warning; the only one tolerated is the missing manual
    page while the tree has no man page generator."""
    p = subprocess.run(["lintian", "--allow-root", *sorted(debs.values())],
                       capture_output=True, text=True, timeout=600)
    tags = [ln for ln in p.stdout.splitlines() if re.match(r"[EW]: ", ln)]
    if not HAS_MAN:
        tags = [t for t in tags if not re.fullmatch(r"W: mothership: no-manual-page \[usr/bin/mothership\]", t)]
    assert tags == [], p.stdout + p.stderr


def test_deb_libdock1_has_no_info_tags(debs):
    """The shared library's package is clean down to lintian's info tags:
    its symbols file names the -dev package that builds against it."""
    p = subprocess.run(["lintian", "--allow-root", "-I", debs["libdock1"]],
                       capture_output=True, text=True, timeout=600)
    tags = [ln for ln in p.stdout.splitlines() if re.match(r"[EWI]: ", ln)]
    assert tags == [], p.stdout + p.stderr
