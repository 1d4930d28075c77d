"""contrib/systemd/mothership.service: `systemd-analyze verify` finds
nothing to say about it (skipped where systemd-analyze is missing), its
settings are the ones docs/deploy.md explains (Type=notify, KillMode=mixed,
a stop timeout above the default shutdown_timeout, the watchdog, Delegate),
and its commands work together the way systemd runs them: ExecStart under
$NOTIFY_SOCKET and $WATCHDOG_USEC with the unit's Environment= says READY=1,
ExecReload reaches the running fleet through the socket dir the unit sets,
and SIGTERM to the main process alone (KillMode=mixed) stops every ship."""
import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import BINARY, ROOT
from fleet_helpers import Mothership, wait_file, wait_gone
from http_helpers import short_tmpdir
from test_sdnotify import Notify

UNIT = os.path.join(ROOT, "contrib", "systemd", "mothership.service")
MANIFEST_MD = os.path.join(ROOT, "docs", "manifest.md")


def unit_settings():
    """{(section, key): [values]} of the unit file."""
    out, section = {}, None
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            k, v = line.split("=", 1)
            out.setdefault((section, k), []).append(v)
    return out


def seconds(v):
    m = re.fullmatch(r"(\d+)(s|min)?", v)
    assert m, v
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def test_unit_verifies_clean(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    # verify checks that the commands exist: point them at the build's binary;
    # the man pages are checked where they are built (--man=no)
    with open(UNIT) as f:
        text = f.read().replace("/usr/bin/mothership", os.path.abspath(BINARY))
    unit = tmp_path / "mothership.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout, r.stderr)


def test_unit_settings_match_what_mothership_does():
    s = unit_settings()
    one = {k: v[-1] for k, v in s.items()}
    assert one[("Service", "Type")] == "notify"
    assert one[("Service", "NotifyAccess")] == "main"
    assert one[("Service", "KillMode")] == "mixed"
    assert one[("Service", "Delegate")] == "yes"
    assert one[("Service", "ExecReload")].startswith("/usr/bin/mothership reload ")
    assert seconds(one[("Service", "WatchdogSec")]) >= 10
    # the stop timeout leaves the fleet's own shutdown budget room to finish
    with open(MANIFEST_MD) as f:
        m = re.search(r'^\| `shutdown_timeout` \| duration \| `"(\d+)s"` \|', f.read(), re.M)
    assert m, "docs/manifest.md: shutdown_timeout's default not found"
    assert seconds(one[("Service", "TimeoutStopSec")]) >= int(m.group(1)) + 5
    # hardening that would stop ships or the delegated cgroups is left out
    for key in ("ProtectControlGroups", "MemoryDenyWriteExecute", "SystemCallFilter", "PrivateUsers"):
        assert ("Service", key) not in s, key
    assert one[("Service", "NoNewPrivileges")] == "yes"


def test_unit_commands_run_a_fleet_as_systemd_would(tmp_path):
    s = unit_settings()
    env_line = s[("Service", "Environment")][-1]
    run_dir = short_tmpdir()          # the unit's RuntimeDirectory=, /run/mothership
    state_dir = str(tmp_path / "state")
    conf = str(tmp_path / "ship-manifest.toml")

    def local(cmd):
        cmd = cmd.replace("/etc/mothership/ship-manifest.toml", conf)
        return cmd.replace("/usr/bin/mothership", os.path.abspath(BINARY)).split()

    env = dict(kv.split("=", 1) for kv in env_line.replace("/run/mothership", run_dir)
               .replace("/var/lib/mothership", state_dir).split())
    assert env["MS_SOCKET_DIR"] == run_dir
    marker = tmp_path / "worker.pid"
    with open(conf, "w") as f:
        f.write(f'[[fleet.workers]]\nname = "idle"\ncommand = "sh"\n'
                f'args = ["-c", "echo $$ > {marker}; exec sleep 60"]\nready_after = "50ms"\n')
    n = Notify()
    watchdog_usec = seconds(s[("Service", "WatchdogSec")][-1]) * 1000000
    start = local(s[("Service", "ExecStart")][-1])
    assert start[1] == "run", start
    ms = Mothership(start[2:], cwd="/", json_logs=True,
                    env=dict(env, NOTIFY_SOCKET=n.env, WATCHDOG_USEC=str(watchdog_usec)))
    try:
        ready = n.wait("READY")
        assert ready["MAINPID"] == str(ms.pid), ready
        assert any("WATCHDOG" in m for m in n.got), n.got   # the first ping comes at once
        worker = int(wait_file(str(marker)).strip())
        r = subprocess.run(local(s[("Service", "ExecReload")][-1]), capture_output=True, text=True, timeout=15,
                           env=dict(os.environ, **env))
        assert r.returncode == 0, (r.stdout, r.stderr)
        n.wait("RELOADING")
        n.wait("READY")
        ms.signal(signal.SIGTERM)     # KillMode=mixed: the main process alone
        n.wait("STOPPING")
        assert ms.wait_exit() == 0, ms.output()
        assert not wait_gone([worker]), "the worker outlived the stop"
    finally:
        ms.kill()
        n.close()
        shutil.rmtree(run_dir, ignore_errors=True)
