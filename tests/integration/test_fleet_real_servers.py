"""Real servers as ships: PostgreSQL and redis-server from Debian (installed
by `make test` through scripts/deps.sh), started by the test under
`mothership run` with a protocol healthcheck, and a dependent that connects
at start and must not be started before the server serves clients.

PostgreSQL is started as a standby with hot_standby off, so it listens and
accepts connections but answers every client 57P03 ("the database system is
not accepting connections") until the test promotes it: the window in which
a connect-only readiness check called it ready, held open as long as the
test needs. As root (CI), the cluster belongs to the `postgres` user the
package creates, in a directory of its own outside pytest's (which only
root may enter), and the server runs under setpriv as that user."""
import glob
import os
import pwd
import re
import shutil
import socket
import struct
import subprocess
import tempfile

import pytest

from fleet_helpers import free_port, http_get, toml_str


def _pg_bindir():
    found = []
    for p in glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        version = p.split("/")[4]
        try:
            found.append((tuple(int(x) for x in version.split(".")), os.path.dirname(p)))
        except ValueError:
            continue
    return max(found)[1] if found else None


@pytest.fixture
def pg(tmp_path):
    """An initdb'd cluster: dict(bindir, data, sockdir, run_as) where run_as is
    the argv prefix that runs a command as the cluster's owner."""
    bindir = _pg_bindir()
    if not bindir:
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/postgres); "
                    "`make test` installs it with scripts/deps.sh")
    if not shutil.which("psql"):
        pytest.skip("psql is not installed (postgresql-client)")
    run_as = []
    top = tempfile.mkdtemp(prefix="ms-pg-")
    try:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no `postgres` user to own the cluster "
                            "(the postgresql package creates it)")
            setpriv = shutil.which("setpriv")
            if not setpriv:
                pytest.skip("running as root and setpriv (util-linux) is missing")
            os.chown(top, owner.pw_uid, owner.pw_gid)
            run_as = [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        data = os.path.join(top, "data")
        r = subprocess.run(run_as + [os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                                     "--no-sync", "-E", "UTF8"],
                           cwd=top, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        yield {"bindir": bindir, "data": data, "sockdir": top, "run_as": run_as}
    finally:
        shutil.rmtree(top, ignore_errors=True)


def pg_startup_answer(port):
    """Send a startup message ourselves: the first answer's type byte and
    its SQLSTATE (for an ErrorResponse)."""
    params = b"user\0postgres\0database\0postgres\0\0"
    msg = struct.pack(">II", 8 + len(params), 196608) + params
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(msg)
        data = b""
        while len(data) < 5 or len(data) < 1 + struct.unpack(">I", data[1:5])[0]:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    code = re.search(rb"C([0-9A-Z]{5})\0", data)
    return data[:1], code.group(1).decode() if code else None


def test_postgres_dependent_waits_for_the_database_to_accept_clients(fleet, pg):
    port, mport = free_port(), free_port()
    with open(os.path.join(pg["data"], "standby.signal"), "w"):
        pass
    if pg["run_as"]:
        shutil.chown(os.path.join(pg["data"], "standby.signal"), "postgres", "postgres")
    argv = pg["run_as"] + [os.path.join(pg["bindir"], "postgres"), "-D", pg["data"], "-k", pg["sockdir"],
                           "-p", str(port), "-c", "listen_addresses=127.0.0.1", "-c", "hot_standby=off",
                           "-c", "fsync=off"]
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.data]]
        name = "db"
        command = {toml_str(argv[0])}
        args = [{", ".join(toml_str(a) for a in argv[1:])}]
        cwd = {toml_str(pg["sockdir"])}
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ protocol = "postgres", interval = "200ms", timeout = "2s" }}

        [[fleet.jobs]]
        name = "query"
        command = "psql"
        args = ["-h", "127.0.0.1", "-p", "{port}", "-U", "postgres", "-Atc", "select 40 + 2"]
        oneshot = true
        depends_on = ["db"]
    """)
    ms.wait_for(r'"source":"db".*entering standby mode', timeout=30)
    # it accepts connections, and tells every client it cannot serve it yet
    assert pg_startup_answer(port) == (b"E", "57P03")
    # Mothership's own checks got that answer too (the server logs each one)
    first = ms.wait_for(r'"source":"db".*FATAL: +the database system is not accepting connections')
    later = ms.wait_for(r'"source":"db".*FATAL: +the database system is not accepting connections',
                        start=first.index + 1)
    ms.wait_for(r'"source":"db".*FATAL: +the database system is not accepting connections', start=later.index + 1)
    assert ms.events("ready", ship="db") == [], ms.output()
    assert ms.events("started", ship="query") == [], ms.output()
    status, _ = http_get(mport, "/health")
    assert status == 503

    r = subprocess.run(pg["run_as"] + [os.path.join(pg["bindir"], "pg_ctl"), "promote", "-D", pg["data"]],
                       cwd=pg["sockdir"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    ready = ms.event("ready", ship="db", timeout=30)
    assert ready["msg"].endswith(f"(postgres check on tcp://127.0.0.1:{port} passed: "
                                 f"postgres accepted the startup (trust))"), ready
    done = ms.event("done", ship="query", timeout=30)
    assert done["_i"] > ready["_i"]
    assert [e["msg"] for e in ms.child_lines("query")] == ["42"], ms.output()
    ms.event("fleet_ready")
    assert ms.stop(timeout=30) == 0, ms.output()


def test_redis_dependent_gets_pong(fleet, tmp_path):
    server = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if not server or not cli:
        pytest.skip("redis-server is not installed; `make test` installs it with scripts/deps.sh")
    port = free_port()
    ms = fleet(f"""
        [[fleet.data]]
        name = "cache"
        command = {toml_str(server)}
        args = ["--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", {toml_str(tmp_path)}]
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ protocol = "redis", interval = "200ms" }}

        [[fleet.jobs]]
        name = "ping"
        command = {toml_str(cli)}
        args = ["-h", "127.0.0.1", "-p", "{port}", "ping"]
        oneshot = true
        depends_on = ["cache"]
    """)
    ready = ms.event("ready", ship="cache", timeout=20)
    assert ready["msg"].endswith(f"(redis check on tcp://127.0.0.1:{port} passed: +PONG)"), ready
    done = ms.event("done", ship="ping", timeout=20)
    assert done["_i"] > ready["_i"]
    assert [e["msg"] for e in ms.child_lines("ping")] == ["PONG"], ms.output()
    assert ms.stop(timeout=20) == 0, ms.output()
