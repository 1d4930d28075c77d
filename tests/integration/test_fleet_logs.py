"""`mothership run`, logs: children's lines prefixed with their name (stdout
`|`, stderr `!`), long lines split into 8192-byte pieces marked `|+`, a last
line without a newline, Mothership's own events, colour only on a TTY and
never with NO_COLOR, `--log-format json` line by line, and a slow reader of
Mothership's output never blocking a child (lines dropped and counted), nor
Mothership's exit when nobody reads its output at all."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

from conftest import BINARY
from fleet_helpers import PY, free_port, http_get, metric, parse_metrics, toml_str, wait_file, wait_gone

F_GETPIPE_SZ = 1032

PIECE = 8192
LONG = "".join(chr(ord("a") + i % 26) for i in range(20000))
PRINTER = (
    "import sys\n"
    "print('hello out', flush=True)\n"
    "sys.stderr.write('oops on stderr\\n'); sys.stderr.flush()\n"
    "sys.stdout.write(''.join(chr(97 + i % 26) for i in range(20000)) + '\\n')\n"
    "sys.stdout.write('windows line\\r\\n')\n"
    "sys.stdout.write('no newline at the end')\n"
)


def printer_manifest(name="printer", source=PRINTER):
    return f"""
        [[fleet.jobs]]
        name = "{name}"
        command = {toml_str(PY)}
        args = ["-c", {toml_str(source)}]
        oneshot = true
    """


def job_lines(fleet, name, source):
    """Run a Python oneshot to its end: the records of its output."""
    ms = fleet(printer_manifest(name, source))
    ms.event("done", ship=name)
    assert ms.stop() == 0
    return ms.child_lines(name)


TS = r"\d\d:\d\d:\d\d\.\d{3}"


def test_text_log_prefixes_and_long_lines(fleet):
    ms = fleet(printer_manifest(), json_logs=False)
    ms.wait_for(rf'^{TS} mothership   \| job "printer" finished in \d+ms \(exit 0\)$')
    ms.wait_for(rf'^{TS} mothership   \| fleet ready: 1 entry in \d+ms$')
    out = ms.output()
    lines = out.splitlines()
    assert "\033[" not in out, "colour on a pipe"
    assert re.search(rf"^{TS} printer      \| hello out$", out, re.M), out
    assert re.search(rf"^{TS} printer      ! oops on stderr$", out, re.M), out
    assert re.search(rf"^{TS} printer      \| windows line$", out, re.M), out
    assert re.search(rf"^{TS} printer      \| no newline at the end$", out, re.M), out
    assert re.search(rf'^{TS} mothership   \| job "printer" started \(pid \d+\)$', out, re.M), out
    pieces = [(m.group(1), m.group(2)) for l in lines
              for m in [re.match(rf"^{TS} printer      (\|\+?) ([a-z]+)$", l)] if m and len(m.group(2)) > 100]
    assert [(mark, len(text)) for mark, text in pieces] == [("|", PIECE), ("|+", PIECE), ("|+", 20000 - 2 * PIECE)], \
        [(mark, len(text)) for mark, text in pieces]
    assert "".join(text for _, text in pieces) == LONG
    assert ms.stop() == 0
    assert re.search(rf"^{TS} mothership   \| stopping the fleet: SIGTERM received$", ms.output(), re.M)


def test_json_logs_parse_line_by_line(fleet):
    ms = fleet(printer_manifest())
    ms.event("done", ship="printer")
    ms.event("fleet_ready")
    assert ms.stop() == 0
    records = []
    for _, line in ms.lines:
        records.append(json.loads(line))  # every line is one JSON object
    children = [r for r in records if r["source"] == "printer"]
    events = [r for r in records if r["source"] == "mothership"]
    for r in children:
        assert set(r) - {"continued"} == {"ts", "level", "source", "stream", "msg"}, r
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"]), r
    for r in events:
        assert {"ts", "source", "level", "msg"} <= set(r), r
        assert r["level"] in ("info", "warn", "error")
    assert {"ts", "source", "level", "ship", "event", "msg"} <= set(
        next(r for r in events if r.get("event") == "started"))
    short = [(r["stream"], r["msg"]) for r in children if len(r["msg"]) < 100]
    # stdout and stderr are separate pipes: only each stream's own order is kept
    assert [l for s, l in short if s == "stdout"] == ["hello out", "windows line", "no newline at the end"], short
    assert [l for s, l in short if s == "stderr"] == ["oops on stderr"], short
    long = [r for r in children if len(r["msg"]) >= 100]
    assert [(len(r["msg"]), r.get("continued", False)) for r in long] == [
        (PIECE, False), (PIECE, True), (20000 - 2 * PIECE, True)], long
    assert "".join(r["msg"] for r in long) == LONG
    names = [r.get("event") for r in events]
    for e in ("launch", "started", "done", "fleet_ready", "shutdown", "stopped"):
        assert e in names, names


# 3000 three-byte characters (9000 bytes): the 8192-byte cut falls inside
# the 2731st; then a four-byte one placed across the cut
WIDE = "\u20ac" * 3000
EMOJI = "a" * (PIECE - 2) + "\U0001F600" + "b" * 10
WIDE_PRINTER = (
    "import sys\n"
    f"sys.stdout.buffer.write({WIDE.encode()!r} + b'\\n')\n"
    f"sys.stdout.buffer.write({EMOJI.encode()!r} + b'\\n')\n"
)


def test_a_long_line_is_never_cut_inside_a_character(fleet):
    """Each piece of a split line ends on a character boundary: the pieces
    put together give back the line, with no U+FFFD either side of a cut."""
    pieces = job_lines(fleet, "wide", WIDE_PRINTER)
    lines, cur = [], None
    for r in pieces:
        assert len(r["msg"].encode()) <= PIECE, r
        if r.get("continued"):
            cur += r["msg"]
        else:
            if cur is not None:
                lines.append(cur)
            cur = r["msg"]
    lines.append(cur)
    assert "\ufffd" not in "".join(lines)
    assert lines == [WIDE, EMOJI]


def test_json_keeps_a_whole_line_of_control_bytes(fleet):
    """Escaped, a control byte takes six bytes ("\\u0001"): a piece made of
    them still comes whole in its JSON line, as it does in text."""
    line = "\x01\x1b" * 4000 + "end"
    printer = f"import sys; sys.stdout.buffer.write({line.encode()!r} + b'\\n')"
    assert [r["msg"] for r in job_lines(fleet, "ctl", printer)] == [line]


def run_on_tty(path, env_extra):
    """Run mothership on a pseudo-terminal until the fleet is ready, then
    SIGTERM it; return everything it wrote."""
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    env.update(env_extra)
    master, slave = pty.openpty()
    p = subprocess.Popen([BINARY, "run", "-c", path], stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=subprocess.PIPE, env=env, start_new_session=True)
    os.close(slave)
    buf = b""
    deadline = time.monotonic() + 10
    sent = False
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
            if not sent and b"fleet ready" in buf:
                p.send_signal(signal.SIGTERM)
                sent = True
            if sent and p.poll() is not None and not r:
                break
        assert sent, buf.decode(errors="replace")
        assert p.wait(5) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    return buf.decode(errors="replace")


def test_colour_on_a_tty_and_no_color(fleet):
    path = fleet.write("""
        [[fleet.jobs]]
        name = "printer"
        command = "sh"
        args = ["-c", "echo hello"]
        oneshot = true
    """)
    out = run_on_tty(path, {})
    assert re.search(r"\033\[\d+(;\d+)?mprinter\s*\033\[0m \| hello", out), repr(out)
    out = run_on_tty(path, {"NO_COLOR": "1"})
    assert "printer      | hello" in out, repr(out)
    assert "\033[" not in out, repr(out)


def test_slow_reader_never_blocks_a_child(fleet, tmp_path):
    """Nobody reads Mothership's output while a child prints ~6 MB: the child
    still gets through it (lines are dropped instead), the drops are counted
    in /metrics, and once the output is read again a note says how many."""
    done = tmp_path / "done"
    mport = free_port()
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.chat]]
        name = "chatty"
        command = "sh"
        args = ["-c", "i=0; while [ $i -lt 20 ]; do seq 1 10000 | sed 's/$/ a line of chatter from the child/'; i=$((i+1)); done; touch {done}; while :; do echo tick; sleep 0.05; done"]
        ready_after = "50ms"
    """, read=False)
    wait_file(done, timeout=20)           # the child was never blocked
    deadline = time.monotonic() + 10
    while True:
        samples = parse_metrics(http_get(mport, "/metrics")[1])
        if metric(samples, "mothership_log_lines_dropped_total") > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert metric(samples, "mothership_log_lines_dropped_total") > 0, samples
    assert metric(samples, "mothership_log_lines_total") > 100000, samples
    ms.start_reading()
    note = ms.wait_for(r"\d+ lines dropped: output too slow", timeout=10)
    rec = json.loads(ms.lines[note.index][1])
    assert rec["source"] == "mothership" and rec["level"] == "warn", rec
    ms.wait_for(r'"source":"chatty".*"msg":"tick"', start=note.index + 1)
    assert ms.stop() == 0, ms.output()[-3000:]
    assert ms.events("shutdown") and ms.events("stopped")


def test_exit_is_not_held_up_by_an_output_nobody_reads(fleet, tmp_path):
    """Mothership's stdout is a pipe that is never read, and it is full (the
    log writer would block in write): SIGTERM still stops the ship and
    Mothership exits within shutdown_timeout and a margin, with the lines it
    could not write counted and said on stderr."""
    stopped, pidfile = tmp_path / "stopped", tmp_path / "pid"
    mport = free_port()
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.chat]]
        name = "chatty"
        command = "sh"
        args = ["-c", "echo $$ > {pidfile}; trap 'touch {stopped}; exit 0' TERM; while :; do seq 1 500 | sed 's/$/ chatter/'; sleep 0.01; done"]
        ready_after = "50ms"
        shutdown_timeout = "1s"
    """, read=False)
    fleet.pids_from(pidfile)
    pid = int(wait_file(pidfile, predicate=lambda t: t.strip()).strip())
    out = ms.proc.stdout.fileno()
    size = fcntl.fcntl(out, F_GETPIPE_SZ)
    deadline = time.monotonic() + 20
    while True:  # the pipe fills up, then lines pile up and are dropped
        queued = struct.unpack("i", fcntl.ioctl(out, termios.FIONREAD, b"\0\0\0\0"))[0]
        samples = parse_metrics(http_get(mport, "/metrics")[1])
        # Whole lines go in one write each and a write that does not fit in
        # the last page takes a new one, so a full pipe can hold well under
        # its size (45819 of 65536 seen): half of it, and lines dropped,
        # mean the writer is stuck on it.
        if queued >= size // 2 and metric(samples, "mothership_log_lines_dropped_total") > 0:
            break
        assert time.monotonic() < deadline, (queued, size, samples)
        time.sleep(0.05)
    ms.signal(signal.SIGTERM)
    try:
        code = ms.proc.wait(timeout=1 + 1 + 3)  # shutdown_timeout + 1s + a margin for a loaded machine
    except subprocess.TimeoutExpired:
        pytest.fail("mothership did not exit with its stdout full and unread", pytrace=False)
    assert code == 0
    assert stopped.exists(), "the ship was not stopped by SIGTERM"
    assert not wait_gone([pid], timeout=2)
    err = ms.proc.stderr.read().decode()
    ms.start_reading()  # what is left in the pipe, up to its end
    ms.wait_exit()
    assert re.search(r"^mothership: \d+ log lines dropped in all, [1-9]\d* at exit: the output was not being read$",
                     err, re.M), err
