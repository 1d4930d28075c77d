/* check.c: clearance's offline checks of the TLS material: every
 * certificate the manifest names is read and checked as the server would
 * load it (tls/cert.c), without sockets; each problem is reported at the
 * file's line:col. Self-signed binds are checked at start, not here: their
 * files may not exist yet. */
#include "tls/tls.h"

#include <stdio.h>
#include <time.h>

#include "tls/cert.h"

static size_t check_one(const ms_tls_cert *tc, const char *who, time_t now, ms_diags *d)
{
    ms_tls_at at;
    char why[700];
    ms_tls_material *mt = ms_tls_material_load(tc->cert, tc->key, &tc->hosts, now, &at, why, sizeof why);
    if (mt) {
        ms_tls_material_unref(mt);
        return 0;
    }
    ms_pos p = at == MS_TLS_AT_KEY ? tc->key_pos : at == MS_TLS_AT_HOSTS && tc->hosts_pos.line ? tc->hosts_pos
                                                                                               : tc->cert_pos;
    ms_diag_add(d, p.line, p.col, "%s: %s", who, why);
    return 1;
}

size_t ms_tls_check(const ms_manifest *m, ms_diags *d)
{
    const ms_global *g = &m->global;
    time_t now = time(NULL);
    size_t n = 0;
    char who[96];
    for (size_t i = 0; i < g->ntls_certs; i++) {
        if (i == 0 && g->tls_cert)
            snprintf(who, sizeof who, "[mothership.tls]");
        else
            snprintf(who, sizeof who, "[[mothership.tls.certs]] #%zu", i + (g->tls_cert ? 0 : 1));
        n += check_one(&g->tls_certs[i], who, now, d);
    }
    for (size_t i = 0; i < g->nbinds; i++) {
        if (!g->binds[i].cert)
            continue;
        snprintf(who, sizeof who, "bind \"%s\": tls", g->binds[i].name);
        n += check_one(g->binds[i].cert, who, now, d);
    }
    return n;
}
