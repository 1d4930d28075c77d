"""ACME across reloads: one that changes nothing keeps the TLS server
(its certificate files are read again); one that changes what the data
plane reads builds a new TLS server for new handshakes
(acme/acme.h ms_acme_set_tls): the certificates the ACME client obtained go into it, so a
name keeps its CA-issued certificate instead of falling back to the
placeholder, and /ready stays 200. Against pebble (pebble_helpers.py)."""
import signal

from pebble_helpers import pebble  # noqa: F401 (the fixture)
from test_acme import HELLO, NAME, Site, served, wait_certificate


def test_a_reload_with_a_new_tls_server_keeps_the_acme_certificate(pebble, fleet, tmp_path):  # noqa: F811
    pb = pebble()
    site = Site(fleet, pb, tmp_path, [NAME])
    ms = site.start()
    wait_certificate(site, NAME)
    der, s = served(pb.tls_port, NAME, cafile=pb.root_pem())
    s.close()
    # a reload without changes: the TLS server is kept, its files read again
    start = ms.events()[-1]["_i"] + 1
    ms.signal(signal.SIGHUP)
    ms.event("reloaded", start=start, timeout=15)
    again, s = served(pb.tls_port, NAME, cafile=pb.root_pem())
    s.close()
    assert again == der
    # another static dir: the data plane (and its TLS server) is rebuilt
    more = tmp_path / "more"
    more.mkdir()
    (more / "more.txt").write_bytes(b"more\n")
    site.text += f'\n[[mothership.static_dirs]]\npath = "{more}"\nprefix = "/more/"\n'
    start = ms.events()[-1]["_i"] + 1
    fleet.write(site.text, name="ship-manifest.toml")
    ms.signal(signal.SIGHUP)
    e = ms.event("reloaded", start=start, timeout=15)
    assert "data plane swapped" in e["msg"], e
    again, s = served(pb.tls_port, NAME, cafile=pb.root_pem())
    s.close()
    assert again == der
    out = site.curl(NAME, "/more/more.txt")
    assert out.returncode == 0, (out.stderr, ms.output())
    assert out.stdout == b"more\n"
    assert site.curl(NAME).stdout == HELLO
    status, body = site.ready()
    assert status == 200 and not body.get("acme_pending"), body
    assert ms.stop() == 0, ms.output()
