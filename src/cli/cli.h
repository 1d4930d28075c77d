/* cli.h: the subcommands of the mothership binary and their options. */
#ifndef MS_CLI_H
#define MS_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "manifest/manifest.h"

/* Exit codes (docs/cli.md). */
enum { MS_EXIT_OK = 0, MS_EXIT_FAIL = 1, MS_EXIT_USAGE = 2 };

typedef struct ms_cli {
    const char *command;     /* run, init, clearance, preflight, chart */
    const char *manifest;    /* -c PATH, default ./ship-manifest.toml */
    const char *init_path;   /* init [PATH] */
    bool force;              /* init --force */
    bool json;               /* chart --json */
    bool tui;                /* run --tui */
    const char *only;        /* run --only a,b */
    const char *except;      /* run --except a,b */
    const char *log_format;  /* run --log-format text|json */
    bool color;              /* colour on stdout */
} ms_cli;

/* Load and check path as clearance does (the manifest, its payload modules,
 * its TLS certificates); NULL with every problem in d. */
ms_manifest *ms_cli_check(const char *path, ms_diags *d);
/* Load the manifest named by the options; on failure print every problem to
 * stderr and return NULL. */
ms_manifest *ms_cli_load(const ms_cli *o);

int ms_cmd_init(const ms_cli *o);
int ms_cmd_clearance(const ms_cli *o);
int ms_cmd_chart(const ms_cli *o);
int ms_cmd_preflight(const ms_cli *o);
int ms_cmd_run(const ms_cli *o);

/* " (tls, h2)", " (tls self-signed, h2)", " (h2c)", " (redirect_to_https)" or "":
 * what a bind speaks, for clearance and chart. */
void ms_bind_flags(const ms_bind *b, char *out, size_t cap);

/* The clearance summary of a loaded manifest. */
void ms_print_summary(const ms_manifest *m, FILE *out);

#endif
