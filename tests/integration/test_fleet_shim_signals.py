"""The signals a user sends to a ship's launch shim reach the ship: `kill
-HUP <pid>` is how gunicorn and nginx reload, and the shim is the process
`ps` shows as the server's parent. HUP, USR1, USR2, WINCH, TTIN and TTOU
sent to the shim's pid are passed on to the command exactly once, and
neither the ship nor the shim stops; the shim names itself after the ship
in `ps`; and a real nginx reloads on a HUP sent to its shim."""
import os
import re
import shutil
import signal
import time

import pytest

from fleet_helpers import PY, alive, app, free_port, http_get, toml_str, wait_file

FORWARDED = [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU]


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def start(fleet, tmp_path, name="app", stop='stop_signal = "SIGINT"'):
    pidfile = tmp_path / f"{name}.pid"
    ms = fleet(f"""
        [[fleet.web]]
        name = "{name}"
        command = {toml_str(PY)}
        args = [{toml_str(app("signal_logger.py"))}, {toml_str(pidfile)}]
        ready_after = "100ms"
        {stop}
    """)
    ms.event("fleet_ready")
    pid = int(wait_file(str(pidfile), predicate=lambda t: t.strip().isdigit()))
    started = ms.event("started", ship=name)
    assert started["msg"] == f'ship "{name}" started (pid {pid})', started
    return ms, pid, parent_of(pid)


def test_signals_sent_to_the_shim_reach_the_ship_which_keeps_running(fleet, tmp_path):
    ms, pid, shim = start(fleet, tmp_path, stop='shutdown_timeout = "200ms"')
    assert shim != pid and shim != ms.pid
    mark = len(ms.lines)
    for sig in FORWARDED:
        name = signal.Signals(sig).name
        os.kill(shim, sig)
        ms.wait_for(rf'"source":"app".*"msg":"got {name}"', start=mark)
    # once each: the shim passed each on once, and nothing came twice
    got = [e["msg"] for e in ms.child_lines("app") if e["msg"].startswith("got ")]
    assert got == [f"got {signal.Signals(s).name}" for s in FORWARDED], got
    assert alive(pid) and alive(shim)
    assert parent_of(pid) == shim
    assert not ms.events("exited") and not ms.events("shutdown"), ms.output()
    # it ignores the SIGTERM of the stop (once: not passed on again) till the SIGKILL
    assert ms.stop() == 0, ms.output()
    ms.event("stopped", ship="app")
    got = [e["msg"] for e in ms.child_lines("app") if e["msg"] == "got SIGTERM"]
    assert len(got) == 1, ms.output()


def test_a_stop_signal_mothership_sends_to_the_group_comes_once(fleet, tmp_path):
    """The stop signal goes to the whole group: the command gets it from
    the kernel, and the shim, which gets it too, does not add a copy."""
    ms, pid, shim = start(fleet, tmp_path)
    assert ms.stop() == 0, ms.output()
    lines = [e["msg"] for e in ms.child_lines("app")]
    assert lines.count("clean exit on SIGINT") == 1, lines


def test_the_shim_is_named_after_its_ship_in_ps(fleet, tmp_path):
    ms, pid, shim = start(fleet, tmp_path, name="billing")
    with open(f"/proc/{shim}/comm") as f:
        assert f.read().strip() == "ms-shim billing"
    with open(f"/proc/{shim}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert argv[0] == b"ms-shim billing", argv
    assert b"--ms-shim" in argv, argv
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[1].endswith(b"signal_logger.py")


def test_a_signal_the_ship_sends_its_shim_is_not_sent_back(fleet, tmp_path):
    """Some programs signal their parent (a readiness or daemonised
    notice): the shim does not pass back what comes from its own group."""
    script = ("trap 'echo got USR1' USR1; kill -USR1 $PPID; "
              "i=0; while [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done; echo done")
    ms = fleet(f"""
        [[fleet.jobs]]
        name = "notifier"
        command = "sh"
        args = ["-c", {toml_str(script)}]
        oneshot = true
    """)
    ms.event("done", ship="notifier")
    lines = [e["msg"] for e in ms.child_lines("notifier")]
    assert lines == ["done"], lines
    assert ms.stop() == 0, ms.output()


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_nginx_reloads_on_a_hup_sent_to_its_shim_and_stops_gracefully(fleet, tmp_path):
    """A real server: `kill -HUP` of the pid `ps` shows as nginx's parent
    (its shim, "ms-shim web") reloads nginx's configuration without a
    restart, and stop_signal = "SIGQUIT" is nginx's graceful stop."""
    port = free_port()
    conf = tmp_path / "nginx.conf"

    def write_conf(answer):
        conf.write_text(f"""
daemon off;
worker_processes 1;
{"user root;" if os.geteuid() == 0 else ""}
pid {tmp_path}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    server {{ listen 127.0.0.1:{port}; location / {{ return 200 "{answer}\\n"; }} }}
}}
""")

    write_conf("v1")
    ms = fleet(f"""
        [[fleet.web]]
        name = "web"
        command = {toml_str(NGINX)}
        args = ["-c", {toml_str(conf)}, "-p", {toml_str(tmp_path)}, "-e", "stderr"]
        bind = "127.0.0.1:{port}"
        stop_signal = "SIGQUIT"
    """)
    ready = ms.event("ready", ship="web")
    assert ready["msg"].endswith(f"(tcp://127.0.0.1:{port} accepts connections)"), ready
    assert http_get(port, "/") == (200, "v1\n")
    master = int(re.search(r"\(pid (\d+)\)", ms.event("started", ship="web")["msg"]).group(1))
    shim = parent_of(master)
    with open(f"/proc/{shim}/comm") as f:
        assert f.read().strip() == "ms-shim web"
    write_conf("v2")
    # nginx can miss a reload asked for right after its start (its old
    # worker keeps serving): as a user would, ask again if it did not take
    for attempt in range(5):
        mark = len(ms.lines)
        os.kill(shim, signal.SIGHUP)
        ms.wait_for(r'"source":"web".*signal 1 \(SIGHUP\) received from \d+, reconfiguring', start=mark)
        deadline = time.monotonic() + 2
        while http_get(port, "/")[1] != "v2\n" and time.monotonic() < deadline:
            time.sleep(0.05)
        if http_get(port, "/")[1] == "v2\n":
            break
    assert http_get(port, "/") == (200, "v2\n"), ms.output()
    assert alive(master) and parent_of(master) == shim
    assert len(ms.events("started", ship="web")) == 1 and not ms.events("exited"), ms.output()
    assert ms.stop() == 0, ms.output()
    assert ms.event("stopping", ship="web")["msg"] == f'stopping ship "web" (pid {master}): SIGQUIT'
    ms.wait_for(rf'"source":"web".*{master}#\d+: signal 3 \(SIGQUIT\) received from \d+, shutting down')
    stopped = ms.event("stopped", ship="web")
    assert re.fullmatch(rf'ship "web" \(pid {master}\) stopped \(exit 0\) in \d+ms', stopped["msg"]), stopped
    assert not ms.events("kill"), ms.output()


def _ignore_libc_signals():
    """In the child, before exec: leave signals 32 and 33 (the ones glibc
    keeps for itself and refuses in sigaction) ignored, as an ancestor of
    Mothership may, through the kernel's own call."""
    import ctypes

    class KernelSigaction(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong),
                    ("restorer", ctypes.c_void_p), ("mask", ctypes.c_ulong)]

    ign = KernelSigaction(1, 0, None, 0)  # SIG_IGN
    libc = ctypes.CDLL(None, use_errno=True)
    for sig in (32, 33):
        libc.syscall(13, sig, ctypes.byref(ign), None, 8)  # SYS_rt_sigaction on x86_64


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the raw rt_sigaction number is x86_64's")
def test_a_ship_starts_with_libcs_own_signals_at_their_default(tmp_path):
    """Mothership started with signals 32 and 33 ignored: its ships still
    start with nothing ignored."""
    import subprocess
    from conftest import BINARY
    (tmp_path / "ship-manifest.toml").write_text(
        f'[mothership]\nsocket_dir = "{tmp_path}"\n\n'
        '[[fleet.jobs]]\nname = "sig"\ncommand = "grep"\nargs = ["SigIgn", "/proc/self/status"]\n'
        'oneshot = true\n')
    p = subprocess.Popen([BINARY, "run"], cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, preexec_fn=_ignore_libc_signals)
    try:
        seen = []
        for line in p.stdout:
            seen.append(line)
            if "SigIgn:" in line:
                break
        assert seen and "SigIgn:" in seen[-1], "".join(seen)
        assert int(seen[-1].split("SigIgn:")[1].split()[0], 16) == 0, seen[-1]
    finally:
        p.terminate()
        p.wait(timeout=20)
