"""env_file and secret_env through the real binary: the dotenv format and
the precedence a ship sees, errors with the file's line, a reload that reads
a changed env file, and secrets that reach the ship and nothing else (logs,
status, chart, clearance, the control API)."""
import json
import os
import shutil
import tempfile

import pytest

from conftest import run_ms
from fleet_helpers import PY, app, ctl, toml_str, wait_file

DOTENV = r"""# comment line
export PLAIN=plain value   # a comment after a blank
  SPACED = padded
HASH=a#b
SINGLE='kept $HOME \n as is'
DOUBLE="line1\nline2 \"q\" \$HOME"
MULTI="first
second"
SUBST=$(touch /tmp/ms-dotenv-ran)
EMPTY=
FROMFILE=file
OVERRIDE=file
"""


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="msenv-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_env_file_format_and_precedence(fleet, tmp_path):
    (tmp_path / "a.env").write_text(DOTENV)
    (tmp_path / "b.env").write_text("LATER=b\nFROMFILE=second file\nGLOBAL=file\n")
    out = tmp_path / "env.json"
    ms = fleet(f"""
        [mothership.env]
        GLOBAL = "global"
        OVERRIDE = "global"

        [base.ship]
        env = {{ BASE = "base" }}

        [[fleet.jobs]]
        name = "dump"
        command = {toml_str(PY)}
        args = [{toml_str(app("envdump.py"))}, "{out}"]
        oneshot = true
        env_file = ["a.env", "b.env"]
        env = {{ OVERRIDE = "ship" }}
    """)
    ms.event("done", ship="dump")
    env = json.loads(out.read_text())
    assert env["PLAIN"] == "plain value"
    assert env["SPACED"] == "padded"
    assert env["HASH"] == "a#b"
    assert env["SINGLE"] == "kept $HOME \\n as is"
    assert env["DOUBLE"] == 'line1\nline2 "q" $HOME'
    assert env["MULTI"] == "first\nsecond"
    assert env["SUBST"] == "$(touch /tmp/ms-dotenv-ran)"  # nothing is run
    assert env["EMPTY"] == ""
    assert env["FROMFILE"] == "second file"      # a later file wins
    assert env["GLOBAL"] == "file"               # env_file over [mothership.env]
    assert env["OVERRIDE"] == "ship"             # env over env_file
    assert env["BASE"] == "base" and env["LATER"] == "b"
    assert ms.stop() == 0, ms.output()


@pytest.mark.parametrize("text, line, why", [
    ("OK=1\n\n3BAD=x\n", 3, "expected KEY=VALUE"),
    ("OK=1\nNOEQUALS\n", 2, "expected '=' after the key"),
    ("A=\"open\nB=2\n", 1, "unterminated double-quoted value"),
    ("A='x' trailing\n", 1, "unexpected text after the closing quote"),
    ("A=\"\\q\"\n", 1, "unknown escape"),
])
def test_env_file_errors_name_the_file_and_line(manifest, tmp_path, text, line, why):
    (tmp_path / "app.env").write_text(text)
    path = manifest("""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        env_file = "app.env"
    """)
    r = run_ms("clearance", "-c", path)
    assert r.code == 1, r
    assert f'ship "web": env_file {tmp_path}/app.env:{line}: {why}' in r.err, r


def test_env_file_missing(manifest, tmp_path):
    path = manifest("""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        env_file = ["nope.env"]
    """)
    r = run_ms("clearance", "-c", path)
    assert r.code == 1, r
    assert f'ship-manifest.toml:4:12: ship "web": env_file "{tmp_path}/nope.env": No such file or directory' in r.err, r


def test_reload_reads_a_changed_env_file(fleet, tmp_path):
    (tmp_path / "app.env").write_text("MODE=one\n")
    out = tmp_path / "env.json"
    ms = fleet(f"""
        [[fleet.web]]
        name = "web"
        command = {toml_str(PY)}
        args = [{toml_str(app("envdump.py"))}, "{out}", "stay"]
        ready_after = "50ms"
        env_file = "app.env"
    """)
    ms.event("fleet_ready")
    assert json.loads(wait_file(out))["MODE"] == "one"
    out.unlink()
    (tmp_path / "app.env").write_text("MODE=two\n")
    ms.signal(1)  # SIGHUP: reload
    r = ms.event("reloaded")
    assert "1 restarted (web: env.MODE)" in r["msg"], r
    assert json.loads(wait_file(out))["MODE"] == "two"
    assert ms.stop() == 0, ms.output()


SECRET = "s3cr3t-Value-42"


def test_secret_env_reaches_the_ship_and_nothing_else(fleet, tmp_path, sockdir):
    secret = tmp_path / "db_password"
    secret.write_text(SECRET + "\n")
    out = tmp_path / "env.json"
    ms = fleet(f"""
        [mothership]
        socket_dir = "{sockdir}"

        [[fleet.web]]
        name = "web"
        command = {toml_str(PY)}
        args = [{toml_str(app("envdump.py"))}, "{out}", "stay"]
        ready_after = "50ms"
        secret_env = {{ DB_PASSWORD = "db_password" }}
        env = {{ DB_PASSWORD = "from env, overridden" }}
    """, name="ship-manifest.toml")
    ms.event("fleet_ready")
    env = json.loads(wait_file(out))
    assert env["DB_PASSWORD"] == SECRET  # trailing newline stripped, over env
    path = str(tmp_path / "ship-manifest.toml")
    seen = []
    for args in (["status", "--json"], ["status"], ["chart", "--json"], ["chart"], ["clearance"],
                 ["logs", "web"], ["reload", "--check"]):
        r = ctl(path, *args)
        assert r.returncode == 0, (args, r)
        seen.append(r.stdout + r.stderr)
        if args == ["clearance"]:  # named, with its file, never its value
            assert f"DB_PASSWORD (secret from {secret})" in r.stdout, r
    # a new value is read at the next start (restart), not by a reload
    out.unlink()
    secret.write_text("second-" + SECRET)
    assert ctl(path, "restart", "web").returncode == 0
    assert json.loads(wait_file(out))["DB_PASSWORD"] == "second-" + SECRET
    assert ms.stop() == 0, ms.output()
    seen.append(ms.output())
    for text in seen:
        assert SECRET not in text, text


def test_missing_secret_is_a_spawn_failure(fleet, tmp_path):
    ms = fleet("""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        args = ["100"]
        secret_env = { API_KEY = "/nonexistent/api_key" }
    """)
    e = ms.event("spawn_failed", ship="web")
    assert 'secret_env API_KEY: cannot read "/nonexistent/api_key": No such file or directory' in e["msg"], e
    assert ms.wait_exit() == 1, ms.output()


@pytest.mark.parametrize("value, why", [
    ("3", '"env_file" must be a path or an array of paths, not an integer'),
    ('[""]', '"env_file": item 1 must not be empty'),
    ('{ a = "b" }', '"env_file" must be a path or an array of paths, not a table'),
])
def test_env_file_value_errors(manifest, value, why):
    path = manifest(f"""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        env_file = {value}
    """)
    r = run_ms("clearance", "-c", path)
    assert r.code == 1, r
    assert f'ship "web": {why}' in r.err, r


def test_secret_env_value_errors(manifest):
    path = manifest("""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        secret_env = { A = 3, "B=C" = "/x" }
    """)
    r = run_ms("clearance", "-c", path)
    assert r.code == 1, r
    assert '"secret_env.A" must be the path of the file holding the value' in r.err, r
    assert '"secret_env": invalid environment variable name "B=C"' in r.err, r


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "dir"])
def test_env_file_not_a_regular_file(manifest, tmp_path, kind):
    """A FIFO must not hang the load (open waits for a writer), nor a device
    be read: only a regular file is an env file."""
    target = {"fifo": str(tmp_path / "app.env"), "dev_zero": "/dev/zero", "dir": str(tmp_path)}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    path = manifest(f"""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        env_file = {toml_str(target)}
    """)
    r = run_ms("clearance", "-c", path, timeout=10)
    assert r.code == 1, r
    assert f'ship "web": env_file "{target}": not a regular file' in r.err, r


def test_secret_in_a_fifo_is_a_spawn_failure_not_a_hang(fleet, tmp_path):
    """open() of a FIFO waits for a writer: at spawn, on the event loop, it
    would freeze the whole supervisor. It is a spawn failure instead."""
    fifo = tmp_path / "api_key"
    os.mkfifo(fifo)
    ms = fleet(f"""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        args = ["100"]
        secret_env = {{ API_KEY = "{fifo}" }}
    """)
    e = ms.event("spawn_failed", ship="web")
    assert f'secret_env API_KEY: cannot read "{fifo}": not a regular file' in e["msg"], e
    assert ms.wait_exit() == 1, ms.output()


def test_env_file_with_too_many_variables(manifest, tmp_path):
    """Under the 1 MiB cap a file still holds 100k short lines: an entry's
    env files set at most 4096 variables, a clear error past that (the maps
    are searched linearly: 100k variables cost minutes at load and at each
    spawn)."""
    (tmp_path / "app.env").write_text("".join(f"V{i}=\n" for i in range(100000)))
    (tmp_path / "ok.env").write_text("".join(f"V{i}=x\n" for i in range(4096)))
    path = manifest("""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        env_file = "ok.env"

        [[fleet.web]]
        name = "big"
        command = "sleep"
        env_file = "app.env"
    """)
    r = run_ms("clearance", "-c", path, timeout=20)
    assert r.code == 1, r
    assert f'ship "big": env_file "{tmp_path}/app.env": more than 4096 variables' in r.err, r
    assert '"web"' not in r.err, r


def test_env_file_list_is_bounded(manifest, tmp_path):
    """Each env file is read (up to 1 MiB) at every load: a manifest naming
    one file a million times would read for minutes. 64 files at most."""
    (tmp_path / "big.env").write_text("A=" + "x" * (1 << 19) + "\n")
    path = manifest(f"""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        env_file = [{", ".join(['"big.env"'] * 5000)}]
    """)
    r = run_ms("clearance", "-c", path, timeout=60)
    assert r.code == 1, r
    assert '"env_file": 5000 files, at most 64' in r.err, r
