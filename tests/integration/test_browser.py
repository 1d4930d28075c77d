"""A real browser: headless Chromium loads a page over HTTPS from a TLS bind
(HTTP/2 by ALPN) and opens WebSockets from it to a ship and to a bay. A
browser whose page came over HTTP/2 opens its WebSockets over the same
connection with an extended CONNECT (RFC 8441) when the server allows it
(SETTINGS_ENABLE_CONNECT_PROTOCOL): the metrics say which protocol carried
each. Skipped when chromium is not installed (scripts/deps.sh installs it)."""
import json
import os
import shutil
import subprocess

import pytest

from fleet_helpers import PY, app, toml_str
from http_helpers import ModuleFleet, echo_ship, free_port, msum, start_proxy, toml_value, wait_until
from test_tls import certs  # noqa: F401 (the module's CA and server certificate)

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed")
PROBE = app("probe_bay.py")

PAGE = """<!doctype html><html><body><script>
const results = [];
function one(path, msg) {
  return new Promise(resolve => {
    const ws = new WebSocket("wss://" + location.host + path);
    ws.onopen = () => ws.send(msg);
    ws.onmessage = e => { results.push(path + "=" + e.data); ws.close(); resolve(); };
    ws.onerror = () => { results.push(path + "=error"); resolve(); };
  });
}
fetch("/s/data.txt").then(r => r.text()).then(t => results.push("fetch=" + t.trim()))
  .then(() => one("/ws", "to the ship"))
  .then(() => one("/bay", "result: " + results.join("|")));
</script></body></html>
"""


@pytest.fixture(scope="module")
def px(tmp_path_factory, certs):  # noqa: F811
    site = tmp_path_factory.mktemp("site")
    (site / "page.html").write_text(PAGE)
    (site / "data.txt").write_text("over h2\n")
    tls = f"[mothership.tls]\ncert = {toml_str(str(certs / 'server.pem'))}\nkey = {toml_str(str(certs / 'server.key'))}\n"
    f = ModuleFleet(tmp_path_factory, "browser")
    log = site / "probe.jsonl"
    bay = "\n".join(["[[bays.websocket]]", 'name = "probe"', f"command = {toml_str(PY)}",
                     f"args = {toml_value([PROBE, str(log)])}", 'routes = ["https:/bay"]', ""])
    p = start_proxy(f, echo_ship("app", routes=["https:/ws"]), binds={"https": free_port()},
                    static=[{"path": str(site), "prefix": "/s"}],
                    mothership={"socket_dir": f"/tmp/msbr{os.getpid()}"}, extra=bay + tls)
    p.probe_log = log
    yield p
    f.cleanup()


def run_chromium(url, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--ignore-certificate-errors", f"--user-data-dir={tmp_path / 'profile'}",
           "--remote-debugging-port=0", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bay_texts(px):
    if not px.probe_log.exists():
        return []
    return [e.get("text", "") for e in map(json.loads, px.probe_log.read_text().splitlines())
            if e.get("type") == "Cargo"]


def test_a_page_over_h2_opens_its_websockets_over_h2(px, tmp_path):
    browser = run_chromium(f"https://localhost:{px.binds['https']}/s/page.html", tmp_path)
    try:
        # the page's last step sends what it saw to the bay, which logs it
        wait_until(lambda: any(t.startswith("result: ") for t in bay_texts(px)), timeout=30,
                   what="the page's result at the bay")
    finally:
        browser.kill()
        browser.wait()
    result = next(t for t in bay_texts(px) if t.startswith("result: "))
    assert result == "result: fetch=over h2|/ws=to the ship"
    m = px.metrics()
    assert msum(m, "mothership_requests_total", route="/s", proto="h2") >= 2  # the page and the fetch
    # the WebSocket went over the page's HTTP/2 connection (extended CONNECT)
    assert msum(m, "mothership_requests_total", target="app", proto="h2") == 1
    assert msum(m, "mothership_requests_total", target="app", proto="http1") == 0
    # and the bay's client too, whose Boarding says it came over TLS
    assert msum(m, "mothership_requests_total", target="probe", proto="h2") == 1
    boardings = [json.loads(x) for x in px.probe_log.read_text().splitlines() if '"Boarding"' in x]
    assert len(boardings) == 1
    hdrs = [(k.lower(), v) for k, v in boardings[0]["headers"].items()]
    assert [v for k, v in hdrs if k == "x-forwarded-proto"] == ["https"]


ZPAGE = """<!doctype html><html><body><script>
const big = "compress me, I repeat myself. ".repeat(200);
const ws = new WebSocket("wss://" + location.host + "/zbay");
ws.onopen = () => ws.send(big);
ws.onmessage = e => {
  if (e.data.startsWith("ext=")) return;
  ws.send("ext=" + ws.extensions + "|echo=" + (e.data === big));
};
ws.onerror = () => {};
</script></body></html>
"""


@pytest.fixture(scope="module")
def zpx(tmp_path_factory, certs):  # noqa: F811
    site = tmp_path_factory.mktemp("zsite")
    (site / "zpage.html").write_text(ZPAGE)
    tls = f"[mothership.tls]\ncert = {toml_str(str(certs / 'server.pem'))}\nkey = {toml_str(str(certs / 'server.key'))}\n"
    f = ModuleFleet(tmp_path_factory, "zbrowser")
    log = site / "probe.jsonl"
    bay = "\n".join(["[[bays.websocket]]", 'name = "probe"', f"command = {toml_str(PY)}",
                     f"args = {toml_value([PROBE, str(log)])}",
                     'routes = [{ bind = "https", pattern = "/zbay", ws_compression = true }]', ""])
    p = start_proxy(f, binds={"https": free_port()}, static=[{"path": str(site), "prefix": "/s"}],
                    mothership={"socket_dir": f"/tmp/msbz{os.getpid()}"}, extra=bay + tls)
    p.probe_log = log
    yield p
    f.cleanup()


def test_a_browser_agrees_to_permessage_deflate_with_a_compressing_bay_route(zpx, tmp_path):
    browser = run_chromium(f"https://localhost:{zpx.binds['https']}/s/zpage.html", tmp_path)
    try:
        wait_until(lambda: any(t.startswith("ext=") for t in bay_texts(zpx)), timeout=30,
                   what="the page's report at the bay")
    finally:
        browser.kill()
        browser.wait()
    texts = bay_texts(zpx)
    # the bay saw the browser's message plain, and the browser read the (compressed) echo
    assert texts[0] == "compress me, I repeat myself. " * 200
    assert texts[1] == "ext=permessage-deflate; client_no_context_takeover|echo=true", texts[1]
    boardings = [json.loads(x) for x in zpx.probe_log.read_text().splitlines() if '"Boarding"' in x]
    offer = [v for k, v in boardings[0]["headers"].items() if k.lower() == "sec-websocket-extensions"]
    assert offer and "permessage-deflate" in offer[0]
