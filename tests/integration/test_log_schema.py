"""One schema for every line of `--log-format json` (docs/cli.md, "Logs").

- every event name the source passes to ms_log_event* is in the docs' event
  table, and every name in the table is still in the source;
- a real run (an instanced ship, a bay, a job with a split line on both
  streams, a worker that crashes and is restarted, a reload that adds an
  entry, a shutdown) prints nothing but lines of that schema: the common
  keys with their types, `stream`/`instance`/`continued` only on children's
  lines, `event` on each of Mothership's, and no field the table does not
  give that event; the example lines in the docs fit it too."""
import json
import os
import pathlib
import re
import signal
import textwrap

from conftest import BUILD
from fleet_helpers import PY, app, free_port, free_port_run, toml_str

ROOT = pathlib.Path(__file__).resolve().parents[2]
ECHO_BAY = os.path.join(BUILD, "examples", "bays", "echo-bay")
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
COMMON = ["ts", "level", "source", "instance", "stream", "event"]  # then the event's fields, continued, msg
CALL = re.compile(r"\bms_log_event(?:v|_fields)?\s*\(")


# ------------------------------------------------------------------ the source and the docs
def call_args(text, start):
    """The top-level arguments of the call whose "(" ends just before start."""
    depth, i, cur, out, quote = 0, start, [], [], None
    while i < len(text):
        c = text[i]
        if quote:
            cur.append(c)
            if c == "\\":
                cur.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
            cur.append(c)
        elif c in "([{":
            depth += 1
            cur.append(c)
        elif c in ")]}":
            if depth == 0:
                out.append("".join(cur).strip())
                return out
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    return out


def source_events():
    """{event name: [where]} of every ms_log_event/_eventv/_event_fields call
    under src/ (the event is the fourth argument: a literal, or a variable
    whose literal values are assigned in the same file), and of every
    ms_log_record's `.event = "..."`."""
    names, problems = {}, []
    for path in sorted((ROOT / "src").rglob("*.c")):
        text = path.read_text()
        for m in CALL.finditer(text):
            args = call_args(text, m.end())
            line = text.count("\n", 0, m.start()) + 1
            where = f"{path.relative_to(ROOT)}:{line}"
            if len(args) < 5 or args[0].startswith(("ms_log ", "const ")):
                continue  # a declaration or definition, not a call
            ev = args[3]
            if re.fullmatch(r'"[a-z][a-z0-9_]*"', ev):
                names.setdefault(ev.strip('"'), []).append(where)
            elif re.fullmatch(r"[A-Za-z_]\w*", ev) and ev != "NULL":
                vals = re.findall(rf'\b{ev}\s*=\s*"([a-z][a-z0-9_]*)"', text)
                if not vals:
                    problems.append(f"{where}: event {ev} has no literal value in its file")
                for v in vals:
                    names.setdefault(v, []).append(where)
            else:
                problems.append(f"{where}: event {ev!r} is not a name (every event has one)")
        # lines formatted directly with ms_log_format_json (an ms_log_record)
        for m in re.finditer(r'\.event\s*=\s*"([a-z][a-z0-9_]*)"', text):
            names.setdefault(m.group(1), []).append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not problems, problems
    return names


def documented_events():
    """{event: set of its fields} from the event table of docs/cli.md's Logs."""
    text = (ROOT / "docs" / "cli.md").read_text()
    m = re.search(r"^## Logs\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, "docs/cli.md has no ## Logs section"
    out = {}
    for row in re.finditer(r"^\| `([a-z][a-z0-9_]*)` \|([^\n]*)\|\s*$", m.group(1), re.M):
        cells = [c.strip() for c in row.group(2).split("|")]
        if len(cells) != 3:
            continue  # the schema table, not the event table
        assert row.group(1) not in out, f"event {row.group(1)} documented twice"
        out[row.group(1)] = set(re.findall(r"`([a-z][a-z0-9_]*)`", cells[2]))
    assert len(out) > 40, out
    return out


def test_every_event_in_the_source_is_documented():
    src = source_events()
    docs = documented_events()
    missing = {n: w for n, w in src.items() if n not in docs}
    assert not missing, f"events logged but not in docs/cli.md's Logs table: {missing}"
    stale = sorted(set(docs) - set(src))
    assert not stale, f"events in docs/cli.md that the source never logs: {stale}"


# ------------------------------------------------------------------ a real run
def check_line(raw, docs, names):
    """Assert raw is one line of the schema; return it parsed."""
    r = json.loads(raw)
    assert isinstance(r, dict), raw
    keys = list(r)
    assert keys[:3] == ["ts", "level", "source"] and keys[-1] == "msg", raw
    assert TS.fullmatch(r["ts"]), raw
    assert r["level"] in ("info", "warn", "error"), raw
    assert isinstance(r["msg"], str) and isinstance(r["source"], str), raw
    assert "line" not in r and None not in r.values(), raw
    if r["source"] == "mothership":
        assert isinstance(r.get("event"), str) and r["event"] in docs, raw
        assert "stream" not in r and "instance" not in r and "continued" not in r, raw
        extra = set(keys) - set(COMMON) - {"msg"}
        assert extra <= {"ship"} | docs[r["event"]], (f"fields not documented for {r['event']}: "
                                                      f"{extra - {'ship'} - docs[r['event']]}", raw)
        for k in extra:
            assert isinstance(r[k], (str, int)) and not isinstance(r[k], bool), raw
        if "ship" in r:
            assert r["ship"] in names or r["ship"].split("#")[0] in names, raw
    else:
        assert r["source"] in names, raw
        assert "event" not in r, raw
        assert r["stream"] in ("stdout", "stderr"), raw
        assert r["level"] == "info", raw
        assert set(keys) <= {"ts", "level", "source", "instance", "stream", "continued", "msg"}, raw
        if "continued" in r:
            assert r["continued"] is True, raw
        if "instance" in r:
            assert isinstance(r["instance"], int) and r["instance"] >= 0, raw
        order = [k for k in COMMON + ["continued", "msg"] if k in r]
        assert keys == order, raw
    return r


def manifest(tmp_path, base, bport, late=False):
    job = ("import sys; print('migrating'); print('careful', file=sys.stderr); "
           "print('x' * 9000); print('caf\\xe9 \\x01 \"q\"')")
    crasher = f"if [ -e {tmp_path}/crashed ]; then echo again; exec sleep 300; " \
              f"else touch {tmp_path}/crashed; echo boom >&2; exit 3; fi"
    text = f"""
        [mothership]
        socket_dir = {toml_str(f"/tmp/msls{os.getpid()}")}
        shutdown_timeout = "5s"

        [mothership.bind]
        http = "127.0.0.1:{bport}"

        [[fleet.web]]
        name = "web"
        command = {toml_str(PY)}
        args = [{toml_str(app('echo_backend.py'))}, "--port", "{{port}}", "--name", "web-{{instance}}"]
        bind = "tcp://127.0.0.1:{{port}}"
        port = {base}
        instances = 2
        routes = ["http:/.*"]

        [[fleet.jobs]]
        name = "migrate"
        command = {toml_str(PY)}
        args = ["-c", {toml_str(job)}]
        oneshot = true

        [[fleet.workers]]
        name = "crasher"
        command = "/bin/sh"
        args = ["-c", {toml_str(crasher)}]
        critical = false
        restart = {{ backoff = "50ms" }}

        [[bays.websocket]]
        name = "echo"
        command = {toml_str(ECHO_BAY)}
        routes = ["http:/ws.*"]
        """
    if late:
        text += f"""
        [[fleet.workers]]
        name = "late"
        command = "/bin/sh"
        args = ["-c", "echo late here; exec sleep 300"]
        critical = false
        """
    return text


def test_every_line_of_a_real_run_fits_the_schema(fleet, tmp_path):
    docs = documented_events()
    base, bport = free_port_run(4), free_port()
    ms = fleet(manifest(tmp_path, base, bport), name="ship-manifest.toml")
    ms.event("fleet_ready", timeout=20)
    ms.event("backoff", ship="crasher", timeout=10)
    ms.wait_for(r'"source":"crasher".*"msg":"again"', timeout=10)
    ms.wait_for(r'"source":"echo","stream":"stderr","msg":"echo-bay: docked as echo', timeout=10)
    mark = len(ms.lines)
    (tmp_path / "ship-manifest.toml").write_text(textwrap.dedent(manifest(tmp_path, base, bport, late=True)))
    ms.signal(signal.SIGHUP)
    ms.event("reloaded", start=mark, timeout=15)
    ms.wait_for(r'"source":"late".*"msg":"late here"', start=mark, timeout=10)
    assert ms.stop() == 0, ms.output()[-3000:]

    names = {"web", "migrate", "crasher", "echo", "late"}
    records = [check_line(raw, docs, names) for _, raw in ms.lines]

    def child(source, **kw):
        return [r for r in records if r["source"] == source and all(r.get(k) == v for k, v in kw.items())]

    def event(name, **kw):
        return [r for r in records if r.get("event") == name and all(r.get(k) == v for k, v in kw.items())]

    # children's lines: instances, both streams, a split line, bytes escaped
    assert {r["instance"] for r in child("web") if r["msg"].endswith("listening")} == {0, 1}, child("web")
    assert [r["msg"] for r in child("migrate", stream="stderr")] == ["careful"]
    out = child("migrate", stream="stdout")
    assert [r["msg"] for r in out if len(r["msg"]) < 100] == ["migrating", "caf\u00e9 \x01 \"q\""], out
    assert [(len(r["msg"]), r.get("continued", False)) for r in out if len(r["msg"]) >= 100] == \
        [(8192, False), (9000 - 8192, True)], out
    assert "instance" not in out[0]
    assert child("crasher", stream="stderr")[0]["msg"] == "boom"
    # events and their fields
    launch = event("launch")[0]
    assert launch["entries"] == launch["total"] == 5, launch  # web#0, web#1, migrate, crasher, echo
    assert {r["ship"] for r in event("started")} >= {"web#0", "web#1", "migrate", "crasher", "echo", "late"}
    assert all(isinstance(r["pid"], int) and r["pid"] > 0 for r in event("started"))
    done = event("done", ship="migrate")[0]
    assert done["exit_code"] == 0 and done["uptime_ms"] >= 0, done
    crash = event("exited", ship="crasher")[0]
    assert crash["level"] == "warn" and crash["exit_code"] == 3 and "signal" not in crash, crash
    assert event("backoff", ship="crasher")[0]["attempt"] == 1
    assert event("listening")[0]["bind"] == "http" and event("listening")[0]["address"].endswith(f":{bport}")
    assert event("fleet_ready")[0]["entries"] == 5, event("fleet_ready")
    assert event("ready", ship="web#1")[0]["ms"] >= 0
    assert event("reloaded")[0]["level"] == "info"
    stopped = event("stopped", ship="crasher")[0]
    assert stopped["signal"] == "SIGTERM" and "exit_code" not in stopped, stopped
    stopping = event("stopping", ship="crasher")[0]
    assert stopping["pid"] == stopped["pid"] and stopping["signal"] == "SIGTERM" and stopping["grace_ms"] > 0
    assert event("signal", signal="SIGHUP")[0]["level"] == "info"
    assert event("control_socket")[0]["path"].endswith(".ctl")
    assert event("shutdown")
    assert [r["exit_code"] for r in event("stopped") if "ship" not in r] == [0], event("stopped")


def test_the_docs_example_lines_fit_the_schema():
    text = (ROOT / "docs" / "cli.md").read_text()
    section = re.search(r"^## Logs\n(.*?)(?=^## )", text, re.M | re.S).group(1)
    lines = [l for l in section.splitlines() if l.startswith('{"ts"')]
    assert len(lines) >= 5, lines
    docs = documented_events()
    for line in lines:
        check_line(line, docs, {"migrate", "web"})
