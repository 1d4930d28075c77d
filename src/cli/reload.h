/* reload.h: a new manifest applied to a running fleet (SIGHUP, the control
 * socket's POST /v1/reload, `mothership reload`). The file is read and
 * checked exactly as `clearance` checks it; any problem and nothing changes.
 * Otherwise only the difference is applied: changed entries restart, removed
 * ones stop, new ones start, the rest keep running untouched, and the data
 * plane's routes, binds, payloads and limits are swapped on every worker.
 * Control loop only. */
#ifndef MS_CLI_RELOAD_H
#define MS_CLI_RELOAD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct ms_run ms_run;

/* Reload r's manifest file. check_only: plan without applying. who says who
 * asked, for the log ("SIGHUP", "uid 1000 pid 4242"). *result (may be NULL)
 * gets a new JSON object the caller decrefs: {"result": "applied" | "checked"
 * | "refused", "problems": [...], "plan": {...}} (docs/control-api.md).
 * Returns true when the new manifest was good (applied or checked). */
bool ms_run_reload(ms_run *r, bool check_only, const char *who, json_t **result);

/* What the CLI prints of such a result: the problems, one file:line:col line
 * each, or the plan. */
void ms_reload_print(const json_t *result, FILE *out);

#endif
