/* help.c: the help text of each subcommand (`mothership CMD --help`,
 * `mothership help CMD`): its usage line, what it does, the options it
 * takes and an example. The global help stays in main.c. docs/cli.md
 * documents the same usage lines and options. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* Option lines shared by several commands, in the global help's layout. */
#define OPT_CONFIG "  -c, --config PATH     manifest to use (default ./ship-manifest.toml)\n"
#define OPT_SOCKET "      --socket PATH     the control socket (default: from the manifest)\n"
#define OPT_JSON   "      --json            JSON output\n"
#define OPT_HELP   "  -h, --help            this help\n"
#define OPTS_FLEET "Options:\n" OPT_CONFIG OPT_SOCKET OPT_JSON OPT_HELP

typedef struct command_help {
    const char *name;
    const char *text; /* everything after the usage line's "Usage: mothership " */
} command_help;

static const command_help helps[] = {
    { "run",
      "run [-c PATH] [--only T1,T2] [--except T1,T2] [--tui] [--log-format text|json]\n"
      "\n"
      "Validate the manifest, check the uplinks, launch the fleet in dependency\n"
      "order and supervise it until SIGTERM or SIGINT. `mothership` alone runs it.\n"
      "\n"
      "Options:\n" OPT_CONFIG
      "      --only T1,T2      only entries with one of these tags (and their dependencies)\n"
      "      --except T1,T2    leave out entries with one of these tags\n"
      "      --tui             show the dashboard\n"
      "      --log-format F    text (default) or json\n" OPT_HELP
      "\n"
      "Example:\n"
      "  mothership run -c /srv/app/ship-manifest.toml --log-format json\n" },
    { "init",
      "init [PATH] [-f]\n"
      "\n"
      "Write a commented starter manifest to PATH (default: the -c path, else\n"
      "./ship-manifest.toml). It passes `mothership clearance` as written.\n"
      "\n"
      "Options:\n"
      "  -c, --config PATH     the file to write when no PATH is given\n"
      "  -f, --force           overwrite an existing file\n" OPT_HELP
      "\n"
      "Example:\n"
      "  mothership init && mothership clearance\n" },
    { "clearance",
      "clearance [-c PATH] [--names]\n"
      "\n"
      "Validate the manifest offline (no network, no process started) and print\n"
      "a summary of the fleet. Problems go to stderr as FILE:LINE:COLUMN: ENTRY: MESSAGE.\n"
      "\n"
      "Options:\n" OPT_CONFIG
      "      --names           print only the names of the ships and bays, then @tags\n" OPT_HELP
      "\n"
      "Example:\n"
      "  mothership clearance -c examples/ship-manifest.toml\n" },
    { "preflight",
      "preflight [-c PATH]\n"
      "\n"
      "Validate the manifest, then check every uplink at once, each within its\n"
      "timeout. Exit 0 when all are up, 1 when any is down.\n"
      "\n"
      "Options:\n" OPT_CONFIG OPT_HELP
      "\n"
      "Example:\n"
      "  mothership preflight -c /srv/app/ship-manifest.toml\n" },
    { "chart",
      "chart [-c PATH] [--json]\n"
      "\n"
      "Validate the manifest like clearance and print where each request goes,\n"
      "per bind: static dirs, routes, their targets and what each shadows.\n"
      "\n"
      "Options:\n" OPT_CONFIG OPT_JSON OPT_HELP
      "\n"
      "Example:\n"
      "  mothership chart --json | jq '.binds[].name'\n" },
    { "status",
      "status [--json]\n"
      "\n"
      "Show every ship and bay of the running fleet: state, pid, uptime,\n"
      "restarts, health, CPU and memory.\n"
      "\n" OPTS_FLEET
      "\n"
      "Example:\n"
      "  mothership status --socket /run/mothership/mothership.ctl\n" },
    { "restart",
      "restart NAME...\n"
      "\n"
      "Restart entries of the running fleet: a NAME is an entry (web), one\n"
      "instance (web#1) or every entry with a tag (@front). A ship with a bind\n"
      "is rolled, one instance at a time.\n"
      "\n" OPTS_FLEET
      "\n"
      "Example:\n"
      "  mothership restart @front\n" },
    { "stop",
      "stop NAME...\n"
      "\n"
      "Stop entries of the running fleet; they stay stopped until started again.\n"
      "\n" OPTS_FLEET
      "\n"
      "Example:\n"
      "  mothership stop mailer\n" },
    { "start",
      "start NAME...\n"
      "\n"
      "Start stopped, failed or finished entries of the running fleet.\n"
      "\n" OPTS_FLEET
      "\n"
      "Example:\n"
      "  mothership start mailer\n" },
    { "signal",
      "signal NAME SIG\n"
      "\n"
      "Send SIG (HUP, SIGUSR1, usr2 or a number) to an entry's process group.\n"
      "\n" OPTS_FLEET
      "\n"
      "Example:\n"
      "  mothership signal mailer USR1\n" },
    { "logs",
      "logs [NAME] [-f] [-n N]\n"
      "\n"
      "Print the recent output of one entry, or of all merged in order, as\n"
      "`name | line`; with -f, then follow new lines.\n"
      "\n"
      "Options:\n" OPT_CONFIG OPT_SOCKET OPT_JSON
      "  -n N                  the last N lines (default 100)\n"
      "  -f, --follow          then follow new lines\n" OPT_HELP
      "\n"
      "Example:\n"
      "  mothership logs web -n 20 -f\n" },
    { "reload",
      "reload [--check]\n"
      "\n"
      "Have the running fleet read its manifest again and apply only what\n"
      "changed (SIGHUP does the same); prints the plan.\n"
      "\n"
      "Options:\n" OPT_CONFIG OPT_SOCKET OPT_JSON
      "      --check           print the plan, change nothing\n" OPT_HELP
      "\n"
      "Example:\n"
      "  mothership reload --check\n" },
    { "drain",
      "drain\n"
      "\n"
      "Stop accepting requests on every bind and wait for those in flight to\n"
      "finish; the processes keep running and /ready answers 503.\n"
      "\n" OPTS_FLEET
      "\n"
      "Example:\n"
      "  mothership drain && mothership status\n" },
    { "help",
      "help [COMMAND]\n"
      "\n"
      "Print the help of COMMAND, or the list of commands.\n"
      "\n"
      "Example:\n"
      "  mothership help reload\n" },
};

bool ms_cli_help(const char *command, FILE *out)
{
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        if (strcmp(helps[i].name, command) == 0) {
            fprintf(out, "Usage: mothership %s", helps[i].text);
            return true;
        }
    }
    return false;
}
