"""Bad manifests: each case is a small ship-manifest.toml and the exact
diagnostics `mothership clearance` must print for it (exit 1).

Every expected line is the whole `FILE:LINE:COL: <entry>: <message>` text:
the location is part of the contract (a user jumps to it from the message),
and so is the wording (the entry's name, what was expected, the nearest valid
key). When more than one problem is found, all of them are printed in order of
position, followed by `FILE: N problems found`.

Cases may create files and directories next to the manifest (`files`,
`dirs`) and set or unset environment variables (`env`, None meaning unset).
"""
import os

import pytest

from conftest import run_ms

MANIFEST = "ship-manifest.toml"
UNSET = "MS_TEST_SURELY_UNSET_VAR"


class Case:
    def __init__(self, id, text, errors, files=(), dirs=(), env=None, command="clearance"):
        self.id = id
        self.command = command  # clearance, or preflight for what clearance only warns about
        self.text = text
        self.errors = errors if isinstance(errors, list) else [errors]
        self.files = files
        self.dirs = dirs
        self.env = env or {}


# A minimal valid preamble many cases build on (5 lines).
BINDS = """\
[mothership.bind]
http = "127.0.0.1:8080"
ws = "127.0.0.1:8081"

"""

CASES = [
    # ------------------------------------------------------------ TOML syntax
    Case("toml-unterminated-string",
         '[[fleet.web]]\nname = "app\ncommand = "ruby"\n',
         "2:12: unterminated string (newline before closing quote)"),
    Case("toml-duplicate-key",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nname = "api"\n',
         '4:1: duplicate key "name"'),
    Case("toml-bad-escape",
         '[[fleet.web]]\nname = "app"\ncommand = "C:\\apps\\ruby"\n',
         "3:14: invalid escape \\a in string"),
    Case("toml-redefined-table",
         '[mothership]\nmetrics_port = 9090\n\n[mothership]\ncompression = true\n',
         '4:2: table "mothership" is already defined'),
    Case("toml-invalid-integer-hex",
         "[mothership]\nmetrics_port = 0x\n",
         "2:16: invalid number 0x"),
    Case("toml-invalid-integer-leading-zero",
         "[mothership]\nmetrics_port = 09090\n",
         "2:16: leading zeros are not allowed in 09090"),
    Case("toml-integer-overflow",
         "[mothership]\nmetrics_port = 99999999999999999999\n",
         "2:16: integer 99999999999999999999 does not fit in 64 bits"),
    Case("toml-invalid-integer-underscore",
         "[mothership]\nmetrics_port = 9_090_\n",
         "2:16: invalid number 9_090_ (an underscore must be between two digits)"),
    Case("toml-missing-value",
         "[mothership]\nmetrics_port =\n",
         "2:15: expected a value, found end of line"),
    Case("toml-unquoted-string",
         '[[fleet.web]]\nname = app\ncommand = "ruby"\n',
         "2:8: invalid value (strings must be quoted)"),
    Case("toml-trailing-comma-inline-table",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nenv = { PORT = "3000", }\n',
         "4:22: trailing comma is not allowed in an inline table"),
    Case("toml-array-of-tables-over-table",
         '[fleet]\nweb = 1\n\n[[fleet.web]]\nname = "app"\n',
         '4:9: key "web" is already defined and is not an array of tables'),

    # ------------------------------------------------------------ unknown keys
    Case("unknown-key-top-level",
         '[[fleets.web]]\nname = "app"\ncommand = "ruby"\n',
         '1:3: unknown key "fleets" (did you mean "fleet"?)'),
    Case("unknown-key-mothership",
         "[mothership]\nmetric_port = 9090\n",
         '2:1: [mothership]: unknown key "metric_port" (did you mean "metrics_port"?)'),
    Case("unknown-key-ship",
         '[[fleet.web]]\nname = "app"\ncomand = "ruby"\n',
         ['3:1: ship "app": unknown key "comand" (did you mean "command"?)',
          '1:1: ship "app": missing required key "command"'][::-1]),
    Case("unknown-key-bay",
         '[[bays.websocket]]\nname = "cast"\ncommand = "./cast"\ndepend_on = ["x"]\n',
         '4:1: bay "cast": unknown key "depend_on" (did you mean "depends_on"?)'),
    Case("unknown-key-module",
         '[[modules]]\nname = "auth"\nwams = "./auth.wasm"\n',
         ['1:1: module "auth": missing required key "wasm" (path to the .wasm file)',
          '3:1: module "auth": unknown key "wams" (did you mean "wasm"?)']),
    Case("unknown-key-uplink",
         '[[uplinks]]\nname = "db"\nurl = "postgres://db:5432/x"\ntimout = "5s"\n',
         '4:1: uplink "db": unknown key "timout" (did you mean "timeout"?)'),
    Case("unknown-key-static-dir",
         '[[mothership.static_dirs]]\npath = "."\nprefx = "/assets"\n',
         '3:1: static dir #1: unknown key "prefx" (did you mean "prefix"?)'),
    Case("unknown-key-route-table",
         BINDS + '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'routes = [{ bind = "http", patern = "/.*" }]\n',
         '9:28: ship "app": unknown key "patern" (did you mean "pattern"?)'),
    Case("unknown-key-healthcheck-table",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'healthcheck = { path = "/health", intervl = "5s" }\n',
         '5:35: ship "app": unknown key "intervl" (did you mean "interval"?)'),
    Case("unknown-key-base-ship",
         '[base.ship]\ncritcal = false\n',
         '2:1: [base.ship]: unknown key "critcal" (did you mean "critical"?)'),
    Case("unknown-key-base-section",
         '[base.ships]\ncritical = false\n',
         '1:7: unknown key "ships" (did you mean "ship"?)'),
    Case("unknown-key-tls",
         '[mothership.tls]\ncert = "c.pem"\nkye = "k.pem"\n',
         '3:1: [mothership.tls]: unknown key "kye" (did you mean "key"?)',
         files=["c.pem"]),
    Case("unknown-key-bind-table",
         '[mothership.bind]\nadmin = { adress = "127.0.0.1:8443", tls = true }\n',
         '2:11: bind "admin": unknown key "adress" (did you mean "address"?)'),
    Case("bay-given-bind",
         '[[bays.websocket]]\nname = "cast"\ncommand = "./cast"\nbind = "unix:///tmp/cast.sock"\n',
         '4:1: bay "cast": unknown key "bind" ("bind" is only for ships; '
         'a bay docks over the Unix socket in MS_SOCKET_PATH)'),
    Case("ship-given-config",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nconfig = { a = "b" }\n',
         '4:1: ship "app": unknown key "config" ("config" is only for bays and modules)'),

    # ------------------------------------------------------------ wrong types
    Case("type-string-for-integer",
         '[mothership]\nmetrics_port = "9090"\n',
         '2:16: [mothership]: "metrics_port" must be an integer, not a string'),
    Case("type-integer-for-string",
         '[[fleet.web]]\nname = "app"\ncommand = 5\n',
         '3:11: ship "app": "command" must be a string, not an integer'),
    Case("type-string-for-bool",
         '[[fleet.workers]]\nname = "job"\ncommand = "sh"\ncritical = "no"\n',
         '4:12: ship "job": "critical" must be a boolean (true or false), not a string'),
    Case("type-integer-for-bool",
         '[mothership]\ncompression = 1\n',
         '2:15: [mothership]: "compression" must be a boolean (true or false), not an integer'),
    Case("type-string-for-array",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nargs = "app.rb"\n',
         '4:8: ship "app": "args" must be an array of strings, not a string'),
    Case("type-array-item",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\ntags = ["web", 2]\n',
         '4:16: ship "app": "tags" must be an array of strings, but item 2 is an integer'),
    Case("type-array-for-table",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nenv = ["PORT=3000"]\n',
         '4:7: ship "app": "env" must be a table of strings, not an array'),
    Case("type-metrics-port-range",
         '[mothership]\nmetrics_port = 70000\n',
         '2:16: [mothership]: "metrics_port" must be from 1 to 65535, not 70000'),

    # ------------------------------------------------------------ required keys
    Case("missing-name",
         '[[fleet.web]]\ncommand = "ruby"\n',
         '1:1: ship #1 in [[fleet.web]]: missing required key "name"'),
    Case("missing-command",
         '[[fleet.web]]\nname = "app"\n',
         '1:1: ship "app": missing required key "command"'),
    Case("missing-command-bay",
         '[[bays.websocket]]\nname = "cast"\n',
         '1:1: bay "cast": missing required key "command"'),
    Case("missing-wasm",
         '[[modules]]\nname = "auth"\nroutes = ["/admin/.*"]\n',
         '1:1: module "auth": missing required key "wasm" (path to the .wasm file)'),
    Case("missing-url",
         '[[uplinks]]\nname = "db"\n',
         '1:1: uplink "db": missing required key "url"'),
    Case("missing-route-bind",
         BINDS + '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'routes = [{ pattern = "/.*" }]\n',
         '9:11: ship "app": route 1: missing required key "bind"'),
    Case("missing-route-pattern",
         BINDS + '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'routes = [{ bind = "http" }]\n',
         '9:11: ship "app": route 1: missing required key "pattern"'),
    Case("missing-static-dir-path",
         '[[mothership.static_dirs]]\nprefix = "/assets"\n',
         '1:1: static dir #1: missing required key "path"'),

    # ------------------------------------------------------------ names
    Case("name-with-space",
         '[[fleet.web]]\nname = "my app"\ncommand = "ruby"\n',
         '2:8: ship "my app": names must be 1 to 64 ASCII letters, digits, \'-\' or \'_\''),
    Case("name-non-ascii",
         '[[modules]]\nname = "authé"\nwasm = "./auth.wasm"\n',
         '2:8: module "authé": names must be 1 to 64 ASCII letters, digits, \'-\' or \'_\'',
         files=["auth.wasm"]),
    # a child's lines carry its entry's name as their log source: these two
    # are the sources of Mothership's own lines and of the access log
    Case("name-reserved-mothership",
         '[[fleet.web]]\nname = "mothership"\ncommand = "ruby"\n',
         '2:8: ship "mothership": the name is reserved (it is the log source of Mothership\'s own lines '
         'or of the access log)'),
    Case("name-reserved-access",
         '[[bays.websocket]]\nname = "access"\ncommand = "./cast"\n',
         '2:8: bay "access": the name is reserved (it is the log source of Mothership\'s own lines '
         'or of the access log)'),
    Case("duplicate-name-ship-bay",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\n\n'
         '[[bays.websocket]]\nname = "app"\ncommand = "./cast"\n',
         '6:8: bay "app": the name is already used by the ship at line 2 '
         '(names are unique across ships, bays, upstreams and modules)'),
    Case("duplicate-name-ship-module",
         '[[fleet.web]]\nname = "auth"\ncommand = "ruby"\n\n'
         '[[modules]]\nname = "auth"\nwasm = "auth.wasm"\n',
         '6:8: module "auth": the name is already used by the ship at line 2 '
         '(names are unique across ships, bays, upstreams and modules)',
         files=["auth.wasm"]),
    Case("duplicate-name-across-groups",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\n\n'
         '[[fleet.jobs]]\nname = "app"\ncommand = "rails"\noneshot = true\n',
         '6:8: ship "app": the name is already used by the ship at line 2 '
         '(names are unique across ships, bays, upstreams and modules)'),

    # ------------------------------------------------------------ dependencies
    Case("depends-on-unknown",
         '[[fleet.jobs]]\nname = "migrate"\ncommand = "rails"\noneshot = true\n\n'
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\ndepends_on = ["migrat"]\n',
         '9:15: ship "app": depends_on "migrat", which is not a ship or bay (did you mean "migrate"?)'),
    Case("depends-on-self",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\ndepends_on = ["app"]\n',
         '4:15: ship "app": depends on itself'),
    Case("depends-on-cycle-of-3",
         '[[fleet.a]]\nname = "a"\ncommand = "x"\ndepends_on = ["b"]\n\n'
         '[[fleet.a]]\nname = "b"\ncommand = "x"\ndepends_on = ["c"]\n\n'
         '[[fleet.a]]\nname = "c"\ncommand = "x"\ndepends_on = ["a"]\n',
         '14:15: ship "c": dependency cycle: a -> b -> c -> a'),

    # ------------------------------------------------------------ routes
    Case("route-unknown-bind",
         BINDS + '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'routes = ["htp:/.*"]\n',
         '9:11: ship "app": route 1: bind "htp" is not defined in [mothership.bind] (did you mean "http"?)'),
    Case("route-pattern-does-not-compile",
         BINDS + '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'routes = [{ bind = "http", pattern = "/api/(v1" }]\n',
         '9:11: ship "app": route 1: invalid pattern "/api/(v1": missing closing parenthesis at offset 8'),
    Case("route-bad-shorthand",
         BINDS + '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'routes = ["/api/.*"]\n',
         '9:11: ship "app": route "/api/.*" must be written "bind:pattern", like "http:/api/.*"'),
    Case("route-strip-prefix-cannot-match",
         BINDS + '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'routes = [{ bind = "http", pattern = "/api/.*", strip_prefix = "/v1" }]\n',
         '9:11: ship "app": route 1: strip_prefix "/v1" is not a prefix of any path '
         'that pattern "/api/.*" matches'),
    Case("module-route-does-not-compile",
         '[[modules]]\nname = "auth"\nwasm = "auth.wasm"\nroutes = ["/admin/[a-"]\n',
         '4:11: module "auth": route 1: invalid pattern "/admin/[a-": '
         'missing terminating ] for character class at offset 10',
         files=["auth.wasm"]),
    Case("oneshot-with-routes",
         BINDS + '[[fleet.jobs]]\nname = "migrate"\ncommand = "rails"\noneshot = true\n'
         'routes = ["http:/.*"]\n',
         '9:11: ship "migrate": a oneshot job cannot have routes (it exits; nothing would answer)'),
    Case("routes-without-bind",
         BINDS + '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nroutes = ["http:/.*"]\n',
         '8:11: ship "app": has routes but no "bind" to send the traffic to '
         '(add bind = "tcp://127.0.0.1:PORT" or "unix:///path")'),
    Case("healthcheck-without-bind",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nhealthcheck = "/health"\n',
         '4:15: ship "app": "healthcheck" needs a "bind" to send the check to '
         '(or an "address" or "port" of its own)'),
    Case("healthcheck-unknown-protocol",
         '[[fleet.web]]\nname = "db"\ncommand = "postgres"\nbind = "5432"\n'
         'healthcheck = { protocol = "postgresql" }\n',
         '5:28: ship "db": healthcheck: unknown protocol "postgresql" (did you mean "postgres"?) '
         '(one of http, tcp, postgres, mysql, redis)'),
    Case("healthcheck-path-with-redis",
         '[[fleet.web]]\nname = "cache"\ncommand = "redis-server"\nbind = "6379"\n'
         'healthcheck = { protocol = "redis", path = "/health" }\n',
         '5:37: ship "cache": healthcheck: "path" is only for protocol = "http" (this check is "redis")'),
    Case("healthcheck-address-and-port",
         '[[fleet.web]]\nname = "db"\ncommand = "postgres"\n'
         'healthcheck = { protocol = "tcp", address = "127.0.0.1:5432", port = 5432 }\n',
         '4:63: ship "db": healthcheck: give "address" or "port", not both'),
    Case("healthcheck-not-a-path",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\nhealthcheck = "health"\n',
         '5:15: ship "app": "healthcheck" must be a path starting with \'/\', like "/health"'),

    # ------------------------------------------------------------ addresses
    Case("bind-port-zero",
         '[mothership.bind]\nhttp = "0.0.0.0:0"\n',
         '2:8: bind "http": invalid address "0.0.0.0:0": port must be a number from 1 to 65535'),
    Case("bind-port-70000",
         '[mothership.bind]\nhttp = "70000"\n',
         '2:8: bind "http": invalid address "70000": port must be a number from 1 to 65535'),
    Case("bind-unix-empty",
         '[mothership.bind]\nhttp = "unix://"\n',
         '2:8: bind "http": invalid address "unix://": missing socket path after unix://'),
    Case("bind-unknown-scheme",
         '[mothership.bind]\nhttp = "udp://0.0.0.0:80"\n',
         '2:8: bind "http": invalid address "udp://0.0.0.0:80": unknown scheme '
         '(use tcp://host:port, host:port, port or unix:///path)'),
    Case("bind-ipv6-without-brackets",
         '[mothership.bind]\nhttp = "::1:8080"\n',
         '2:8: bind "http": invalid address "::1:8080": IPv6 addresses must be written in brackets, '
         'like [::1]:8080'),
    Case("ship-bind-invalid",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "tcp://127.0.0.1"\n',
         '4:8: ship "app": invalid bind address "tcp://127.0.0.1": missing port'),
    Case("binds-collide",
         '[mothership.bind]\nhttp = "0.0.0.0:8080"\nalt = "127.0.0.1:8080"\n',
         '3:1: bind "alt": address tcp://127.0.0.1:8080 collides with bind "http" '
         '(tcp://0.0.0.0:8080, line 2)'),
    Case("ship-bind-collides-with-bind",
         '[mothership.bind]\nhttp = "8080"\n\n'
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "tcp://localhost:8080"\n',
         '7:8: ship "app": address tcp://localhost:8080 collides with bind "http" '
         '(tcp://127.0.0.1:8080, line 2)'),
    Case("metrics-port-collides",
         '[mothership]\nmetrics_port = 8080\n\n[mothership.bind]\nhttp = "0.0.0.0:8080"\n',
         '2:16: the metrics listener: address tcp://127.0.0.1:8080 collides with bind "http" '
         '(tcp://0.0.0.0:8080, line 5)'),
    Case("tls-bind-without-tls",
         '[mothership.bind]\nhttps = "0.0.0.0:8443"\n',
         '2:1: bind "https": terminates TLS but there is no [mothership.tls] with cert and key'),
    Case("tls-table-bind-without-tls",
         '[mothership.bind]\nadmin = { address = "127.0.0.1:8443", tls = true }\n',
         '2:1: bind "admin": terminates TLS but there is no [mothership.tls] with cert and key'),

    # ------------------------------------------------------------ durations
    Case("duration-with-space",
         '[[uplinks]]\nurl = "redis://cache:6379"\ntimeout = "5 s"\n',
         '3:11: uplink #1: "timeout": invalid duration "5 s" (use a number and ms, s, m or h, '
         'like "250ms", "5s" or "1m"; at most 24h)'),
    Case("duration-negative",
         '[mothership]\nshutdown_timeout = "-1s"\n',
         '2:20: [mothership]: "shutdown_timeout": invalid duration "-1s" (use a number and ms, s, m or h, '
         'like "250ms", "5s" or "1m"; at most 24h)'),
    Case("duration-unknown-unit",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nready_timeout = "10x"\n',
         '4:17: ship "app": "ready_timeout": invalid duration "10x" (use a number and ms, s, m or h, '
         'like "250ms", "5s" or "1m"; at most 24h)'),
    Case("duration-integer",
         '[[uplinks]]\nname = "cache"\nurl = "redis://cache:6379"\ntimeout = 5\n',
         '4:11: uplink "cache": "timeout" must be a duration string like "250ms", "5s" or "1m", '
         'not an integer'),

    # ------------------------------------------------------------ uplinks
    Case("uplink-unknown-scheme",
         '[[uplinks]]\nname = "files"\nurl = "ftp://files.internal:21"\n',
         '3:7: uplink "files": invalid URL "ftp://files.internal:21": unsupported scheme "ftp" '
         '(supported: postgres, postgresql, mysql, rediss, redis, memgraph, neo4j, bolt, http, https, tcp)'),
    Case("uplink-tcp-without-port",
         '[[uplinks]]\nname = "svc"\nurl = "tcp://svc.internal"\n',
         '3:7: uplink "svc": invalid URL "tcp://svc.internal": missing port'),
    Case("uplink-unset-var",
         '[[uplinks]]\nname = "db"\nurl = "$' + UNSET + '"\n',
         '3:7: uplink "db": environment variable ' + UNSET + ' is not set (used in "$' + UNSET + '")',
         env={UNSET: None}, command="preflight"),
    Case("uplink-unset-braced-var",
         '[[uplinks]]\nname = "db"\nurl = "postgres://${' + UNSET + '}:5432/app"\n',
         '3:7: uplink "db": environment variable ' + UNSET + ' is not set '
         '(used in "postgres://${' + UNSET + '}:5432/app")',
         env={UNSET: None}, command="preflight"),
    Case("uplink-var-expands-to-bad-url",
         '[[uplinks]]\nname = "db"\nurl = "${MS_TEST_DB_URL}"\n',
         '3:7: uplink "db": invalid URL "db.internal:5432" (from "${MS_TEST_DB_URL}"): '
         'not a URL (expected scheme://host[:port])',
         env={"MS_TEST_DB_URL": "db.internal:5432"}),

    # ------------------------------------------------------------ files
    Case("static-dir-does-not-exist",
         '[[mothership.static_dirs]]\npath = "./public"\nprefix = "/"\n',
         '2:8: static dir #1: directory "public" does not exist'),
    Case("static-dir-is-a-file",
         '[[mothership.static_dirs]]\npath = "index.html"\nprefix = "/"\n',
         '2:8: static dir #1: "index.html" is not a directory',
         files=["index.html"]),
    Case("module-wasm-missing",
         '[[modules]]\nname = "auth"\nwasm = "./modules/auth.wasm"\n',
         '3:8: module "auth": wasm file "modules/auth.wasm" does not exist',
         dirs=["modules"]),
    Case("tls-cert-missing",
         '[mothership.tls]\ncert = "certs/server.crt"\nkey = "certs/server.key"\n',
         ['2:8: [mothership.tls]: cert "certs/server.crt" does not exist',
          '3:7: [mothership.tls]: key "certs/server.key" does not exist']),

    # ------------------------------------------------------------ enumerations
    Case("phase-invalid",
         '[[modules]]\nname = "auth"\nwasm = "auth.wasm"\nphase = "before"\n',
         '4:9: module "auth": "phase" must be "request" or "response", not "before"',
         files=["auth.wasm"]),
    Case("on-error-invalid",
         '[[modules]]\nname = "auth"\nwasm = "auth.wasm"\non_error = "ignore"\n',
         '4:12: module "auth": "on_error" must be "closed" (answer 500) or "open" '
         '(skip the payload), not "ignore"',
         files=["auth.wasm"]),
    Case("workers-invalid-string",
         '[mothership]\nworkers = "many"\n',
         '2:11: [mothership]: "workers" must be a number from 1 to 256 or "auto", not "many"'),
    Case("workers-out-of-range",
         '[mothership]\nworkers = 0\n',
         '2:11: [mothership]: "workers" must be from 1 to 256, not 0'),
    Case("base-module-phase-invalid",
         '[base.module]\nphase = "req"\n',
         '2:9: [base.module]: "phase" must be "request" or "response", not "req"'),
    Case("base-template-name",
         '[base.ship]\nname = "x"\n',
         '2:1: [base.ship]: a base template cannot set "name"'),
    Case("unknown-bay-type",
         '[[bays.sse]]\nname = "cast"\ncommand = "./cast"\n',
         '1:8: unknown bay type "sse" (supported: websocket, http)'),

    # ------------------------------------------------------------ more rules
    Case("name-empty",
         '[[fleet.web]]\nname = ""\ncommand = "ruby"\n',
         '2:8: ship #1 in [[fleet.web]]: "name" must not be empty'),
    Case("group-name-invalid",
         '[[fleet."my web"]]\nname = "app"\ncommand = "ruby"\n',
         '1:9: group name "my web" must be ASCII letters, digits, \'-\' or \'_\''),
    Case("mothership-not-a-table",
         'mothership = 1\n',
         '1:1: "mothership" must be a table ([mothership])'),
    Case("env-var-name-invalid",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nenv = { "A=B" = "1" }\n',
         '4:9: ship "app": "env": invalid environment variable name "A=B"'),
    Case("depends-on-module",
         '[[modules]]\nname = "auth"\nwasm = "auth.wasm"\n\n'
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\ndepends_on = ["auth"]\n',
         '8:15: ship "app": depends_on "auth" names a module; only ships and bays can be waited for',
         files=["auth.wasm"]),
    Case("duplicate-uplink-name",
         '[[uplinks]]\nname = "cache"\nurl = "redis://a:6379"\n\n'
         '[[uplinks]]\nname = "cache"\nurl = "redis://b:6379"\n',
         '6:8: uplink "cache": the name is already used by the uplink at line 2'),
    Case("route-pattern-never-matches",
         BINDS + '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'routes = ["http:api/.*"]\n',
         '9:11: ship "app": route 1: pattern "api/.*" can never match: request paths start with \'/\''),
    Case("static-dir-prefix-without-slash",
         '[[mothership.static_dirs]]\npath = "."\nprefix = "assets"\n',
         '3:10: static dir #1: "prefix" must start with \'/\', like "/assets"'),
    Case("static-dir-unknown-bind",
         BINDS + '[[mothership.static_dirs]]\npath = "."\nprefix = "/"\nbind = "htp"\n',
         '8:8: static dir #1: bind "htp" is not defined in [mothership.bind] (did you mean "http"?)'),
    Case("static-dir-duplicate-prefix",
         '[[mothership.static_dirs]]\npath = "."\nprefix = "/s"\n\n'
         '[[mothership.static_dirs]]\npath = "."\nprefix = "/s"\n',
         '5:1: static dir #2: prefix "/s" is already served by static dir #1 (line 1)'),
    Case("healthcheck-table-without-path",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'healthcheck = { interval = "1s" }\n',
         '5:15: ship "app": healthcheck: missing required key "path"'),
    Case("healthcheck-failures-zero",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\n'
         'healthcheck = { path = "/health", failures = 0 }\n',
         '5:46: ship "app": "failures" must be from 1 to 1000, not 0'),
    Case("oneshot-with-healthcheck",
         '[[fleet.jobs]]\nname = "migrate"\ncommand = "rails"\noneshot = true\nhealthcheck = "/health"\n',
         '5:15: ship "migrate": a oneshot job cannot have a healthcheck'),
    Case("cwd-not-a-directory",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\ncwd = "./app"\n',
         '4:7: ship "app": cwd "app" is not a directory'),
    Case("metrics-bind-invalid",
         '[mothership]\nmetrics_port = 9090\nmetrics_bind = "bad host!"\n',
         '3:16: [mothership]: invalid metrics_bind "bad host!": invalid host name'),
    Case("metrics-bind-invalid-default-port",
         '[mothership]\nmetrics_bind = "bad host!"\n',
         '2:16: [mothership]: invalid metrics_bind "bad host!": invalid host name'),
    Case("uplink-unterminated-braced-var",
         '[[uplinks]]\nurl = "redis://${CACHE_HOST"\n',
         '2:7: uplink #1: unterminated or empty ${...} in "redis://${CACHE_HOST"'),
    Case("uplink-not-a-url",
         '[[uplinks]]\nname = "db"\nurl = "localhost:5432"\n',
         '3:7: uplink "db": invalid URL "localhost:5432": not a URL (expected scheme://host[:port])'),
    Case("ws-message-size-over-the-docking-frame",
         '[mothership.http]\nws_max_message_size = "16MiB"\n',
         '2:23: [mothership.http]: "ws_max_message_size" must be under 16MiB (a docking frame carries at most '
         '16MiB, with the 4-byte conn_id)'),
    Case("ws-idle-timeout-not-over-the-ping-interval",
         '[mothership.http]\nws_ping_interval = "30s"\nws_idle_timeout = "10s"\n',
         '3:19: [mothership.http]: "ws_idle_timeout" (10000ms) must be longer than "ws_ping_interval" (30000ms), '
         'which must be above 0'),
    Case("bay-subprotocol-not-a-token",
         BINDS + '[[bays.websocket]]\nname = "cable"\ncommand = "cable"\nsubprotocols = ["actioncable v1"]\n',
         '8:16: bay "cable": subprotocol "actioncable v1" is not a token of 1 to 128 characters '
         "(letters, digits and !#$%&'*+-.^_`|~)"),
    Case("ship-with-subprotocols",
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nsubprotocols = ["x"]\n',
         '4:1: ship "app": unknown key "subprotocols" ("subprotocols" is only for bays)'),
    Case("ws-key-typo",
         '[mothership.http]\nws_sendqueue = "1MiB"\n',
         '2:1: [mothership.http]: unknown key "ws_sendqueue" (did you mean "ws_send_queue"?)'),

    # ------------------------------------------------------------ instances
    Case("instances-same-bind",
         '[[fleet.web]]\nname = "web"\ncommand = "puma"\nbind = "127.0.0.1:3000"\ninstances = 3\n',
         '4:8: ship "web": bind "tcp://127.0.0.1:3000" is the same for all 3 instances: put {port} '
         '(port + instance) or {instance} in it'),
    Case("instances-port-placeholder-without-port",
         '[[fleet.web]]\nname = "web"\ncommand = "puma"\nbind = "127.0.0.1:{port}"\ninstances = 2\n',
         '4:8: ship "web": bind "127.0.0.1:{port}" uses {port} but the ship has no "port" '
         '(add port = 3000: {port} is port + instance)'),
    Case("instances-replacement-port-taken",
         BINDS + '[[fleet.web]]\nname = "web"\ncommand = "puma"\nbind = "127.0.0.1:{port}"\nport = 8077\n'
         'instances = 2\n',
         # web#1 listens at 8078; its replacement at 8077 + 1 + 2 = 8080, the bind "http"
         '8:8: ship "web#1" (its replacement\'s address): address tcp://127.0.0.1:8080 collides with '
         'bind "http" (tcp://127.0.0.1:8080, line 2)'),
    Case("instances-balance-typo",
         '[[fleet.web]]\nname = "web"\ncommand = "puma"\nbalance = "round-robin"\n',
         '4:11: ship "web": unknown balance "round-robin" (did you mean "round_robin"?) '
         '(round_robin or least_conn)'),
    Case("instances-hash-in-name",
         '[[fleet.web]]\nname = "web#0"\ncommand = "puma"\n',
         '2:8: ship "web#0": names must be 1 to 64 ASCII letters, digits, \'-\' or \'_\' (\'#\' is reserved: '
         '"web#1" names instance 1 of a ship with instances)'),

    # ------------------------------------------------------------ several at once
    Case("several-errors-in-one-run",
         '[mothership]\nmetric_port = 9090\n\n'
         '[mothership.bind]\nhttp = "0.0.0.0:0"\nws = "8081"\n\n'
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\ndepends_on = ["db"]\n'
         'routes = ["wss:/.*"]\n\n'
         '[[uplinks]]\nname = "db"\nurl = "ftp://db:1"\n',
         ['2:1: [mothership]: unknown key "metric_port" (did you mean "metrics_port"?)',
          '5:8: bind "http": invalid address "0.0.0.0:0": port must be a number from 1 to 65535',
          '12:15: ship "app": depends_on "db", which is not a ship or bay',
          '13:11: ship "app": route 1: bind "wss" is not defined in [mothership.bind] (did you mean "ws"?)',
          '17:7: uplink "db": invalid URL "ftp://db:1": unsupported scheme "ftp" '
          '(supported: postgres, postgresql, mysql, rediss, redis, memgraph, neo4j, bolt, http, https, tcp)']),
    Case("route-to-bind-with-invalid-address",
         '[mothership.bind]\nhttp = "0.0.0.0:0"\n\n'
         '[[fleet.web]]\nname = "app"\ncommand = "ruby"\nbind = "3000"\nroutes = ["http:/.*"]\n',
         # the bind exists; only its address is wrong: no cascade claiming
         # there is no [mothership.bind] table
         '2:8: bind "http": invalid address "0.0.0.0:0": port must be a number from 1 to 65535'),
]


def _expected_stderr(case):
    lines = [f"{MANIFEST}:{e}" for e in case.errors]
    if len(lines) > 1:
        lines.append(f"{MANIFEST}: {len(lines)} problems found")
    return lines


def test_enough_cases():
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_manifest(case, tmp_path, manifest, monkeypatch):
    manifest(case.text, MANIFEST)
    for d in case.dirs:
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    for f in case.files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"\0asm\1\0\0\0")
    for k, v in case.env.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    # Run from the manifest's directory with a relative -c, so the printed
    # FILE is stable (relative paths in messages are then relative to it too).
    r = run_ms(case.command, "-c", MANIFEST, cwd=str(tmp_path))
    assert r.code == 1, r
    assert r.out == "", r
    assert r.err.splitlines() == _expected_stderr(case), r


def test_same_errors_from_chart(tmp_path, manifest):
    """chart validates exactly like clearance."""
    case = next(c for c in CASES if c.id == "several-errors-in-one-run")
    manifest(case.text, MANIFEST)
    r = run_ms("chart", "-c", MANIFEST, cwd=str(tmp_path))
    assert r.code == 1, r
    assert r.err.splitlines() == _expected_stderr(case), r


def test_missing_file(tmp_path):
    r = run_ms("clearance", "-c", "nope.toml", cwd=str(tmp_path))
    assert r.code == 1, r
    assert r.out == ""
    assert r.err.splitlines() == [
        "nope.toml: cannot open: No such file or directory (create one with `mothership init`)"], r


def test_missing_default_manifest(tmp_path):
    r = run_ms("clearance", cwd=str(tmp_path))
    assert r.code == 1, r
    assert r.err.splitlines() == [
        "ship-manifest.toml: cannot open: No such file or directory (create one with `mothership init`)"], r


def test_directory_as_manifest(tmp_path):
    (tmp_path / "d").mkdir()
    r = run_ms("clearance", "-c", "d", cwd=str(tmp_path))
    assert r.code == 1, r
    assert r.err.startswith("d: "), r
    assert len(r.err.splitlines()) == 1, r
