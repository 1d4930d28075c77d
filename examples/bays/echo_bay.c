/* echo_bay.c: an example bay built with libdock (docs/libdock.md). Every
 * message comes back to its sender with the same kind (text or binary).
 *
 * Text commands, for tests and demos:
 *   /close <code> <reason...>   the bay closes that client (Disembark)
 *   /crash                      the bay exits with status 3 at once
 * Environment: MS_SOCKET_PATH and MS_SHIP (set by Mothership); DOCK_V1=1
 * docks as a plain v1 bay (no "features", text only); DOCK_RESUME=1 offers
 * the resume feature (its clients stay open while it restarts). Exits 0 on SIGTERM or
 * SIGINT; after the link ends it waits for Mothership to dock again. */
#include "libdock/dock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool has_prefix(const uint8_t *data, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(data, prefix, n) == 0;
}

/* "/close <code> <reason...>" (reason may be empty): true with code and a
 * NUL-terminated reason on a well-formed command. */
static bool parse_close(const uint8_t *data, size_t len, uint16_t *code, char *reason,
                        size_t reason_cap)
{
    if (!has_prefix(data, len, "/close "))
        return false;
    size_t i = strlen("/close ");
    unsigned long v = 0;
    size_t digits = 0;
    while (i < len && data[i] >= '0' && data[i] <= '9' && digits < 6) {
        v = v * 10 + (unsigned long)(data[i] - '0');
        i++;
        digits++;
    }
    if (digits == 0 || v > 65535 || (i < len && data[i] != ' '))
        return false;
    if (i < len)
        i++;   /* the space before the reason */
    size_t rlen = len - i;
    if (rlen >= reason_cap || memchr(data + i, 0, rlen))
        return false;
    memcpy(reason, data + i, rlen);
    reason[rlen] = 0;
    *code = (uint16_t)v;
    return true;
}

static void on_docked(dock_bay *bay, void *user)
{
    (void)user;
    fprintf(stderr, "echo-bay: docked as %s, binary=%s, config:", dock_bay_ship(bay),
            dock_bay_binary(bay) ? "yes" : "no");
    for (size_t i = 0; i < dock_bay_config_count(bay); i++) {
        const dock_kv *kv = dock_bay_config_at(bay, i);
        fprintf(stderr, " %s=%s", kv->name, kv->value);
    }
    fputc('\n', stderr);
}

static void on_cargo(dock_bay *bay, uint32_t conn_id, const uint8_t *data, size_t len,
                     bool binary, void *user)
{
    (void)user;
    char err[256];
    int rc;
    if (!binary && len == 6 && memcmp(data, "/crash", 6) == 0) {
        fprintf(stderr, "echo-bay: /crash from client %u: exiting with status 3\n",
                (unsigned)conn_id);
        exit(3);
    }
    uint16_t code;
    char reason[1024];
    if (!binary && parse_close(data, len, &code, reason, sizeof reason))
        rc = dock_bay_send_disembark(bay, conn_id, code, reason, err, sizeof err);
    else
        rc = dock_bay_send_cargo(bay, conn_id, data, len, binary, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "echo-bay: client %u: %s\n", (unsigned)conn_id, err);
}

static void on_link_ended(dock_bay *bay, const char *reason, void *user)
{
    (void)bay;
    (void)user;
    fprintf(stderr, "echo-bay: link ended: %s; waiting for Mothership to dock again\n", reason);
}

int main(void)
{
    const char *v1 = getenv("DOCK_V1"), *resume = getenv("DOCK_RESUME");
    dock_options opt = {
        .v1_only = v1 && strcmp(v1, "1") == 0,
        .resume = resume && strcmp(resume, "1") == 0,
        .cb = { .docked = on_docked, .cargo = on_cargo, .link_ended = on_link_ended },
    };
    char err[256];
    dock_bay *bay = dock_bay_open(&opt, err, sizeof err);
    if (!bay) {
        fprintf(stderr, "echo-bay: %s\n", err);
        return 1;
    }
    if (dock_bay_stop_on_signals(bay, err, sizeof err) != DOCK_OK) {
        fprintf(stderr, "echo-bay: %s\n", err);
        dock_bay_close(bay);
        return 1;
    }
    int rc;
    while ((rc = dock_bay_run(bay, err, sizeof err)) == DOCK_LINK_ENDED)
        ;   /* reported by on_link_ended; accept the next link */
    if (rc != DOCK_STOPPED)
        fprintf(stderr, "echo-bay: %s\n", err);
    dock_bay_close(bay);
    return rc == DOCK_STOPPED ? 0 : 1;
}
