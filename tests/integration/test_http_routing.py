"""Data plane, routing: per bind, static dirs first (tested in
test_http_static.py), then routes in manifest order across ships, first
match wins; a pattern matches the whole path (the query excluded);
strip_prefix (an empty result becomes "/"); the query is passed on
unchanged, the path normalised; no match is a 404; routes are per bind; upstreams over
TCP and over a Unix socket; a listener on a Unix socket. One Mothership with
real echo backends serves the whole module."""
import os
import shutil

import pytest
import requests

from http_helpers import ModuleFleet, Raw, free_port, echo_ship, raw_request, short_tmpdir, start_proxy


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    f = ModuleFleet(tmp_path_factory, "routing")
    sock_dir = short_tmpdir()
    ships = [
        # manifest order: the first match wins, across ships
        echo_ship("v1", routes=["http:/api/v1/.*"]),
        echo_ship("api", routes=["http:/api/.*", "http:/exact"]),
        echo_ship("shadowed", routes=["http:/api/v1/never"]),
        echo_ship("svc", routes=[{"bind": "http", "pattern": "/svc(/.*)?", "strip_prefix": "/svc"}],
                  unix=os.path.join(sock_dir, "svc.sock")),
        echo_ship("strip-slash", routes=[{"bind": "http", "pattern": "/s2/.*", "strip_prefix": "/s2/"}]),
        echo_ship("admin", routes=["admin:/.*"]),
        echo_ship("catchall", routes=["http:/.*"]),
    ]
    p = start_proxy(f, *ships, binds={"http": free_port(),
                                      "admin": f"unix://{sock_dir}/admin.sock"})
    p.sock_dir = sock_dir
    yield p
    f.cleanup()
    shutil.rmtree(sock_dir, ignore_errors=True)


def get(px, path, **kw):
    r = requests.get(px.url(path), timeout=5, **kw)
    return r


def backend(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


@pytest.mark.parametrize("path,ship", [
    ("/api/v1/users", "v1"),          # first route in manifest order
    ("/api/v1/never", "v1"),          # a later, more specific route never wins
    ("/api/v2/users", "api"),
    ("/api/", "api"),
    ("/exact", "api"),
    ("/", "catchall"),
    ("/apix", "catchall"),            # "/api/.*" must match the whole path
    ("/api", "catchall"),
    ("/exact/more", "catchall"),      # "/exact" is anchored at both ends
    ("/exactly", "catchall"),
    ("/x/api/v1/y", "catchall"),      # nor may it match in the middle
])
def test_first_match_wins_on_the_whole_path(px, path, ship):
    assert backend(get(px, path))["name"] == ship


def test_query_is_not_part_of_the_match_and_is_passed_on(px):
    # "/exact" matches although the query follows it
    b = backend(get(px, "/exact?a=1&b=%20x&c=/api/v1/z"))
    assert b["name"] == "api"
    assert b["target"] == "/exact?a=1&b=%20x&c=/api/v1/z"
    assert b["query"] == "a=1&b=%20x&c=/api/v1/z"


def test_the_path_is_normalised_and_the_query_passed_on_unchanged(px):
    # test_http_paths.py has the whole table
    with Raw(px.binds["http"]) as c:
        c.send(raw_request("GET", "/api/a%2Db/%7Euser/./x?q=%2e%2e"))
        r = c.response()
    assert r.status == 200, r
    assert r.json()["target"] == "/api/a-b/~user/x?q=%2e%2e"


@pytest.mark.parametrize("path,target", [
    ("/svc/a/b", "/a/b"),
    ("/svc/a/b?x=1&y=2", "/a/b?x=1&y=2"),
    ("/svc", "/"),                     # empty after the strip: "/"
    ("/svc?x=1", "/?x=1"),
    ("/svc/", "/"),
])
def test_strip_prefix_over_a_unix_socket_upstream(px, path, target):
    b = backend(get(px, path))
    assert b["name"] == "svc"
    assert b["target"] == target


def test_strip_prefix_with_trailing_slash_still_sends_an_absolute_path(px):
    b = backend(get(px, "/s2/deep/er?k=v"))
    assert b["name"] == "strip-slash"
    assert b["target"] == "/deep/er?k=v"


def test_no_route_is_404_with_a_request_id(tmp_path, fleet):
    p = start_proxy(fleet, echo_ship("only", routes=["http:/only/.*"]))
    r = requests.get(p.url("/elsewhere"), timeout=5)
    assert r.status_code == 404
    rid = r.headers["X-Request-Id"]
    assert rid and rid in r.text
    assert r.text.startswith("404 Not Found: ")
    # JSON when asked for
    r = requests.get(p.url("/elsewhere"), headers={"Accept": "application/json", "X-Request-Id": "abc-123"},
                     timeout=5)
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert j["status"] == 404 and j["error"] == "not_found" and j["request_id"] == "abc-123", j


def test_routes_are_per_bind_and_a_bind_can_be_a_unix_socket(px):
    admin = os.path.join(px.sock_dir, "admin.sock")
    with Raw(None, unix=admin) as c:
        c.send(raw_request("GET", "/api/v1/users"))
        r = c.response()
        assert r.status == 200, r
        assert r.json()["name"] == "admin"      # http's routes do not apply on admin
        # keep-alive on a Unix listener too
        c.send(raw_request("GET", "/other"))
        assert c.response().json()["name"] == "admin"
    # and admin's route does not apply on http
    assert backend(get(px, "/anything"))["name"] == "catchall"


def test_keep_alive_spreads_over_routes_on_one_connection(px):
    with requests.Session() as s:
        names = [s.get(px.url(p), timeout=5).json()["name"]
                 for p in ["/api/v1/a", "/api/b", "/svc/c", "/d", "/api/v1/e"]]
    assert names == ["v1", "api", "svc", "catchall", "v1"]
