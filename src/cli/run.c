/* run.c: `mothership run` and `mothership preflight`. The fleet launcher and
 * the uplink checks are being built (issue: Fleet); until then both validate
 * the manifest and say plainly that launching is not available. */
#include <stdio.h>

#include "cli/cli.h"

int ms_cmd_run(const ms_cli *o)
{
    ms_manifest *m = ms_cli_load(o);
    if (!m)
        return MS_EXIT_FAIL;
    ms_print_summary(m, stdout);
    fprintf(stderr, "mothership: the fleet launcher is not built yet; nothing was launched\n");
    ms_manifest_free(m);
    return MS_EXIT_FAIL;
}

int ms_cmd_preflight(const ms_cli *o)
{
    ms_manifest *m = ms_cli_load(o);
    if (!m)
        return MS_EXIT_FAIL;
    fprintf(stderr, "mothership: uplink checks are not built yet\n");
    ms_manifest_free(m);
    return MS_EXIT_FAIL;
}
