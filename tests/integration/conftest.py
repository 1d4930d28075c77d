"""Shared fixtures for the integration tests: they run the real binary
(MS_BUILD/mothership, default build/mothership) with real files, processes
and sockets."""
import os
import subprocess
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("MS_BUILD", os.path.join(ROOT, "build"))
BINARY = os.path.join(BUILD, "mothership")

# Every Mothership the tests start without a socket dir of their own uses
# this run's private one, not the default /tmp/mothership: a fleet left
# running by anything else on the machine (another checkout's tests, a
# make run) holds the default control socket, and ours would refuse to start.
if not os.environ.get("MS_SOCKET_DIR"):
    import tempfile
    os.environ["MS_SOCKET_DIR"] = tempfile.mkdtemp(prefix="ms-run-")
SESSION_SOCKET_DIR = os.environ["MS_SOCKET_DIR"]
# Likewise the state dir (self-signed certificates, ACME accounts and
# certificates): a fleet without state_dir keeps it in this run's own, not
# in the user's ~/.local/state/mothership.
if not os.environ.get("MS_STATE_DIR"):
    import tempfile
    os.environ["MS_STATE_DIR"] = tempfile.mkdtemp(prefix="ms-state-")


class Result:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: builds something big (the Debian packages); part of make test")


def run_ms(*args, cwd=None, env=None, timeout=30):
    """Run the mothership binary to completion and return its Result."""
    full_env = dict(os.environ)
    full_env.pop("NO_COLOR", None)
    if env:
        full_env.update(env)
    p = subprocess.run([BINARY, *args], cwd=cwd, env=full_env, capture_output=True,
                       text=True, timeout=timeout)
    return Result(p)


def clearance_refuses(tmp_path, text, error):
    """`clearance` of text (as written, line for line) in
    tmp_path/ship-manifest.toml exits 1 and says error; its Result."""
    (tmp_path / "ship-manifest.toml").write_text(text)
    r = run_ms("clearance", "-c", "ship-manifest.toml", cwd=str(tmp_path))
    assert r.code == 1, r
    assert error in r.out + r.err, r
    return r


@pytest.fixture
def manifest(tmp_path):
    """Write a manifest (dedented) into tmp_path; returns its path."""
    def write(text, name="ship-manifest.toml"):
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).lstrip("\n"))
        return str(p)
    return write


# `fleet`: starts `mothership run` with piped, awaited output (test_fleet*.py).
from fleet_helpers import fleet  # noqa: E402,F401


_NOOP_PAYLOAD = None


def noop_payload():
    """A valid WASM payload that does nothing (exports memory, on_request and
    on_response, so it fits either phase): what tests write where a manifest
    names a module file, since clearance decodes and checks every module."""
    global _NOOP_PAYLOAD
    if _NOOP_PAYLOAD is None:
        import tempfile
        wat = ('(module (memory (export "memory") 1)'
               ' (func (export "on_request") (result i32) i32.const 0)'
               ' (func (export "on_response") (result i32) i32.const 0))')
        with tempfile.TemporaryDirectory() as d:
            src, out = os.path.join(d, "noop.wat"), os.path.join(d, "noop.wasm")
            with open(src, "w") as f:
                f.write(wat)
            subprocess.run(["wat2wasm", src, "-o", out], check=True)
            with open(out, "rb") as f:
                _NOOP_PAYLOAD = f.read()
    return _NOOP_PAYLOAD
