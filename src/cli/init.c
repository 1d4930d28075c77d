/* init.c: `mothership init [PATH] [--force]`: writes a commented starter
 * manifest that passes `mothership clearance` as written. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char starter[] =
    "# ship-manifest.toml: the fleet Mothership launches, supervises and exposes.\n"
    "# Check it with `mothership clearance`, see where requests go with\n"
    "# `mothership chart`, launch it with `mothership run`.\n"
    "# Every key is described in docs/manifest.md.\n"
    "\n"
    "[mothership]\n"
    "metrics_port = 9090            # /metrics and /health on 127.0.0.1:9090\n"
    "compression = true             # gzip, deflate and br by Accept-Encoding\n"
    "# shutdown_timeout = \"10s\"     # grace before SIGKILL when stopping\n"
    "\n"
    "# Environment for every ship and bay (on top of Mothership's own).\n"
    "[mothership.env]\n"
    "LOG_LEVEL = \"info\"\n"
    "\n"
    "# Named binds: the listeners the outside world talks to.\n"
    "# Forms: \"tcp://host:port\", \"host:port\", \"port\" (127.0.0.1), \"unix:///path\".\n"
    "[mothership.bind]\n"
    "http = \"127.0.0.1:8080\"\n"
    "\n"
    "# Static files are served before routing; longest prefix wins, a missing\n"
    "# file falls through to the routes.\n"
    "# [[mothership.static_dirs]]\n"
    "# path = \"./public\"\n"
    "# prefix = \"/static\"\n"
    "\n"
    "# Settings every ship inherits (tables merge, tags add up).\n"
    "[base.ship]\n"
    "tags = [\"app\"]\n"
    "\n"
    "# A one-shot job: runs to completion before the ships that depend on it.\n"
    "[[fleet.jobs]]\n"
    "name = \"setup\"\n"
    "command = \"sh\"\n"
    "args = [\"-c\", \"echo preparing the fleet\"]\n"
    "oneshot = true\n"
    "\n"
    "# A web ship: Mothership proxies http://127.0.0.1:8080/ to it.\n"
    "[[fleet.web]]\n"
    "name = \"web\"\n"
    "command = \"python3\"\n"
    "args = [\"-m\", \"http.server\", \"3000\", \"--bind\", \"127.0.0.1\"]\n"
    "bind = \"tcp://127.0.0.1:3000\"\n"
    "healthcheck = \"/\"\n"
    "depends_on = [\"setup\"]\n"
    "routes = [{ bind = \"http\", pattern = \"/.*\" }]\n"
    "tags = [\"web\"]\n"
    "# Several copies behind the route, each at its own port ({port} is\n"
    "# port + instance), restarted one at a time by `mothership restart web`:\n"
    "#   instances = 3\n"
    "#   port = 3000\n"
    "#   bind = \"tcp://127.0.0.1:{port}\"   (and \"{port}\" in args)\n"
    "\n"
    "# A background worker: restarted with backoff if it crashes.\n"
    "[[fleet.workers]]\n"
    "name = \"ticker\"\n"
    "command = \"sh\"\n"
    "args = [\"-c\", \"while true; do echo tick; sleep 5; done\"]\n"
    "critical = false\n"
    "tags = [\"worker\"]\n"
    "\n"
    "# An HTTP bay: an app that gets whole requests over docking links, without\n"
    "# an HTTP server of its own (MS_BAY_WORKERS processes x MS_BAY_THREADS).\n"
    "# [[bays.http]]\n"
    "# name = \"app\"\n"
    "# command = \"python3\"\n"
    "# args = [\"examples/bays/http_bay.py\", \"app:application\"]\n"
    "# routes = [\"http:/app/.*\"]\n"
    "# threads = 8\n"
    "\n"
    "# An app Mothership routes to but does not start (docking v3, or\n"
    "# protocol = \"http\" for a plain HTTP server):\n"
    "# [[mothership.upstreams]]\n"
    "# name = \"rack\"\n"
    "# bind = \"unix:///run/rack/docking.sock\"\n"
    "# routes = [\"http:/rack/.*\"]\n"
    "\n"
    "# External dependencies checked before launch (`mothership preflight`):\n"
    "# [[uplinks]]\n"
    "# name = \"db\"\n"
    "# url = \"$DATABASE_URL\"\n"
    "# timeout = \"5s\"\n";

int ms_cmd_init(const ms_cli *o)
{
    const char *path = o->init_path ? o->init_path : o->manifest;
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (o->force ? O_TRUNC : O_EXCL);
    int fd = open(path, flags, 0644);
    if (fd < 0) {
        if (errno == EEXIST)
            fprintf(stderr, "mothership: %s already exists; use --force to overwrite it\n", path);
        else
            fprintf(stderr, "mothership: cannot create %s: %s\n", path, strerror(errno));
        return MS_EXIT_FAIL;
    }
    size_t off = 0, len = sizeof starter - 1;
    while (off < len) {
        ssize_t w = write(fd, starter + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "mothership: cannot write %s: %s\n", path, strerror(errno));
            close(fd);
            return MS_EXIT_FAIL;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0) {
        fprintf(stderr, "mothership: cannot write %s: %s\n", path, strerror(errno));
        return MS_EXIT_FAIL;
    }
    printf("wrote %s; check it with: mothership clearance -c %s\n", path, path);
    return MS_EXIT_OK;
}
