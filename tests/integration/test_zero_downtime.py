"""Zero downtime through the real binary: a ship with `instances = 3` behind
the proxy while clients send requests throughout, over kept-alive
connections and over a new connection each, several threads, some slow
(requests in flight when an instance drains), some POSTs with a body. Then,
one after the other, `mothership restart web`, a reload that changes web,
SIGUSR1 and a kill -9 of one instance: every instance ends up a new process
and not one request fails or gets anything but its own 200. The same for a
ship with one instance across `restart` and SIGUSR1: with a surge (its bind
has `{port}`) and in place (a fixed port: requests are held meanwhile).

Nothing is timed: each step waits for the fleet's status to show the new
processes ready and the old ones gone, and for every instance to answer
again, with deadlines far above what the steps take on a loaded machine.
A request that fails in any way (connection refused, reset, cut short,
timed out, a 5xx, an answer to another request) is recorded and fails the
test at its end, with the step it happened in."""
import collections
import http.client
import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from conftest import BINARY
from fleet_helpers import PY, alive, free_port_run, toml_str
from http_helpers import ECHO, start_proxy, toml_value

INSTANCES = 3
CLIENT_TIMEOUT = 60.0      # per request: far above a roll's holds and drains
STEP_DEADLINE = 120.0      # per step: a roll of three instances takes seconds
SLOW_MS = 1500             # requests in flight while an instance drains




class WebShip:
    """`web`: the echo backend, `instances` of it; each answers with its
    name, `v1-<instance>`. templated: on consecutive ports from base
    (`{port}`: a replacement starts next to the old process); else on base
    alone (one instance, restarted in place)."""

    def __init__(self, base, instances, templated=True):
        self.base = base
        self.instances = instances
        self.templated = templated

    def toml(self):
        if self.templated:
            args = [ECHO, "--name", "v1-{instance}", "--port", "{port}"]
            bind = ['bind = "tcp://127.0.0.1:{port}"', f"port = {self.base}"]
        else:
            args = [ECHO, "--name", "v1-0", "--port", str(self.base)]
            bind = [f'bind = "tcp://127.0.0.1:{self.base}"']
        lines = ['[[fleet.web]]', 'name = "web"', f"command = {toml_str(PY)}", f"args = {toml_value(args)}",
                 *bind, f"instances = {self.instances}", 'routes = ["http:/.*"]', "critical = false",
                 'drain_timeout = "60s"', 'ready_timeout = "60s"', 'restart = { backoff = "100ms" }']
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the clients
class Load:
    """Client threads sending requests until stopped. Every answer is
    checked: status 200, from the echo backend, to this very request (its
    target echoed back; a POST's body echoed byte for byte). Anything else
    is a failure, kept with the step it happened in."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.posting = threading.Event()     # cleared: the POST thread sends GETs
        self.posting.set()
        self.post_idle = threading.Event()   # set by the POST thread once it saw posting cleared
        self.lock = threading.Lock()
        self.ok = 0
        self.served = collections.Counter()  # backend name -> answers
        self.failures = []
        self.step = "start"
        self.threads = []

    # -------------------------------------------------------------- one request
    def _conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT)

    def _one(self, conn, tag, n, method="GET", query="", close=False):
        """One exchange on conn; True when it was right (recorded either way)."""
        target = f"/zd/{tag}/{n}" + (f"?{query}" if query else "")
        body = None
        headers = {"Connection": "close"} if close else {}
        if method == "POST":
            body = os.urandom(random.randrange(1, 8192)).hex().encode()
            target += ("&" if query else "?") + "echo=1"
        step = self.step
        try:
            conn.request(method, target, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            self._fail(step, tag, method, target, f"{type(e).__name__}: {e}")
            return False
        if r.status != 200:
            self._fail(step, tag, method, target, f"status {r.status}: {data[:200]!r}")
            return False
        name = r.getheader("X-Backend", "")
        if method == "POST":
            if data != body:
                self._fail(step, tag, method, target, f"body of {len(data)} bytes is not the one sent ({len(body)})")
                return False
        else:
            try:
                doc = json.loads(data)
            except ValueError:
                self._fail(step, tag, method, target, f"not the backend's JSON: {data[:200]!r}")
                return False
            if doc.get("target") != target or doc.get("name") != name:
                self._fail(step, tag, method, target, f"answer to another request: {data[:200]!r}")
                return False
        with self.lock:
            self.ok += 1
            self.served[name] += 1
        return True

    def _fail(self, step, tag, method, target, what):
        with self.lock:
            self.failures.append(f"[{step}] {tag}: {method} {target}: {what}")

    # -------------------------------------------------------------- threads
    def _keepalive(self, tag, query="", pause=0.002):
        conn, n = self._conn(), 0
        while not self.stop.is_set():
            n += 1
            if not self._one(conn, tag, n, query=query):
                conn.close()
                conn = self._conn()
            self.stop.wait(pause)
        conn.close()

    def _fresh(self, tag):
        n = 0
        while not self.stop.is_set():
            n += 1
            conn = self._conn()
            self._one(conn, tag, n, close=True)
            conn.close()
            self.stop.wait(0.002)

    def _poster(self, tag):
        conn, n = self._conn(), 0
        while not self.stop.is_set():
            n += 1
            method = "POST" if self.posting.is_set() else "GET"
            if method == "GET":
                self.post_idle.set()
            if not self._one(conn, tag, n, method=method):
                conn.close()
                conn = self._conn()
            self.stop.wait(0.002)
        conn.close()

    def start(self):
        plan = [(self._keepalive, ("ka0",)), (self._keepalive, ("ka1",)), (self._keepalive, ("ka2",)),
                (self._keepalive, ("slow", f"delay={SLOW_MS // 5}", 0)),
                (self._fresh, ("new0",)), (self._fresh, ("new1",)), (self._poster, ("post",))]
        for fn, args in plan:
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            self.threads.append(t)

    def slow_burst(self, n=2 * INSTANCES):
        """n requests of SLOW_MS each, sent at once on their own connections
        (spread over the instances by the balancer): in flight when the
        step that follows begins."""
        started = threading.Barrier(n + 1)

        def one(i):
            conn = self._conn()
            started.wait()
            self._one(conn, "burst", i, query=f"delay={SLOW_MS}")
            conn.close()

        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
        for t in ts:
            t.start()
        started.wait()
        self.threads += ts

    def pause_posts(self, timeout=STEP_DEADLINE):
        """No POST from here on: the POST in flight, if any, has finished."""
        self.post_idle.clear()
        self.posting.clear()
        assert self.post_idle.wait(timeout), "the POST thread did not finish its request"

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(CLIENT_TIMEOUT + 10)
        assert not any(t.is_alive() for t in self.threads), "a client thread is stuck"

    def snapshot(self):
        with self.lock:
            return self.ok, dict(self.served)

    def check(self):
        """Fail at once when a request has failed (rather than after the
        steps still to come, each of which may then wait for its deadline)."""
        with self.lock:
            failures, ok = list(self.failures), self.ok
        if failures:
            self.stop.set()
            pytest.fail(f"{len(failures)} failed of {ok + len(failures)}:\n" + "\n".join(failures[:30]),
                        pytrace=False)


# ------------------------------------------------------------------ the fleet
class Deploy:
    def __init__(self, fleet, instances=INSTANCES, templated=True):
        self.n = instances
        self.base = free_port_run(2 * instances)   # {port} of both generations
        self.proxy = start_proxy(fleet, WebShip(self.base, instances, templated), mothership={"workers": 2})
        self.ms = self.proxy.ms
        self.sock = os.path.join(self.ms.own_sockdir, "mothership.ctl")
        args = self.ms.cmd
        self.manifest = args[args.index("-c") + 1]

    def ctl(self, *args, timeout=STEP_DEADLINE):
        return subprocess.run([BINARY, *args, "--socket", self.sock], capture_output=True, text=True,
                              timeout=timeout, cwd=os.path.dirname(self.manifest))

    def web(self):
        """{instance: status entry} of web's instances."""
        r = self.ctl("status", "--json", timeout=30)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        doc = json.loads(r.stdout)
        out = {}
        for e in doc["entries"]:
            name = e["name"]
            if e.get("ship") == "web" or name == "web" or name.startswith("web#"):
                out[int(e.get("instance", name.partition("#")[2] or 0))] = e
        return out

    def pids(self):
        return {i: e["pid"] for i, e in self.web().items()}

    def wait_replaced(self, load, old, which, what):
        """Wait until instances `which` run processes other than `old`
        ({instance: pid}), ready, no roll going on, and old's processes of
        them are gone; return the new pids."""
        deadline = time.monotonic() + STEP_DEADLINE
        last = None
        while time.monotonic() < deadline:
            load.check()
            last = self.web()
            if sorted(last) == list(range(self.n)) and all(
                    last[i]["state"] == "ready" and last[i]["pid"] > 0 and last[i]["pid"] not in old.values()
                    and not last[i].get("rolling") and not last[i].get("draining") for i in which) \
                    and not any(alive(old[i]) for i in which):
                return {i: e["pid"] for i, e in last.items()}
            time.sleep(0.05)
        pytest.fail(f"{what}: instances {sorted(which)} not replaced within {STEP_DEADLINE}s; old pids {old}; "
                    f"status {json.dumps(last)}\n--- output ---\n{self.ms.output()[-6000:]}", pytrace=False)

    def wait_served(self, load, names, what):
        """Wait until each backend name in names has answered again (after
        this call) and the clients made progress."""
        ok0, served0 = load.snapshot()
        deadline = time.monotonic() + STEP_DEADLINE
        while time.monotonic() < deadline:
            load.check()
            ok, served = load.snapshot()
            if ok > ok0 + 50 and all(served.get(n, 0) > served0.get(n, 0) for n in names):
                return
            time.sleep(0.05)
        pytest.fail(f"{what}: not every instance answered again ({names}); served {served}, "
                    f"failures {load.failures[:10]}", pytrace=False)


def names(version, n=INSTANCES):
    return [f"{version}-{i}" for i in range(n)]


def test_rolls_and_a_kill_lose_no_request(fleet):
    d = Deploy(fleet)
    load = Load(d.proxy.port)
    load.start()
    try:
        d.wait_served(load, names("v1"), "balancing over the three instances")
        pids = d.pids()
        assert len(set(pids.values())) == INSTANCES, pids

        # 1. mothership restart web: a roll; the command answers when it is done
        load.step = "restart"
        load.slow_burst()
        ok0 = load.snapshot()[0]
        r = d.ctl("restart", "web")
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert load.snapshot()[0] > ok0, "no request was answered during the roll"
        pids = d.wait_replaced(load, pids, range(INSTANCES), "restart web")
        d.wait_served(load, names("v1"), "after restart web")

        # 2. a reload that changes web (its args): a roll onto the new definition
        load.step = "reload"
        with open(d.manifest) as f:
            text = f.read()
        assert '"v1-{instance}"' in text
        with open(d.manifest, "w") as f:
            f.write(text.replace('"v1-{instance}"', '"v2-{instance}"'))
        load.slow_burst()
        r = d.ctl("reload")
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        pids = d.wait_replaced(load, pids, range(INSTANCES), "reload")
        d.wait_served(load, names("v2"), "after the reload")

        # 3. SIGUSR1: a phased restart of every ship that serves HTTP
        load.step = "SIGUSR1"
        load.slow_burst()
        d.ms.signal(signal.SIGUSR1)
        pids = d.wait_replaced(load, pids, range(INSTANCES), "SIGUSR1")
        d.wait_served(load, names("v2"), "after SIGUSR1")

        # 4. kill -9 of one instance: GETs only (a POST whose body went to the
        # killed process cannot be retried); those in flight on it are
        # retried on the others, then it is started again and serves again
        load.step = "kill -9"
        load.pause_posts()
        load.slow_burst()
        os.kill(pids[1], signal.SIGKILL)
        pids = d.wait_replaced(load, pids, [1], "kill -9 of web#1")
        d.wait_served(load, names("v2"), "after kill -9 of web#1")
        load.step = "end"
    finally:
        load.finish()
    ok, served = load.snapshot()
    assert load.failures == [], f"{len(load.failures)} failed of {ok + len(load.failures)}:\n" + \
        "\n".join(load.failures[:30])
    assert all(served.get(n, 0) > 0 for n in names("v1") + names("v2")), served
    assert d.ms.stop(timeout=30) == 0
    text = d.ms.output()
    assert "Sanitizer" not in text and "runtime error" not in text, text[-4000:]


@pytest.mark.parametrize("templated", [True, False], ids=["surge", "in-place"])
def test_one_instance_restarts_lose_no_request(fleet, templated):
    d = Deploy(fleet, instances=1, templated=templated)
    load = Load(d.proxy.port)
    load.start()
    try:
        d.wait_served(load, ["v1-0"], "the one instance")
        pids = d.pids()
        assert list(pids) == [0], pids

        load.step = "restart"
        load.slow_burst(2)
        r = d.ctl("restart", "web")
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        pids = d.wait_replaced(load, pids, [0], "restart web")
        d.wait_served(load, ["v1-0"], "after restart web")

        load.step = "SIGUSR1"
        load.slow_burst(2)
        d.ms.signal(signal.SIGUSR1)
        pids = d.wait_replaced(load, pids, [0], "SIGUSR1")
        d.wait_served(load, ["v1-0"], "after SIGUSR1")
        load.step = "end"
    finally:
        load.finish()
    ok, _ = load.snapshot()
    assert load.failures == [], f"{len(load.failures)} failed of {ok + len(load.failures)}:\n" + \
        "\n".join(load.failures[:30])
    assert d.ms.stop(timeout=30) == 0
