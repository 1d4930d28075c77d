""".clang-format and .editorconfig describe the tree as it is written: the
clang-format configuration is accepted by Debian 12's clang-format, moves
few lines of today's sources (they were formatted by hand, so some
re-wrapping is expected, not a rewrite), and leaves the files written
under it unchanged; every C, Python and shell file ends with a newline
and indents with spaces, as .editorconfig says."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

# Files formatted with the configuration when they were written.
FORMATTED = ["src/util/sdnotify.c", "src/util/sdnotify.h", "src/cli/run_notify.c", "src/cli/run_notify.h",
             "tests/unit/test_sdnotify.c"]


def clang_format():
    for name in ("clang-format-14", "clang-format"):
        if shutil.which(name):
            return name
    pytest.skip("clang-format is not installed")


def tracked(*patterns):
    out = subprocess.run(["git", "-C", ROOT, "ls-files", *patterns], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.split() if os.path.isfile(os.path.join(ROOT, f))]


def test_clang_format_accepts_the_configuration():
    cf = clang_format()
    r = subprocess.run([cf, "--style=file", "--dump-config", "src/util/sdnotify.c"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ColumnLimit:     120" in r.stdout and "IndentWidth:     4" in r.stdout, r.stdout[:500]


def test_files_written_under_it_stay_unchanged():
    cf = clang_format()
    for path in FORMATTED:
        r = subprocess.run([cf, "--style=file", "--dry-run", "-Werror", path], cwd=ROOT, capture_output=True,
                           text=True)
        assert r.returncode == 0, f"{path}:\n{r.stderr[:2000]}"


def test_it_matches_the_hand_formatted_tree():
    cf = clang_format()
    files = tracked("src/*.c", "src/*.h")
    total = 0
    for path in files:
        with open(os.path.join(ROOT, path)) as f:
            total += sum(1 for _ in f)
    # one warning per place clang-format would change (one run for all files)
    r = subprocess.run([cf, "--style=file", "--dry-run", *files], cwd=ROOT, capture_output=True, text=True)
    places = r.stderr.count("[-Wclang-format-violations]")
    assert total > 10000
    assert places < total * 0.10, f"{places} places in {total} lines would change"


def test_editorconfig_final_newline_and_spaces():
    bad = []
    for path in tracked("*.c", "*.h", "*.py", "*.sh", "meson.build", "*.md"):
        with open(os.path.join(ROOT, path), "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            bad.append(f"{path}: no newline at the end")
        if not path.endswith(".md") and any(line.startswith(b"\t") for line in data.split(b"\n")):
            bad.append(f"{path}: indented with a tab")
    assert not bad, bad
