"""Resource limits (memory_max, cpu_max, pids_max) and each entry in its
own cgroup v2, through the real binary.

- Always: against a plain directory tree standing for a delegated cgroup
  (MS_CGROUP_ROOT): Mothership moves itself into supervisor/, enables the
  controllers the tree offers, writes each entry's limits ("max" where it
  has none), and the launch shim joins the entry's cgroup (its pid in
  cgroup.procs) before starting the command; a reload writes new limits
  without a restart; a controller the tree lacks is named in a warning.
- Always: where Mothership's cgroup is not delegated to it (under pytest it
  never is: pytest shares it), one warning names the entries whose limits
  are not applied, and the fleet runs.
- Where the machine allows (root or passwordless sudo, systemd, cgroup v2
  with memory, cpu and pids): Mothership in a transient scope with
  Delegate=yes, and the kernel enforcing the limits. Skipped otherwise,
  saying why.
"""
import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

import fleet_helpers
from conftest import BINARY, clearance_refuses, run_ms
from fleet_helpers import PY
from fleet_helpers import ctl, ctl_status as status


def ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def fake_tree(root, controllers="cpu memory pids"):
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("")
    return root


def loop_ship(name, limits=""):
    return f"""
[[fleet.web]]
name = "{name}"
command = "sh"
args = ["-c", "while true; do sleep 0.2; done"]
ready_after = "100ms"
{limits}
"""


def test_entries_get_their_cgroup_and_limits(fleet):
    cg = fake_tree(fleet.tmp / "cg")
    body = f'[mothership]\nsocket_dir = "{fleet.tmp}"\n' + loop_ship(
        "web", 'memory_max = "64M"\ncpu_max = 0.5\npids_max = 32') + loop_ship("plain") + """
[[bays.websocket]]
name = "chat"
command = "sh"
args = ["-c", "while true; do sleep 0.2; done"]
memory_max = "1G"
ready_timeout = "1s"
critical = false
"""
    path = fleet.tmp / "ship-manifest.toml"
    ms = fleet(body, env={"MS_CGROUP_ROOT": str(cg)}, name="ship-manifest.toml")
    ms.event("ready", ship="web", timeout=15)
    ms.event("ready", ship="plain", timeout=15)
    ev = ms.event("cgroups")
    assert str(cg) in ev["msg"] and "memory cpu pids" in ev["msg"]
    assert not ms.events("limits_not_applied")
    assert (cg / "supervisor" / "cgroup.procs").read_text().split() == [str(ms.pid)]
    assert (cg / "cgroup.subtree_control").read_text().split() == ["+memory", "+cpu", "+pids"]
    web = cg / "ship.web"
    assert (web / "memory.max").read_text() == "67108864\n"
    assert (web / "cpu.max").read_text() == "50000 100000\n"
    assert (web / "pids.max").read_text() == "32\n"
    plain = cg / "ship.plain"
    assert (plain / "memory.max").read_text() == "max\n"
    assert (plain / "cpu.max").read_text() == "max 100000\n"
    assert (plain / "pids.max").read_text() == "max\n"
    # the launch shim (the ship's parent) joined before starting the command
    st = status(str(path))
    assert st["web"]["cgroup"] == str(web)
    for name, d in (("web", web), ("plain", plain)):
        assert (d / "cgroup.procs").read_text().split() == [str(ppid(st[name]["pid"]))]
    fleet_helpers.wait_file(str(cg / "bay.chat" / "memory.max"), predicate=lambda t: t == "1073741824\n")

    # a reload writes the new limits into the running cgroup: no restart
    path.write_text(path.read_text().replace('memory_max = "64M"', 'memory_max = "128M"')
                    .replace("pids_max = 32", "pids_max = 64"))
    r = ctl(str(path), "reload")
    assert r.returncode == 0, r
    fleet_helpers.wait_file(str(web / "memory.max"), predicate=lambda t: t == "134217728\n")
    assert (web / "pids.max").read_text() == "64\n"
    assert (web / "cpu.max").read_text() == "50000 100000\n"
    assert status(str(path))["web"]["pid"] == st["web"]["pid"]
    assert ms.stop() == 0


def test_a_missing_controller_is_named(fleet):
    cg = fake_tree(fleet.tmp / "cg", controllers="cpu pids")
    ms = fleet(loop_ship("web", 'memory_max = "64M"\ncpu_max = "150%"') + loop_ship("low", "pids_max = 5"),
               env={"MS_CGROUP_ROOT": str(cg)})
    warn = ms.event("limits_not_applied", timeout=15)
    assert warn["level"] == "warn"
    assert warn["msg"] == (f"resource limits not applied to web (memory_max): the memory controller is not "
                           f"available in {cg}")
    ms.event("fleet_ready", timeout=15)
    assert (cg / "cgroup.subtree_control").read_text().split() == ["+cpu", "+pids"]
    assert (cg / "ship.web" / "cpu.max").read_text() == "150000 100000\n"
    assert not (cg / "ship.web" / "memory.max").exists()
    assert (cg / "ship.low" / "pids.max").read_text() == "5\n"
    assert len(ms.events("limits_not_applied")) == 1
    assert ms.stop() == 0


def test_not_delegated_warns_once_and_runs(fleet):
    ms = fleet(f'[mothership]\nsocket_dir = "{fleet.tmp}"\n' + loop_ship("web", 'memory_max = "64M"\npids_max = 100')
               + loop_ship("plain") + loop_ship("hot", "cpu_max = 2"), name="ship-manifest.toml")
    warn = ms.event("limits_not_applied", timeout=15)
    assert warn["level"] == "warn"
    m = re.fullmatch(r"resource limits not applied to web \(memory_max, pids_max\), hot \(cpu_max\): (.+)",
                     warn["msg"])
    assert m, warn["msg"]
    # the reason: not delegated (pytest shares its cgroup), or no cgroup v2 with these controllers
    assert re.search(r"not delegated|cgroup v1|not available|not a cgroup2", m.group(1)), m.group(1)
    ms.event("fleet_ready", timeout=15)
    assert len(ms.events("limits_not_applied")) == 1
    assert not ms.events("cgroups")
    assert "cgroup" not in status(str(fleet.tmp / "ship-manifest.toml"))["web"]
    assert ms.stop() == 0


def test_a_limit_added_by_a_reload_is_named_when_it_cannot_apply(fleet):
    """A reload that adds limits where they cannot apply says so, as the
    launch does; one that leaves them as they were says nothing again."""
    path = fleet.tmp / "ship-manifest.toml"
    head = f'[mothership]\nsocket_dir = "{fleet.tmp}"\n'
    ms = fleet(head + loop_ship("web") + loop_ship("old", "pids_max = 10"), name="ship-manifest.toml")
    ms.event("fleet_ready", timeout=15)
    first = ms.event("limits_not_applied")
    assert first["msg"].startswith("resource limits not applied to old (pids_max): "), first
    path.write_text(head + loop_ship("web", 'memory_max = "64M"') + loop_ship("old", "pids_max = 10")
                    + loop_ship("fresh", "cpu_max = 1"))
    assert ctl(str(path), "reload").returncode == 0
    warn = ms.event("limits_not_applied", start=first["_i"] + 1, timeout=15)
    assert warn["level"] == "warn"
    assert warn["msg"].startswith("resource limits not applied to web (memory_max), fresh (cpu_max): "), warn
    ms.event("ready", ship="fresh", timeout=15)
    path.write_text(path.read_text() + "\n")
    assert ctl(str(path), "reload").returncode == 0
    ms.event("reloaded", start=warn["_i"] + 1, timeout=15)
    assert len(ms.events("limits_not_applied")) == 2
    assert ms.stop() == 0


def test_no_limits_no_warning(fleet):
    ms = fleet(loop_ship("plain"))
    ms.event("fleet_ready", timeout=15)
    assert not ms.events("limits_not_applied")
    assert ms.stop() == 0


def test_an_unusable_root_is_a_warning(fleet):
    ms = fleet(loop_ship("web", "pids_max = 10"), env={"MS_CGROUP_ROOT": str(fleet.tmp / "nowhere")})
    warn = ms.event("limits_not_applied", timeout=15)
    assert warn["msg"].startswith("resource limits not applied to web (pids_max): ")
    assert str(fleet.tmp / "nowhere") in warn["msg"]
    ms.event("fleet_ready", timeout=15)
    assert ms.stop() == 0


# ------------------------------------------------------------------ real cgroups
def real_cgroups_or_skip():
    """The command prefix that runs Mothership as root in a delegated
    transient scope, or skip saying why not."""
    if not shutil.which("systemd-run"):
        pytest.skip("real limits: systemd-run is not installed")
    if not os.path.isdir("/run/systemd/system"):
        pytest.skip("real limits: systemd is not the init system here")
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            have = f.read().split()
    except OSError:
        pytest.skip("real limits: /sys/fs/cgroup is not a cgroup v2 (unified) hierarchy")
    missing = [c for c in ("memory", "cpu", "pids") if c not in have]
    if missing:
        pytest.skip(f"real limits: cgroup v2 here lacks {', '.join(missing)} (bound to cgroup v1)")
    if os.geteuid() == 0:
        sudo = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        sudo = ["sudo", "-n", "--preserve-env=MS_SOCKET_DIR"]
    else:
        pytest.skip("real limits: needs root or passwordless sudo (systemd-run --scope)")
    unit = f"ms-test-{uuid.uuid4().hex[:12]}"
    return [*sudo, "systemd-run", "--scope", "--quiet", "--collect", f"--unit={unit}", "-p", "Delegate=yes"]


def test_real_limits_in_a_delegated_scope(fleet, monkeypatch):
    prefix = real_cgroups_or_skip()
    wrapper = fleet.tmp / "in-scope.sh"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(prefix) + f' -- "{BINARY}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(fleet_helpers, "BINARY", str(wrapper))
    hog = "b = []\nwhile True: b.append(bytearray(8 << 20))\n"
    forks = ("import os, time\nrefused = 0\nfor i in range(12):\n    try:\n        if os.fork() == 0:\n"
             "            time.sleep(60)\n            os._exit(0)\n    except OSError:\n        refused += 1\n"
             "print('refused', refused, flush=True)\ntime.sleep(60)\n")
    ms = fleet(f"""
[mothership]
socket_dir = "{fleet.tmp}"

[[fleet.jobs]]
name = "hog"
command = "{PY}"
args = ["-c", {json.dumps(hog)}]
oneshot = true
critical = false
memory_max = "64M"

[[fleet.web]]
name = "forks"
command = "{PY}"
args = ["-c", {json.dumps(forks)}]
ready_after = "100ms"
pids_max = 6

[[fleet.web]]
name = "slow"
command = "sh"
args = ["-c", "while true; do sleep 0.2; done"]
ready_after = "100ms"
cpu_max = 0.25
""")
    ev = ms.event("cgroups", timeout=20)
    scope = re.search(r"under (\S+) ", ev["msg"]).group(1)
    assert scope.endswith(".scope"), scope
    # the kernel kills the job at 64M instead of letting it eat the machine
    failed = ms.event("failed", ship="hog", timeout=30)
    assert "signal 9" in failed["msg"], failed
    ms.event("ready", ship="forks", timeout=15)
    ms.wait_for(r"refused ([1-9]|1[0-2])\b", timeout=15)
    with open(f"{scope}/ship.forks/pids.max") as f:
        assert f.read() == "6\n"
    deadline = time.monotonic() + 10
    while True:
        with open(f"{scope}/ship.forks/pids.events") as f:
            if int(f.read().split()[1]) > 0:
                break  # forks were refused at the limit
        assert time.monotonic() < deadline, "pids.max never reached"
        time.sleep(0.05)
    with open(f"{scope}/ship.slow/cpu.max") as f:
        assert f.read() == "25000 100000\n"
    with open(f"{scope}/supervisor/cgroup.procs") as f:
        assert f.read().split()  # Mothership itself, in its leaf
    assert ms.stop() == 0
    # each entry's cgroup went with its process
    assert not [d for d in os.listdir(scope) if d.startswith("ship.")] if os.path.isdir(scope) else True


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.startswith("cgroup2 ") and left.split()[3] == "/":
                return left.split()[4]
    return None


def test_real_cgroup2_file_system(fleet):
    """A cgroup of the test's own making on the real cgroup2 file system
    (MS_CGROUP_ROOT): the kernel's own files, the shim and the command
    really in the entry's cgroup, limits the kernel takes, the cgroup gone
    once its process is."""
    if os.geteuid() != 0:
        pytest.skip("real cgroup2: needs root to create a cgroup")
    mount = cgroup2_mount()
    if not mount:
        pytest.skip("real cgroup2: no cgroup2 file system mounted")
    own = os.path.join(mount, f"ms-test-{uuid.uuid4().hex[:12]}")
    try:
        os.mkdir(own)
    except OSError as e:
        pytest.skip(f"real cgroup2: cannot create {own}: {e}")
    ms = None
    try:
        with open(os.path.join(own, "cgroup.controllers")) as f:
            have = f.read().split()
        ms = fleet(loop_ship("web", 'memory_max = "256M"\npids_max = 50\ncpu_max = 0.5'),
                   env={"MS_CGROUP_ROOT": own})
        ev = ms.event("cgroups", timeout=15)
        assert own in ev["msg"]
        ms.event("ready", ship="web", timeout=15)
        with open(os.path.join(own, "supervisor", "cgroup.procs")) as f:
            assert f.read().split() == [str(ms.pid)]
        web = os.path.join(own, "ship.web")
        with open(os.path.join(web, "cgroup.procs")) as f:
            procs = [int(p) for p in f.read().split()]
        shim = [p for p in procs if ppid(p) == ms.pid]
        assert len(shim) == 1 and any(ppid(p) == shim[0] for p in procs), procs
        missing = [k for k, c in (("memory_max", "memory"), ("cpu_max", "cpu"), ("pids_max", "pids"))
                   if c not in have]
        if missing:  # a hybrid system: these controllers stay with cgroup v1
            warn = ms.event("limits_not_applied")
            assert f"web ({', '.join(missing)})" in warn["msg"], warn
        else:
            assert not ms.events("limits_not_applied")
        for key, c, want in (("memory.max", "memory", "268435456\n"), ("pids.max", "pids", "50\n"),
                             ("cpu.max", "cpu", "50000 100000\n")):
            if c in have:
                with open(os.path.join(web, key)) as f:
                    assert f.read() == want
        assert ms.stop() == 0
        assert not os.path.exists(web), os.listdir(own)
    finally:
        if ms is not None and ms.proc.poll() is None:
            ms.kill()
        # what the test made, bottom-up; a cgroup with a process left would stay (and say so)
        for root, dirs, _ in os.walk(own, topdown=False):
            for d in dirs:
                try:
                    os.rmdir(os.path.join(root, d))
                except OSError:
                    pass
        try:
            os.rmdir(own)
        except OSError as e:
            pytest.fail(f"{own} left behind: {e}")


@pytest.mark.parametrize("line, error", [
    ('memory_max = 512', ':4:14: ship "web": "memory_max" must be from 1M to 1P (an integer is bytes: write '
                         '"512M" for 512 MiB)'),
    ('memory_max = "12X"', ':4:14: ship "web": "memory_max" "12X" is not a size: write bytes, or a number with '
                           'K, M, G or T ("512M", "1.5G")'),
    ('memory_max = "2000T"', '"memory_max" must be from 1M to 1P'),
    ('cpu_max = 0.001', ':4:11: ship "web": "cpu_max" must be from 0.01 to 1024 CPUs (1% to 102400%)'),
    ('cpu_max = "1.5"', '"cpu_max" "1.5" is not a percentage: write "150%", or a number of CPUs (1.5)'),
    ('cpu_max = true', '"cpu_max"'),
    ('pids_max = 0', ':4:12: ship "web": "pids_max" must be from 1 to 4194304, not 0'),
])
def test_limit_errors(tmp_path, line, error):
    clearance_refuses(tmp_path, f'[[fleet.web]]\nname = "web"\ncommand = "true"\n{line}\n', error)


def test_limit_forms_are_accepted(tmp_path):
    (tmp_path / "ship-manifest.toml").write_text(
        '[base.ship]\npids_max = 100\n\n'
        '[[fleet.web]]\nname = "a"\ncommand = "true"\nmemory_max = "1.5g"\ncpu_max = "250%"\n\n'
        '[[fleet.web]]\nname = "b"\ncommand = "true"\nmemory_max = 1048576\ncpu_max = 2\n\n'
        '[[bays.http]]\nname = "c"\ncommand = "true"\nmemory_max = "64M"\ncpu_max = 0.5\npids_max = 8\n')
    r = run_ms("clearance", "-c", "ship-manifest.toml", cwd=str(tmp_path))
    assert r.code == 0, r
