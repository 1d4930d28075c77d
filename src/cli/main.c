/* main.c: the mothership command line: parses the subcommand and options
 * and dispatches. `mothership` alone means `mothership run`. */
#include <assert.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fleet/shim.h"
#include "ms_config.h"

static void usage(FILE *out)
{
    fputs("Usage: mothership [COMMAND] [OPTIONS]\n"
          "\n"
          "Commands:\n"
          "  run          launch the fleet (default)\n"
          "  init [PATH]  write a commented starter manifest (default ./ship-manifest.toml)\n"
          "  clearance    validate the manifest offline and summarise the fleet\n"
          "  preflight    validate the manifest and check every uplink\n"
          "  chart        print where each request goes, per bind\n"
          "  help [CMD]   the help of one command, as mothership CMD --help\n"
          "\n"
          "Commands for a running fleet (through its control socket):\n"
          "  status             every ship and bay: state, pid, uptime, restarts, health\n"
          "  restart NAME...    restart entries (a NAME may be @tag)\n"
          "  stop NAME...       stop entries until started again\n"
          "  start NAME...      start stopped entries\n"
          "  signal NAME SIG    send a signal (HUP, USR1, ... or a number)\n"
          "  logs [NAME]        recent output of one entry or all\n"
          "  reload             apply the manifest's changes\n"
          "  drain              stop accepting requests, let those in flight finish\n"
          "\n"
          "Options:\n"
          "  -c, --config PATH     manifest to use (default ./ship-manifest.toml; - for stdin)\n"
          "      --only T1,T2      run: only entries with one of these tags or groups (and their dependencies)\n"
          "      --except T1,T2    run: leave out entries with one of these tags or groups\n"
          "      --tui             run: show the dashboard\n"
          "      --log-format F    run: text (default) or json\n"
          "      --json            chart, status and the other fleet commands: JSON output\n"
          "      --socket PATH     fleet commands: the control socket (default: from the manifest)\n"
          "  -n N                  logs: the last N lines (default 100)\n"
          "  -f, --follow          logs: then follow new lines\n"
          "      --check           reload: print the plan, change nothing\n"
          "      --names           clearance: print only the entries' names and @tags\n"
          "  -f, --force           init: overwrite an existing file\n"
          "  -h, --help            this help\n"
          "  -V, --version         print the version\n"
          "\n"
          "Exit codes: 0 ok, 1 invalid manifest or failed check, 2 usage error,\n"
          "3 no fleet is running (fleet commands).\n",
          out);
}

static bool known_command(const char *c)
{
    static const char *const cmds[] = { "run", "init", "clearance", "preflight", "chart", "help", NULL };
    if (ms_cli_is_ctl_verb(c))
        return true;
    for (size_t i = 0; cmds[i]; i++)
        if (strcmp(cmds[i], c) == 0)
            return true;
    return false;
}

/* `mothership CMD --help` and `mothership help [CMD]`. */
static int help_command(const ms_cli *o, bool flag, char **rest, int nrest)
{
    const char *topic = o->command;
    if (strcmp(o->command, "help") == 0 && (nrest > 0 || !flag)) {
        if (nrest == 0) {
            usage(stdout);
            return MS_EXIT_OK;
        }
        topic = rest[0];
        if (!known_command(topic)) {
            fprintf(stderr, "mothership: unknown command \"%s\" (see mothership --help)\n", topic);
            return MS_EXIT_USAGE;
        }
        if (nrest > 1) {
            fprintf(stderr, "mothership: unexpected argument \"%s\"\n", rest[1]);
            return MS_EXIT_USAGE;
        }
    }
    bool found = ms_cli_help(topic, stdout);
    assert(found); /* every known command has its help */
    (void)found;
    return MS_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], MS_SHIM_FLAG) == 0)
        return ms_shim_main(argc, argv);
    ms_cli o = { .command = "run", .manifest = "ship-manifest.toml", .log_format = "text", .lines = -1 };
    const char *nc = getenv("NO_COLOR");
    o.color = isatty(STDOUT_FILENO) && !(nc && *nc);

    enum { OPT_ONLY = 256, OPT_EXCEPT, OPT_TUI, OPT_JSON, OPT_LOGFMT, OPT_SOCKET, OPT_CHECK, OPT_NAMES };
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "force", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "only", required_argument, NULL, OPT_ONLY },
        { "except", required_argument, NULL, OPT_EXCEPT },
        { "tui", no_argument, NULL, OPT_TUI },
        { "json", no_argument, NULL, OPT_JSON },
        { "log-format", required_argument, NULL, OPT_LOGFMT },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "check", no_argument, NULL, OPT_CHECK },
        { "follow", no_argument, NULL, 'F' },
        { "names", no_argument, NULL, OPT_NAMES },
        { NULL, 0, NULL, 0 },
    };
    opterr = 0;
    bool log_format_given = false;
    bool help = false; /* -h: answered once the command is known */
    int ch;
    bool lines_given = false;
    while ((ch = getopt_long(argc, argv, ":c:fhVn:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': o.manifest = optarg; o.manifest_given = true; break;
        case 'f': o.force = true; break; /* init --force, or logs -f */
        case 'F': o.follow = true; break;
        case 'n': {
            char *end;
            o.lines = strtol(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || o.lines > 100000) {
                fprintf(stderr, "mothership: -n takes a number of lines from 0 to 100000, not \"%s\"\n", optarg);
                return MS_EXIT_USAGE;
            }
            lines_given = true;
            break;
        }
        case OPT_SOCKET: o.socket = optarg; break;
        case OPT_CHECK: o.check = true; break;
        case 'h': help = true; break;
        case OPT_NAMES: o.names = true; break;
        case 'V': printf("mothership %s\n", MS_VERSION); return MS_EXIT_OK;
        case OPT_ONLY: o.only = optarg; break;
        case OPT_EXCEPT: o.except = optarg; break;
        case OPT_TUI: o.tui = true; break;
        case OPT_JSON: o.json = true; break;
        case OPT_LOGFMT:
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
                fprintf(stderr, "mothership: --log-format must be text or json, not \"%s\"\n", optarg);
                return MS_EXIT_USAGE;
            }
            o.log_format = optarg;
            log_format_given = true;
            break;
        case ':':
            fprintf(stderr, "mothership: option %s needs a value\n", argv[optind - 1]);
            return MS_EXIT_USAGE;
        default:
            fprintf(stderr, "mothership: unknown option %s (see mothership --help)\n", argv[optind - 1]);
            return MS_EXIT_USAGE;
        }
    }
    int pos = optind;
    if (pos < argc) {
        if (!known_command(argv[pos])) {
            fprintf(stderr, "mothership: unknown command \"%s\" (commands: run, init, clearance, preflight, "
                            "chart, status, restart, stop, start, signal, logs, reload, drain, help; see "
                            "mothership --help)\n", argv[pos]);
            return MS_EXIT_USAGE;
        }
        o.command = argv[pos++];
    } else if (help) {
        usage(stdout);
        return MS_EXIT_OK;
    }
    if (help || strcmp(o.command, "help") == 0)
        return help_command(&o, help, argv + pos, argc - pos);
    if (strcmp(o.command, "init") == 0 && pos < argc)
        o.init_path = argv[pos++];
    bool is_ctl = ms_cli_is_ctl_verb(o.command);
    if (is_ctl) {
        o.args = argv + pos;
        o.nargs = (size_t)(argc - pos);
        pos = argc;
    }
    if (pos < argc) {
        fprintf(stderr, "mothership: unexpected argument \"%s\"\n", argv[pos]);
        return MS_EXIT_USAGE;
    }
    bool is_run = strcmp(o.command, "run") == 0;
    if (!is_run && (o.only || o.except || o.tui)) {
        fprintf(stderr, "mothership: --only, --except and --tui go with run, not %s\n", o.command);
        return MS_EXIT_USAGE;
    }
    if (o.tui && strcmp(o.manifest, MS_MANIFEST_STDIN) == 0) {
        fprintf(stderr, "mothership: --tui reads keys from stdin, so the manifest cannot come from it (-c -)\n");
        return MS_EXIT_USAGE;
    }
    if (strcmp(o.command, "init") == 0 && strcmp(o.manifest, MS_MANIFEST_STDIN) == 0 && !o.init_path) {
        fprintf(stderr, "mothership: init writes a file: name it (-c - reads a manifest from stdin)\n");
        return MS_EXIT_USAGE;
    }
    if (log_format_given && !is_run) {
        fprintf(stderr, "mothership: --log-format goes with run, not %s\n", o.command);
        return MS_EXIT_USAGE;
    }
    bool is_logs = strcmp(o.command, "logs") == 0;
    if (is_logs && o.force) { /* -f: follow */
        o.follow = true;
        o.force = false;
    }
    if (o.json && strcmp(o.command, "chart") != 0 && !is_ctl) {
        fprintf(stderr, "mothership: --json goes with chart and the fleet commands\n");
        return MS_EXIT_USAGE;
    }
    if (o.force && strcmp(o.command, "init") != 0) {
        fprintf(stderr, "mothership: --force goes with init\n");
        return MS_EXIT_USAGE;
    }
    if ((o.follow || lines_given) && !is_logs) {
        fprintf(stderr, "mothership: -f and -n go with logs\n");
        return MS_EXIT_USAGE;
    }
    if (o.check && strcmp(o.command, "reload") != 0) {
        fprintf(stderr, "mothership: --check goes with reload\n");
        return MS_EXIT_USAGE;
    }
    if (o.names && strcmp(o.command, "clearance") != 0) {
        fprintf(stderr, "mothership: --names goes with clearance\n");
        return MS_EXIT_USAGE;
    }
    if (o.socket && !is_ctl) {
        fprintf(stderr, "mothership: --socket goes with the fleet commands (status, restart, ...)\n");
        return MS_EXIT_USAGE;
    }
    if (is_ctl)
        return ms_cmd_ctl(&o);

    if (strcmp(o.command, "init") == 0)
        return ms_cmd_init(&o);
    if (strcmp(o.command, "clearance") == 0)
        return ms_cmd_clearance(&o);
    if (strcmp(o.command, "chart") == 0)
        return ms_cmd_chart(&o);
    if (strcmp(o.command, "preflight") == 0)
        return ms_cmd_preflight(&o);
    return ms_cmd_run(&o);
}
