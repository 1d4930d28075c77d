"""A healthcheck with a protocol: readiness and health checks that speak
the server's protocol (postgres, redis, mysql), judged by the same code as
the uplink checks. A fake server (apps/fake_db.py) accepts connections at
once but answers "not yet" (57P03, -LOADING, ERR 1040) until the test
removes its flag file, so a check that only connects would call it ready:
the dependent must wait for the real answer, the ready message must say
what proved it, and going back to "not yet" must turn it unhealthy."""
import json

import pytest

from fleet_helpers import PY, app, free_port, http_get, toml_str

CASES = [
    ("postgres", "postgres asked for authentication (SASL)",
     "not ready: the database system is starting up (57P03)"),
    ("redis", "+PONG",
     "not ready: redis answered -LOADING Redis is loading the dataset in memory"),
    ("mysql", "mysql 8.0.36-fake",
     "not ready: mysql answered error 1040: Too many connections"),
]


@pytest.mark.parametrize("proto,ready_detail,not_ready", CASES, ids=[c[0] for c in CASES])
def test_dependent_waits_until_the_protocol_check_passes(fleet, tmp_path, proto, ready_detail, not_ready):
    port, mport = free_port(), free_port()
    flag = tmp_path / "not-ready"
    flag.write_text("")
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.data]]
        name = "db"
        command = {toml_str(PY)}
        args = [{toml_str(app("fake_db.py"))}, "--proto", "{proto}", "--port", "{port}",
                "--not-ready", {toml_str(flag)}]
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ protocol = "{proto}", interval = "100ms", timeout = "1s", failures = 2, cooldown = "300ms" }}

        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        depends_on = ["db"]
        ready_after = "50ms"
    """)
    # the server accepted two checks and said "not yet" to both: db is not ready
    first = ms.wait_for(rf'"source":"db".*{proto} answered not-ready')
    ms.wait_for(rf'"source":"db".*{proto} answered not-ready', start=first.index + 1)
    status, body = http_get(mport, "/health")
    assert status == 503, body
    waiting = {w["name"]: w["state"] for w in json.loads(body)["waiting_for"]}
    assert waiting == {"db": "starting", "app": "waiting"}, body
    assert ms.events("ready", ship="db") == [], ms.output()
    assert ms.events("started", ship="app") == [], ms.output()

    flag.unlink()
    ready = ms.event("ready", ship="db")
    assert ready["msg"].endswith(f"({proto} check on tcp://127.0.0.1:{port} passed: {ready_detail})"), ready
    started = ms.event("started", ship="app")
    assert started["_i"] > ready["_i"], ms.output()
    ms.event("fleet_ready")

    # the same check keeps running as the health check
    flag.write_text("")
    bad = ms.event("unhealthy", ship="db")
    assert bad["msg"] == (f'ship "db" is unhealthy: the {proto} check on tcp://127.0.0.1:{port} failed 2 times '
                          f'in a row ({not_ready}); circuit open'), bad
    flag.unlink()
    ms.event("healthy", ship="db")
    assert ms.stop() == 0, ms.output()


def test_ready_timeout_says_what_the_server_answered(fleet, tmp_path):
    port = free_port()
    flag = tmp_path / "not-ready"
    flag.write_text("")
    ms = fleet(f"""
        [[fleet.data]]
        name = "db"
        command = {toml_str(PY)}
        args = [{toml_str(app("fake_db.py"))}, "--proto", "postgres", "--port", "{port}",
                "--not-ready", {toml_str(flag)}]
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ protocol = "postgres" }}
        ready_timeout = "1s"
    """)
    t = ms.event("ready_timeout", ship="db")
    assert t["msg"] == (f'ship "db" not ready after 1000ms (waiting for the postgres check on '
                        f'tcp://127.0.0.1:{port} to pass; last: not ready: the database system is starting up '
                        f'(57P03))'), t
    assert ms.wait_exit() == 1, ms.output()


def test_check_address_of_its_own(fleet, tmp_path):
    """`port` checks that port on 127.0.0.1 for a worker (no bind); `address`
    checks any address, here while the bind is somewhere else."""
    p1, p2, bind = free_port(), free_port(), free_port()
    flag = tmp_path / "not-ready"  # never created: ready at once
    ms = fleet(f"""
        [[fleet.data]]
        name = "cache"
        command = {toml_str(PY)}
        args = [{toml_str(app("fake_db.py"))}, "--proto", "redis", "--port", "{p1}", "--not-ready", {toml_str(flag)}]
        healthcheck = {{ protocol = "redis", port = {p1} }}

        [[fleet.data]]
        name = "db"
        command = {toml_str(PY)}
        args = [{toml_str(app("fake_db.py"))}, "--proto", "mysql", "--port", "{p2}", "--not-ready", {toml_str(flag)}]
        bind = "tcp://127.0.0.1:{bind}"
        healthcheck = {{ protocol = "mysql", address = "127.0.0.1:{p2}" }}
    """)
    r1 = ms.event("ready", ship="cache")
    assert r1["msg"].endswith(f"(redis check on tcp://127.0.0.1:{p1} passed: +PONG)"), r1
    r2 = ms.event("ready", ship="db")
    assert r2["msg"].endswith(f"(mysql check on tcp://127.0.0.1:{p2} passed: mysql 8.0.36-fake)"), r2
    assert ms.stop() == 0, ms.output()
