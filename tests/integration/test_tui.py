"""`mothership run --tui`: the dashboard, driven through a real terminal.

Each test starts the real binary in its own tmux server (a private socket,
160x40), sends keys with `send-keys` and reads the screen with
`capture-pane`, waiting for screen content with a deadline (polling every
50 ms) rather than sleeping. Covered: the overview after a crash and a
restart, tab switching, log scrolling and following, `r`, `s`, `q` (the
fleet stops and leaves no process behind), resizing, NO_COLOR, the
plain-output fallback when stdout is not a terminal, and rows coming and
going with a reload (SIGHUP).
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from conftest import noop_payload, BINARY
from fleet_helpers import alive, describe, wait_gone

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

# A worker that prints "line N" (every 5th also to stderr as "warn N"),
# first a burst of 80, then one every 100 ms; its pid goes to ticker.pid.
TICKER = ('echo $$ > ticker.pid; i=0; while [ $i -lt 80 ]; do i=$((i+1)); echo "line $i"; done; '
          'while true; do i=$((i+1)); echo "line $i"; [ $((i % 5)) = 0 ] && echo "warn $i" >&2; '
          'sleep 0.1; done')
# Exits with status 3 on its first run, stays up on the second.
FLAKY = ('if [ -f flaky.ran ]; then echo "second run"; echo $$ > flaky.pid; exec sleep 1000; fi; '
         'touch flaky.ran; echo "first run"; sleep 0.3; exit 3')

MANIFEST = f"""
[[fleet.workers]]
name = "ticker"
command = "sh"
args = ["-c", {json.dumps(TICKER)}]
critical = false
ready_after = "100ms"

[[fleet.workers]]
name = "flaky"
command = "sh"
args = ["-c", {json.dumps(FLAKY)}]
critical = false
ready_after = "100ms"
restart = {{ backoff = "2s" }}

[[fleet.workers]]
name = "steady"
command = "sh"
args = ["-c", "echo $$ > steady.pid; exec sleep 1000"]
ready_after = "100ms"

[[modules]]
name = "auth"
wasm = "auth.wasm"
routes = ["/api/.*"]
"""


class Term:
    """The binary running in a private tmux server."""
    count = 0

    def __init__(self, cwd, args, env=None, width=160, height=40):
        Term.count += 1
        self.sock = f"mstui-{os.getpid()}-{Term.count}"
        self.cwd = str(cwd)
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        cmd = f"{shlex.quote(BINARY)} {' '.join(shlex.quote(a) for a in args)}"
        # after the binary ends, its status stays on screen for the test to read
        script = f"cd {shlex.quote(self.cwd)} && env -u NO_COLOR {envs} {cmd}; echo \"EXITED $?\"; sleep 60"
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), script)

    def tmux(self, *args, check=True):
        p = subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", *args], capture_output=True, text=True,
                           timeout=10)
        if check and p.returncode != 0:
            pytest.fail(f"tmux {' '.join(args)}: {p.stderr}")
        return p.stdout

    def screen(self, escapes=False):
        args = ["capture-pane", "-p", "-t", "t"] + (["-e"] if escapes else [])
        return self.tmux(*args, check=False)

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "t", *keys)

    def wait(self, pattern, timeout=10.0, escapes=False):
        """Poll the screen every 50 ms until the regex matches; the match."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            s = self.screen(escapes)
            m = rx.search(s)
            if m:
                return m
            if time.monotonic() >= deadline:
                pytest.fail(f"screen never matched /{pattern}/ within {timeout}s; screen:\n{s}", pytrace=False)
            time.sleep(0.05)

    def close(self):
        self.tmux("kill-server", check=False)


@pytest.fixture
def term(tmp_path):
    """term(manifest_text, extra args, env) -> a Term running `run --tui`."""
    started = []

    def start(text=MANIFEST, args=(), env=None, width=160, height=40):
        (tmp_path / "ship-manifest.toml").write_text(text)
        (tmp_path / "auth.wasm").write_bytes(noop_payload())
        t = Term(tmp_path, ["run", "--tui", *args], env=env, width=width, height=height)
        started.append(t)
        return t

    yield start
    for t in started:
        t.close()
    # whatever the test did, nothing it started may survive it
    for name in ("ticker.pid", "flaky.pid", "steady.pid"):
        p = tmp_path / name
        if p.exists():
            try:
                pid = int(p.read_text())
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass


def row(name, state=r"\S+(?: \S+)*?", rest="", restarts=r"\d+"):
    """A regex for an overview row: name, group, kind, state, then PID
    (group 1), uptime and restarts (group 2)."""
    return rf"(?m)^[> ] {name}\s+workers\s+worker\s+{state}\s+(\d+|-)\s+\S+\s+({restarts})\b{rest}"


def read_pid(path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(path.read_text())
        except (FileNotFoundError, ValueError):
            if time.monotonic() >= deadline:
                pytest.fail(f"{path} never written")
            time.sleep(0.05)


# ------------------------------------------------------------------ overview
def test_overview_shows_the_crash_backoff_and_restart(term, tmp_path):
    t = term()
    t.wait(r"\[Overview\]")
    t.wait(r"mothership \S+ \| up \d+s \| fleet (running|launching)")
    # flaky exits with 3: backing off with the time left and the exit status
    t.wait(row("flaky", r"backoff \d+\.\ds \(exit 3\)"))
    # then it is started again: ready, a pid, one restart
    m = t.wait(row("flaky", "ready", r"\s+-\s+-"))
    assert m.group(1) != "-" and m.group(2) == "1", t.screen()
    s = t.screen()
    assert re.search(row("ticker", "ready"), s) and re.search(row("steady", "ready"), s), s
    assert re.search(r"^ Tab/S-Tab tabs .*q quit\s+\? help", s, re.M), s
    # the help overlay opens and closes
    t.keys("?")
    t.wait(r"Keys")
    t.wait(r"r\s+restart the selected process")
    t.keys("x")
    t.wait(r"^  NAME\s+GROUP")
    assert "Any key closes" not in t.screen()


# ------------------------------------------------------------------ tabs and logs
def test_tabs_switch_and_logs_scroll_and_follow(term, tmp_path):
    t = term()
    t.wait(row("ticker", "ready"))
    t.keys("Tab")
    t.wait(r"\[Logs\]")
    # the first process is selected: its ring, following, stderr marked
    t.wait(r"ticker: \d+ lines, following")
    t.wait(r"\d\d:\d\d:\d\d ! warn \d+")
    last = int(t.wait(r"line (\d+)\s*\n(?:.*warn.*\n)?(?:\s*\n)* Tab/S-Tab").group(1))
    assert last > 80, t.screen()
    # new lines appear at the bottom while following
    t.wait(rf"line ({last + 3}|{last + 4}|{last + 5}|{last + 6})\s*\n")

    # PgUp: older lines, and the view stays put while new lines arrive
    t.keys("PPage")
    t.wait(r"ticker: line \d+ of \d+, scrolled")
    t.keys("PPage", "PPage", "PPage")
    t.wait(r"\d\d:\d\d:\d\d   line 1\s*$")
    frozen = t.screen().splitlines()[3:-1]
    time.sleep(0.6)  # new output arrives meanwhile (a comparison over time, not a wait)
    assert t.screen().splitlines()[3:-1] == frozen
    # End follows again
    t.keys("End")
    t.wait(r"ticker: \d+ lines, following")
    assert not re.search(r"   line 1\s*$", t.screen(), re.M)

    # merged view: every process, ordered, with its name
    t.keys("m")
    t.wait(r"all processes: \d+ lines, following")
    t.wait(r"ticker\s+\| line \d+")
    t.keys("PPage", "PPage", "PPage", "PPage")
    t.wait(r"steady|flaky\s+\| first run")
    t.keys("Down")  # leaves "all" for the first process
    t.wait(r"ticker: \d+ lines")
    t.keys("Down")
    t.wait(r"flaky: \d+ lines")
    t.wait(r"   first run")

    # Modules, then back with Shift-Tab
    t.keys("Tab")
    t.wait(r"\[Modules\]")
    m = t.wait(r"^  auth\s+request\s+closed\s+-\s+-\s+-\s+/api/\.\*")
    assert m
    t.wait(r"no binds here: no calls")
    t.keys("BTab")
    t.wait(r"\[Logs\]")
    t.keys("Tab", "Tab")
    t.wait(r"\[Overview\]")


# ------------------------------------------------------------------ controls
def test_r_restarts_and_s_stops_and_starts(term, tmp_path):
    t = term()
    m = t.wait(row("steady", "ready"))
    pid0, restarts0 = m.group(1), int(m.group(2))
    # select steady (the third row) and restart it
    t.keys("Down", "Down")
    t.wait(r"^> steady")
    inner0 = read_pid(tmp_path / "steady.pid")
    assert int(pid0) == inner0, "the PID column shows the ship's own process, not its shim"
    (tmp_path / "steady.pid").unlink()
    t.keys("r")
    m = t.wait(row("steady", "ready") + "", timeout=10)
    deadline = time.monotonic() + 10
    while m.group(1) == pid0 and time.monotonic() < deadline:
        time.sleep(0.05)
        m = t.wait(row("steady", "ready"))
    assert m.group(1) != pid0, t.screen()
    assert int(m.group(2)) == restarts0 + 1, t.screen()
    inner1 = read_pid(tmp_path / "steady.pid")
    assert inner1 != inner0 and not alive(inner0)
    assert int(m.group(1)) == inner1

    # s: stopped (no restart), then s again: running with a new pid
    t.keys("s")
    t.wait(row("steady", r"stopped(?: \([^)]*\))?"))
    assert wait_gone([inner1]) == [], describe([inner1])
    time.sleep(0.3)
    assert re.search(row("steady", r"stopped(?: \([^)]*\))?"), t.screen()), t.screen()
    (tmp_path / "steady.pid").unlink()
    t.keys("s")
    m2 = t.wait(row("steady", "ready"))
    assert m2.group(1) not in ("-", m.group(1))
    assert alive(read_pid(tmp_path / "steady.pid"))


def test_q_stops_the_fleet_and_leaves_no_process(term, tmp_path):
    t = term()
    t.wait(row("steady", "ready"))
    t.wait(row("flaky", "ready", restarts="1"))
    t.wait(row("ticker", "ready"))
    s = t.screen()
    shims = [int(m.group(1)) for m in re.finditer(row(r"\w+", "ready"), s, re.M)]
    inner = [read_pid(tmp_path / n) for n in ("ticker.pid", "flaky.pid", "steady.pid")]
    assert len(shims) == 3 and all(alive(p) for p in shims + inner), s
    t.keys("q")
    # the terminal is restored, with how each process ended
    m = t.wait(r"^EXITED (\d+)", timeout=15)
    assert m.group(1) == "0", t.screen()
    s = t.screen()
    assert "mothership: dashboard closed; fleet stopped (exit 0)" in s, s
    assert re.search(r"^  steady\s+worker\s+stopped", s, re.M), s
    assert "[Overview]" not in s, s
    left = wait_gone(shims + inner)
    assert left == [], describe(left)


def test_sigterm_while_the_dashboard_runs_restores_the_terminal(term, tmp_path):
    t = term()
    t.wait(row("steady", "ready"))
    inner = read_pid(tmp_path / "steady.pid")
    out = subprocess.run(["pgrep", "-f", f"^{BINARY} run --tui$"], capture_output=True, text=True).stdout.split()
    mine = [int(p) for p in out if os.path.realpath(f"/proc/{p}/cwd") == os.path.realpath(str(tmp_path))]
    assert len(mine) == 1, out
    os.kill(mine[0], signal.SIGTERM)
    assert t.wait(r"^EXITED (\d+)", timeout=15).group(1) == "0"
    assert "dashboard closed" in t.screen()
    assert wait_gone([inner]) == []


def test_ctrl_backslash_stops_the_fleet_in_order_and_other_signals_are_ignored(term, tmp_path):
    """Ctrl-\\ sends SIGQUIT: a graceful stop, not a core dump that leaves
    the terminal in raw mode; SIGUSR1/SIGUSR2 leave the dashboard running."""
    t = term()
    t.wait(row("steady", "ready"))
    inner = read_pid(tmp_path / "steady.pid")
    out = subprocess.run(["pgrep", "-f", f"^{BINARY} run --tui$"], capture_output=True, text=True).stdout.split()
    mine = [int(p) for p in out if os.path.realpath(f"/proc/{p}/cwd") == os.path.realpath(str(tmp_path))]
    assert len(mine) == 1, out
    os.kill(mine[0], signal.SIGUSR1)
    os.kill(mine[0], signal.SIGUSR2)
    t.keys("Tab")  # a key handled after the signals were sent
    t.wait(r"\[Logs\]")
    assert alive(mine[0]) and "EXITED" not in t.screen(), t.screen()
    t.keys("C-\\")
    assert t.wait(r"^EXITED (\d+)", timeout=15).group(1) == "0", t.screen()
    assert "dashboard closed; fleet stopped (exit 0)" in t.screen()
    assert wait_gone([inner]) == []


# ------------------------------------------------------------------ terminal
def test_resize_redraws_cleanly(term, tmp_path):
    t = term()
    t.wait(row("flaky", "ready", restarts="1"))
    t.tmux("resize-window", "-t", "t", "-x", "90", "-y", "20")
    t.wait(r"^ Tab/S-Tab tabs", timeout=5)
    deadline = time.monotonic() + 5
    while True:
        lines = t.screen().split("\n")
        if lines and lines[0].startswith(" mothership") and len(lines) >= 20 and \
                lines[19].startswith(" Tab/S-Tab"):
            break
        if time.monotonic() >= deadline:
            pytest.fail("no clean redraw at 90x20:\n" + "\n".join(lines))
        time.sleep(0.05)
    assert all(len(l) <= 90 for l in lines), lines
    assert lines[1].startswith(" [Overview]"), lines
    assert re.match(r"^> ticker\s+workers", lines[3]), lines
    # below the three rows and above the key line: nothing left over
    assert all(not l.strip() for l in lines[6:19]), lines
    t.tmux("resize-window", "-t", "t", "-x", "160", "-y", "40")
    t.wait(r"LAST 60s\s+ROUTES")
    lines = t.screen().split("\n")
    t.wait(r"(?s)\A mothership.*\n Tab/S-Tab[^\n]*\n?\Z")
    assert all(not l.strip() for l in lines[6:39]), lines


def test_no_color(term, tmp_path):
    colour = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|4[0-7]|38;|48;)")
    t = term()
    t.wait(row("steady", "ready"))
    assert colour.search(t.screen(escapes=True)), "expected colours without NO_COLOR"
    t.keys("q")
    t.wait(r"^EXITED")
    t.close()
    t = term(env={"NO_COLOR": "1"})
    t.wait(row("steady", "ready"))
    s = t.screen(escapes=True)
    assert not colour.search(s), repr(s[:400])
    assert "\x1b[7m" in s  # the selection is still shown, in reverse video


def test_not_a_terminal_falls_back_to_plain_logs(tmp_path):
    (tmp_path / "ship-manifest.toml").write_text(MANIFEST)
    (tmp_path / "auth.wasm").write_bytes(noop_payload())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MS_")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)  # its own control socket, without MS_SOCKET_DIR
    p = subprocess.Popen([BINARY, "run", "--tui"], cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first_err = p.stderr.readline()
        assert first_err == "mothership: --tui needs a terminal; showing plain logs\n"
        deadline = time.monotonic() + 10
        seen = ""
        while "fleet ready" not in seen and time.monotonic() < deadline:
            seen += p.stdout.readline()
        assert re.search(r"ticker\s+\| line 3", seen), seen
        assert "fleet ready" in seen, seen
        assert "\x1b" not in seen
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
    assert p.returncode == 0


def test_a_bay_row_shows_its_connected_clients(term, tmp_path):
    import asyncio

    import websockets

    from conftest import BUILD
    from fleet_helpers import free_port
    port = free_port()
    t = term(f"""
[mothership]
socket_dir = "{tmp_path}/sock"

[mothership.bind]
http = "127.0.0.1:{port}"

[[bays.websocket]]
name = "chat"
command = "{os.path.join(BUILD, 'examples', 'bays', 'chat-bay')}"
routes = ["http:/ws"]
""")
    t.wait(r"chat\s+websocket\s+bay\s+ready.*0 clients  http:/ws")

    async def go():
        conns = [await websockets.connect(f"ws://127.0.0.1:{port}/ws") for _ in range(3)]
        await asyncio.get_running_loop().run_in_executor(None, lambda: t.wait(r"3 clients  http:/ws"))
        for ws in conns:
            await ws.close()
    asyncio.run(asyncio.wait_for(go(), 30))
    t.wait(r"0 clients  http:/ws")
    t.keys("q")
    t.wait(r"EXITED 0")


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_a_reload_adds_and_removes_rows(term, tmp_path):
    def worker(name):
        return (f'[[fleet.workers]]\nname = "{name}"\ncommand = "sh"\n'
                f'args = ["-c", "echo $$ > {name}.pid; exec sleep 1000"]\nready_after = "100ms"\n')
    t = term(worker("steady") + worker("gone"))
    steady = t.wait(row("steady", "ready")).group(1)
    t.wait(row("gone", "ready"))
    t.keys("Down")
    t.wait(r"^> gone")
    gone = read_pid(tmp_path / "gone.pid")
    inner = read_pid(tmp_path / "steady.pid")
    ms = parent_of(parent_of(inner))  # the ship's shim, then Mothership
    (tmp_path / "ship-manifest.toml").write_text(worker("steady") + worker("fresh"))
    os.kill(ms, signal.SIGHUP)
    t.wait(row("fresh", "ready"))
    assert wait_gone([gone]) == [], describe([gone])
    screen = t.screen()
    assert not re.search(row("gone"), screen), screen
    assert re.search(r"^> fresh", screen, re.M), screen
    assert t.wait(row("steady", "ready")).group(1) == steady


def test_keys_and_the_control_socket_are_one_operation(term, tmp_path):
    """r on the dashboard and `mothership restart` do the same thing, and
    each sees what the other did."""
    t = term()
    m = t.wait(row("steady", "ready"))
    pid0, restarts0 = m.group(1), int(m.group(2))
    manifest_path = str(tmp_path / "ship-manifest.toml")

    def steady():
        r = subprocess.run([BINARY, "status", "--json", "-c", manifest_path], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 0, r
        return next(e for e in json.loads(r.stdout)["entries"] if e["name"] == "steady")

    t.keys("Down", "Down")
    t.wait(r"^> steady")
    t.keys("r")
    deadline = time.monotonic() + 10
    while not (steady()["restarts"] == restarts0 + 1 and steady()["state"] == "ready"):
        assert time.monotonic() < deadline, t.screen()
        time.sleep(0.05)
    r = subprocess.run([BINARY, "restart", "steady", "-c", manifest_path], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and r.stdout == "restart: steady\n", r
    m = t.wait(row("steady", "ready", restarts=str(restarts0 + 2)), timeout=10)
    assert m.group(1) != pid0
    r = subprocess.run([BINARY, "stop", "steady", "-c", manifest_path], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    t.wait(row("steady", r"stopped(?: \([^)]*\))?"))
    t.keys("s")  # the key starts what the socket stopped
    t.wait(row("steady", "ready"))


def test_s_on_a_ship_stopping_for_a_reload_stops_it_for_good(term, tmp_path):
    """A reload changed slow, whose old process ignores SIGTERM and is
    still stopping; the user stops it with s: it stays stopped (the
    restart the reload asked for gives way), until s starts it again."""
    def slow(version):
        return (f'[[fleet.workers]]\nname = "slow"\ncommand = "sh"\n'
                f'args = ["-c", "trap \'\' TERM; echo $$ > slow.pid; exec sleep 100{version}"]\n'
                f'ready_after = "100ms"\nshutdown_timeout = "1s"\n')
    steady = ('[[fleet.workers]]\nname = "steady"\ncommand = "sh"\n'
              'args = ["-c", "echo $$ > steady.pid; exec sleep 1000"]\nready_after = "100ms"\n')
    t = term(slow(0) + steady)
    t.wait(row("slow", "ready"))
    t.wait(r"^> slow")
    first = read_pid(tmp_path / "slow.pid")
    (tmp_path / "slow.pid").unlink()
    ms = parent_of(parent_of(read_pid(tmp_path / "steady.pid")))  # the ship's shim, then Mothership
    (tmp_path / "ship-manifest.toml").write_text(slow(1) + steady)
    os.kill(ms, signal.SIGHUP)
    t.wait(row("slow", "stopping"))
    t.keys("s")
    t.wait(row("slow", r"stopped(?: \([^)]*\))?"), timeout=10)
    assert wait_gone([first]) == [], describe([first])
    time.sleep(0.5)  # nothing to await: a restart would come at once
    assert re.search(row("slow", r"stopped(?: \([^)]*\))?"), t.screen()), t.screen()
    assert not (tmp_path / "slow.pid").exists()
    t.keys("s")
    t.wait(row("slow", "ready"))
    with open(f"/proc/{read_pid(tmp_path / 'slow.pid')}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"1001"]  # the new definition


def test_an_upstream_row_says_upstream_and_where(term, tmp_path):
    from fleet_helpers import free_port
    port = free_port()
    t = term(f"""
[mothership]
socket_dir = "{tmp_path}/sock"

[mothership.bind]
http = "127.0.0.1:{port}"

[[mothership.upstreams]]
name = "rack"
bind = "unix://{tmp_path}/rack.sock"
routes = ["http:/rack/.*"]
""")
    t.wait(r"rack\s+upstream\s+upstream\s+ready\s.*at unix://")
    t.keys("q")
    t.wait(r"EXITED 0")
