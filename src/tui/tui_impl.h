/* tui_impl.h: what the dashboard's files share: its state (tui.c owns the
 * handles and the keys, draw.c the screen, procstat.c the /proc figures). */
#ifndef MS_TUI_IMPL_H
#define MS_TUI_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tui/tui.h"

#define MS_TUI_RPS_SECONDS 60   /* req/s history kept for the sparkline */

enum { MS_TAB_OVERVIEW, MS_TAB_LOGS, MS_TAB_MODULES, MS_TAB_COUNT };

/* Per-process figures, refreshed at most once a second. */
typedef struct ms_tui_proc {
    uint64_t owner;              /* ms_proc.id + 1 of the process the figures are of (0: none yet) */
    int stat_pid;                /* pid the CPU baseline belongs to */
    uint64_t cpu_ticks;          /* utime+stime of the process tree at the last sample */
    uint64_t cpu_at_ms;
    double cpu_pct;              /* < 0: not known yet */
    uint64_t rss_bytes;
    bool has_routes;
    uint64_t req_prev;           /* requests counter at the last sample */
    bool req_known;
    uint32_t rps[MS_TUI_RPS_SECONDS]; /* requests per second, circular, newest at rps_head-1 */
    size_t rps_head;
    uint64_t rps_seen;           /* requests seen in the window (0: no sparkline) */
} ms_tui_proc;

/* One line of the Logs view. */
typedef struct ms_tui_line {
    const ms_ring_line *l;
    size_t proc;
} ms_tui_line;

struct ms_tui {
    ms_tui_config cfg;
    ms_fleet *f;
    ms_tui_proc *tp;             /* by slot (ms_proc.slot): MS_FLEET_MAX_SLOTS of them */
    /* handles */
    uv_timer_t poll_timer;       /* 250 ms: redraw if the generation moved */
    uv_timer_t stats_timer;      /* 1 s: CPU%, RSS, req/s, clocks */
    uv_signal_t winch;
    uv_poll_t input;
    bool input_open;
    int open_handles;
    bool stopped;
    bool detached;               /* the terminal hung up */
    /* view */
    int tab;
    size_t sel;                  /* selected process */
    bool merged;                 /* Logs: all processes by sequence */
    bool follow;                 /* Logs: stick to the newest line */
    uint64_t anchor_seq;         /* Logs, not following: seq of the bottom line */
    int log_rows;                /* Logs: rows of text on screen at the last draw */
    bool help;
    bool quit_sent;
    bool colour;
    bool utf8;
    uint64_t gen;                /* what the screen shows */
    uint64_t started_ms;
    unsigned repaints_left;      /* full repaints after start (stray output of the log writer) */
    /* scratch for the Logs view */
    ms_tui_line *lines;
    size_t nlines, lines_cap;
    bool oom;
};

/* draw.c */
void ms_tui_draw(ms_tui *t);
/* Build t->lines for the current Logs source (sorted by seq); false: out of memory. */
bool ms_tui_collect_lines(ms_tui *t);
/* Index of the bottom line shown in the Logs view (t->nlines must be > 0). */
size_t ms_tui_bottom_index(const ms_tui *t);
uint64_t ms_tui_generation(const ms_tui *t);
/* "ready", "backoff 1.4s (exit 1)", ...; returns its colour pair (0: none). */
int ms_tui_state_text(const ms_tui *t, const ms_proc *p, char *buf, size_t len);

/* procstat.c: CPU time (clock ticks) and resident bytes of the processes
 * below pid, a launch shim (see ms_procstat_tree); false when pid is gone. */
bool ms_tui_proc_tree_stat(int pid, uint64_t *ticks, uint64_t *rss_bytes);

#endif
