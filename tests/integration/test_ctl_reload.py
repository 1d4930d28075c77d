"""Reload through the CLI and the control API, with the real binary: the
manifest file is edited, then `mothership reload --check` prints the plan
and changes nothing, `mothership reload` applies it (the changed ship gets a
new pid, the new one starts, the removed one stops, the unchanged one keeps
its pid), a manifest with problems changes nothing (exit 1, file:line:col
lines, one line in the fleet's log), `POST /v1/reload` answers 200 / 422
with the documented JSON, and the reloads are counted (status, /metrics)
and logged with who asked."""
import json
import os
import re

from fleet_helpers import alive, free_port, http_get, metric, parse_metrics, wait_gone
from test_ctl import ctl, curl, sockdir, wait_until  # noqa: F401 (sockdir: a fixture)

HEAD = """\
[mothership]
socket_dir = "{sockdir}"
metrics_port = {metrics}
workers = {workers}

[mothership.bind]
http = "127.0.0.1:{port}"
"""


def ship(name, say, extra=""):
    return (f'[[fleet.web]]\nname = "{name}"\ncommand = "sh"\n'
            f'args = ["-c", "echo {say}; while true; do sleep 0.1; done"]\n'
            f'critical = false\nready_after = "100ms"\n{extra}\n')


class Fleet:
    """A fleet whose manifest file the test rewrites between reloads."""

    def __init__(self, fleet, sockdir):
        self.fmt = dict(sockdir=sockdir, metrics=free_port(), port=free_port(), workers=1)
        self.dbport = free_port()
        self.path = str(fleet.tmp / "ship-manifest.toml")
        self.sock = os.path.join(sockdir, "mothership.ctl")
        self.ms = fleet(self.v1(), name="ship-manifest.toml")
        self.ms.wait_for(r"fleet ready", timeout=15)

    def db(self, routes):
        """A routed ship (a Python HTTP server), so that routes swap."""
        return (f'[[fleet.web]]\nname = "db"\ncommand = "python3"\n'
                f'args = ["-m", "http.server", "{self.dbport}", "--bind", "127.0.0.1"]\n'
                f'bind = "127.0.0.1:{self.dbport}"\nroutes = {json.dumps(routes)}\ncritical = false\n\n')

    def v1(self):
        return (HEAD.format(**self.fmt) + "\n" + ship("web", "web v1") + self.db(["http:/db"])
                + ship("old", "old up"))

    def v2(self):
        """web changed (args), db's routes only (a swap), old removed, cron
        new, workers changed (takes a restart of Mothership)."""
        return (HEAD.format(**dict(self.fmt, workers=2)) + "\n" + ship("web", "web v2")
                + self.db(["http:/db", "http:/db2"]) + ship("cron", "cron up"))

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def status(self):
        """status --json, by the socket (the manifest file may be broken)."""
        r = ctl(self.path, "status", "--json", "--socket", self.sock)
        assert r.returncode == 0, r
        doc = json.loads(r.stdout)
        return {e["name"]: e for e in doc["entries"]}, doc

    def pids(self):
        return {n: e["pid"] for n, e in self.status()[0].items()}

    def settled(self):
        entries, _ = self.status()
        return all(e["state"] == "ready" for e in entries.values()) and entries

    def metrics(self):
        status, body = http_get(self.fmt["metrics"], "/metrics")
        assert status == 200, body
        return parse_metrics(body)


PLAN_V2 = {"restart": ["web"], "why": {"web": "args"}, "start": ["cron"], "stop": ["old"],
           "unchanged": ["db"]}


def check_plan(plan):
    for k, v in PLAN_V2.items():
        assert plan[k] == v, plan
    assert any("route" in s for s in plan["swap"]), plan
    assert any("workers" in s for s in plan["needs_restart"]), plan
    assert list(plan) == ["restart", "why", "start", "stop", "unchanged", "swap", "needs_restart"], plan


def test_reload_check_prints_the_plan_and_changes_nothing(fleet, sockdir):
    f = Fleet(fleet, sockdir)
    before = f.pids()
    f.write(f.v2())
    r = ctl(f.path, "reload", "--check")
    assert r.returncode == 0, r
    assert r.stderr == "", r
    lines = r.stdout.splitlines()
    assert "restart: web (args)" in lines, r.stdout
    assert "start: cron" in lines, r.stdout
    assert "stop: old" in lines, r.stdout
    assert "unchanged: 1 entry" in lines, r.stdout
    assert any(l.startswith("swap: ") and "route" in l for l in lines), r.stdout
    assert any(l.startswith("needs a restart of Mothership: ") and "workers" in l for l in lines), r.stdout
    # the API's check says the same, as JSON
    code, body = curl(f.sock, "POST", "/v1/reload", {"check": True})
    assert code == 200 and body["result"] == "checked" and body["problems"] == [], body
    check_plan(body["plan"])
    # nothing changed: the same processes, nothing started or stopped
    assert f.pids() == before
    assert all(alive(p) for p in before.values())
    assert not f.ms.events("started", ship="cron")
    assert len(f.ms.events("started", ship="web")) == 1
    _, doc = f.status()
    assert doc["fleet"]["reloads"] == {"success": 0, "failure": 0}, doc
    assert metric(f.metrics(), "mothership_config_reloads_total", result="success") == 0


def test_reload_applies_only_what_changed(fleet, sockdir):
    f = Fleet(fleet, sockdir)
    before = f.pids()
    f.write(f.v2())
    start = len(f.ms.lines)
    r = ctl(f.path, "reload")
    assert r.returncode == 0, r
    assert "restart: web (args)" in r.stdout.splitlines(), r
    entries = wait_until(f.settled, "the reloaded fleet to settle")
    assert list(entries) == ["web", "db", "cron"]
    after = {n: e["pid"] for n, e in entries.items()}
    assert after["db"] == before["db"]            # unchanged: the same process
    assert after["web"] != before["web"] and alive(after["web"])
    assert alive(after["cron"])
    wait_gone([before["web"], before["old"]])    # the old web and the removed ship
    assert f.ms.event("started", ship="cron", start=start)
    # logged once, with who asked
    f.ms.event("control", msg=r"^uid \d+ pid \d+: reload$", start=start)
    line = f.ms.event("reloaded", start=start)
    assert re.search(r"^reload \(uid \d+ pid \d+\): 1 restarted \(web: args\), 1 started, 1 stopped, 1 unchanged",
                     line["msg"]), line
    _, doc = f.status()
    assert doc["fleet"]["reloads"] == {"success": 1, "failure": 0}, doc
    samples = f.metrics()
    assert metric(samples, "mothership_config_reloads_total", result="success") == 1
    assert metric(samples, "mothership_config_reloads_total", result="failure") == 0
    # the swapped route table is in use: db's new route reaches db (its own
    # 404 page, not the proxy's)
    status, body = http_get(f.fmt["port"], "/db2")
    assert status == 404 and "File not found" in body, (status, body)
    # workers still runs as started: the next plan says so again
    r = ctl(f.path, "reload", "--check")
    assert r.returncode == 0, r
    assert any(l.startswith("needs a restart of Mothership: ") and "workers" in l
               for l in r.stdout.splitlines()), r.stdout


def test_reload_of_a_bad_manifest_changes_nothing(fleet, sockdir):
    f = Fleet(fleet, sockdir)
    before = f.pids()
    f.write(f.v2().replace('command = "sh"', 'comand = "sh"', 1))
    start = len(f.ms.lines)
    r = ctl(f.path, "reload")
    assert r.returncode == 1, r
    assert r.stdout == "", r
    problems = r.stderr.splitlines()
    assert problems and all(re.match(re.escape(f.path) + r":\d+:\d+: ", p) for p in problems), r.stderr
    assert any('unknown key "comand"' in p for p in problems), r.stderr
    # the fleet logged one line (then the problems) and changed nothing
    refused = f.ms.event("reload_refused", start=start)
    assert re.search(r"^reload refused \(uid \d+ pid \d+\): \d+ problems? in .*ship-manifest.toml, "
                     r"the fleet keeps running on the old manifest$", refused["msg"]), refused
    assert len(f.ms.events("reload_refused")) == 1
    logged = [e["msg"] for e in f.ms.events("reload_problem")]
    assert logged == problems, (logged, problems)
    assert f.pids() == before
    assert not f.ms.events("started", ship="cron") and not f.ms.events("reloaded")
    # the API says the same: 422 with the problems
    code, body = curl(f.sock, "POST", "/v1/reload", {})
    assert code == 422, body
    assert list(body) == ["result", "problems"] and body["result"] == "refused", body
    assert [p["text"] for p in body["problems"]] == problems, body
    assert all(list(p) == ["text"] for p in body["problems"]), body
    # --check is refused the same way
    r = ctl(f.path, "reload", "--check")
    assert r.returncode == 1 and r.stderr.splitlines() == problems, r
    _, doc = f.status()
    assert doc["fleet"]["reloads"] == {"success": 0, "failure": 3}, doc
    assert metric(f.metrics(), "mothership_config_reloads_total", result="failure") == 3
    assert f.pids() == before


def test_post_reload_applies_and_answers_the_documented_shape(fleet, sockdir):
    f = Fleet(fleet, sockdir)
    before = f.pids()
    f.write(f.v2())
    start = len(f.ms.lines)
    code, body = curl(f.sock, "POST", "/v1/reload", {"check": False})
    assert code == 200, body
    assert list(body) == ["result", "problems", "plan"], body
    assert body["result"] == "applied" and body["problems"] == [], body
    check_plan(body["plan"])
    entries = wait_until(f.settled, "the reloaded fleet to settle")
    assert entries["db"]["pid"] == before["db"] and entries["web"]["pid"] != before["web"]
    f.ms.event("control", msg=r"^uid \d+ pid \d+: reload$", start=start)
    f.ms.event("reloaded", msg=r"^reload \(uid \d+ pid \d+\): ", start=start)
    # the same manifest again: nothing to do, counted as a success
    code, body = curl(f.sock, "POST", "/v1/reload", {})
    assert code == 200 and body["result"] == "applied", body
    assert body["plan"]["restart"] == [] and body["plan"]["unchanged"] == ["web", "db", "cron"], body
    r = ctl(f.path, "reload")  # workers still runs as Mothership started it
    assert (r.returncode, r.stdout) == (0, "unchanged: 3 entries\n"
                                           "needs a restart of Mothership: [mothership] workers\n"), r
    _, doc = f.status()
    assert doc["fleet"]["reloads"] == {"success": 3, "failure": 0}, doc
    samples = f.metrics()
    assert metric(samples, "mothership_config_reloads_total", result="success") == 3
    assert metric(samples, "mothership_config_last_reload_success_timestamp_seconds") > 0
    assert {n: e["pid"] for n, e in f.status()[0].items()} == {n: e["pid"] for n, e in entries.items()}
