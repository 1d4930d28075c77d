"""WASM payloads through the real binary (issue 6): the example modules
(built into BUILD/examples/payloads) on requests and responses proxied to an
echo backend; a hostile module costs one request an error and the next one
is served; on_error open and closed; module order; the response phase
combined with compression; per-module metrics."""
import gzip
import json
import os

import requests

from conftest import BUILD
from http_helpers import echo_ship, msum, start_proxy

WASM = os.path.join(BUILD, "examples", "payloads")


def module(name, wasm, routes, phase="request", config=None, on_error=None):
    lines = ["[[modules]]", f'name = "{name}"', f'wasm = "{os.path.join(WASM, wasm)}"',
             "routes = [" + ", ".join(f'"{r}"' for r in routes) + "]", f'phase = "{phase}"']
    if config:
        lines.append("config = { " + ", ".join(f'{k} = "{v}"' for k, v in config.items()) + " }")
    if on_error:
        lines.append(f'on_error = "{on_error}"')
    return "\n".join(lines) + "\n"


def test_auth_blocks_without_the_token_and_lets_it_through(fleet):
    px = start_proxy(fleet, echo_ship("app"),
                     extra=module("auth", "auth.wasm", ["/admin/.*"], config={"token": "s3cret"}))
    r = requests.get(px.url("/admin/panel"))
    assert r.status_code == 401
    assert r.reason == "Unauthorized"  # the status line's standard phrase, as sent
    assert "WWW-Authenticate" in r.headers
    r = requests.get(px.url("/admin/panel"), headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = requests.get(px.url("/admin/panel"), headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["path"] == "/admin/panel"
    r = requests.get(px.url("/public"))          # the module's pattern does not match
    assert r.status_code == 200
    m = px.metrics()
    assert msum(m, "mothership_payload_calls_total", module="auth") == 3
    assert msum(m, "mothership_payload_blocks_total", module="auth") == 2


def test_rate_limiter_answers_429_after_the_burst(fleet):
    px = start_proxy(fleet, echo_ship("app"),
                     extra=module("ratelimit", "rate_limiter.wasm", ["/api/.*"],
                                  config={"rate": "1", "burst": "3"}))
    s = requests.Session()
    codes = [s.get(px.url("/api/x")).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = s.get(px.url("/api/x"))
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert r.reason == "Too Many Requests"


def test_cache_sets_cache_control_on_the_response_and_compression_still_applies(fleet):
    px = start_proxy(fleet, echo_ship("app"), mothership={"compression": True},
                     extra=module("cache", "cache.wasm", ["/api/.*"], phase="response", config={"ttl": "3600"}))
    r = requests.get(px.url("/api/items?size=4000&ctype=text/plain"), headers={"Accept-Encoding": "gzip"},
                     stream=True)
    raw = r.raw.read()
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "public, max-age=3600"
    assert r.headers["Content-Encoding"] == "gzip"
    assert len(gzip.decompress(raw)) == 4000
    r = requests.get(px.url("/other"))
    assert "Cache-Control" not in r.headers


def test_hostile_payload_costs_one_request_and_the_next_is_served(fleet):
    px = start_proxy(fleet, echo_ship("app"), extra=module("hostile", "hostile.wasm", ["/hostile/.*"]))
    for path in ("/hostile/loop", "/hostile/grow", "/hostile/deep", "/hostile/trap", "/hostile/oob"):
        r = requests.get(px.url(path), headers={"Accept": "application/json"})
        assert r.status_code == 500, (path, r.status_code)
        assert r.json()["detail"].startswith('module "hostile" failed'), r.text
        ok = requests.get(px.url("/hostile/fine"))
        assert ok.status_code == 200, path
    m = px.metrics()
    assert msum(m, "mothership_payload_exhaustions_total", module="hostile") >= 2
    assert msum(m, "mothership_payload_traps_total", module="hostile") >= 2


def test_on_error_open_skips_the_failing_payload(fleet):
    px = start_proxy(fleet, echo_ship("app"),
                     extra=module("hostile", "hostile.wasm", ["/hostile/.*"], on_error="open"))
    r = requests.get(px.url("/hostile/trap"))
    assert r.status_code == 200 and r.json()["path"] == "/hostile/trap"


def test_modules_run_in_manifest_order(fleet):
    # auth first: without the token the rate limiter never sees the request
    extra = (module("auth", "auth.wasm", ["/api/.*"], config={"token": "t"}) +
             module("ratelimit", "rate_limiter.wasm", ["/api/.*"], config={"rate": "1", "burst": "1"}))
    px = start_proxy(fleet, echo_ship("app"), extra=extra)
    for _ in range(3):
        assert requests.get(px.url("/api/x")).status_code == 401
    ok = {"Authorization": "Bearer t"}
    assert requests.get(px.url("/api/x"), headers=ok).status_code == 200
    assert requests.get(px.url("/api/x"), headers=ok).status_code == 429
    m = px.metrics()
    assert msum(m, "mothership_payload_calls_total", module="ratelimit") == 2


def test_rewrite_changes_the_path_and_headers_sent_upstream(fleet):
    px = start_proxy(fleet, echo_ship("app"), extra=module("rewrite", "rewrite.wasm", ["/.*"]))
    r = requests.get(px.url("/old/thing?q=1"), headers={"X-Debug": "1", "X-Payload": "client"})
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == "/new/thing"
    assert body["query"] == "q=1"
    names = {k.lower(): v for k, v in body["headers"]}
    assert names["x-payload"] == "rewrite"
    assert "x-debug" not in names
    assert names["via-payload"] == "rewrite"
