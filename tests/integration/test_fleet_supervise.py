"""`mothership run`, supervising: critical crashes and the exit status,
exponential backoff (growth, cap, reset after stable uptime), the crash-loop
pause, health checks flipping a ship's circuit breaker through open,
half-open and closed (seen in events and in /metrics), healthcheck.restart,
and the /metrics series."""
import json
import re
import time

import pytest

from fleet_helpers import (PY, app, event_ms, free_port, http_get, metric,
                           parse_metrics, toml_str, wait_file, wait_gone)

BACKOFF = re.compile(r'restarting in (\d+)ms \(attempt (\d+)\)')


def scrape(port):
    status, body = http_get(port, "/metrics")
    assert status == 200, body
    return parse_metrics(body)


def poll_metrics(port, pred, timeout=5.0):
    """Scrape until pred(samples) holds; fail with the last page."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(port)
        if pred(m):
            return m
        if time.monotonic() >= deadline:
            pytest.fail(f"metrics never matched; last scrape:\n{http_get(port, '/metrics')[1]}")
        time.sleep(0.02)


# ------------------------------------------------------------------ critical crash
def test_critical_crash_stops_the_fleet_and_names_the_exit_status(fleet, tmp_path):
    gate = tmp_path / "gate"
    ms = fleet(f"""
        [[fleet.core]]
        name = "core"
        command = "sh"
        args = ["-c", "while [ ! -f {gate} ]; do sleep 0.02; done; echo bye; exit 7"]
        ready_after = "50ms"

        [[fleet.web]]
        name = "web"
        command = "sleep"
        args = ["100"]
        depends_on = ["core"]
        ready_after = "50ms"
    """)
    ms.event("fleet_ready")
    gate.write_text("")
    ex = ms.event("exited", ship="core")
    assert re.fullmatch(r'ship "core" \(pid \d+\) exited with status 7 after \d+ms; it is critical', ex["msg"]), ex
    assert ex["level"] == "error"
    sd = ms.event("shutdown")
    assert sd["msg"] == 'stopping the fleet: critical ship "core" exited with status 7', sd
    ms.event("stopped", ship="web")
    assert ms.wait_exit() == 1, ms.output()
    assert ms.events("stopped")[-1]["msg"] == "fleet stopped (exit 1)"


def test_critical_crash_by_signal_is_named(fleet):
    ms = fleet("""
        [[fleet.core]]
        name = "core"
        command = "sh"
        args = ["-c", "sleep 0.3; kill -KILL $$"]
        ready_after = "50ms"
    """)
    ms.event("ready", ship="core")
    ex = ms.event("exited", ship="core")
    assert re.fullmatch(r'ship "core" \(pid \d+\) was killed by signal 9 \(KILL\) after \d+ms; it is critical',
                        ex["msg"]), ex
    sd = ms.event("shutdown")
    assert sd["msg"] == 'stopping the fleet: critical ship "core" was killed by signal 9 (KILL)', sd
    assert ms.wait_exit() == 1, ms.output()


# ------------------------------------------------------------------ backoff
def backoffs(ms, ship, n, timeout=10.0):
    """The first n backoff events of ship, each with the delay and the time
    until the next start (from the events' own timestamps)."""
    out = []
    start = 0
    for _ in range(n):
        b = ms.event("backoff", ship=ship, start=start, timeout=timeout)
        s = ms.event("started", ship=ship, start=b["_i"] + 1, timeout=timeout)
        m = BACKOFF.search(b["msg"])
        assert m, b
        out.append(dict(delay=int(m.group(1)), attempt=int(m.group(2)), waited=event_ms(s) - event_ms(b),
                        msg=b["msg"]))
        start = s["_i"] + 1
    return out


def test_backoff_grows_exponentially_with_a_cap(fleet):
    mport = free_port()
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.workers]]
        name = "flaky"
        command = "sh"
        args = ["-c", "echo crashing; exit 1"]
        critical = false
        restart = {{ backoff = "100ms", max_backoff = "2s", loop_limit = 100 }}

        [[fleet.workers]]
        name = "capped"
        command = "sh"
        args = ["-c", "exit 2"]
        critical = false
        restart = {{ backoff = "100ms", max_backoff = "250ms", loop_limit = 100 }}
    """)
    got = backoffs(ms, "flaky", 4)
    assert 'ship "flaky" exited with status 1; restarting in' in got[0]["msg"], got
    assert [g["attempt"] for g in got] == [1, 2, 3, 4], got
    for k, g in enumerate(got):
        nominal = 100 * 2 ** k                       # 100, 200, 400, 800 with +-20% jitter
        assert 0.8 * nominal <= g["delay"] <= 1.2 * nominal, got
        # it really waited that long before starting again
        assert g["delay"] / 1000 - 0.01 <= g["waited"] <= g["delay"] / 1000 + 0.15, got
    for a, b in zip(got, got[1:]):
        assert 1.3 <= b["delay"] / a["delay"] <= 3.0, got
    capped = backoffs(ms, "capped", 4)
    assert 80 <= capped[0]["delay"] <= 120 and 160 <= capped[1]["delay"] <= 240, capped
    assert all(200 <= c["delay"] <= 300 for c in capped[2:]), capped
    # restarts are counted, with ship and group labels
    m = scrape(mport)
    assert metric(m, "mothership_ship_restarts_total", ship="flaky", group="workers") >= 4, m
    assert metric(m, "mothership_ship_restarts_total", ship="capped", group="workers") >= 4, m
    # both gave up once, so the launch is over; neither is critical, so the
    # fleet is live, with both listed as degraded
    assert metric(m, "mothership_fleet_up") == 1
    status, body = http_get(mport, "/health")
    assert status == 200, body
    h = json.loads(body)
    assert h["status"] == "up" and {d["name"] for d in h["degraded"]} == {"flaky", "capped"}, h
    assert ms.stop() == 0, ms.output()


def test_backoff_resets_after_stable_uptime(fleet, tmp_path):
    count = tmp_path / "count"
    ms = fleet(f"""
        [[fleet.workers]]
        name = "flaky"
        command = "sh"
        args = ["-c", "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; echo run $n; if [ $n -eq 3 ]; then sleep 0.6; fi; exit 1"]
        critical = false
        ready_after = "100ms"
        restart = {{ backoff = "100ms", max_backoff = "2s", reset_after = "400ms", loop_limit = 100 }}
    """)
    got = backoffs(ms, "flaky", 4)
    d = [g["delay"] for g in got]
    assert 80 <= d[0] <= 120 and 160 <= d[1] <= 240, got
    # run 3 stayed up 600ms > reset_after: back to the first delay
    assert 80 <= d[2] <= 120, got
    assert 160 <= d[3] <= 240, got
    assert ms.stop() == 0, ms.output()


def test_crash_loop_pauses_restarts(fleet):
    ms = fleet("""
        [[fleet.workers]]
        name = "looper"
        command = "sh"
        args = ["-c", "exit 1"]
        critical = false
        restart = { backoff = "100ms", max_backoff = "2s", loop_limit = 3, loop_window = "10s", loop_pause = "1s" }
    """)
    got = backoffs(ms, "looper", 2)
    assert 80 <= got[0]["delay"] <= 120 and 160 <= got[1]["delay"] <= 240, got
    ex = ms.event("exited", ship="looper", start=ms.events("started", ship="looper")[2]["_i"])
    loop = ms.event("crash_loop", ship="looper")
    assert loop["_i"] > ex["_i"]
    assert re.fullmatch(r'ship "looper" exited with status 1: 3 crashes within 10000ms; '
                        r'crash loop: pausing restarts for 1000ms', loop["msg"]), loop
    assert loop["level"] == "error"
    assert not [b for b in ms.events("backoff", ship="looper") if b["_i"] > ex["_i"]], ms.output()
    s = ms.event("started", ship="looper", start=loop["_i"] + 1, timeout=5)
    waited = event_ms(s) - event_ms(loop)
    assert 0.99 <= waited <= 1.2, (loop, s)
    # after the pause the backoff starts over
    b = ms.event("backoff", ship="looper", start=s["_i"] + 1)
    assert 80 <= int(BACKOFF.search(b["msg"]).group(1)) <= 120, b
    assert ms.stop() == 0, ms.output()


# ------------------------------------------------------------------ health checks and breakers
def test_health_flips_drive_the_circuit_breaker(fleet, tmp_path):
    """closed -> open after `failures` failed checks -> half-open after the
    cool-down -> (failing) open again -> half-open after the cool-down ->
    closed once the checks pass; each step in the events and /metrics."""
    port, mport = free_port(), free_port()
    sick = tmp_path / "sick"
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.api]]
        name = "api"
        command = {toml_str(PY)}
        args = [{toml_str(app("health_app.py"))}, "--port", "{port}", "--sick", "{sick}"]
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ path = "/health", interval = "100ms", timeout = "500ms", failures = 2, successes = 2, cooldown = "600ms" }}
    """)
    ms.event("fleet_ready")
    labels = dict(ship="api", group="api")
    m = scrape(mport)
    assert metric(m, "mothership_ship_healthy", **labels) == 1
    assert metric(m, "mothership_ship_breaker_state", **labels) == 0
    assert metric(m, "mothership_ship_status", **labels) == 1

    # healthy -> unhealthy: the breaker opens after `failures` failed checks
    sick.write_text("")
    u = ms.event("unhealthy", ship="api")
    assert u["msg"] == ('ship "api" is unhealthy: GET /health failed 2 times in a row (HTTP 503); '
                        'circuit open'), u
    m = scrape(mport)
    assert metric(m, "mothership_ship_breaker_state", **labels) == 1, m
    assert metric(m, "mothership_ship_healthy", **labels) == 0, m
    assert metric(m, "mothership_ship_health_checks_failed_total", **labels) >= 2, m
    assert not ms.events("healthy", ship="api")

    # open -> half-open after the cool-down; still failing: open again
    h1 = ms.event("breaker_half_open", ship="api", start=u["_i"])
    assert h1["msg"] == 'ship "api": circuit half-open', h1
    assert event_ms(h1) - event_ms(u) >= 0.59, (u, h1)
    o = ms.event("breaker_open", ship="api", start=h1["_i"])
    assert o["msg"] == 'ship "api" still failing its health check (HTTP 503); circuit open again', o
    m = scrape(mport)
    assert metric(m, "mothership_ship_breaker_state", **labels) == 1, m
    assert metric(m, "mothership_ship_healthy", **labels) == 0, m

    # passing again: the breaker stays open for the cool-down, goes
    # half-open, and only then closes
    sick.unlink()
    ok = ms.event("healthy", ship="api", start=o["_i"])
    assert ok["msg"] == 'ship "api" is healthy again; circuit closed', ok
    h2 = [e for e in ms.events("breaker_half_open", ship="api") if o["_i"] < e["_i"] < ok["_i"]]
    assert h2, "the breaker closed without going half-open:\n" + ms.output()
    assert event_ms(ok) - event_ms(o) >= 0.59, "closed before the cool-down ended:\n" + ms.output()
    m = scrape(mport)
    assert metric(m, "mothership_ship_breaker_state", **labels) == 0, m
    assert metric(m, "mothership_ship_healthy", **labels) == 1, m
    # the ship itself was never restarted
    assert len(ms.events("started", ship="api")) == 1
    assert metric(m, "mothership_ship_restarts_total", **labels) == 0
    assert ms.stop() == 0, ms.output()


def test_breaker_reaches_half_open_state_in_metrics(fleet, tmp_path):
    """The half-open state itself is visible in /metrics (2)."""
    port, mport = free_port(), free_port()
    sick = tmp_path / "sick"
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.api]]
        name = "api"
        command = {toml_str(PY)}
        args = [{toml_str(app("health_app.py"))}, "--port", "{port}", "--sick", "{sick}"]
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ path = "/health", interval = "100ms", failures = 1, successes = 8, cooldown = "200ms" }}
    """)
    ms.event("fleet_ready")
    sick.write_text("")
    u = ms.event("unhealthy", ship="api")
    sick.unlink()
    ms.event("breaker_half_open", ship="api", start=u["_i"])
    m = poll_metrics(mport, lambda m: metric(m, "mothership_ship_breaker_state", ship="api", group="api") == 2,
                     timeout=2)
    assert metric(m, "mothership_ship_healthy", ship="api", group="api") == 0, m
    ms.event("healthy", ship="api")
    m = scrape(mport)
    assert metric(m, "mothership_ship_breaker_state", ship="api", group="api") == 0, m
    assert ms.stop() == 0, ms.output()


def test_healthcheck_restart_restarts_the_ship(fleet, tmp_path):
    port, mport = free_port(), free_port()
    sick, pids = tmp_path / "sick", tmp_path / "pids"
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.api]]
        name = "api"
        command = {toml_str(PY)}
        args = [{toml_str(app("health_app.py"))}, "--port", "{port}", "--sick", "{sick}", "--pids", "{pids}"]
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ path = "/health", interval = "100ms", failures = 2, restart = true }}
    """)
    fleet.pids_from(pids)
    ms.event("fleet_ready")
    first = int(wait_file(pids).split()[0])
    sick.write_text("")
    u = ms.event("unhealthy", ship="api")
    r = ms.event("restart", ship="api", start=u["_i"])
    assert r["msg"] == 'restarting ship "api" (healthcheck.restart)', r
    ms.event("stopping", ship="api", start=r["_i"])
    ms.event("stopped", ship="api", start=r["_i"])
    s = ms.event("started", ship="api", start=r["_i"])
    assert not wait_gone([first], timeout=5), "the unhealthy process is still running"
    sick.unlink()
    ms.event("ready", ship="api", start=s["_i"])
    text = wait_file(pids, predicate=lambda t: len(t.split()) == 2)
    second = int(text.split()[1])
    assert second != first
    m = scrape(mport)
    assert metric(m, "mothership_ship_restarts_total", ship="api", group="api") == 1, m
    assert metric(m, "mothership_ship_healthy", ship="api", group="api") == 1, m
    assert ms.stop() == 0, ms.output()
    assert ms.events("shutdown")[0]["level"] != "error"


# ------------------------------------------------------------------ /metrics
def test_metrics_series(fleet, tmp_path):
    port, mport = free_port(), free_port()
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.jobs]]
        name = "migrate"
        command = "true"
        oneshot = true

        [[fleet.web]]
        name = "api"
        command = {toml_str(PY)}
        args = [{toml_str(app("health_app.py"))}, "--port", "{port}"]
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ path = "/health", interval = "100ms" }}
        depends_on = ["migrate"]

        [[fleet.workers]]
        name = "ticker"
        command = "sleep"
        args = ["100"]
        ready_after = "50ms"
    """)
    ms.event("fleet_ready")
    status, body = http_get(mport, "/metrics")
    assert status == 200
    for name, kind in [("mothership_ship_status", "gauge"), ("mothership_ship_healthy", "gauge"),
                       ("mothership_ship_restarts_total", "counter"), ("mothership_fleet_ships_total", "gauge"),
                       ("mothership_ship_breaker_state", "gauge")]:
        assert f"# TYPE {name} {kind}" in body, body
        assert f"# HELP {name} " in body, body
    m = parse_metrics(body)
    for ship, group in [("migrate", "jobs"), ("api", "web"), ("ticker", "workers")]:
        assert metric(m, "mothership_ship_status", ship=ship, group=group) == 1, (ship, body)
        assert metric(m, "mothership_ship_healthy", ship=ship, group=group) == 1, (ship, body)
        assert metric(m, "mothership_ship_restarts_total", ship=ship, group=group) == 0, (ship, body)
    assert metric(m, "mothership_ship_state", ship="migrate", group="jobs", state="done") == 1
    assert metric(m, "mothership_ship_state", ship="api", group="web", state="ready") == 1
    assert metric(m, "mothership_fleet_ships_total") == 3
    # breaker state only for health-checked ships
    assert metric(m, "mothership_ship_breaker_state", ship="api", group="web") == 0
    assert metric(m, "mothership_ship_breaker_state", ship="ticker", group="workers") is None
    assert http_get(mport, "/health")[0] == 200
    assert ms.stop() == 0, ms.output()
