"""stop_signal: how Mothership asks a ship or bay to stop. A ship that
ignores SIGTERM and exits cleanly only on SIGINT (PostgreSQL's "fast
shutdown") stops at once with stop_signal = "SIGINT", written as a name, a
short name, a number or in [base.ship]; the shim survives the signal and
the command gets it; a restart from the dashboard uses it too; a real
PostgreSQL with an idle client stops at once; and a bad value is a
manifest error at its line and column."""
import glob
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import run_ms
from fleet_helpers import PY, alive, app, describe, free_port, toml_str, wait_file, wait_gone


def read_pid(path):
    return int(wait_file(path, predicate=lambda t: t.strip().isdigit()))


def pid_of(event):
    return int(re.search(r"\(pid (\d+)\)", event["msg"]).group(1))


def stop_and_check(ms, name, pidfile):
    """SIGTERM Mothership: the ship gets its stop signal (SIGINT), exits 0 at
    once (long before its shutdown_timeout) and no SIGKILL is sent."""
    ms.event("fleet_ready")
    pid = read_pid(pidfile)
    started = ms.event("started", ship=name)
    assert pid_of(started) == pid, started
    code = ms.stop(timeout=15)  # shutdown_timeout is 60s: only SIGINT ends it this soon
    out = ms.output()
    assert code == 0, out
    stopping = ms.event("stopping", ship=name)
    assert stopping["msg"] == f'stopping ship "{name}" (pid {pid}): SIGINT', stopping
    clean = ms.wait_for(rf'"source":"{name}".*"msg":"clean exit on SIGINT"')
    stopped = ms.event("stopped", ship=name)
    assert re.fullmatch(rf'ship "{name}" \(pid {pid}\) stopped \(exit 0\) in \d+ms', stopped["msg"]), stopped
    assert stopping["_i"] < clean.index < stopped["_i"], out
    assert not ms.events("kill"), out
    assert "got SIGTERM" not in out, out
    assert wait_gone([pid]) == [], describe([pid])


@pytest.mark.parametrize("value", ['"SIGINT"', '"INT"', '"sigint"', "2"])
def test_stop_signal_stops_a_ship_that_only_exits_on_sigint(fleet, tmp_path, value):
    pidfile = tmp_path / "pg.pid"
    ms = fleet(f"""
        [[fleet.db]]
        name = "pg"
        command = {toml_str(PY)}
        args = [{toml_str(app("signal_logger.py"))}, {toml_str(pidfile)}]
        ready_after = "100ms"
        shutdown_timeout = "60s"
        stop_signal = {value}
    """)
    stop_and_check(ms, "pg", pidfile)


def test_stop_signal_from_the_base_template(fleet, tmp_path):
    pidfile = tmp_path / "pg.pid"
    ms = fleet(f"""
        [base.ship]
        stop_signal = "SIGINT"
        shutdown_timeout = "60s"

        [[fleet.db]]
        name = "pg"
        command = {toml_str(PY)}
        args = [{toml_str(app("signal_logger.py"))}, {toml_str(pidfile)}]
        ready_after = "100ms"
    """)
    stop_and_check(ms, "pg", pidfile)


def test_without_stop_signal_sigterm_is_sent_and_ignored_until_sigkill(fleet, tmp_path):
    """The default is still SIGTERM, then SIGKILL after shutdown_timeout."""
    pidfile = tmp_path / "pg.pid"
    ms = fleet(f"""
        [[fleet.db]]
        name = "pg"
        command = {toml_str(PY)}
        args = [{toml_str(app("signal_logger.py"))}, {toml_str(pidfile)}]
        ready_after = "100ms"
        shutdown_timeout = "300ms"
    """)
    ms.event("fleet_ready")
    pid = read_pid(pidfile)
    assert ms.stop(timeout=15) == 0, ms.output()
    assert ms.event("stopping", ship="pg")["msg"] == f'stopping ship "pg" (pid {pid}): SIGTERM'
    ms.wait_for(r'"source":"pg".*"msg":"got SIGTERM"')
    assert ms.event("kill", ship="pg")
    assert re.search(r"stopped \(SIGKILL\)", ms.event("stopped", ship="pg")["msg"])


def test_other_stop_signals_reach_the_command_and_not_kill_the_shim(fleet, tmp_path):
    """SIGQUIT (nginx's graceful stop) and SIGHUP as stop signals: the shim,
    which gets them too (they go to the group), neither dies of them nor
    passes on a second copy; the command gets exactly one, logs it and is
    then killed after shutdown_timeout (it only leaves on SIGINT)."""
    ships = ""
    for name, sig in (("quit", "SIGQUIT"), ("hup", "HUP")):
        ships += f"""
        [[fleet.w]]
        name = "{name}"
        command = {toml_str(PY)}
        args = [{toml_str(app("signal_logger.py"))}, {toml_str(tmp_path / (name + ".pid"))}]
        ready_after = "100ms"
        shutdown_timeout = "1s"
        stop_signal = "{sig}"
        """
    ms = fleet(ships)
    ms.event("fleet_ready")
    for name in ("quit", "hup"):
        read_pid(tmp_path / (name + ".pid"))  # its handlers are set
    assert ms.stop(timeout=15) == 0, ms.output()
    for name, sig in (("quit", "SIGQUIT"), ("hup", "SIGHUP")):
        assert ms.event("stopping", ship=name)["msg"].endswith(f": {sig}")
        lines = [e["msg"] for e in ms.child_lines(name)]
        assert lines.count(f"got {sig}") == 1, lines
        # the shim waited for its command: the kill came after the grace
        assert ms.event("kill", ship=name)


MANIFEST = "ship-manifest.toml"


@pytest.mark.parametrize("value,error", [
    ('"SIGTREM"', '3:15: ship "pg": "stop_signal" "SIGTREM" is not a signal name (did you mean "SIGTERM"?)'),
    ('"INTT"', '3:15: ship "pg": "stop_signal" "INTT" is not a signal name (did you mean "SIGINT"?)'),
    ('"SIGSTOP"', '3:15: ship "pg": "stop_signal" SIGSTOP is not a signal that stops a process; use one of '
                  'SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL'),
    ('19', '3:15: ship "pg": "stop_signal" 19 (SIGSTOP) is not a signal that stops a process; use one of '
           'SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL'),
    ('99', '3:15: ship "pg": "stop_signal" 99 is not a signal that stops a process; use one of '
           'SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL'),
    ('"banana"', '3:15: ship "pg": "stop_signal" "banana" is not a signal name; use one of '
                 'SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL'),
    ('true', '3:15: ship "pg": "stop_signal" must be a signal name like "SIGINT" or a signal number, not a boolean'),
], ids=["typo", "typo-short", "sigstop", "number-19", "number-99", "not-a-signal", "boolean"])
def test_bad_stop_signal_is_a_manifest_error(tmp_path, manifest, value, error):
    manifest(f"""
        [[fleet.db]]
        name = "pg"
        stop_signal = {value}
        command = "postgres"
    """, MANIFEST)
    r = run_ms("clearance", "-c", MANIFEST, cwd=str(tmp_path))
    assert r.code == 1, r
    assert r.err.splitlines() == [f"{MANIFEST}:{error}"], r


def test_bad_stop_signal_in_a_base_template(tmp_path, manifest):
    manifest("""
        [base.bay]
        stop_signal = "SIGTSTP"

        [[bays.websocket]]
        name = "chat"
        command = "chat"
    """, MANIFEST)
    r = run_ms("clearance", "-c", MANIFEST, cwd=str(tmp_path))
    assert r.code == 1, r
    assert r.err.splitlines()[0] == (
        f'{MANIFEST}:2:15: [base.bay]: "stop_signal" SIGTSTP is not a signal that stops a process; use one of '
        'SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL'), r


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_dashboard_restart_uses_the_stop_signal(tmp_path):
    """'r' in the dashboard stops the ship with its stop_signal: it exits
    cleanly at once and a new run starts, well within its 60s
    shutdown_timeout (SIGTERM would be ignored until the SIGKILL)."""
    from test_tui import Term
    pidfile = tmp_path / "pg.pid"
    (tmp_path / "ship-manifest.toml").write_text(f"""
[[fleet.db]]
name = "pg"
command = {toml_str(PY)}
args = [{toml_str(app("signal_logger.py"))}, {toml_str(pidfile)}]
ready_after = "100ms"
shutdown_timeout = "60s"
stop_signal = "SIGINT"
""")
    t = Term(tmp_path, ["run", "--tui"])
    try:
        t.wait(r"(?m)^> pg\s+db\s+\S+\s+ready")
        pid0 = read_pid(pidfile)
        t.keys("r")
        log = wait_file(str(pidfile) + ".log", timeout=15, predicate=lambda s: "clean exit on SIGINT" in s)
        assert "got SIGTERM" not in log, log
        deadline = time.monotonic() + 15
        while read_pid(pidfile) == pid0 and time.monotonic() < deadline:
            time.sleep(0.05)
        pid1 = read_pid(pidfile)
        assert pid1 != pid0 and alive(pid1)
        assert wait_gone([pid0]) == [], describe([pid0])
        t.wait(rf"(?m)^> pg\s+db\s+\S+\s+ready\s+{pid1}\b")
    finally:
        t.close()
        for pid in (read_pid(pidfile),):
            if alive(pid):
                os.kill(pid, 9)


def _postgres_bin():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "postgres")) and os.path.exists(os.path.join(d, "initdb")):
            return d
    return None


PG_BIN = _postgres_bin()


@pytest.mark.skipif(PG_BIN is None or shutil.which("psql") is None, reason="PostgreSQL is not installed")
def test_postgres_with_an_idle_client_stops_at_once_with_sigint(fleet):
    """PostgreSQL takes SIGTERM as "smart shutdown" and waits for every
    client; with stop_signal = "SIGINT" (fast shutdown) an idle psql session
    does not hold the stop: the server shuts down cleanly, long before the
    30s shutdown_timeout, and exits 0."""
    as_user = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres user")
        as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    top = tempfile.mkdtemp(prefix="ms-pg-")  # not under pytest's 0700 tmp: the postgres user reads it
    try:
        os.chmod(top, 0o755)
        data = os.path.join(top, "data")
        os.mkdir(data, 0o700)
        if as_user:
            shutil.chown(data, "postgres", "postgres")
        subprocess.run(as_user + [os.path.join(PG_BIN, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                                  "--no-sync"], check=True, capture_output=True, timeout=120)
        port = free_port()
        argv = as_user + [os.path.join(PG_BIN, "postgres"), "-D", data, "-k", data, "-p", str(port),
                          "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        ms = fleet(f"""
            [[fleet.data]]
            name = "pg"
            command = {toml_str(argv[0])}
            args = {json.dumps(argv[1:])}
            bind = "127.0.0.1:{port}"
            stop_signal = "SIGINT"
            shutdown_timeout = "30s"
        """)
        ms.event("ready", ship="pg", timeout=30)
        ms.wait_for(r'"source":"pg".*database system is ready to accept connections', timeout=30)
        psql = subprocess.Popen(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            psql.stdin.write(b"select 40 + 2;\n")
            psql.stdin.flush()
            assert psql.stdout.readline() == b"42\n"  # connected, and now idle
            pid = pid_of(ms.event("started", ship="pg"))
            assert ms.stop(timeout=20) == 0, ms.output()
            assert ms.event("stopping", ship="pg")["msg"] == f'stopping ship "pg" (pid {pid}): SIGINT'
            ms.wait_for(r'"source":"pg".*received fast shutdown request')
            ms.wait_for(r'"source":"pg".*database system is shut down')
            stopped = ms.event("stopped", ship="pg")
            assert re.fullmatch(rf'ship "pg" \(pid {pid}\) stopped \(exit 0\) in \d+ms', stopped["msg"]), stopped
            assert not ms.events("kill"), ms.output()
        finally:
            psql.kill()
            psql.wait()
    finally:
        shutil.rmtree(top, ignore_errors=True)
