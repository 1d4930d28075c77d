/* cli.h: the subcommands of the mothership binary and their options. */
#ifndef MS_CLI_H
#define MS_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "manifest/manifest.h"

/* Exit codes (docs/cli.md). */
enum { MS_EXIT_OK = 0, MS_EXIT_FAIL = 1, MS_EXIT_USAGE = 2, MS_EXIT_NOT_RUNNING = 3 };

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
    bool manifest_given;     /* -c was given */
    /* the verbs that drive a running fleet (ctl_client.c) */
    const char *socket;      /* --socket PATH */
    char **args;             /* restart/stop/start NAME..., signal NAME SIG, logs [NAME] */
    size_t nargs;
    bool follow;             /* logs -f */
    long lines;              /* logs -n N; -1: the server's default */
    bool check;              /* reload --check */
    bool names;              /* clearance --names */
} ms_cli;

/* Load and check path as clearance does (the manifest, its payload modules,
 * its TLS certificates); NULL with every problem in d. */
ms_manifest *ms_cli_check(const char *path, ms_diags *d);
/* Same, with load options (offline warnings). */
ms_manifest *ms_cli_check_opts(const char *path, ms_diags *d, const ms_load_opts *opts);
/* Load the manifest named by the options; on failure print every problem to
 * stderr and return NULL. */
ms_manifest *ms_cli_load(const ms_cli *o);

int ms_cmd_init(const ms_cli *o);
int ms_cmd_clearance(const ms_cli *o);
int ms_cmd_chart(const ms_cli *o);
int ms_cmd_preflight(const ms_cli *o);
int ms_cmd_run(const ms_cli *o);
/* status, restart, stop, start, signal, logs, reload, drain: a request to
 * the control socket of a running fleet (docs/control-api.md). */
int ms_cmd_ctl(const ms_cli *o);
bool ms_cli_is_ctl_verb(const char *command);
/* Print the help of one command (help.c); false when there is no such command. */
bool ms_cli_help(const char *command, FILE *out);

/* " (tls, h2)", " (tls self-signed, h2)", " (h2c)", " (redirect_to_https)" or "":
 * what a bind speaks, for clearance and chart. */
void ms_bind_flags(const ms_bind *b, char *out, size_t cap);

/* The clearance summary of a loaded manifest. */
void ms_print_summary(const ms_manifest *m, FILE *out);

#endif
