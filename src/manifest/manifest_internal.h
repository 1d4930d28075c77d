/* manifest_internal.h: what the manifest loader's files share (not for
 * other modules). */
#ifndef MS_MANIFEST_INTERNAL_H
#define MS_MANIFEST_INTERNAL_H

#include <stdarg.h>

#include "manifest/manifest.h"
#include "manifest/toml.h"

typedef struct ld_ctx {
    ms_manifest *m;
    ms_diags *diags;     /* NULL: silent (base templates applied per entry) */
    ms_diags *warnings;  /* NULL: none; else offline (ms_load_opts) */
    const char *what;    /* "ship \"app\"", "[mothership]", ... or NULL */
    size_t index;        /* entry index within its array, for unnamed entries */
    bool bad;            /* a problem was reported */
    bool oom;
} ld_ctx;

void ld_err(ld_ctx *c, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void ld_document(ld_ctx *c, const toml_node *root);
void ld_check(ld_ctx *c);
char *ld_resolve_path(ld_ctx *c, const char *p);
bool ld_resolve_unix(ld_ctx *c, ms_addr *a);
bool ld_check_http_path(ld_ctx *c, const toml_node *at, const char *key, const char *p);
void ld_apply_module(ld_ctx *c, ms_module *mod, const toml_node *t, bool is_base);

/* Templates ({instance}, {port}, {gen}). ld_template_word: at a '{', which
 * placeholder starts there (0 instance, 1 port, 2 gen; *len its length) or
 * -1. ld_template: text with them expanded ({port} only when port is not 0);
 * heap string, NULL when out of memory. */
int ld_template_word(const char *text, size_t *len);
char *ld_template(const char *text, unsigned instance, unsigned instances, unsigned port, unsigned parity);
/* Expand ships with instances (and templated binds) into their entries,
 * and depends_on naming them; run after every entry is loaded. */
void ld_expand_instances(ld_ctx *c);

void ld_strlist_free(ms_strlist *l);
void ld_strmap_free(ms_strmap *m);
void ld_routes_free(ms_route *r, size_t n);
void ld_ship_free(ms_ship *s);
void ld_module_free(ms_module *mod);
void ld_tls_cert_free(ms_tls_cert *tc);

#endif
