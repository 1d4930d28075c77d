"""`make install` (meson install) with PREFIX and DESTDIR: the layout it
stages, the installed binary, and a C program built against the installed
libdock through pkg-config alone."""
import glob
import json
import os
import subprocess

import pytest

from conftest import BUILD, ROOT

PREFIX = "/opt/mothership"

TINY_BAY = r"""
#define _XOPEN_SOURCE 700
#include <libdock/dock.h>

#include <stdio.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
    char err[256];
    dock_options opt = { .socket_path = argv[1] };
    dock_bay *bay = dock_bay_open(&opt, err, sizeof err);
    if (argc != 2 || !bay) {
        fprintf(stderr, "tiny: %s\n", bay ? "usage" : err);
        return 1;
    }
    struct stat st;
    int listening = stat(argv[1], &st) == 0 && S_ISSOCK(st.st_mode);
    printf("%s %s|%s\n", dock_bay_socket_path(bay), listening ? "listening" : "absent",
           dock_status_name(DOCK_ERR_FULL));
    dock_bay_close(bay);
    return 0;
}
"""


def _option(build, name):
    out = subprocess.run(["meson", "introspect", build, "--buildoptions"], check=True,
                         capture_output=True, text=True).stdout
    return next(o["value"] for o in json.loads(out) if o["name"] == name)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """make install PREFIX=/opt/mothership DESTDIR=<tmp>; the build dir's own
    prefix is put back afterwards."""
    dest = tmp_path_factory.mktemp("destdir")
    old = _option(BUILD, "prefix")
    try:
        p = subprocess.run(["make", "--no-print-directory", "install", f"BUILD={BUILD}",
                            f"PREFIX={PREFIX}", f"DESTDIR={dest}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        subprocess.run(["meson", "configure", BUILD, f"-Dprefix={old}"], capture_output=True)
    return str(dest) + PREFIX


def _one(root, pattern):
    hits = glob.glob(os.path.join(root, pattern))
    assert len(hits) == 1, f"{pattern}: {hits} (tree: {sorted(_tree(root))})"
    return hits[0]


def _tree(root):
    return [os.path.relpath(os.path.join(d, f), root)
            for d, _, files in os.walk(root) for f in files]


def test_install_layout(staged):
    assert os.access(os.path.join(staged, "bin/mothership"), os.X_OK)
    real = _one(staged, "lib/*/libdock.so.1.*")
    libdir = os.path.dirname(real)
    assert os.readlink(os.path.join(libdir, "libdock.so.1")) == os.path.basename(real)
    assert os.path.realpath(os.path.join(libdir, "libdock.so")) == os.path.realpath(real)
    dyn = subprocess.run(["readelf", "-d", real], capture_output=True, text=True, check=True).stdout
    assert "Library soname: [libdock.so.1]" in dyn
    # Only dock.h's API is exported, not the codec or libdock's helpers.
    syms = subprocess.run(["nm", "-D", "--defined-only", real], capture_output=True, text=True,
                          check=True).stdout.split("\n")
    names = {ln.split()[-1].split("@")[0] for ln in syms if ln.strip()}
    names.discard("LIBDOCK_1")
    assert "dock_bay_open" in names and "dock_http_open" in names
    assert all(n.startswith("dock_") and not n.startswith("dock__") for n in names), names
    pc = open(os.path.join(libdir, "pkgconfig/libdock.pc")).read()
    assert f"prefix={PREFIX}" in pc and "-ldock" in pc
    with open(os.path.join(staged, "include/libdock/dock.h")) as f:
        assert "dock_bay_open" in f.read()
    with open(os.path.join(staged, "lib/systemd/system/mothership.service")) as f:
        assert "ExecStart=" in f.read()
    for doc in ("README.md", "docs/cli.md", "docs/manifest.md", "docs/libdock.md"):
        assert os.path.isfile(os.path.join(staged, "share/doc/mothership", doc)), doc
    # the docs, not the build rules that sit beside them
    assert not glob.glob(os.path.join(staged, "share/doc/mothership/**/meson.build"), recursive=True)


def test_installed_unit_starts_the_installed_binary(staged):
    """The unit installed under PREFIX runs PREFIX/bin/mothership, not the
    Debian package's /usr/bin/mothership."""
    with open(os.path.join(staged, "lib/systemd/system/mothership.service")) as f:
        unit = f.read()
    execs = [ln for ln in unit.splitlines() if ln.startswith(("ExecStart=", "ExecReload="))]
    assert len(execs) == 2, unit
    for ln in execs:
        assert ln.split("=", 1)[1].startswith(f"{PREFIX}/bin/mothership "), ln
    assert "/usr/bin/mothership" not in unit


def test_install_man_pages_and_completions(staged):
    """Installed by their own meson rules; checked once the tree has them."""
    if not os.path.exists(os.path.join(ROOT, "scripts/md2man.py")):
        pytest.skip("no man page generator (scripts/md2man.py) in this tree")
    for page in ("man1/mothership.1", "man5/ship-manifest.toml.5", "man7/mothership-docking.7"):
        assert os.path.isfile(os.path.join(staged, "share/man", page)), page
    if not os.path.isdir(os.path.join(ROOT, "contrib/completions")):
        pytest.skip("no completions (contrib/completions) in this tree")
    for f in ("bash-completion/completions/mothership", "zsh/vendor-completions/_mothership",
              "fish/vendor_completions.d/mothership.fish"):
        assert os.path.isfile(os.path.join(staged, "share", f)), f


def test_installed_binary_runs(staged):
    p = subprocess.run([os.path.join(staged, "bin/mothership"), "--version"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("mothership "), p.stdout


def test_c_program_builds_against_installed_libdock(staged, tmp_path):
    """pkg-config --cflags --libs libdock is all the program needs; it runs
    on the installed libdock.so.1, not on a copy linked in."""
    libdir = os.path.dirname(_one(staged, "lib/*/libdock.so.1"))
    dest = staged[:-len(PREFIX)]
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"),
               PKG_CONFIG_SYSROOT_DIR=dest)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libdock"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert f"-I{dest}{PREFIX}/include" in flags and "-ldock" in flags, flags
    src, exe = tmp_path / "tiny.c", tmp_path / "tiny"
    src.write_text(TINY_BAY)
    # A sanitized build's libdock needs the sanitizer runtime in the program too.
    sanitize = _option(BUILD, "b_sanitize")
    san = [] if sanitize == "none" else [f"-fsanitize={sanitize}"]
    subprocess.run(["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", *san, str(src), "-o", str(exe),
                    *flags], check=True, timeout=60)
    run_env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    ldd = subprocess.run(["ldd", str(exe)], env=run_env, capture_output=True, text=True).stdout
    assert os.path.join(libdir, "libdock.so.1") in ldd, ldd
    sock = tmp_path / "run" / "tiny.sock"
    p = subprocess.run([str(exe), str(sock)], env=run_env, capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{sock} listening|output buffer full\n", p.stdout


def test_uninstall_removes_what_install_put(staged):
    """Last in this file: make uninstall empties the staged tree."""
    p = subprocess.run(["make", "--no-print-directory", "uninstall", f"BUILD={BUILD}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not os.path.exists(staged) or _tree(staged) == [], _tree(staged)
