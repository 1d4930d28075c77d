"""Helpers for the fleet integration tests (test_fleet*.py): run the real
`mothership run` with its output piped into a reader thread, wait for lines
or events instead of sleeping, scrape /metrics and /health, and check that
processes are gone by polling /proc with a deadline.

Usage in a test:

    def test_x(fleet):
        ms = fleet('''
            [[fleet.web]]
            name = "app"
            ...
        ''')                      # starts `mothership run -c ... --log-format json`
        ms.event("ready", ship="app")
        ms.stop()                 # SIGTERM, then the exit status
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import BINARY

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
PY = sys.executable or "/usr/bin/python3"


def app(name):
    """Absolute path of a helper program in tests/integration/apps/."""
    return os.path.join(APPS, name)


_HANDED_OUT = set()


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on (bound to 0, then closed),
    never one this test run handed out before: the kernel may give a port
    back once it is closed, and two picked for one manifest (a ship's and the
    metrics listener's) must differ."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def free_port_run(n):
    """A base port with base .. base+n-1 all free on 127.0.0.1, for a ship
    with instances ({port} of both generations). Below the ephemeral range,
    so that the clients' own outgoing connections cannot take one of them
    between the pick and the ship's bind; never one this run handed out."""
    import random
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(500):
        base = rng.randrange(20000, 32000 - n)
        ports = range(base, base + n)
        if any(p in _HANDED_OUT for p in ports):
            continue
        socks = []
        try:
            for p in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        _HANDED_OUT.update(ports)
        return base
    pytest.fail("no run of free ports found")


def toml_str(s):
    return json.dumps(str(s))


# ------------------------------------------------------------------ processes
def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # state is the field after the parenthesised command name
    return stat[stat.rindex(")") + 2] not in "ZX"


def rss_kib(pid):
    """Resident set size of pid, in KiB (VmRSS from /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_gone(pids, timeout=5.0):
    """Poll /proc until none of pids is alive; return the survivors (empty on
    success) after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def describe(pids):
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{p}: {cmd}")
        except OSError:
            out.append(f"{p}: ?")
    return "; ".join(out)


def wait_file(path, timeout=5.0, predicate=None):
    """Poll until path exists (and predicate(text) holds); return its text."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                text = f.read()
            if predicate is None or predicate(text):
                return text
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            pytest.fail(f"{path} did not appear (or not as expected) within {timeout}s")
        time.sleep(0.02)


# ------------------------------------------------------------------ control
def ctl(path, *args, timeout=30):
    """`mothership ARGS -c path`, run from the manifest's folder."""
    return subprocess.run([BINARY, *args, "-c", path], capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(path))


def ctl_status(path):
    """`status --json` of the fleet of manifest path: {name: entry}."""
    r = ctl(path, "status", "--json")
    assert r.returncode == 0, r
    return {e["name"]: e for e in json.loads(r.stdout)["entries"]}


# ------------------------------------------------------------------ HTTP
def http_get(port, path, timeout=2.0):
    """(status, body) of GET http://127.0.0.1:port/path; HTTP errors included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): float} of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    """The value of the sample with exactly these labels, or None."""
    return samples.get((name, frozenset(labels.items())))


# ------------------------------------------------------------------ Mothership
class Mothership:
    """`mothership run` with stdout and stderr read by threads into lists."""

    def __init__(self, args, cwd=None, env=None, json_logs=True, read=True, stdin=subprocess.DEVNULL):
        full_env = dict(os.environ)
        full_env.pop("NO_COLOR", None)
        for k in [k for k in full_env if k.startswith("MS_")]:
            del full_env[k]
        if env:
            full_env.update(env)
        # Each Mothership its own socket dir, unless the test names one: two
        # fleets on one socket dir share a control socket, and the second
        # would refuse to start. (A manifest's socket_dir still wins.)
        self.own_sockdir = None
        if "MS_SOCKET_DIR" not in full_env:
            import tempfile
            self.own_sockdir = tempfile.mkdtemp(prefix="ms-")
            full_env["MS_SOCKET_DIR"] = self.own_sockdir
        self.json = json_logs
        cmd = [BINARY, "run", *args]
        if json_logs:
            cmd += ["--log-format", "json"]
        self.cmd = cmd
        self.lines = []
        self.err_lines = []
        self.cond = threading.Condition()
        self.closed = 0
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err_lines), daemon=True)]
        self.reading = False
        if read:
            self.start_reading()

    def start_reading(self):
        """Start the reader threads (with read=False, the output pipe is
        left unread until then: a slow consumer)."""
        if not self.reading:
            self.reading = True
            for t in self.threads:
                t.start()

    def _read(self, stream, into):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            with self.cond:
                into.append((time.monotonic(), line))
                self.cond.notify_all()
        with self.cond:
            self.closed += 1
            self.cond.notify_all()

    # -------------------------------------------------------------- output
    def output(self):
        with self.cond:
            out = [l for _, l in self.lines]
            err = [l for _, l in self.err_lines]
        text = "\n".join(out)
        if err:
            text += "\n--- stderr ---\n" + "\n".join(err)
        return text

    def _fail(self, what, timeout):
        pytest.fail(f"timed out after {timeout}s waiting for {what}; "
                    f"mothership exit={self.proc.poll()}\n--- output so far ---\n{self.output()}",
                    pytrace=False)

    def _scan(self, match, start, timeout, what, stream="out"):
        """Block until match(line) is truthy for a line at index >= start;
        return (index, time, result)."""
        deadline = time.monotonic() + timeout
        src = self.lines if stream == "out" else self.err_lines
        i = start
        with self.cond:
            while True:
                while i < len(src):
                    t, line = src[i]
                    r = match(line)
                    if r:
                        return i, t, r
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.closed == 2:
                    break
                self.cond.wait(min(left, 0.1))
        self._fail(what, timeout)

    def wait_for(self, regex, timeout=10.0, start=0, stream="out"):
        """The first line (from index start) matching regex: re.Match with
        .index and .time (monotonic arrival) attributes set on a wrapper."""
        rx = re.compile(regex)
        i, t, m = self._scan(rx.search, start, timeout, f"/{regex}/", stream)
        return Hit(i, t, m.group(0), m)

    def events(self, event=None, ship=None):
        """Every JSON event logged so far (optionally filtered), in order."""
        out = []
        with self.cond:
            lines = list(self.lines)
        for i, (t, line) in enumerate(lines):
            e = self._event(line, event, ship)
            if e:
                e["_i"], e["_t"] = i, t
                out.append(e)
        return out

    @staticmethod
    def _event(line, event=None, ship=None):
        if not line.startswith("{"):
            return None
        try:
            e = json.loads(line)
        except ValueError:
            return None
        if e.get("source") != "mothership":
            return None
        if event is not None and e.get("event") != event:
            return None
        if ship is not None and e.get("ship") != ship:
            return None
        return e

    def event(self, event, ship=None, timeout=10.0, start=0, msg=None):
        """Block until a JSON event (with this ship, and msg matching the
        regex msg if given) is logged; return it as a dict with _i (line
        index) and _t (arrival time)."""
        rx = re.compile(msg) if msg else None

        def match(line):
            e = self._event(line, event, ship)
            if e and (rx is None or rx.search(e.get("msg", ""))):
                return e
            return None

        i, t, e = self._scan(match, start, timeout,
                             f"event {event!r}" + (f" of {ship!r}" if ship else "") + (f" /{msg}/" if msg else ""))
        e["_i"], e["_t"] = i, t
        return e

    def child_lines(self, source):
        out = []
        with self.cond:
            lines = list(self.lines)
        for _, line in lines:
            if line.startswith("{"):
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("source") == source:
                    out.append(e)
        return out

    # -------------------------------------------------------------- process
    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait_exit(self, timeout=10.0):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._fail("mothership to exit", timeout)
        for t in self.threads:
            if self.reading:
                t.join(2)
        return code

    def stop(self, timeout=10.0):
        """SIGTERM, then the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self):
        """Leave nothing behind: SIGKILL Mothership and its process group."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self.own_sockdir:
            import shutil
            shutil.rmtree(self.own_sockdir, ignore_errors=True)
        for s in (self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except Exception:
                pass


class Hit:
    def __init__(self, index, time, text, match):
        self.index = index
        self.time = time
        self.text = text
        self.match = match

    def group(self, *a):
        return self.match.group(*a)


def event_ms(e):
    """An event's own timestamp (ISO 8601, ms) as seconds since the epoch."""
    from datetime import datetime
    return datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


# ------------------------------------------------------------------ fixture
class FleetFactory:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.started = []
        self.pidfiles = []
        self.n = 0

    def write(self, text, name=None):
        self.n += 1
        p = self.tmp / (name or f"ship-manifest-{self.n}.toml")
        p.write_text(textwrap.dedent(text).lstrip("\n"))
        return str(p)

    def __call__(self, text, *args, env=None, json_logs=True, name=None, read=True):
        path = self.write(text, name)
        ms = Mothership(["-c", path, *args], cwd=str(self.tmp), env=env, json_logs=json_logs, read=read)
        self.started.append(ms)
        return ms

    def pids_from(self, path):
        """Register a file of pids (one a line) written by a helper: teardown
        kills whatever of them is still alive."""
        self.pidfiles.append(str(path))

    def cleanup(self):
        for ms in self.started:
            ms.start_reading()
            if ms.proc.poll() is None:
                ms.signal(signal.SIGTERM)
                try:
                    ms.proc.wait(3)
                except subprocess.TimeoutExpired:
                    pass
            ms.kill()
        for pf in self.pidfiles:
            try:
                with open(pf) as f:
                    pids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            for p in pids:
                if alive(p):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass


@pytest.fixture
def fleet(tmp_path):
    """A factory: fleet(manifest_text, *extra_args) starts `mothership run`
    on that manifest (written into tmp_path, cwd tmp_path, JSON logs) and
    returns a Mothership. Everything is killed at teardown."""
    f = FleetFactory(tmp_path)
    yield f
    f.cleanup()
