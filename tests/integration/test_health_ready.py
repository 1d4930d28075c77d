"""/health (liveness) and /ready (readiness) on the metrics endpoint: when
the launch is over, non-critical entries that are down (listed under
"degraded", never holding the launch or liveness), critical entries that are
down (503), and the drain (/ready 503 at once, /health 200 until processes
are stopped). See docs/metrics.md."""
import json
import signal
import threading
import time

import requests

from fleet_helpers import PY, app, free_port, http_get, metric, parse_metrics, toml_str
from http_helpers import echo_ship, msum, start_proxy, wait_until


def get_json(port, path):
    status, body = http_get(port, path)
    return status, json.loads(body)


def test_crash_looping_worker_does_not_hold_the_launch_or_liveness(fleet):
    """A non-critical worker that exits 1 at once, forever, next to a good
    ship: the launch ends once it has crashed, /health and /ready are 200,
    and it is listed under "degraded"."""
    mport = free_port()
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.web]]
        name = "good"
        command = "sleep"
        args = ["100"]
        ready_after = "50ms"

        [[fleet.workers]]
        name = "bad"
        command = "sh"
        args = ["-c", "exit 1"]
        critical = false
        restart = {{ backoff = "50ms", max_backoff = "100ms", loop_limit = 1000 }}
    """)
    ready = ms.event("fleet_ready", timeout=10)
    assert ready["msg"].startswith("fleet ready: 2 entries in "), ready
    assert "; not up: bad (" in ready["msg"], ready
    status, h = get_json(mport, "/health")
    assert status == 200, h
    assert h["status"] == "up", h
    assert [d["name"] for d in h["degraded"]] == ["bad"], h
    assert h["degraded"][0]["state"] in ("backoff", "starting"), h
    assert "down" not in h and "waiting_for" not in h, h
    status, r = get_json(mport, "/ready")
    assert status == 200, r
    assert r["status"] == "up" and [d["name"] for d in r["degraded"]] == ["bad"], r
    m = parse_metrics(http_get(mport, "/metrics")[1])
    assert metric(m, "mothership_fleet_up") == 1
    assert metric(m, "mothership_fleet_ready") == 1
    # it keeps crashing: still live
    ms.event("backoff", ship="bad", start=ms.event("started", ship="bad", start=ready["_i"])["_i"])
    assert http_get(mport, "/health")[0] == 200
    assert ms.stop() == 0, ms.output()


def test_a_dependent_of_a_crash_looper_does_not_hold_the_launch(fleet):
    mport = free_port()
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.web]]
        name = "good"
        command = "sleep"
        args = ["100"]
        ready_after = "50ms"

        [[fleet.workers]]
        name = "bad"
        command = "sh"
        args = ["-c", "exit 1"]
        critical = false
        restart = {{ backoff = "5s" }}

        [[fleet.workers]]
        name = "after-bad"
        command = "sleep"
        args = ["100"]
        critical = false
        depends_on = ["bad"]
    """)
    ms.event("fleet_ready", timeout=10)
    status, h = get_json(mport, "/health")
    assert status == 200, h
    assert {d["name"]: d["state"] for d in h["degraded"]} == {"bad": "backoff", "after-bad": "waiting"}, h
    assert ms.stop() == 0, ms.output()


def test_ready_is_503_until_the_launch_is_over(fleet, tmp_path):
    gate = tmp_path / "gate"
    px = start_proxy(fleet, echo_ship("app", gate=gate), wait=False)
    px.ms.event("started", ship="app")
    for path in ("/ready", "/health"):
        status, h = get_json(px.mport, path)
        assert status == 503, (path, h)
        assert h == {"status": "launching", "waiting_for": [{"name": "app", "state": "starting"}]}, (path, h)
    gate.write_text("")
    px.ms.event("fleet_ready", timeout=10)
    for path in ("/ready", "/health"):
        status, h = get_json(px.mport, path)
        assert (status, h) == (200, {"status": "up"}), (path, h)
    assert px.ms.stop() == 0, px.ms.output()


def test_a_critical_ship_failing_its_health_check_makes_both_503(fleet, tmp_path):
    port, mport = free_port(), free_port()
    sick = tmp_path / "sick"
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.data]]
        name = "db"
        command = {toml_str(PY)}
        args = [{toml_str(app("health_app.py"))}, "--port", "{port}", "--sick", "{sick}"]
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ path = "/health", interval = "100ms", timeout = "500ms", failures = 1, cooldown = "300ms" }}
    """)
    ms.event("fleet_ready", timeout=15)
    assert http_get(mport, "/health")[0] == 200
    sick.write_text("")
    unhealthy = ms.event("unhealthy", ship="db", timeout=10)
    for path in ("/health", "/ready"):
        status, h = get_json(mport, path)
        assert status == 503, (path, h)
        assert h == {"status": "down", "down": [{"name": "db", "state": "unhealthy"}]}, (path, h)
    m = parse_metrics(http_get(mport, "/metrics")[1])
    assert metric(m, "mothership_fleet_up") == 0 and metric(m, "mothership_fleet_ready") == 0
    sick.unlink()
    ms.event("healthy", ship="db", start=unhealthy["_i"], timeout=10)
    assert http_get(mport, "/health")[0] == 200
    assert http_get(mport, "/ready")[0] == 200
    assert ms.stop() == 0, ms.output()


def test_a_critical_ship_skipped_behind_a_failed_job_is_down(fleet):
    mport = free_port()
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.jobs]]
        name = "seed"
        command = "sh"
        args = ["-c", "exit 3"]
        oneshot = true
        critical = false

        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        depends_on = ["seed"]
    """)
    ms.event("skipped", ship="app")
    ms.event("fleet_ready", timeout=10)
    status, h = get_json(mport, "/health")
    assert status == 503, h
    assert h == {"status": "down", "down": [{"name": "app", "state": "skipped"}],
                 "degraded": [{"name": "seed", "state": "failed"}]}, h
    assert http_get(mport, "/ready")[0] == 503
    assert ms.stop() == 0, ms.output()


def test_drain_ready_503_at_once_health_200_until_processes_stop(fleet):
    """SIGTERM with a slow request in flight: /ready answers 503 from the
    first moment of the drain, /health stays 200 ("draining") while the
    request finishes (503 "stopping" once ships are being stopped is in
    test_fleet_stop.py)."""
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]))
    assert http_get(px.mport, "/ready")[0] == 200
    result = {}

    def slow():
        try:
            r = requests.get(px.url("/slow?delay=2500"), timeout=15)
            result["status"] = r.status_code
        except Exception as e:   # noqa: BLE001
            result["error"] = repr(e)

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: msum(px.metrics(), "mothership_http_connections_open") >= 1, timeout=5,
               what="the slow request to be accepted")
    time.sleep(0.2)   # let it reach the backend: there is no event for "the upstream has the request"
    px.ms.signal(signal.SIGTERM)
    px.ms.event("shutdown")
    status, r = get_json(px.mport, "/ready")
    assert status == 503 and r["status"] == "draining", r
    status, h = get_json(px.mport, "/health")
    assert status == 200 and h["status"] == "draining", h
    assert "status" not in result, "the request finished before the drain was seen"
    t.join(15)
    assert result.get("status") == 200, result
    px.ms.event("stopping", ship="app", timeout=10)
    assert px.ms.wait_exit(10) == 0, px.ms.output()
