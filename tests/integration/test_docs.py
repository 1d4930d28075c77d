"""The user documentation is tested against the real binary, so it cannot
drift from the code:

- every ```toml block of docs/manifest.md is a complete manifest that passes
  `mothership clearance`; a block fenced ```toml invalid must fail with exit
  1, and when a ```text block follows it, that text must appear in stderr;
- every ```console block of docs/cli.md that starts with a read-only
  `$ mothership ...` command (--help, help, clearance, chart) shows exactly what
  the binary prints for it, run from the repository root; one that starts
  with `$ mothership init` is run, command by command, in an empty
  directory;
- the complete echo bay of docs/libdock.md compiles as the page says and
  serves a WebSocket client through the real binary; its complete HTTP bay
  compiles as the page says and serves requests over docking v3 (the test
  plays Mothership on the bay's socket);
- docs/control-api.md and the fleet commands of docs/cli.md: the ```toml
  fleet block is launched, then every ```console block that starts with
  `$ curl --unix-socket` or a fleet command runs against it in order and
  prints what the page shows (numbers stand for any number; JSON is
  compared by structure). A ```toml fleet-next block is written over the
  manifest file before the console block that follows it (what
  `mothership reload` then reads).
"""
import os
import re
import shlex

import pytest

from conftest import noop_payload, ROOT, run_ms
from tls_helpers import make_cert

MANIFEST_MD = os.path.join(ROOT, "docs", "manifest.md")
CLI_MD = os.path.join(ROOT, "docs", "cli.md")

# The environment every documented manifest may use.
DOC_ENV = {"DATABASE_URL": "postgres://db.internal:5432/app"}

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def fenced_blocks(path):
    """[(info string, body, line number)] of every fenced block in a file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


def manifest_examples():
    blocks = fenced_blocks(MANIFEST_MD)
    cases = []
    for i, (info, body, line) in enumerate(blocks):
        words = info.split()
        if not words or words[0] != "toml":
            continue
        invalid = "invalid" in words[1:]
        expected = None
        if invalid and i + 1 < len(blocks) and blocks[i + 1][0] == "text":
            expected = blocks[i + 1][1]
        cases.append(pytest.param(body, invalid, expected, id=f"manifest.md:{line}"))
    return cases


def prepare_tree(root, body):
    """Create what the documented manifests refer to: static dirs, module
    files, TLS material."""
    for d in ("public", "public/assets", "modules", "certs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for wasm in set(re.findall(r"modules/([A-Za-z0-9_.-]+\.wasm)", body)):
        (root / "modules" / wasm).write_bytes(noop_payload())
    make_cert(root / "certs", "server", names=("localhost", "example.com", "www.example.com"))
    for env_file in set(re.findall(r'"(\.env[A-Za-z0-9_.-]*)"', body)):
        (root / env_file).write_text("# an env_file\nexport APP_MODE=docs\n")


def test_manifest_md_has_examples():
    cases = manifest_examples()
    assert len(cases) >= 10
    assert any(c.values[1] for c in cases), "no ```toml invalid example"


@pytest.mark.parametrize("body,invalid,expected", manifest_examples())
def test_manifest_example(tmp_path, body, invalid, expected):
    prepare_tree(tmp_path, body)
    name = "ship-manifest.toml"
    (tmp_path / name).write_text(body)
    env = dict(DOC_ENV)
    r = run_ms("clearance", "-c", name, cwd=str(tmp_path), env=env)
    if not invalid:
        assert r.code == 0, r
        assert "cleared for launch" in r.out, r
        return
    assert r.code == 1, r
    assert r.err, r
    if expected is not None:
        # the docs show the file as ship-manifest.toml
        want = expected.replace("ship-manifest.toml", name)
        assert want in r.err, r


def console_commands():
    """(command line, expected stdout, line) of the console blocks in
    docs/cli.md that run a read-only mothership command."""
    cases = []
    for info, body, line in fenced_blocks(CLI_MD):
        if info != "console":
            continue
        lines = body.splitlines(keepends=True)
        if not lines or not lines[0].startswith("$ mothership "):
            continue
        argv = shlex.split(lines[0][2:])[1:]
        if not argv or argv[0] not in ("--help", "-h", "help", "clearance", "chart"):
            continue
        output = "".join(lines[1:])
        assert not any(l.startswith("$ ") for l in lines[1:]), \
            f"cli.md:{line}: one command per checked console block"
        cases.append(pytest.param(argv, output, id=f"cli.md:{line}:{' '.join(argv)}"))
    return cases


def test_cli_md_documents_help():
    assert any(c.values[0] == ["--help"] for c in console_commands())


@pytest.mark.parametrize("argv,output", console_commands())
def test_cli_console_block(argv, output):
    r = run_ms(*argv, cwd=ROOT, env={"NO_COLOR": "1"})
    assert r.code == 0, r
    assert r.out == output, r


def init_sessions():
    """[(line, [(argv, expected stdout+stderr)])] of the console blocks of
    docs/cli.md that start with `$ mothership init`: run in order in an
    empty directory."""
    cases = []
    for info, body, line in fenced_blocks(CLI_MD):
        if info != "console" or not body.startswith("$ mothership init"):
            continue
        steps = []
        for l in body.splitlines(keepends=True):
            if l.startswith("$ "):
                steps.append((shlex.split(l[2:])[1:], ""))
            else:
                steps[-1] = (steps[-1][0], steps[-1][1] + l)
        cases.append(pytest.param(steps, id=f"cli.md:{line}"))
    return cases


def test_cli_md_documents_init():
    assert init_sessions()


@pytest.mark.parametrize("steps", init_sessions())
def test_cli_init_block(tmp_path, steps):
    for argv, want in steps:
        r = run_ms(*argv, cwd=str(tmp_path), env={"NO_COLOR": "1"})
        assert r.out + r.err == want, r
    # what init wrote passes clearance
    r = run_ms("clearance", cwd=str(tmp_path))
    assert r.code == 0, r


def test_cli_md_names_every_command_and_option():
    with open(CLI_MD, encoding="utf-8") as f:
        text = f.read()
    help_text = run_ms("--help").out
    for opt in re.findall(r"(--[a-z][a-z-]+)", help_text):
        assert f"`{opt}" in text, opt
    for cmd in ("run", "init", "clearance", "preflight", "chart"):
        assert f"### `mothership {cmd}" in text, cmd
    for verb in ("status", "restart", "stop", "start", "signal", "logs", "reload", "drain"):
        assert f"| `{verb}" in text and f"`mothership {verb}" in text.replace("`, `", "`, `mothership "), verb


# ------------------------------------------------------------------ docs/libdock.md
LIBDOCK_MD = os.path.join(ROOT, "docs", "libdock.md")


def test_libdock_md_echo_bay_builds_as_documented_and_serves_clients(fleet, tmp_path):
    """The complete echo bay of docs/libdock.md, compiled the way the page says
    to outside the tree, docks with the real binary and echoes."""
    import asyncio
    import subprocess

    import websockets

    from fleet_helpers import free_port
    blocks = [(info, body) for info, body, _ in fenced_blocks(LIBDOCK_MD) if info == "c"]
    body = next(b for _, b in blocks if "int main" in b)
    src = tmp_path / "tiny_echo.c"
    src.write_text(body)
    exe = tmp_path / "tiny-echo"
    cc = subprocess.run(["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
                         f"-I{ROOT}/src", str(src), f"{ROOT}/src/libdock/dock.c", f"{ROOT}/src/dock/protocol.c",
                         "-ljansson", "-o", str(exe)], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    port = free_port()
    ms = fleet(f"""
        [mothership]
        socket_dir = "{tmp_path}/sock"
        [mothership.bind]
        http = "127.0.0.1:{port}"
        [[bays.websocket]]
        name = "tiny"
        command = "{exe}"
        routes = ["http:/ws"]
    """)
    ms.event("ready", ship="tiny", timeout=15)

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("documented")
            assert await ws.recv() == "documented"
    asyncio.run(asyncio.wait_for(go(), 20))
    assert ms.stop() == 0, ms.output()


def test_libdock_md_http_bay_builds_as_documented_and_serves(tmp_path):
    """The complete HTTP bay of docs/libdock.md, compiled with the command
    the page gives, docks v3 with the threads of MS_BAY_THREADS, answers
    "hello" and echoes a body, and drains on SIGTERM."""
    import signal
    import subprocess

    from dock3_helpers import dock, hail, haul, response, wait_for
    with open(LIBDOCK_MD, encoding="utf-8") as f:
        text = f.read()
    body = next(b for info, b, _ in fenced_blocks(LIBDOCK_MD) if info == "c" and "dock_http_open" in b)
    command = re.search(r"`(cc -std=c17 [^`]*tiny_http\.c[^`]*)`", text).group(1)
    (tmp_path / "tiny_http.c").write_text(body)
    argv = [a if not a.startswith(("src/", "-Isrc")) else a.replace("src", f"{ROOT}/src", 1)
            for a in shlex.split(command)]
    cc = subprocess.run(argv + ["-Wall", "-Wextra", "-Werror", "-o", "tiny-http"], cwd=tmp_path,
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    sock = tmp_path / "sock" / "tiny.sock"
    env = dict(os.environ, MS_SOCKET_PATH=str(sock), MS_SHIP="web", MS_BAY_THREADS="2")
    p = subprocess.Popen([str(tmp_path / "tiny-http")], env=env, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: sock.exists() or p.poll() is not None, what="the bay's socket")
        links = [dock(str(sock), pid=p.pid, threads=2)[0] for _ in range(2)]
        links[0].sendall(hail(1, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")]))
        assert response(links[0], 1)[::3] == (200, b"hello\n")
        links[1].sendall(hail(1, [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo")], 10)
                         + haul(1, b"documen", False) + haul(1, b"ted", True))
        assert response(links[1], 1)[::3] == (200, b"documented")
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0, p.stderr.read()
        assert not sock.exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# ------------------------------------------------------------------ fleet commands and the control API
CONTROL_MD = os.path.join(ROOT, "docs", "control-api.md")
FLEET_VERBS = ("status", "restart", "stop", "start", "signal", "logs", "reload", "drain")
DOC_DIR = "/srv/app"  # where the documented fleet lives


def _same_json(want, got, where="$"):
    """got has want's structure: the same keys and strings, a number where
    want has one."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: {got!r} is not like {want!r}"
        for k in want:
            _same_json(want[k], got[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} is not like {want!r}"
        for i, (w, g) in enumerate(zip(want, got)):
            _same_json(w, g, f"{where}[{i}]")
    elif isinstance(want, (int, float)) and not isinstance(want, bool):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), f"{where}: {got!r} is not a number"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _same_text(want, got):
    def norm(t):
        t = re.sub(r"\d+(\.\d+)?", "N", t)
        return [re.sub(r"[ \t]+", " ", l).strip() for l in t.strip("\n").splitlines()]
    assert norm(got) == norm(want), f"got:\n{got}\nwant:\n{want}"


def _json_lines(text):
    """A JSON document (possibly pretty-printed) or NDJSON lines, else None."""
    import json
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    try:
        return [json.loads(l) for l in text.splitlines() if l.strip()]
    except ValueError:
        return None


def fleet_examples(path):
    """(manifest, [(argv, expected output, line, next manifest or None)]) of
    a page's fleet: next manifest is the text of the ```toml fleet-next
    block written since the previous command, if any."""
    blocks = fenced_blocks(path)
    manifest_text = next(b for info, b, _ in blocks if info == "toml fleet")
    cmds = []
    next_manifest = None
    for info, body, line in blocks:
        if info == "toml fleet-next":
            next_manifest = body
            continue
        if info != "console":
            continue
        lines = body.splitlines(keepends=True)
        if not lines or not lines[0].startswith("$ "):
            continue
        argv = shlex.split(lines[0][2:])
        if argv[0] == "curl" or (argv[0] == "mothership" and len(argv) > 1 and argv[1] in FLEET_VERBS):
            cmds.append((argv, "".join(lines[1:]), line, next_manifest))
            next_manifest = None
    assert next_manifest is None, f"{path}: a toml fleet-next block with no command after it"
    return manifest_text, cmds


def _steady(tmp):
    """Every entry settled (nothing starting or stopping). Asked by the
    socket: the manifest file may be one a reload refuses."""
    import json
    import time
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = run_ms("status", "--json", "--socket", "mothership.ctl", cwd=str(tmp))
        if r.code == 0 and all(e["state"] not in ("starting", "stopping", "backoff", "waiting")
                               for e in json.loads(r.out)["entries"]):
            return
        time.sleep(0.05)
    pytest.fail("the documented fleet did not settle")


@pytest.mark.parametrize("page", [CONTROL_MD, CLI_MD], ids=["control-api.md", "cli.md"])
def test_fleet_examples(fleet, tmp_path, page):
    import subprocess
    manifest_text, cmds = fleet_examples(page)
    assert len(cmds) >= 6
    assert 'control_socket = "mothership.ctl"' in manifest_text
    if page == CLI_MD:  # every fleet command has an example that runs
        assert {argv[1] for argv, *_ in cmds if argv[0] == "mothership"} == set(FLEET_VERBS)
    ms = fleet(manifest_text, name="ship-manifest.toml")
    ms.wait_for(r"fleet ready", timeout=15)
    real = os.path.realpath(tmp_path)
    for argv, want, line, next_manifest in cmds:
        _steady(tmp_path)
        if next_manifest is not None:
            fleet.write(next_manifest, name="ship-manifest.toml")
        if argv[0] == "mothership":
            r = run_ms(*argv[1:], cwd=str(tmp_path), env={"NO_COLOR": "1"})
            out, code = r.out + r.err, r.code
        else:
            p = subprocess.run(argv, cwd=str(tmp_path), capture_output=True, text=True, timeout=20)
            out, code = p.stdout, p.returncode
        assert code in (0, 1), (line, out)
        out = out.replace(real, DOC_DIR).replace(str(tmp_path), DOC_DIR)
        w, g = _json_lines(want), _json_lines(out)
        if w is not None and want.strip():
            assert g is not None, f"{page}:{line}: not JSON: {out}"
            _same_json(w, g, f"{os.path.basename(page)}:{line}")
        else:
            _same_text(want, out)
    assert ms.stop() == 0, ms.output()
