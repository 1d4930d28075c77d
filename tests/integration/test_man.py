"""The man pages: mothership(1), ship-manifest.toml(5) and
mothership-docking(7) are generated at build time from docs/cli.md,
docs/manifest.md and docs/docking-protocol.md (scripts/md2man.py). Each
renders without a groff warning, carries every section of its page, and
documents what the binary has: every command and option of `mothership
--help`, every key the manifest loader accepts. `meson install` puts them in
man1, man5 and man7."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT, run_ms

PAGES = [
    ("cli.md", "mothership.1"),
    ("manifest.md", "ship-manifest.toml.5"),
    ("docking-protocol.md", "mothership-docking.7"),
]
PAGE_IDS = [p[1] for p in PAGES]

needs_groff = pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")


def page_path(name):
    path = os.path.join(BUILD, "docs", name)
    assert os.path.isfile(path), f"{path} was not built"
    return path


def rendered(name):
    """The page as man shows it, in plain ASCII with its words on one line
    each run of whitespace collapsed (a phrase may wrap anywhere)."""
    p = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou", page_path(name)],
                       capture_output=True, text=True, check=True)
    return " ".join(p.stdout.split())


@needs_groff
@pytest.mark.parametrize("doc,name", PAGES, ids=PAGE_IDS)
def test_man_page_renders_without_warnings(doc, name):
    path = page_path(name)
    with open(path, encoding="ascii") as f:  # every other character is escaped
        head = f.read(2000)
    section = name.rsplit(".", 1)[1]
    assert re.search(r'^\.TH "%s" "%s"' % (re.escape(name.rsplit(".", 1)[0].upper()), section), head, re.M)
    assert "\n.SH NAME\n" in head
    for device in ("utf8", "ascii", "ps"):
        p = subprocess.run(["groff", "-man", "-ww", "-z", "-T" + device, path],
                           capture_output=True, text=True)
        assert p.returncode == 0 and p.stderr == "", (device, p.stderr)
    if shutil.which("man"):
        # what lintian runs on a packaged page
        p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path],
                           capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80"))
        assert p.returncode == 0 and p.stderr == "", p.stderr


def markdown_headings(doc):
    with open(os.path.join(ROOT, "docs", doc), encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # not the comments of code blocks
    return [m.group(2) for m in re.finditer(r"^(#{2,4}) +(.+?)\s*$", text, re.M)]


def plain(markdown):
    """What a Markdown phrase reads as once rendered."""
    s = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", markdown).replace("\u2192", "->")
    return " ".join(s.replace("`", "").replace("**", "").split())


@needs_groff
@pytest.mark.parametrize("doc,name", PAGES, ids=PAGE_IDS)
def test_man_page_has_every_section_of_its_doc(doc, name):
    text = rendered(name)
    headings = markdown_headings(doc)
    assert len(headings) >= 10
    for h in headings:
        want = plain(h)
        assert want in text or want.upper() in text, f"{doc}: section {h!r} is not in {name}"


@needs_groff
def test_mothership_1_documents_every_command_and_option():
    text = rendered("mothership.1")
    help_text = run_ms("--help").out
    commands = re.findall(r"^  ([a-z]+)\b", help_text, re.M)
    assert {"run", "init", "clearance", "status", "reload", "drain", "help"} <= set(commands)
    for cmd in commands:
        assert f"mothership {cmd}" in text, cmd
        # its own help's options too
        for opt in re.findall(r"(--[a-z][-a-z]*)", run_ms("help", cmd).out):
            assert opt in text, (cmd, opt)
    for opt in re.findall(r"(--[a-z][-a-z]*|\B-[a-zA-Z]\b)", help_text):
        assert opt in text, opt


def loader_key_lists():
    """{list name: [keys]} of the manifest loader's key lists
    (src/manifest/manifest_load.c, what ms_manifest_keys returns)."""
    with open(os.path.join(ROOT, "src", "manifest", "manifest_load.c"), encoding="utf-8") as f:
        src = f.read()
    lists = {}
    for m in re.finditer(r"^static const char \*const (\w+_(?:keys|types))\[\] = \{(.*?)\};", src,
                         re.S | re.M):
        lists[m.group(1)] = re.findall(r'"([^"]+)"', m.group(2))
    return lists


@needs_groff
def test_ship_manifest_5_documents_every_key():
    text = rendered("ship-manifest.toml.5")
    lists = loader_key_lists()
    assert {"mothership_keys", "ship_keys", "bay_keys", "http_keys", "route_keys"} <= set(lists)
    for table, keys in lists.items():
        for key in keys:
            assert re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(key), text), f"{table}: {key}"
    for section in ("[mothership]", "[mothership.http]", "[mothership.env]", "[mothership.bind]",
                    "[mothership.tls]", "[[mothership.tls.certs]]", "[[mothership.static_dirs]]",
                    "[[mothership.upstreams]]", "[[fleet.<group>]]", "[[bays.websocket]]", "[[bays.http]]",
                    "[[modules]]", "[[uplinks]]", "[base.ship]"):
        assert section in text, section


@needs_groff
def test_mothership_docking_7_has_the_message_types():
    text = rendered("mothership-docking.7")
    for msg in ("Dock (0x01)", "Moored (0x02)", "Boarding (0x10)", "Cargo (0x12)", "Disembark (0x11)"):
        assert msg in text, msg
    assert "MS_SOCKET_PATH" in text


@pytest.mark.skipif(shutil.which("meson") is None, reason="meson is not installed")
def test_meson_install_puts_man_pages_in_their_sections(tmp_path):
    p = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--destdir", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    found = {os.path.relpath(os.path.join(d, f), tmp_path)
             for d, _, files in os.walk(tmp_path) for f in files}
    for name in PAGE_IDS:
        section = name.rsplit(".", 1)[1]
        assert any(re.fullmatch(r".*/share/man/man%s/%s" % (section, re.escape(name)), f) for f in found), \
            (name, sorted(found))


SAMPLE_MD = r"""# Title

Text that wraps, with `code`, **bold**, *italic*, a [link](manifest.md#x),
.a line that starts with a dot
'and one with a quote, a back\slash, `C:\dir`, --an-option and → ✓.

## A section

- one
  continued
  - nested `item`
- two

  ```text
  .TH inside a code block
  'quoted \n
  ```

1. first
2. second

| key | type | meaning |
|---|---|---|
| `a\|b` | string | pipe in code |
| plain | — | dash |

> quoted **text**
"""


@needs_groff
def test_md2man_escapes_what_roff_would_read(tmp_path):
    src = tmp_path / "sample.md"
    src.write_text(SAMPLE_MD, encoding="utf-8")
    out = tmp_path / "sample.7"
    p = subprocess.run(["python3", os.path.join(ROOT, "scripts", "md2man.py"), "--name", "sample",
                        "--section", "7", "--summary", "a sample", "--version", "1.0", str(src), str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    roff = out.read_text(encoding="ascii")
    # no line of text is read as a request
    for line in roff.splitlines():
        if line.startswith((".", "'")):
            assert line.startswith(".\\\"") or \
                re.match(r"\.(TH|SH|SS|PP|IP|TP|RS|RE|nf|fi|br|nh|ad|if)\b", line), line
    for device in ("utf8", "ascii"):
        p = subprocess.run(["groff", "-man", "-ww", "-z", "-T" + device, str(out)], capture_output=True, text=True)
        assert p.stderr == "", (device, p.stderr)
    p = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", str(out)], capture_output=True, text=True)
    text = " ".join(p.stdout.split())
    for want in (".a line that starts with a dot", "'and one with a quote", "back\\slash", "C:\\dir",
                 "link (ship-manifest.toml(5))", ".TH inside a code block", "'quoted \\n", "a|b",
                 "nested item", "1. first", "pipe in code", "quoted text", "\u2192", "\u2713"):
        assert want in text, want
