"""A running fleet takes a new manifest on SIGHUP (the manifest file is read
again and only what changed is applied): unchanged entries keep their
process (same pid across ten reloads), a changed one restarts and the
others do not, a new one starts once its dependency is ready, a removed one
stops (dependents first), a bad manifest changes nothing (one error line,
the problems, reloads_total{result="failure"}), bays come and go with their
docking links, and the reload metrics. These fleets have no binds (no data
plane)."""
import os
import re
import signal
import socket
import ssl
import time

import pytest

from conftest import BUILD
from fleet_helpers import alive, free_port, http_get, metric, parse_metrics, toml_str, wait_file, wait_gone
from tls_helpers import make_cert
from http_helpers import wait_until

ECHO_BAY = os.path.join(BUILD, "examples", "bays", "echo-bay")


def ship(name, args=("100",), depends_on=(), extra=""):
    deps = ", ".join(toml_str(d) for d in depends_on)
    return (f'[[fleet.web]]\nname = "{name}"\ncommand = "sleep"\n'
            f'args = [{", ".join(toml_str(a) for a in args)}]\nready_after = "50ms"\n'
            f"depends_on = [{deps}]\ncritical = false\n{extra}\n")


def bay(name):
    return f'[[bays.websocket]]\nname = "{name}"\ncommand = {toml_str(ECHO_BAY)}\n'


class Reloading:
    """A fleet started from one manifest file, rewritten and SIGHUP'd."""

    def __init__(self, fleet, tmp_path, *entries, metrics=True):
        self.fleet = fleet
        self.path = tmp_path / "ship-manifest.toml"
        self.mport = free_port() if metrics else None
        self.head = f'[mothership]\nsocket_dir = "/tmp/msr{os.getpid()}-{id(self)}"\n'
        if metrics:
            self.head += f"metrics_port = {self.mport}\n"
        self.write(*entries)
        self.ms = fleet(self.path.read_text(), name="ship-manifest.toml")
        self.ms.event("fleet_ready", timeout=15)

    def write(self, *entries):
        self.path.write_text(self.head + "\n" + "\n".join(entries))

    def reload(self, *entries, outcome="reloaded"):
        """Rewrite the manifest (unless no entries are given), SIGHUP, and
        wait for the reload's outcome line; return it."""
        if entries:
            self.write(*entries)
        start = len(self.ms.lines)
        self.ms.signal(signal.SIGHUP)
        return self.ms.event(outcome, start=start, timeout=10)

    def pid(self, name, start=0):
        """The pid of the last "started" event of name (from index start)."""
        e = [e for e in self.ms.events("started", ship=name) if e["_i"] >= start]
        assert e, self.ms.output()
        return int(re.search(r"pid (\d+)", e[-1]["msg"]).group(1))

    def metrics(self):
        status, body = http_get(self.mport, "/metrics")
        assert status == 200, body
        return body


def test_an_unchanged_ship_keeps_its_pid_across_ten_reloads(fleet, tmp_path):
    r = Reloading(fleet, tmp_path, ship("db"), ship("web", depends_on=["db"]))
    db, web = r.pid("db"), r.pid("web")
    for k in range(10):
        # a new entry each time, so that every reload has something to do
        out = r.reload(ship("db"), ship("web", depends_on=["db"]), ship(f"job{k}"))
        assert "1 started" in out["msg"], out
    assert r.pid("db") == db and r.pid("web") == web
    assert alive(db) and alive(web)
    assert len(r.ms.events("started", ship="db")) == 1
    assert len(r.ms.events("started", ship="web")) == 1
    samples = parse_metrics(r.metrics())
    assert metric(samples, "mothership_config_reloads_total", result="success") == 10
    assert metric(samples, "mothership_config_reloads_total", result="failure") == 0


def test_a_changed_ship_restarts_and_the_others_do_not(fleet, tmp_path):
    r = Reloading(fleet, tmp_path, ship("db"), ship("web", depends_on=["db"]))
    db, web = r.pid("db"), r.pid("web")
    start = len(r.ms.lines)
    out = r.reload(ship("db", args=["200"]), ship("web", depends_on=["db"]))
    assert re.search(r"1 restarted \(db: args\), 0 started, 0 stopped, 1 unchanged", out["msg"]), out
    r.ms.event("ready", ship="db", start=start)
    new_db = r.pid("db", start)
    assert new_db != db
    wait_gone([db])
    assert r.pid("web") == web and alive(web)
    def argv():
        with open(f"/proc/{new_db}/cmdline", "rb") as f:
            return f.read().split(b"\0")

    # the pid is reported between the shim's fork and the command's exec
    wait_until(lambda: argv()[1:2] == [b"200"], timeout=10.0, what="the new command line")
    # a restart for a new definition is not a crash: restarts stay 0
    samples = parse_metrics(r.metrics())
    assert metric(samples, "mothership_ship_restarts_total", ship="db", group="web") == 0


def test_a_new_ship_starts_after_its_dependency(fleet, tmp_path):
    r = Reloading(fleet, tmp_path, ship("db"))
    start = len(r.ms.lines)
    gate = tmp_path / "gate"
    slow = ship("cache", args=["-c", f"while [ ! -f {gate} ]; do sleep 0.02; done; exec sleep 100"],
                ).replace('command = "sleep"', 'command = "sh"')
    r.reload(ship("db"), slow, ship("api", depends_on=["cache"]))
    r.ms.event("started", ship="cache", start=start)
    assert not r.ms.events("started", ship="api"), r.ms.output()
    gate.write_text("")
    ready = r.ms.event("ready", ship="cache", start=start)
    api = r.ms.event("started", ship="api", start=start)
    assert api["_i"] > ready["_i"]
    samples = parse_metrics(r.metrics())
    assert metric(samples, "mothership_ship_status", ship="api", group="web") in (0, 1)


def test_a_removed_ship_stops_dependents_first_and_leaves_the_metrics(fleet, tmp_path):
    r = Reloading(fleet, tmp_path, ship("keep"), ship("db"), ship("web", depends_on=["db"]))
    keep, db, web = r.pid("keep"), r.pid("db"), r.pid("web")
    start = len(r.ms.lines)
    out = r.reload(ship("keep"))
    assert "0 started, 2 stopped, 1 unchanged" in out["msg"], out
    s_web = r.ms.event("stopped", ship="web", start=start)
    s_db = r.ms.event("stopped", ship="db", start=start)
    stopping_db = r.ms.event("stopping", ship="db", start=start)
    assert stopping_db["_i"] > s_web["_i"], r.ms.output()
    assert s_db["_i"] > s_web["_i"]
    wait_gone([db, web])
    assert alive(keep) and r.pid("keep") == keep
    body = r.metrics()
    assert 'ship="db"' not in body and 'ship="web"' not in body
    assert 'mothership_ship_status{ship="keep",group="web"} 1' in body
    # it stays stopped: a later reload does not bring it back, and the fleet stops cleanly
    r.reload(ship("keep"), ship("other"))
    assert not r.ms.events("started", ship="db")[1:]
    assert r.ms.stop() == 0, r.ms.output()


def test_a_changed_dependency_restarts_after_its_removed_dependent_stopped(fleet, tmp_path):
    r = Reloading(fleet, tmp_path, ship("db"), ship("web", depends_on=["db"]))
    db, web = r.pid("db"), r.pid("web")
    start = len(r.ms.lines)
    out = r.reload(ship("db", args=["200"]))
    assert "1 restarted (db: args), 0 started, 1 stopped, 0 unchanged" in out["msg"], out
    s_web = r.ms.event("stopped", ship="web", start=start)
    stopping_db = r.ms.event("stopping", ship="db", start=start)
    assert stopping_db["_i"] > s_web["_i"], r.ms.output()
    r.ms.event("ready", ship="db", start=stopping_db["_i"])
    assert r.pid("db", start) != db
    wait_gone([db, web])
    assert not [e for e in r.ms.events("started", ship="web") if e["_i"] >= start]
    assert r.ms.stop() == 0, r.ms.output()


def test_a_fixed_job_runs_again_and_what_was_skipped_behind_it_starts(fleet, tmp_path):
    def job(code):
        return (f'[[fleet.jobs]]\nname = "migrate"\ncommand = "sh"\nargs = ["-c", "exit {code}"]\n'
                f"oneshot = true\ncritical = false\n")
    r = Reloading(fleet, tmp_path, job(1), ship("web", depends_on=["migrate"]), ship("api", depends_on=["web"]))
    r.ms.event("skipped", ship="api")
    start = len(r.ms.lines)
    out = r.reload(job(0), ship("web", depends_on=["migrate"]), ship("api", depends_on=["web"]))
    assert "1 restarted (migrate: args)" in out["msg"], out
    done = r.ms.event("done", ship="migrate", start=start)
    web = r.ms.event("started", ship="web", start=start)
    api = r.ms.event("ready", ship="api", start=start)
    assert done["_i"] < web["_i"] < api["_i"]


def test_a_shutdown_while_a_removed_ship_is_still_stopping_waits_for_it(fleet, tmp_path):
    stubborn = ship("stubborn", args=["-c", "trap '' TERM; echo $$ > stubborn.pid; while :; do sleep 0.05; done"],
                    extra='shutdown_timeout = "1s"').replace('command = "sleep"', 'command = "sh"')
    r = Reloading(fleet, tmp_path, ship("keep"), stubborn)
    pid = r.pid("stubborn")
    wait_file(tmp_path / "stubborn.pid")  # written once SIGTERM is ignored
    start = len(r.ms.lines)
    r.reload(ship("keep"))
    r.ms.event("stopping", ship="stubborn", start=start)
    assert alive(pid)
    assert r.ms.stop() == 0, r.ms.output()
    kill = r.ms.event("kill", ship="stubborn", start=start)
    stopped = r.ms.events("stopped")
    assert stopped[-1]["msg"] == "fleet stopped (exit 0)" and stopped[-1]["_i"] > kill["_i"]
    assert wait_gone([pid]) == []


def test_a_changed_ship_that_exits_while_waiting_to_restart_forgets_its_old_definition(fleet, tmp_path):
    """db changes, but waits to restart until web, removed and stubborn,
    has stopped; meanwhile db's old process exits by itself and db starts
    on its new definition. From then on db is stopped as that definition
    says (SIGTERM), not as the old one did (SIGINT)."""
    crash = tmp_path / "crash"
    old_db = ship("db", args=["-c", f"while [ ! -f {crash} ]; do sleep 0.02; done; exit 1"],
                  extra='stop_signal = "SIGINT"').replace('command = "sleep"', 'command = "sh"')
    stubborn = ship("web", args=["-c", "trap '' TERM; echo $$ > web.pid; while :; do sleep 0.05; done"],
                    depends_on=["db"], extra='shutdown_timeout = "3s"').replace('command = "sleep"', 'command = "sh"')
    r = Reloading(fleet, tmp_path, old_db, stubborn)
    web = r.pid("web")
    wait_file(tmp_path / "web.pid")  # written once SIGTERM is ignored
    start = len(r.ms.lines)
    out = r.reload(ship("db"))
    assert "1 restarted (db: " in out["msg"] and "1 stopped" in out["msg"], out
    r.ms.event("stopping", ship="web", start=start)
    crash.write_text("")  # db's old process exits on its own while web is still stopping
    r.ms.event("exited", ship="db", start=start)
    r.ms.event("stopped", ship="web", start=start, timeout=15)
    ready = r.ms.event("ready", ship="db", start=start, timeout=15)
    assert wait_gone([web]) == []
    assert r.ms.stop() == 0, r.ms.output()
    stopping = r.ms.event("stopping", ship="db", start=ready["_i"])
    assert "SIGTERM" in stopping["msg"], r.ms.output()


def https_get(port, path="/index.html"):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                         server_hostname="localhost") as c:
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return data


def test_binds_written_in_another_order_keep_serving_tls(fleet, tmp_path):
    """A reload that restarts a ship and writes the same binds in another
    order: the TLS bind still completes its handshake with its certificate
    (the TLS server kept across the reload knows binds by their place)."""
    make_cert(tmp_path / "certs", "site")
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("hello\n")
    tport, pport = free_port(), free_port()
    https = f'https = "127.0.0.1:{tport}"\n'
    http = f'http = "127.0.0.1:{pport}"\n'
    rest = ('[mothership.tls]\ncert = "certs/site.crt"\nkey = "certs/site.key"\n'
            '[[mothership.static_dirs]]\npath = "./public"\nprefix = "/"\n')
    r = Reloading(fleet, tmp_path, "[mothership.bind]\n" + https + http + rest, ship("a"))
    assert https_get(tport).endswith(b"hello\n")
    out = r.reload("[mothership.bind]\n" + http + https + rest, ship("a", args=["200"]))
    assert "1 restarted (a: args)" in out["msg"], out
    data = https_get(tport)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello\n"), data
    assert r.ms.stop() == 0, r.ms.output()


def test_a_shutdown_stops_a_removed_dependent_before_what_it_depends_on(fleet, tmp_path):
    """web (depends on db) is removed and is slow to stop; the fleet is
    stopped meanwhile: db, which stays, is stopped only once web has."""
    stubborn = ship("web", args=["-c", "trap '' TERM; echo $$ > web.pid; while :; do sleep 0.05; done"],
                    depends_on=["db"], extra='shutdown_timeout = "2s"').replace('command = "sleep"', 'command = "sh"')
    r = Reloading(fleet, tmp_path, ship("db"), stubborn)
    wait_file(tmp_path / "web.pid")  # written once SIGTERM is ignored
    start = len(r.ms.lines)
    r.reload(ship("db"))
    r.ms.event("stopping", ship="web", start=start)
    assert r.ms.stop() == 0, r.ms.output()
    stopped_web = r.ms.event("stopped", ship="web", start=start)
    stopping_db = r.ms.event("stopping", ship="db", start=start)
    assert stopping_db["_i"] > stopped_web["_i"], r.ms.output()


def test_two_reloads_while_a_restart_waits_stop_the_process_as_it_was_started(fleet, tmp_path):
    """db changes twice while its restart waits for web (removed, slow to
    stop): its process is stopped as the definition it runs with says
    (SIGINT), not as the definition in between (SIGTERM)."""
    old_db = ship("db", extra='stop_signal = "SIGINT"')
    stubborn = ship("web", args=["-c", "trap '' TERM; echo $$ > web.pid; while :; do sleep 0.05; done"],
                    depends_on=["db"], extra='shutdown_timeout = "1s"').replace('command = "sleep"', 'command = "sh"')
    r = Reloading(fleet, tmp_path, old_db, stubborn)
    wait_file(tmp_path / "web.pid")  # written once SIGTERM is ignored
    start = len(r.ms.lines)
    r.reload(ship("db", args=["200"]))
    r.ms.event("stopping", ship="web", start=start)
    r.reload(ship("db", args=["300"]))
    stopped_web = r.ms.event("stopped", ship="web", start=start)
    stopping = r.ms.event("stopping", ship="db", start=stopped_web["_i"])
    assert "SIGINT" in stopping["msg"], r.ms.output()
    ready = r.ms.event("ready", ship="db", start=stopping["_i"])
    assert ready
    assert r.ms.stop() == 0, r.ms.output()


def test_a_bad_manifest_changes_nothing(fleet, tmp_path):
    r = Reloading(fleet, tmp_path, ship("db"), ship("web", depends_on=["db"]))
    db, web = r.pid("db"), r.pid("web")
    start = len(r.ms.lines)
    r.path.write_text(r.head + ship("db", args=["300"]) + ship("web", depends_on=["nope"]) + "[[fleet.web]]\nname = 3\n")
    out = r.reload(outcome="reload_refused")
    assert re.fullmatch(r"reload refused \(SIGHUP\): \d+ problems? in .*ship-manifest.toml, "
                        r"the fleet keeps running on the old manifest", out["msg"]), out
    r.ms.event("reload_problem", start=out["_i"], msg="nope")
    problems = r.ms.events("reload_problem")
    assert problems and all(re.match(r".*ship-manifest.toml:\d+:\d+: ", p["msg"]) for p in problems), problems
    assert any("nope" in p["msg"] for p in problems), problems
    assert out["level"] == "error"
    assert [e for e in r.ms.events() if e["_i"] >= start and e["event"] in ("stopping", "started", "reloaded")] == []
    assert r.pid("db") == db and r.pid("web") == web and alive(db) and alive(web)
    samples = parse_metrics(r.metrics())
    assert metric(samples, "mothership_config_reloads_total", result="failure") == 1
    assert metric(samples, "mothership_config_reloads_total", result="success") == 0
    # a good one afterwards applies
    r.reload(ship("db"), ship("web", depends_on=["db"]), ship("more"))
    samples = parse_metrics(r.metrics())
    assert metric(samples, "mothership_config_reloads_total", result="success") == 1


def test_reload_metrics_are_promtool_clean(fleet, tmp_path):
    r = Reloading(fleet, tmp_path, ship("db"))
    before = time.time()
    r.reload(ship("db"), ship("web"))
    body = r.metrics()
    assert "# TYPE mothership_config_reloads_total counter" in body
    assert "# TYPE mothership_config_last_reload_success_timestamp_seconds gauge" in body
    samples = parse_metrics(body)
    ts = metric(samples, "mothership_config_last_reload_success_timestamp_seconds")
    assert before - 1 <= ts <= time.time() + 1
    from test_metrics_ops import PROMTOOL, promtool_findings
    if os.path.exists(PROMTOOL):
        assert promtool_findings(body) == [], body


def test_bays_added_and_removed_get_and_lose_their_docking_links(fleet, tmp_path):
    if not os.path.exists(ECHO_BAY):
        pytest.skip("the example bays are not built")
    r = Reloading(fleet, tmp_path, ship("db"))
    db = r.pid("db")
    start = len(r.ms.lines)
    out = r.reload(ship("db"), bay("echo"))
    assert "1 started" in out["msg"], out
    ready = r.ms.event("ready", ship="echo", start=start, timeout=15)
    assert "dock" in ready["msg"], ready
    body = r.metrics()
    assert 'mothership_bay_docked{bay="echo"} 1' in body, body
    echo = r.pid("echo")
    start = len(r.ms.lines)
    r.reload(ship("db"), bay("chat"))
    r.ms.event("stopped", ship="echo", start=start)
    wait_gone([echo])
    r.ms.event("ready", ship="chat", start=start, timeout=15)
    body = r.metrics()
    assert 'bay="echo"' not in body and 'mothership_bay_docked{bay="chat"} 1' in body, body
    assert r.pid("db") == db and alive(db)
    assert r.ms.stop() == 0, r.ms.output()
