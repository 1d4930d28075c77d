"""Helpers for the HTTP bay tests (test_http_bays.py): manifest entries for
[[bays.http]] bays running examples/bays/http_bay.py with apps/hbay_app.py,
hostile bays (apps/hostile_hbay.py, one HBAY_MODE each) and
[[mothership.upstreams]]; a reader of the JSON lines a bay logs (what
reached it); and the per-bay metrics.

    px = start_bays(fleet, hbay_toml("web", cwd=str(site)))
    r = http_get(px.port, "/")
    events = bay_log(path, want=lambda ev: len(hails(ev)) == 1)"""
import json
import os

from fleet_helpers import PY, app, toml_str
from http_helpers import short_tmpdir, start_proxy, toml_value, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HTTP_BAY = os.path.join(ROOT, "examples", "bays", "http_bay.py")
# the part of the name of the per-bay gauge of requests waiting for a link
QUEUE_DEPTH = "queue_depth"
APPS = os.path.dirname(app("hbay_app.py"))
HOSTILE = app("hostile_hbay.py")


def _entry(header, name, fields):
    lines = [header, f"name = {toml_str(name)}"]
    lines += [f"{k} = {toml_value(v)}" for k, v in fields.items() if v is not None]
    return "\n".join(lines) + "\n"


def hbay_toml(name, app_spec="hbay_app:app", routes=("http:/.*",), cwd=None, env=None, **keys):
    """A [[bays.http]] entry serving app_spec (a module of apps/) with http_bay.py;
    keys: workers, threads, request_timeout, max_queue, file_roots, ..."""
    env = dict(env or {})
    env.setdefault("PYTHONPATH", APPS)
    return _entry("[[bays.http]]", name, {
        "command": PY, "args": [HTTP_BAY, app_spec], "routes": list(routes), "cwd": cwd,
        "env": env, **keys})


def hostile_toml(name, mode, log, routes=("http:/.*",), env=None, threads=1, **keys):
    """A [[bays.http]] entry running apps/hostile_hbay.py in HBAY_MODE mode,
    logging what reaches it to log."""
    env = dict(env or {}, HBAY_MODE=mode, HBAY_LOG=str(log))
    return _entry("[[bays.http]]", name, {
        "command": PY, "args": [HOSTILE], "routes": list(routes), "env": env,
        "threads": threads, **keys})


def upstream_toml(name, bind, protocol="docking", routes=("http:/.*",), **keys):
    return _entry("[[mothership.upstreams]]", name, {
        "bind": bind, "protocol": protocol, "routes": list(routes), **keys})


def start_bays(fleet, *entries, binds=None, http=None, mothership=None, extra="", wait=True):
    """Mothership with these entries (bays, upstreams) on a short socket dir;
    waits until the binds listen and (with wait) the fleet is ready."""
    mo = {"socket_dir": short_tmpdir()}
    mo.update(mothership or {})
    px = start_proxy(fleet, binds=binds, http=http, mothership=mo, extra=extra + "\n" + "\n".join(entries),
                     wait=False)
    if wait:
        px.ms.event("fleet_ready", timeout=20)
    return px


def bay_log(path, want=None, timeout=10.0):
    """The JSON events a bay logged (a list); with want, waits until want(list)."""
    out = []

    def read():
        out.clear()
        try:
            with open(path) as f:
                out.extend(json.loads(line) for line in f if line.strip())
        except FileNotFoundError:
            pass
        return want is None or want(out)

    wait_until(read, timeout=timeout, what=f"bay log {path}")
    return list(out)


def hails(events):
    return [e for e in events if e.get("event") == "hail"]


def bay_series(px, part, bay):
    """{name: value} of the samples whose name holds part and labels bay=bay."""
    out = {}
    for (name, labels), v in px.metrics().items():
        if part in name and ("bay", bay) in labels:
            out[name + str(sorted(labels))] = v
    return out


def bay_total(px, part, bay):
    return sum(bay_series(px, part, bay).values())
