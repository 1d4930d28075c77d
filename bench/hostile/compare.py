#!/usr/bin/python3
"""bench/hostile/compare.py MOTHERSHIP - the hostile-input table of the
integration suite (tests/integration/hostile_cases.py) run through
Mothership, nginx and HAProxy, each in front of its own pair of recording
upstreams (tests/integration/apps/recording_upstream.py), on loopback.

Every proxy gets the same setting: a static directory on /static, /api/.*
to the "api" upstream with the /api prefix removed, everything else to the
"app" upstream, and /app/admin(/.*)? answered 401 unless it carries
`Authorization: Bearer s3cret` (Mothership: the example auth payload;
nginx: a regex location with `if`; HAProxy: `http-request deny`). A peer
that is not installed is left out and said so.

Prints one row per case: what the client got from each proxy, and what
each let through to its upstreams (request lines and framing; "-" for not
one byte), a mark where that differs from what the hardening rules in
docs/proxy.md expect, and at the end how many cases each proxy handled as
the rules say. Framing is not held against the peers (HAProxy streams a
chunked body as chunked; only Mothership must re-frame with
Content-Length). Environment: ONLY=mothership,nginx,haproxy (a subset),
JSON=path (also write the results there), KEEP_TMP=1. The counts per proxy are
also BENCH-JSON lines (bench/README.md).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from benchlib import cleanup, emit, free_port, live, set_tmpdir, stop_on_signals  # noqa: E402
from hostile_cases import CASES, CLOSED, TOKEN, Recorder, exchange, get, run_case  # noqa: E402

RECORDER = os.path.join(ROOT, "tests", "integration", "apps", "recording_upstream.py")
PROXIES = ("mothership", "nginx", "haproxy")


def spawn(argv, log, cwd):
    out = open(log, "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    out.close()
    live.append(p)
    return p


def wait_ready(port, proc, log, timeout=30.0):
    """Until a request through the proxy to each upstream is answered 200."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            a = exchange(port, get("/app/_ready"), 1, timeout=1.0)[0]
            b = exchange(port, get("/api/_ready"), 1, timeout=1.0)[0]
            if a and b and a[0]["status"] == 200 and b[0]["status"] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    with open(log, errors="replace") as f:
        raise RuntimeError(f"proxy on {port} did not get ready:\n{f.read()[-3000:]}")


def start_upstreams(tmp, name):
    record = os.path.join(tmp, f"record-{name}")
    ports = {}
    for ship in ("app", "api"):
        ports[ship] = free_port()
        p = spawn([sys.executable, RECORDER, "--name", ship, "--port", str(ports[ship]), "--record", record],
                  os.path.join(tmp, f"{name}-{ship}.out"), tmp)
        deadline = time.time() + 10
        while not os.path.exists(os.path.join(tmp, f"{name}-{ship}.out")) or \
                b"listening" not in open(os.path.join(tmp, f"{name}-{ship}.out"), "rb").read():
            if p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"recording upstream {ship} did not start")
            time.sleep(0.02)
    return ports, Recorder(record)


def mothership(binary, tmp, www, port, up):
    wasm = os.path.join(os.path.dirname(binary), "examples", "payloads", "auth.wasm")
    relay = os.path.join(ROOT, "tests", "integration", "apps", "relay.py")
    relays = {"api": free_port(), "app": free_port()}
    text = f"""[mothership]
metrics_port = {free_port()}

[mothership.bind]
http = "127.0.0.1:{port}"

[[mothership.static_dirs]]
path = "{www}/static"
prefix = "/static"

# the upstreams are started by compare.py and shared with the peers; each
# ship is a relay that passes its connections on byte for byte (a ship's
# port must be held by the ship's own process)
[[fleet.web]]
name = "api"
command = "{sys.executable}"
args = ["{relay}", "{relays['api']}", "{up['api']}"]
bind = "127.0.0.1:{relays['api']}"
routes = [{{ bind = "http", pattern = "/api/.*", strip_prefix = "/api" }}]

[[fleet.web]]
name = "app"
command = "{sys.executable}"
args = ["{relay}", "{relays['app']}", "{up['app']}"]
bind = "127.0.0.1:{relays['app']}"
routes = ["http:/.*"]

[[modules]]
name = "auth"
wasm = "{wasm}"
routes = ["/app/admin(/.*)?"]
phase = "request"
config = {{ token = "{TOKEN}" }}
"""
    conf = os.path.join(tmp, "mothership.toml")
    with open(conf, "w") as f:
        f.write(text)
    return [binary, "run", "-c", conf]


def nginx(tmp, www, port, up):
    user = "user root;\n" if os.geteuid() == 0 else ""
    for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(tmp, f"nginx-{t}"), exist_ok=True)
    pass_ = ("proxy_http_version 1.1; proxy_set_header Connection \"\"; "
             "proxy_set_header Host $http_host;")
    text = f"""{user}pid {tmp}/nginx.pid;
error_log {tmp}/nginx.error.log warn;
daemon off;
master_process off;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    default_type text/plain;
    upstream app {{ server 127.0.0.1:{up['app']}; keepalive 16; }}
    upstream api {{ server 127.0.0.1:{up['api']}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ root {www}; }}
        location ~ ^/app/admin(/.*)?$ {{
            if ($http_authorization != "Bearer {TOKEN}") {{ return 401; }}
            proxy_pass http://app; {pass_}
        }}
        location /api/ {{ proxy_pass http://api/; {pass_} }}
        location / {{ proxy_pass http://app; {pass_} }}
    }}
}}
"""
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(text)
    return ["nginx", "-p", tmp, "-c", conf]


def haproxy(tmp, www, port, up):
    text = f"""global
    nbthread 1

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 5s

frontend fe
    bind 127.0.0.1:{port}
    http-request deny deny_status 401 if {{ path_reg ^/app/admin(/.*)?$ }} !{{ req.hdr(authorization) -m str "Bearer {TOKEN}" }}
    use_backend api if {{ path_beg /api/ }}
    default_backend app

backend api
    http-request replace-path /api(/.*) \\1
    server s1 127.0.0.1:{up['api']}

backend app
    server s1 127.0.0.1:{up['app']}
"""
    conf = os.path.join(tmp, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(text)
    return ["haproxy", "-db", "-f", conf]


def cell(res, case):
    st = "/".join("closed" if r["status"] == CLOSED else str(r["status"]) for r in res["responses"]) or "-"
    fwd = []
    for ship, lines in sorted(res["forwarded"].items()):
        fwd += [f"{ship}: {x[:70]}" for x in lines]
    mark = "" if not res["problems"] else "✗ "
    leak = " LEAK" if res["admin_leaks"] else ""
    return f"{mark}{st} {'; '.join(fwd) if fwd else '-'}{leak}"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: compare.py MOTHERSHIP")
    binary = os.path.abspath(sys.argv[1])
    os.environ["PATH"] += ":/usr/sbin:/sbin"
    only = [p for p in os.environ.get("ONLY", ",".join(PROXIES)).split(",") if p]
    have = []
    for name in only:
        exe = binary if name == "mothership" else shutil.which(name)
        if not exe or not os.access(exe, os.X_OK):
            print(f"hostile: {name} not found, left out (DEPS_BENCH=1 scripts/deps.sh installs nginx-light and haproxy)")
            continue
        have.append(name)
    stop_on_signals()
    tmp = tempfile.mkdtemp(prefix="msbench-hostile-")
    set_tmpdir(tmp)
    os.chmod(tmp, 0o755)
    www = os.path.join(tmp, "www")
    os.makedirs(os.path.join(www, "static"))
    with open(os.path.join(www, "static", "index.html"), "w") as f:
        f.write("static index\n")
    results = {}
    try:
        for name in have:
            up, rec = start_upstreams(tmp, name)
            port = free_port()
            argv = {"mothership": lambda: mothership(binary, tmp, www, port, up),
                    "nginx": lambda: nginx(tmp, www, port, up),
                    "haproxy": lambda: haproxy(tmp, www, port, up)}[name]()
            log = os.path.join(tmp, f"{name}.out")
            p = spawn(argv, log, tmp)
            wait_ready(port, p, log)
            results[name] = [run_case(c, port, rec, f"{name}-{i}", strict_framing=(name == "mothership"))
                             for i, c in enumerate(CASES)]
            p.terminate()
            p.wait(10)
    finally:
        cleanup()

    print(f"hostile inputs: {len(CASES)}; ✗ = not what docs/proxy.md's rules expect; "
          "'-' = not one byte reached an upstream; LEAK = an upstream served /app/admin without the token")
    print("| case | " + " | ".join(have) + " |")
    print("|---|" + "---|" * len(have))
    for i, c in enumerate(CASES):
        print(f"| {c.name} | " + " | ".join(cell(results[n][i], c).replace("|", "\\|") for n in have) + " |")
    print()
    for n in have:
        bad = [CASES[i].name for i, r in enumerate(results[n]) if r["problems"]]
        leaks = sum(1 for r in results[n] if r["admin_leaks"])
        print(f"{n}: {len(CASES) - len(bad)}/{len(CASES)} as the rules say; /app/admin served without the token "
              f"in {leaks} case(s)")
        emit("hostile", "cases", n, "not_as_the_rules_say", len(bad), "cases")
        emit("hostile", "cases", n, "admin_leaks", leaks, "cases")
    if os.environ.get("JSON"):
        out = {n: [{"case": CASES[i].name, "statuses": [r["status"] for r in res["responses"]],
                    "forwarded": res["forwarded"], "problems": res["problems"]}
                   for i, res in enumerate(results[n])] for n in have}
        with open(os.environ["JSON"], "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
