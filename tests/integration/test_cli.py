"""The offline CLI: usage and exit codes, `init`, `clearance` and `chart`
(text and --json) on realistic manifests, base template merging, paths
relative to the manifest, and the reference manifest of the spec."""
import json
import os
import re
import shutil

import pytest

from conftest import noop_payload, ROOT, run_ms
from tls_helpers import make_cert

REFERENCE = os.path.join(ROOT, "..", "shared", "spec", "ship-manifest.reference.toml")
DB_ENV = {"DATABASE_URL": "postgres://user:s3cret@db.internal/app"}

# A realistic fleet: base templates, every section, binds of each form, TLS,
# static dirs declared shortest prefix first, routes in several groups and a
# bay interleaved (manifest order is not group order), a strip_prefix, a
# shadowed route, modules with and without routes, uplinks with $VAR.
FLEET = """\
# A realistic fleet for the CLI tests.
[base.ship]
env = { RAILS_ENV = "production" }
critical = false
tags = ["ruby", "web"]

[base.bay]
tags = ["realtime"]

[base.module]
phase = "response"
tags = ["security"]

[mothership]
metrics_port = 9191
compression = true

[mothership.env]
LOG_LEVEL = "info"

[mothership.bind]
http = "0.0.0.0:8080"
https = "0.0.0.0:8443"
ws = "127.0.0.1:8081"
admin = { address = "127.0.0.1:9443", tls = true }

[mothership.tls]
cert = "./certs/server.crt"
key = "./certs/server.key"

[[mothership.static_dirs]]
path = "./public"
prefix = "/"
bind = "http"

[[mothership.static_dirs]]
path = "./public/assets"
prefix = "/assets"

[[mothership.static_dirs]]
path = "./public/assets/img"
prefix = "/assets/img"

[[uplinks]]
name = "primary-db"
url = "$DATABASE_URL"
timeout = "10s"

[[uplinks]]
url = "redis://cache.internal"

[[fleet.web]]
name = "api"
command = "./bin/api"
bind = "unix:///tmp/ms-test-api.sock"
routes = [{ bind = "http", pattern = "/api/.*", strip_prefix = "/api" }]
tags = ["web", "api"]
env = { PORT = "3001", RAILS_ENV = "staging" }

[[bays.websocket]]
name = "cast"
command = "./cast"
routes = ["http:/live/.*", { bind = "ws", pattern = "/ws" }]
depends_on = ["app"]
config = { redis_url = "redis://localhost:6379" }

[[fleet.admin]]
name = "panel"
command = "./panel"
bind = "3002"
critical = true
routes = ["http:/admin/.*", "admin:/.*"]

[[fleet.jobs]]
name = "migrate"
command = "rails"
args = ["db:migrate"]
oneshot = true

[[fleet.web]]
name = "app"
command = "ruby"
args = ["app.rb"]
bind = "tcp://127.0.0.1:3000"
healthcheck = "/health"
depends_on = ["migrate"]
critical = true
routes = ["http:/.*", "https:/.*"]

[[fleet.web]]
name = "late"
command = "./late"
bind = "3003"
routes = ["http:/api/v2/.*"]

[[fleet.workers]]
name = "sidekiq"
command = "bundle"
args = ["exec", "sidekiq"]

[[modules]]
name = "auth"
wasm = "./modules/auth.wasm"
routes = ["/admin/.*"]
phase = "request"
on_error = "open"

[[modules]]
name = "cache"
wasm = "modules/cache.wasm"
routes = ["/api/.*"]
config = { ttl = "3600" }

[[modules]]
name = "logger"
wasm = "./modules/logger.wasm"
"""


def make_tree(root):
    """The files and directories FLEET (and the reference manifest) refer to."""
    for d in ("public/assets/img", "modules", "certs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in ("modules/auth.wasm", "modules/cache.wasm", "modules/logger.wasm",
              "modules/rate_limiter.wasm"):
        (root / f).write_bytes(noop_payload())
    make_cert(root / "certs", "server")


@pytest.fixture
def fleet(tmp_path, manifest):
    make_tree(tmp_path)
    return manifest(FLEET)


def summary_line(out, name):
    """The clearance summary line of an entry, split into words."""
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == name:
            return words
    raise AssertionError(f"no summary line for {name!r} in:\n{out}")


# ---------------------------------------------------------------- usage
def test_help():
    r = run_ms("--help")
    assert r.code == 0, r
    assert r.err == ""
    assert r.out.startswith("Usage: mothership")
    for word in ("init", "clearance", "chart", "preflight", "--config", "--force", "--json",
                 "--version"):
        assert word in r.out, word
    assert "0 ok, 1 invalid manifest or failed check, 2 usage" in r.out
    assert run_ms("-h").out == r.out


def test_version():
    r = run_ms("--version")
    assert r.code == 0, r
    assert r.err == ""
    assert re.fullmatch(r"mothership \d+\.\d+\.\d+\S*\n", r.out), r
    assert run_ms("-V").out == r.out


@pytest.mark.parametrize("args,words", [
    (["launch"], ['unknown command "launch"', "--help"]),
    (["help", "launch"], ['unknown command "launch"']),
    (["help", "run", "extra"], ['unexpected argument "extra"']),
    (["chart", "--names"], ["--names", "clearance"]),
    (["clearance", "--frobnicate"], ["unknown option --frobnicate", "--help"]),
    (["-x"], ["unknown option -x"]),
    (["clearance", "--json"], ["--json", "chart"]),
    (["--json"], ["--json", "chart"]),
    (["chart", "-c"], ["-c", "needs a value"]),
    (["clearance", "extra"], ['unexpected argument "extra"']),
    (["init", "a.toml", "b.toml"], ['unexpected argument "b.toml"']),
    (["clearance", "--force"], ["--force", "init"]),
    (["clearance", "--only", "web"], ["--only", "run"]),
    (["--log-format", "xml"], ["--log-format", "xml"]),
], ids=["unknown-command", "help-unknown-command", "help-extra-argument", "names-without-clearance", "unknown-long-option", "unknown-short-option",
        "json-without-chart", "json-alone", "config-without-value", "extra-argument",
        "init-two-paths", "force-without-init", "only-without-run", "bad-log-format"])
def test_usage_errors(args, words, tmp_path):
    r = run_ms(*args, cwd=str(tmp_path))
    assert r.code == 2, r
    assert r.out == ""
    assert r.err.startswith("mothership: "), r
    assert len(r.err.splitlines()) == 1, r
    for w in words:
        assert w in r.err, r
    assert not any(tmp_path.iterdir()), "a usage error must not touch any file"


COMMANDS = ("run", "init", "clearance", "preflight", "chart", "status", "restart", "stop", "start",
            "signal", "logs", "reload", "drain", "help")


def options_table():
    """{option: the commands column} of docs/cli.md's Options table."""
    with open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("\n## Options\n"):text.index("\n## Exit codes\n")]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`-"):
            for opt in re.findall(r"`(-[-a-z]+)", cells[0]):
                rows[opt] = cells[1]
    return rows


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_its_own_help(cmd, tmp_path):
    general = run_ms("--help").out
    r = run_ms(cmd, "--help", cwd=str(tmp_path))
    assert r.code == 0, r
    assert r.err == ""
    assert r.out != general
    assert r.out.startswith(f"Usage: mothership {cmd}"), r
    assert "\nExample:\n  mothership " in r.out, r
    # the same text every way it is asked for
    assert run_ms(cmd, "-h", cwd=str(tmp_path)).out == r.out
    assert run_ms("help", cmd, cwd=str(tmp_path)).out == r.out
    assert run_ms("help", cmd, "--help", cwd=str(tmp_path)).out == r.out
    assert run_ms("-c", "x.toml", cmd, "--help", cwd=str(tmp_path)).out == r.out
    assert not any(tmp_path.iterdir()), "help must not touch any file"
    # every option it lists is one the command takes, documented for it
    table = options_table()
    for opt in re.findall(r"^ +(?:-[a-zA-Z], )?(--?[a-z][-a-z]*)", r.out, re.M):
        assert opt in table, opt
        where = table[opt]
        fleet = cmd in ("status", "restart", "stop", "start", "signal", "logs", "reload", "drain")
        assert where == "all" or cmd in where or (fleet and "fleet commands" in where), (opt, where)
    # the options a command takes are all in its help: a wrong one is refused
    if cmd not in ("reload", "help"):
        assert "--check" not in r.out
        assert run_ms(cmd, "--check", cwd=str(tmp_path)).code == 2
    assert "help" in general


def test_help_alone_is_the_overview():
    r = run_ms("help")
    assert r.code == 0, r
    assert r.out == run_ms("--help").out


def test_help_of_each_command_matches_cli_md():
    """docs/cli.md has a section for each command whose heading shows the
    same arguments as its usage line."""
    with open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8") as f:
        text = f.read()
    heads = {}
    for heading in re.findall(r"^###+ (`mothership .*)$", text, re.M):
        for span in re.findall(r"`(?:mothership )?([^`]+)`", heading):
            heads.setdefault(span.split()[0], span)
    for cmd in COMMANDS:
        usage = run_ms("help", cmd).out.splitlines()[0][len("Usage: mothership "):]
        documented = heads.get(cmd)
        assert documented, cmd
        # each positional argument and option of the usage is in the heading
        for word in re.findall(r"[A-Z]+(?:\.\.\.)?|--?[a-z][-a-z]*", usage):
            assert word in documented or word.rstrip(".") in documented, (cmd, word, documented)


def test_clearance_names(manifest):
    path = manifest("""
        [[fleet.web]]
        name = "web"
        command = "sleep"
        args = ["60"]
        instances = 2
        bind = "tcp://127.0.0.1:{port}"
        port = 3000
        tags = ["front", "http"]

        [[fleet.workers]]
        name = "mailer"
        command = "sleep"
        args = ["60"]
        tags = ["back", "front"]

        [[bays.websocket]]
        name = "chat"
        command = "sleep"
        args = ["60"]
    """)
    r = run_ms("clearance", "--names", "-c", path)
    assert r.code == 0, r
    assert r.out.splitlines() == ["web", "web#0", "web#1", "mailer", "chat", "@front", "@http", "@back"]


# ---------------------------------------------------------------- init
def test_init_writes_a_manifest_that_passes_clearance(tmp_path):
    r = run_ms("init", cwd=str(tmp_path))
    assert r.code == 0, r
    path = tmp_path / "ship-manifest.toml"
    text = path.read_text()
    assert text.startswith("#"), "the starter manifest is commented"
    assert "[mothership" in text and "[[fleet." in text
    c = run_ms("clearance", cwd=str(tmp_path))
    assert c.code == 0, c
    assert c.err == ""
    assert "cleared for launch" in c.out
    ch = run_ms("chart", cwd=str(tmp_path))
    assert ch.code == 0, ch


def test_init_explicit_path(tmp_path):
    r = run_ms("init", "sub.toml", cwd=str(tmp_path))
    assert r.code == 0, r
    assert (tmp_path / "sub.toml").is_file()
    assert not (tmp_path / "ship-manifest.toml").exists()
    assert run_ms("clearance", "-c", "sub.toml", cwd=str(tmp_path)).code == 0


def test_init_refuses_to_overwrite(tmp_path):
    path = tmp_path / "ship-manifest.toml"
    path.write_text("# mine, hand-written\n")
    r = run_ms("init", str(path))
    assert r.code == 1, r
    assert "already exists" in r.err and "--force" in r.err, r
    assert path.read_text() == "# mine, hand-written\n"
    r = run_ms("init", cwd=str(tmp_path))
    assert r.code == 1, r
    assert path.read_text() == "# mine, hand-written\n"


def test_init_force_overwrites(tmp_path):
    path = tmp_path / "ship-manifest.toml"
    path.write_text("# mine, hand-written\n" + "x" * 10000 + "\n")
    r = run_ms("init", str(path), "--force")
    assert r.code == 0, r
    text = path.read_text()
    assert "mine, hand-written" not in text and "xxxx" not in text
    assert run_ms("clearance", "-c", str(path)).code == 0
    r = run_ms("init", "-f", cwd=str(tmp_path))
    assert r.code == 0, r
    assert path.read_text() == text


def test_init_into_missing_directory(tmp_path):
    r = run_ms("init", str(tmp_path / "no" / "such" / "dir.toml"))
    assert r.code == 1, r
    assert "no/such/dir.toml" in r.err, r
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------- clearance
def test_clearance_summary(fleet, tmp_path):
    r = run_ms("clearance", cwd=str(tmp_path), env=DB_ENV)
    assert r.code == 0, r
    assert r.err == ""
    out = r.out
    lines = out.splitlines()
    assert lines[0] == "ship-manifest.toml: cleared for launch"
    # ships by group, groups in order of first appearance, ships in manifest order
    assert [ln.strip() for ln in lines if ln.startswith("    ") and ln.strip().endswith(":")] == \
        ["web:", "admin:", "jobs:", "workers:"]
    assert "  ships    6" in lines
    assert "  bays     1" in lines
    assert "  modules  3" in lines
    assert "  uplinks  2" in lines
    assert "  binds    4" in lines
    names = [ln.split()[0] for ln in lines if ln.startswith("      ")]
    assert names[:6] == ["api", "app", "late", "panel", "migrate", "sidekiq"]
    assert summary_line(out, "app")[:3] == ["app", "ship", "tcp://127.0.0.1:3000"]
    assert "after" in summary_line(out, "app") and "migrate" in summary_line(out, "app")
    assert summary_line(out, "api")[:3] == ["api", "ship", "unix:///tmp/ms-test-api.sock"]
    assert summary_line(out, "late")[:3] == ["late", "ship", "tcp://127.0.0.1:3003"]
    assert summary_line(out, "migrate")[:2] == ["migrate", "job"]
    assert summary_line(out, "sidekiq")[:2] == ["sidekiq", "worker"]
    assert summary_line(out, "cast")[:2] == ["cast", "websocket"]
    assert summary_line(out, "cast")[-2:] == ["after", "app"]
    # modules: phase (base template, then overridden), on_error, file
    assert summary_line(out, "auth")[:3] == ["auth", "request", "on_error=open"]
    assert summary_line(out, "cache")[:3] == ["cache", "response", "on_error=closed"]
    assert summary_line(out, "logger")[:2] == ["logger", "response"]
    # uplinks: $DATABASE_URL expanded, default port filled in, default name
    # scheme://host:port[/path] (credentials left out), default timeout 5s
    assert summary_line(out, "primary-db")[:2] == ["primary-db", "postgres://db.internal:5432"]
    assert "10000ms" in summary_line(out, "primary-db")
    assert summary_line(out, "redis://cache.internal:6379")[:2] == ["redis://cache.internal:6379",
                                                                    "redis://cache.internal:6379"]
    assert "5000ms" in summary_line(out, "redis://cache.internal:6379")
    assert "s3cret" not in out and "user:" not in out
    # binds, in manifest order, TLS marked
    assert summary_line(out, "http") == ["http", "tcp://0.0.0.0:8080"]
    assert summary_line(out, "https") == ["https", "tcp://0.0.0.0:8443", "(tls,", "h2)"]
    assert summary_line(out, "ws") == ["ws", "tcp://127.0.0.1:8081"]
    assert summary_line(out, "admin") == ["admin", "tcp://127.0.0.1:9443", "(tls,", "h2)"]
    bind_names = [ln.split()[0] for ln in lines[lines.index("  binds    4") + 1:]
                  if ln.startswith("      ")]
    assert bind_names == ["http", "https", "ws", "admin"]
    assert "  metrics  http://127.0.0.1:9191/metrics" in lines


def test_clearance_base_template_merge(fleet, tmp_path):
    out = run_ms("clearance", cwd=str(tmp_path), env=DB_ENV).out
    # tags: base first, then the entry's, duplicates dropped
    api = summary_line(out, "api")
    assert api[api.index("tags") + 1] == "ruby,web,api"
    app = summary_line(out, "app")
    assert app[app.index("tags") + 1] == "ruby,web"
    # scalars: base critical = false, overridden by critical = true
    assert "non-critical" in summary_line(out, "sidekiq")
    assert "non-critical" in summary_line(out, "api")
    assert "non-critical" not in summary_line(out, "app")
    assert "non-critical" not in summary_line(out, "panel")


def test_clearance_base_template_tags_only_from_base(tmp_path, manifest):
    manifest("""
        [base.ship]
        tags = ["a", "b"]

        [[fleet.g]]
        name = "one"
        command = "x"
        tags = ["b", "c", "a", "d"]

        [[fleet.g]]
        name = "two"
        command = "x"
        tags = ["b", "b"]
        critical = false
    """)
    out = run_ms("clearance", cwd=str(tmp_path)).out
    one = summary_line(out, "one")
    assert one[one.index("tags") + 1] == "a,b,c,d"
    two = summary_line(out, "two")
    assert two[two.index("tags") + 1] == "a,b"


def test_base_template_errors_reported_once(tmp_path, manifest):
    """A problem in [base.ship] is reported at its own line, not once per ship."""
    manifest("""
        [base.ship]
        critical = "yes"

        [[fleet.g]]
        name = "one"
        command = "x"

        [[fleet.g]]
        name = "two"
        command = "x"
    """)
    r = run_ms("clearance", "-c", "ship-manifest.toml", cwd=str(tmp_path))
    assert r.code == 1, r
    assert r.err.splitlines() == [
        'ship-manifest.toml:2:12: [base.ship]: "critical" must be a boolean (true or false), not a string'], r


def test_relative_paths_are_relative_to_the_manifest(fleet, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # absolute -c from an unrelated directory
    r = run_ms("clearance", "-c", str(tmp_path / "ship-manifest.toml"), cwd=str(elsewhere), env=DB_ENV)
    assert r.code == 0, r
    assert str(tmp_path / "modules" / "auth.wasm") in summary_line(r.out, "auth")
    assert str(tmp_path / "modules" / "cache.wasm") in summary_line(r.out, "cache")
    j = run_ms("chart", "--json", "-c", str(tmp_path / "ship-manifest.toml"), cwd=str(elsewhere),
               env=DB_ENV)
    assert j.code == 0, j
    statics = json.loads(j.out)["binds"][0]["static"]
    assert [s["path"] for s in statics] == [str(tmp_path / "public" / "assets" / "img"),
                                           str(tmp_path / "public" / "assets"),
                                           str(tmp_path / "public")]
    # relative -c with a directory part, from the parent directory
    proj = tmp_path / "proj"
    proj.mkdir()
    make_tree(proj)
    shutil.copy(tmp_path / "ship-manifest.toml", proj / "ship-manifest.toml")
    r = run_ms("clearance", "-c", "proj/ship-manifest.toml", cwd=str(tmp_path), env=DB_ENV)
    assert r.code == 0, r
    assert "proj/modules/auth.wasm" in summary_line(r.out, "auth")
    # and the files really are looked up there: remove one from proj only
    (proj / "modules" / "logger.wasm").unlink()
    r = run_ms("clearance", "-c", "proj/ship-manifest.toml", cwd=str(tmp_path), env=DB_ENV)
    assert r.code == 1, r
    assert 'module "logger": wasm file "proj/modules/logger.wasm" does not exist' in r.err, r


def test_clearance_unset_variable_is_a_warning(fleet, tmp_path, monkeypatch):
    """clearance is offline: an unset $VAR in an uplink URL is a warning
    there (the rest is still checked and summarised); preflight and run need
    it and say so as an error."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    line = FLEET.splitlines().index('url = "$DATABASE_URL"') + 1
    r = run_ms("clearance", cwd=str(tmp_path))
    assert r.code == 0, r
    assert "cleared for launch" in r.out, r
    assert summary_line(r.out, "primary-db")[:3] == ["primary-db", "not", "expanded"], r
    assert r.err.splitlines() == [
        f'ship-manifest.toml:{line}:7: warning: uplink "primary-db": environment variable DATABASE_URL is not '
        'set: the uplink is not checked here (preflight and run need it)'], r
    r = run_ms("chart", cwd=str(tmp_path))  # offline too
    assert r.code == 0 and "warning: uplink \"primary-db\"" in r.err, r
    for cmd in ("preflight", "run"):
        r = run_ms(cmd, cwd=str(tmp_path), timeout=10)
        assert r.code == 1, (cmd, r)
        assert r.err.splitlines() == [
            f'ship-manifest.toml:{line}:7: uplink "primary-db": environment variable DATABASE_URL is not set '
            '(used in "$DATABASE_URL")'], (cmd, r)
    # a problem elsewhere still fails clearance, the warning beside it
    (tmp_path / "ship-manifest.toml").write_text(FLEET.replace('name = "primary-db"', 'name = "primary-db"\nwait = 3'))
    r = run_ms("clearance", cwd=str(tmp_path))
    assert r.code == 1, r
    assert "warning: uplink \"primary-db\"" in r.err and '"wait" must be a duration' in r.err, r


def test_clearance_braced_variable(tmp_path, manifest):
    manifest("""
        [[uplinks]]
        name = "db"
        url = "postgres://${MS_TEST_DB_HOST}:6543/app"
    """)
    r = run_ms("clearance", cwd=str(tmp_path), env={"MS_TEST_DB_HOST": "db.example"})
    assert r.code == 0, r
    assert summary_line(r.out, "db")[:2] == ["db", "postgres://db.example:6543"]


# ---------------------------------------------------------------- chart (text)
CHART_LINE = re.compile(r"^\s+(\d+)\. (static|route)\s+(\S+)\s+-> (.*)$")


def chart_blocks(out):
    """{bind name: (header line, [entry lines and warnings])}"""
    blocks, cur = {}, None
    for line in out.splitlines():
        if line.startswith("bind "):
            cur = line.split()[1]
            blocks[cur] = (line, [])
        elif cur and line.startswith(" "):
            blocks[cur][1].append(line)
    return blocks


def entries(block_lines):
    res = []
    for line in block_lines:
        m = CHART_LINE.match(line)
        if m:
            res.append((int(m.group(1)), m.group(2), m.group(3), m.group(4)))
    return res


def test_chart_text(fleet, tmp_path):
    r = run_ms("chart", cwd=str(tmp_path), env=DB_ENV)
    assert r.code == 0, r
    assert r.err == ""
    blocks = chart_blocks(r.out)
    assert list(blocks) == ["http", "https", "ws", "admin"]
    assert blocks["http"][0].split() == ["bind", "http", "tcp://0.0.0.0:8080"]
    assert blocks["https"][0].split() == ["bind", "https", "tcp://0.0.0.0:8443", "(tls,", "h2)"]
    assert blocks["admin"][0].split() == ["bind", "admin", "tcp://127.0.0.1:9443", "(tls,", "h2)"]

    http = entries(blocks["http"][1])
    # numbered in match order: statics longest prefix first, then routes in
    # manifest order across groups and bays
    assert [(n, kind, what) for n, kind, what, _ in http] == [
        (1, "static", "/assets/img"),
        (2, "static", "/assets"),
        (3, "static", "/"),
        (4, "route", "/api/.*"),
        (5, "route", "/live/.*"),
        (6, "route", "/admin/.*"),
        (7, "route", "/.*"),
        (8, "route", "/api/v2/.*"),
    ]
    t = {what: target.split() for _, _, what, target in http}
    assert t["/assets/img"] == ["public/assets/img"]
    assert t["/"][0] == "public" and "this bind only" in " ".join(t["/"])
    assert t["/api/.*"][:3] == ["ship", "api", "unix:///tmp/ms-test-api.sock"]
    assert t["/api/.*"][t["/api/.*"].index("strip") + 1] == "/api"
    assert t["/api/.*"][-2:] == ["modules", "cache(response),logger(response)"]
    assert t["/live/.*"][:2] == ["bay", "cast"]
    assert t["/live/.*"][-2:] == ["modules", "logger(response)"]
    assert t["/admin/.*"][:3] == ["ship", "panel", "tcp://127.0.0.1:3002"]
    assert t["/admin/.*"][-2:] == ["modules", "auth(request),logger(response)"]
    assert t["/.*"][:3] == ["ship", "app", "tcp://127.0.0.1:3000"]
    assert t["/.*"][-2:] == ["modules", "auth(request),cache(response),logger(response)"]
    assert "strip" not in t["/.*"]
    # the shadowed route gets a warning right after it, naming the route that wins
    lines = blocks["http"][1]
    i = next(k for k, ln in enumerate(lines) if "/api/v2/.*" in ln)
    assert "warning: never reached: route 4 (/api/.*)" in lines[i + 1], lines
    assert sum("warning" in ln for ln in r.out.splitlines()) == 1
    # a catch-all route: no 404 line; ws has none
    assert not any("anything else" in ln for ln in blocks["http"][1])
    assert any("anything else -> 404" in ln for ln in blocks["ws"][1])

    https = entries(blocks["https"][1])
    assert [(kind, what) for _, kind, what, _ in https] == [
        ("static", "/assets/img"), ("static", "/assets"), ("route", "/.*")]
    ws = entries(blocks["ws"][1])
    assert [(kind, what) for _, kind, what, _ in ws] == [
        ("static", "/assets/img"), ("static", "/assets"), ("route", "/ws")]
    assert ws[-1][3].split()[:2] == ["bay", "cast"]
    admin = entries(blocks["admin"][1])
    assert [(kind, what) for _, kind, what, _ in admin][-1] == ("route", "/.*")
    assert admin[-1][3].split()[:2] == ["ship", "panel"]
    # what nobody outside can reach
    assert "not routed: migrate (job), sidekiq (worker)" in r.out.splitlines()


def test_chart_without_binds(tmp_path, manifest):
    manifest("""
        [[fleet.workers]]
        name = "w"
        command = "sleep"
    """)
    r = run_ms("chart", cwd=str(tmp_path))
    assert r.code == 0, r
    assert "no binds" in r.out
    assert "not routed: w (worker)" in r.out


# ---------------------------------------------------------------- chart --json
def test_chart_json(fleet, tmp_path):
    r = run_ms("chart", "--json", cwd=str(tmp_path), env=DB_ENV)
    assert r.code == 0, r
    assert r.err == ""
    doc = json.loads(r.out)
    binds = doc["binds"]
    assert [(b["name"], b["address"], b["tls"]) for b in binds] == [
        ("http", "tcp://0.0.0.0:8080", False),
        ("https", "tcp://0.0.0.0:8443", True),
        ("ws", "tcp://127.0.0.1:8081", False),
        ("admin", "tcp://127.0.0.1:9443", True),
    ]
    http = binds[0]
    assert http["static"] == [
        {"prefix": "/assets/img", "path": "public/assets/img", "bind": None},
        {"prefix": "/assets", "path": "public/assets", "bind": None},
        {"prefix": "/", "path": "public", "bind": "http"},
    ]
    assert [(x["pattern"], x["target"], x["kind"]) for x in http["routes"]] == [
        ("/api/.*", "api", "ship"),
        ("/live/.*", "cast", "bay"),
        ("/admin/.*", "panel", "ship"),
        ("/.*", "app", "ship"),
        ("/api/v2/.*", "late", "ship"),
    ]
    api, live, admin, app, late = http["routes"]
    assert api["upstream"] == "unix:///tmp/ms-test-api.sock"
    assert api["strip_prefix"] == "/api"
    assert api["modules"] == ["cache", "logger"]
    assert live["upstream"] is None and live["strip_prefix"] is None
    assert live["modules"] == ["logger"]
    assert admin["modules"] == ["auth", "logger"]
    assert app["upstream"] == "tcp://127.0.0.1:3000"
    assert app["strip_prefix"] is None
    assert app["modules"] == ["auth", "cache", "logger"]
    assert late["shadowed_by"] == "/api/.*"
    assert all("shadowed_by" not in x for x in (api, live, admin, app))
    for b in binds[1:]:
        assert [s["prefix"] for s in b["static"]] == ["/assets/img", "/assets"]
    assert [(x["pattern"], x["target"]) for x in binds[1]["routes"]] == [("/.*", "app")]
    assert [(x["pattern"], x["target"], x["kind"]) for x in binds[2]["routes"]] == [("/ws", "cast", "bay")]
    assert [(x["pattern"], x["target"]) for x in binds[3]["routes"]] == [("/.*", "panel")]


def test_chart_json_invalid_manifest(tmp_path, manifest):
    manifest('[mothership]\nmetric_port = 1\n')
    r = run_ms("chart", "--json", "-c", "ship-manifest.toml", cwd=str(tmp_path))
    assert r.code == 1, r
    assert r.out == ""
    assert r.err.splitlines() == [
        'ship-manifest.toml:2:1: [mothership]: unknown key "metric_port" (did you mean "metrics_port"?)']


# ---------------------------------------------------------------- the reference manifest
@pytest.fixture
def reference(tmp_path):
    if not os.path.isfile(REFERENCE):
        pytest.skip(f"{REFERENCE} not found (it lives in ../shared, next to the clone)")
    shutil.copy(REFERENCE, tmp_path / "ship-manifest.toml")
    make_tree(tmp_path)
    return tmp_path


def test_reference_manifest_passes_clearance(reference):
    r = run_ms("clearance", cwd=str(reference), env=DB_ENV)
    assert r.code == 0, r
    assert r.err == ""
    out = r.out
    assert "  ships    4" in out.splitlines()
    assert "  bays     1" in out.splitlines()
    assert "  modules  3" in out.splitlines()
    assert "  uplinks  3" in out.splitlines()
    assert "  binds    3" in out.splitlines()
    groups = [ln.strip() for ln in out.splitlines() if ln.startswith("    ") and ln.strip().endswith(":")]
    assert groups == ["web:", "workers:", "jobs:"]
    app = summary_line(out, "app")
    assert app[app.index("tags") + 1] == "ruby,web"
    assert "non-critical" in summary_line(out, "sidekiq")
    assert summary_line(out, "migrate")[:2] == ["migrate", "job"]
    assert summary_line(out, "orbitcast")[:2] == ["orbitcast", "websocket"]
    assert summary_line(out, "primary-db")[:2] == ["primary-db", "postgres://db.internal:5432"]
    assert summary_line(out, "redis")[:2] == ["redis", "redis://cache.internal:6379"]
    assert summary_line(out, "https") == ["https", "tcp://0.0.0.0:443", "(tls,", "h2)"]
    assert summary_line(out, "cache")[:2] == ["cache", "response"]
    assert "  metrics  http://127.0.0.1:9090/metrics" in out.splitlines()


def test_reference_manifest_chart(reference):
    r = run_ms("chart", "--json", cwd=str(reference), env=DB_ENV)
    assert r.code == 0, r
    binds = {b["name"]: b for b in json.loads(r.out)["binds"]}
    assert list(binds) == ["http", "https", "ws"]
    assert [s["prefix"] for s in binds["http"]["static"]] == ["/assets", "/"]
    assert [s["prefix"] for s in binds["https"]["static"]] == ["/assets"]
    assert [(x["pattern"], x["target"]) for x in binds["http"]["routes"]] == [
        ("/.*", "app"), ("/api/.*", "api")]
    assert binds["http"]["routes"][1]["shadowed_by"] == "/.*"
    assert [(x["pattern"], x["target"], x["kind"]) for x in binds["ws"]["routes"]] == [
        ("/ws", "orbitcast", "bay")]


def test_reference_manifest_needs_its_files(reference):
    (reference / "modules" / "auth.wasm").unlink()
    r = run_ms("clearance", "-c", "ship-manifest.toml", cwd=str(reference), env=DB_ENV)
    assert r.code == 1, r
    assert len(r.err.splitlines()) == 1, r
    assert re.fullmatch(r'ship-manifest\.toml:\d+:8: module "auth": wasm file "modules/auth\.wasm" '
                        r'does not exist\n', r.err), r


# ------------------------------------------------------------------ -c - (stdin)
PIPED = """\
[[fleet.web]]
name = "web"
command = "sh"
args = ["-c", "pwd; exec sleep 100"]
cwd = "sub"
ready_after = "50ms"
"""


def piped(*args, text, cwd):
    import subprocess
    from conftest import BINARY
    return subprocess.run([BINARY, *args], input=text, cwd=cwd, capture_output=True, text=True, timeout=30)


def test_config_dash_reads_the_manifest_from_stdin(tmp_path):
    """-c - reads the manifest from stdin: relative paths against the cwd,
    problems named <stdin>."""
    (tmp_path / "sub").mkdir()
    r = piped("clearance", "-c", "-", text=PIPED, cwd=str(tmp_path))
    assert r.returncode == 0, r
    assert r.stdout.startswith("<stdin>: cleared for launch\n"), r
    assert "web              worker" in r.stdout, r
    r = piped("clearance", "-c", "-", text=PIPED, cwd=str(tmp_path / "sub"))  # no sub/sub
    assert r.returncode == 1, r
    assert r.stderr == '<stdin>:5:7: ship "web": cwd "sub" is not a directory\n', r
    r = piped("chart", "--json", "-c", "-", text=PIPED, cwd=str(tmp_path))
    assert r.returncode == 0 and json.loads(r.stdout)["binds"] == [], r
    r = piped("clearance", "-c", "-", text='[[fleet.web]]\nnme = "web"\n', cwd=str(tmp_path))
    assert r.returncode == 1, r
    assert '<stdin>:2:1: ship #1 in [[fleet.web]]: unknown key "nme" (did you mean "name"?)' in r.stderr, r
    assert r.stderr.endswith("<stdin>: 3 problems found\n"), r
    for args in (["run", "--tui"], ["init"]):
        r = piped(*args, "-c", "-", text=PIPED, cwd=str(tmp_path))
        assert r.returncode == 2, r


def test_run_from_stdin_refuses_reloads(tmp_path):
    from fleet_helpers import Mothership
    (tmp_path / "sub").mkdir()
    src = tmp_path / "piped.toml"
    src.write_text(PIPED)
    with open(src) as stdin:
        ms = Mothership(["-c", "-"], cwd=str(tmp_path), stdin=stdin)
    try:
        assert "from <stdin>" in ms.event("launch")["msg"]
        ms.event("fleet_ready")
        ms.wait_for(re.escape(str(tmp_path / "sub")))  # the ship's cwd: sub of the cwd
        ms.signal(1)  # SIGHUP
        e = ms.event("reload_problem")
        assert e["msg"] == ("<stdin>: cannot reload: the manifest was read from stdin (-c -), which cannot be "
                            "read again: restart Mothership to change it"), e
        assert not ms.events("stopping"), ms.output()
        assert ms.stop() == 0, ms.output()
    finally:
        ms.kill()
