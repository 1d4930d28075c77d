"""Scheduled jobs (`schedule` on a oneshot) through the real binary: the
fleet is ready before a job's first run, each match runs it, a run still
going at the next match is skipped (never two at once) and counted, a
failed run stops nothing, `status` shows the next run in local time (TZ
honoured), a reload changes the schedule of a waiting job, and the
manifest errors. Minutes pass in seconds: MS_TEST_TIME_SCALE=60 makes the
schedule's clock run 60 times faster (a test-only knob)."""
import re
import time

import pytest

from conftest import clearance_refuses
from fleet_helpers import ctl, ctl_status as status, free_port, http_get, metric, parse_metrics
from http_helpers import wait_until

FAST = {"MS_TEST_TIME_SCALE": "60"}


def manifest_text(tmp, body):
    return f'[mothership]\nsocket_dir = "{tmp}"\n\n' + body


WORKER = """
[[fleet.web]]
name = "web"
command = "sh"
args = ["-c", "while true; do sleep 0.2; done"]
ready_after = "100ms"
"""

# A job that runs at once and exits 0, every scaled minute.
TICK = """
[[fleet.jobs]]
name = "tick"
command = "true"
oneshot = true
schedule = "* * * * *"
"""

# A job whose every run fails, every other scaled minute.
BAD = """
[[fleet.jobs]]
name = "bad"
command = "sh"
args = ["-c", "exit 3"]
oneshot = true
schedule = "*/2 * * * *"
"""


def start(fleet, jobs="", head="", env=FAST):
    """A fleet of WORKER and jobs (head: more [mothership] keys), by
    default on the scaled clock."""
    return fleet(manifest_text(fleet.tmp, head + WORKER + jobs), env=env, name="ship-manifest.toml")


def test_runs_at_each_match_after_the_fleet_is_ready(fleet):
    log = fleet.tmp / "runs.log"
    ms = start(fleet, f"""
[[fleet.jobs]]
name = "tick"
command = "sh"
args = ["-c", "echo run >> {log}"]
oneshot = true
schedule = "* * * * *"

[[fleet.jobs]]
name = "yearly"
command = "true"
oneshot = true
schedule = "0 0 1 1 *"
""" + BAD)
    ready = ms.event("fleet_ready", timeout=15)
    sched = ms.event("scheduled", ship="tick")
    assert sched["_i"] < ready["_i"]
    # ready without waiting for a first run: "yearly" has none for days
    # (scaled), and a minute may pass before ready on a slow build, so a
    # run of tick before ready is allowed (docs/manifest.md, schedule)
    assert ms.event("scheduled", ship="yearly")["_i"] < ready["_i"]
    assert not [e for e in ms.events(ship="yearly") if e["event"] in ("started", "done")]
    assert re.search(r'next run \d{4}-\d\d-\d\d \d\d:\d\d', sched["msg"]), sched
    first = ms.event("done", ship="tick", timeout=10)
    second = ms.event("done", ship="tick", timeout=10, start=first["_i"] + 1)
    ms.event("done", ship="tick", timeout=10, start=second["_i"] + 1)
    assert log.read_text().count("run") >= 3
    # a failed run stops nothing: logged, and the job runs again
    bad = ms.event("failed", ship="bad", timeout=10)
    assert "exited with status 3" in bad["msg"] and "next run" in bad["msg"]
    ms.event("failed", ship="bad", timeout=10, start=bad["_i"] + 1)
    assert ms.proc.poll() is None
    st = status(str(fleet.tmp / "ship-manifest.toml"))
    assert st["tick"]["state"] in ("scheduled", "starting")
    assert st["tick"]["schedule"] == "* * * * *"
    assert st["bad"]["last_exit"] == {"code": 3}
    assert "schedule" not in st["web"]
    r = ctl(str(fleet.tmp / "ship-manifest.toml"), "status")
    assert re.search(r"^tick .* next run \d{4}-\d\d-\d\dT\d\d:\d\d:00[+-]\d\d:\d\d$", r.stdout, re.M), r.stdout
    assert ms.stop() == 0


def test_a_run_still_going_is_skipped(fleet):
    log = fleet.tmp / "runs.log"
    # each run takes 2.5 scaled minutes; a second one at once would say OVERLAP
    ms = start(fleet, f"""
[[fleet.jobs]]
name = "slow"
command = "sh"
args = ["-c", "[ -e {fleet.tmp}/running ] && echo OVERLAP >> {log}; touch {fleet.tmp}/running; sleep 2.5; rm {fleet.tmp}/running; echo run >> {log}"]
oneshot = true
schedule = "* * * * *"
""")
    skip = ms.event("schedule_skipped", ship="slow", timeout=15)
    assert "still running" in skip["msg"] and "skipped (1 so far)" in skip["msg"]
    ms.event("done", ship="slow", timeout=10)
    ms.event("schedule_skipped", ship="slow", timeout=10, start=skip["_i"] + 1)
    st = wait_until(lambda: (s := status(str(fleet.tmp / "ship-manifest.toml"))) and
                    s["slow"]["runs_skipped"] >= 2 and s, timeout=15, what="runs_skipped >= 2")
    assert st["slow"]["runs_skipped"] >= 2
    assert "OVERLAP" not in log.read_text()
    assert ms.stop() == 0


def start_with_metrics(fleet, jobs):
    """WORKER and jobs, with a metrics port: (ms, the port)."""
    mport = free_port()
    ms = start(fleet, jobs, head=f"metrics_port = {mport}\n")
    return ms, mport


def scrape(port):
    code, body = http_get(port, "/metrics")
    assert code == 200, body
    return parse_metrics(body)


def test_a_scheduled_job_between_runs_has_its_state_series(fleet):
    ms, mport = start_with_metrics(fleet, TICK)
    ms.event("done", ship="tick", timeout=15)
    m = wait_until(lambda: (m := scrape(mport)) and
                   metric(m, "mothership_ship_state", ship="tick", group="jobs", state="scheduled") == 1 and m,
                   timeout=15, what="tick's state is scheduled")
    states = [k for k in m if k[0] == "mothership_ship_state" and ("ship", "tick") in k[1] and m[k] == 1]
    assert len(states) == 1, states
    assert ms.stop() == 0


def test_metrics_of_a_scheduled_job_follow_its_last_run(fleet):
    """Between runs a scheduled job is up (as /ready has it) unless its last
    run failed; status and healthy say so, and its state is "scheduled"."""
    ms, mport = start_with_metrics(fleet, TICK + BAD)
    ms.event("fleet_ready", timeout=15)
    m = scrape(mport)
    for job in ("tick", "bad"):  # before a first run: up
        lab = {"ship": job, "group": "jobs"}
        if job == "bad" and metric(m, "mothership_ship_status", **lab) == 0:
            # the scaled clock is fast: on a loaded machine its first run
            # may have failed before this scrape (its "failed" is awaited below)
            continue
        if metric(m, "mothership_ship_state", state="starting", **lab) != 1:  # a run may have begun
            assert metric(m, "mothership_ship_state", state="scheduled", **lab) == 1, (job, m)
        assert metric(m, "mothership_ship_status", **lab) == 1, (job, m)
        assert metric(m, "mothership_ship_healthy", **lab) == 1, (job, m)
    ms.event("done", ship="tick", timeout=10)
    ms.event("failed", ship="bad", timeout=10)
    m = wait_until(lambda: (m := scrape(mport)) and
                   metric(m, "mothership_ship_state", ship="tick", group="jobs", state="scheduled") == 1 and m,
                   timeout=15, what="tick scheduled again")
    assert metric(m, "mothership_ship_status", ship="tick", group="jobs") == 1, m
    assert metric(m, "mothership_ship_healthy", ship="tick", group="jobs") == 1, m
    # the failed job stays down until a run succeeds, also while it runs again
    assert metric(m, "mothership_ship_status", ship="bad", group="jobs") == 0, m
    assert metric(m, "mothership_ship_healthy", ship="bad", group="jobs") == 0, m
    assert ms.stop() == 0


def test_next_run_is_local_time(fleet):
    # Kathmandu is UTC+05:45: its hours start at :15 past a UTC hour
    ms = start(fleet, """
[[fleet.jobs]]
name = "hourly"
command = "true"
oneshot = true
schedule = "@hourly"

[[fleet.jobs]]
name = "nightly"
command = "true"
oneshot = true
schedule = "30 2 * * *"
""", env={"TZ": "Asia/Kathmandu"})
    ms.event("fleet_ready", timeout=15)
    st = status(str(fleet.tmp / "ship-manifest.toml"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00\+05:45", st["hourly"]["next_run"]), st["hourly"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT02:30:00\+05:45", st["nightly"]["next_run"]), st["nightly"]
    assert st["hourly"]["state"] == "scheduled" and st["hourly"]["runs_skipped"] == 0
    assert st["hourly"]["last_exit"] is None
    assert ms.stop() == 0


def test_reload_changes_the_schedule(fleet):
    path = fleet.tmp / "ship-manifest.toml"
    body = WORKER + """
[[fleet.jobs]]
name = "job"
command = "true"
oneshot = true
schedule = "{sched}"
"""
    ms = fleet(manifest_text(fleet.tmp, body.format(sched="0 0 1 1 *")), env=FAST, name="ship-manifest.toml")
    ms.event("fleet_ready", timeout=15)
    assert re.fullmatch(r"\d{4}-01-01T00:00:00.*", status(str(path))["job"]["next_run"])
    path.write_text(manifest_text(fleet.tmp, body.format(sched="* * * * *")))
    r = ctl(str(path), "reload")
    assert r.returncode == 0, r
    ms.event("done", ship="job", timeout=10)
    nxt = status(str(path))["job"]["next_run"]
    assert not re.fullmatch(r"\d{4}-01-01T00:00:00.*", nxt), nxt
    # stop keeps it from running; start runs it at once
    assert ctl(str(path), "stop", "job").returncode == 0
    wait_until(lambda: status(str(path))["job"]["state"] == "stopped", timeout=15, what="job stopped")
    n = len(ms.events("done", ship="job"))
    assert ctl(str(path), "start", "job").returncode == 0
    wait_until(lambda: len(ms.events("done", ship="job")) > n, timeout=15, what="a run after start")
    assert ms.stop() == 0


@pytest.mark.parametrize("body, error", [
    ('oneshot = true\nschedule = "*/5 25 * * *"',
     ':5:12: ship "job": "schedule" "*/5 25 * * *": field 2 (hour): 25 is out of range 0-23'),
    ('oneshot = true\nschedule = "every day"',
     ':5:12: ship "job": "schedule" "every day": 2 fields where 5 are needed'),
    ('oneshot = true\nschedule = "0 0 31 feb *"', 'no date matches'),
    ('schedule = "@daily"',
     ':4:12: ship "job": "schedule" is for jobs (add oneshot = true: each run exits)'),
])
def test_manifest_errors(tmp_path, body, error):
    clearance_refuses(tmp_path, f'[[fleet.jobs]]\nname = "job"\ncommand = "true"\n{body}\n', error)


def test_nothing_depends_on_a_scheduled_job(tmp_path):
    clearance_refuses(tmp_path,
                      '[[fleet.jobs]]\nname = "job"\ncommand = "true"\noneshot = true\nschedule = "@daily"\n\n'
                      '[[fleet.web]]\nname = "web"\ncommand = "true"\ndepends_on = ["job"]\n',
                      ':10:15: ship "web": depends_on "job", a scheduled job')


@pytest.mark.parametrize("value", ["-1", "99999999999999999999", "60x", " 60"])
def test_a_hostile_time_scale_is_ignored(fleet, value):
    """MS_TEST_TIME_SCALE other than a whole number from 1 to 3600 is not
    read as some speed (strtoul made "-1" the fastest): a warning, and the
    schedule keeps real time."""
    ms = start(fleet, """
[[fleet.jobs]]
name = "job"
command = "true"
oneshot = true
schedule = "* * * * *"
""", env={"MS_TEST_TIME_SCALE": value})
    warn = ms.event("schedule", timeout=15)
    assert "MS_TEST_TIME_SCALE" in warn["msg"] and "ignored" in warn["msg"], warn
    sched = ms.event("scheduled", ship="job", timeout=15)
    nxt = time.mktime(time.strptime(re.search(r"next run (\d{4}-\d\d-\d\d \d\d:\d\d)", sched["msg"])[1],
                                    "%Y-%m-%d %H:%M"))
    assert 0 < nxt - time.time() <= 61, sched
    assert ms.stop() == 0


def test_a_time_scale_is_said_aloud(fleet):
    ms = start(fleet)
    warn = ms.event("schedule", timeout=15)
    assert "60 times faster" in warn["msg"], warn
    ms.event("fleet_ready", timeout=15)
    assert ms.stop() == 0
