/* tui.c: the dashboard's lifecycle on the control loop: taking over and
 * restoring the terminal, the timers (a 250 ms generation poll that redraws
 * only on change, a 1 s tick for CPU%/RSS/req/s), SIGWINCH, and the keys
 * read from stdin through a uv_poll (ncurses in nodelay mode, so reading
 * never blocks the loop). */
#include <curses.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tui/tui_impl.h"

#define POLL_MS 250
#define STATS_MS 1000
#define KEY_CTRL_L 0x0c

/* ---------------------------------------------------------------- terminal restore */
static volatile sig_atomic_t curses_on;
static bool restore_registered;
static SCREEN *screen;

static void restore_terminal(void)
{
    if (curses_on) {
        curses_on = 0;
        endwin();
    }
}

static void on_fatal_signal(int sig)
{
    restore_terminal();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* atexit() covers exit() from anywhere; fatal signals are caught only where
 * nobody else (a sanitizer, a debugger) handles them already. */
static void arm_restore(void)
{
    if (restore_registered)
        return;
    restore_registered = true;
    if (atexit(restore_terminal) != 0)
        restore_registered = false;
    static const int fatal[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        struct sigaction old;
        if (sigaction(fatal[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        (void)sigaction(fatal[i], &sa, NULL);
    }
}

bool ms_tui_usable(void)
{
    if (isatty(STDOUT_FILENO))
        return true;
    fprintf(stderr, "mothership: --tui needs a terminal; showing plain logs\n");
    return false;
}

/* ---------------------------------------------------------------- redraw */
static void redraw(ms_tui *t)
{
    if (t->stopped || t->detached || !curses_on)
        return;
    if (t->repaints_left > 0) {
        t->repaints_left--;
        clearok(curscr, TRUE);
    }
    t->gen = ms_tui_generation(t);
    ms_tui_draw(t);
}

static void on_poll_timer(uv_timer_t *h)
{
    ms_tui *t = h->data;
    if (t->repaints_left > 0 || ms_tui_generation(t) != t->gen)
        redraw(t);
}

static void sample_stats(ms_tui *t)
{
    ms_fleet *f = t->f;
    uint64_t now = uv_now(t->cfg.loop);
    for (size_t i = 0; i < f->n; i++) {
        ms_proc *p = f->procs[i];
        ms_tui_proc *tp = &t->tp[p->slot];
        uint64_t ticks = 0, rss = 0;
        if (p->pid > 0 && ms_tui_proc_tree_stat(p->pid, &ticks, &rss)) {
            if (tp->stat_pid == p->pid && now > tp->cpu_at_ms) {
                long hz = sysconf(_SC_CLK_TCK);
                double secs = (double)(now - tp->cpu_at_ms) / 1000.0;
                double used = ticks >= tp->cpu_ticks ? (double)(ticks - tp->cpu_ticks) : 0.0;
                tp->cpu_pct = used / (double)(hz > 0 ? hz : 100) / secs * 100.0;
            } else if (tp->stat_pid != p->pid) {
                tp->cpu_pct = -1;
            }
            tp->stat_pid = p->pid;
            tp->cpu_ticks = ticks;
            tp->cpu_at_ms = now;
            tp->rss_bytes = rss;
        } else {
            tp->stat_pid = 0;
            tp->cpu_pct = -1;
            tp->rss_bytes = 0;
        }
        /* requests per second, for ships that routes point at */
        uint32_t delta = 0;
        if (tp->has_routes && t->cfg.requests) {
            uint64_t total = t->cfg.requests(t->cfg.requests_arg, p->ship->name);
            if (tp->req_known && total >= tp->req_prev)
                delta = (uint32_t)(total - tp->req_prev > UINT32_MAX ? UINT32_MAX : total - tp->req_prev);
            tp->req_prev = total;
            tp->req_known = true;
        }
        tp->rps_seen -= tp->rps[tp->rps_head];
        tp->rps[tp->rps_head] = delta;
        tp->rps_seen += delta;
        tp->rps_head = (tp->rps_head + 1) % MS_TUI_RPS_SECONDS;
    }
}

static void on_stats_timer(uv_timer_t *h)
{
    ms_tui *t = h->data;
    sample_stats(t);
    redraw(t); /* clocks (uptime, backoff left) move every second */
}

static void on_winch(uv_signal_t *h, int signum)
{
    ms_tui *t = h->data;
    (void)signum;
    if (t->stopped || t->detached || !curses_on)
        return;
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
        resizeterm(ws.ws_row, ws.ws_col);
    clearok(curscr, TRUE);
    redraw(t);
}

/* ---------------------------------------------------------------- keys */
static void select_move(ms_tui *t, int d)
{
    size_t n = t->f->n;
    if (n == 0)
        return;
    if (t->tab == MS_TAB_LOGS) {
        /* the list is "all", then every process */
        if (t->merged) {
            if (d > 0) {
                t->merged = false;
                t->sel = 0;
            }
        } else if (d < 0 && t->sel == 0) {
            t->merged = true;
        } else if (d < 0) {
            t->sel--;
        } else if (t->sel + 1 < n) {
            t->sel++;
        }
        t->follow = true;
        return;
    }
    if (d < 0 && t->sel > 0)
        t->sel--;
    else if (d > 0 && t->sel + 1 < n)
        t->sel++;
}

static void scroll_logs(ms_tui *t, long d)
{
    if (!ms_tui_collect_lines(t) || t->nlines == 0)
        return;
    size_t page = t->log_rows > 1 ? (size_t)t->log_rows - 1 : 1;
    size_t bottom = ms_tui_bottom_index(t);
    if (d < 0) {
        size_t min_bottom = (size_t)t->log_rows > 0 ? (size_t)t->log_rows - 1 : 0;
        if (min_bottom >= t->nlines)
            min_bottom = t->nlines - 1;
        bottom = bottom >= min_bottom + page ? bottom - page : min_bottom;
        t->follow = false;
        t->anchor_seq = t->lines[bottom].l->seq;
    } else {
        bottom += page;
        if (bottom >= t->nlines - 1) {
            t->follow = true;
        } else {
            t->anchor_seq = t->lines[bottom].l->seq;
        }
    }
}

static void on_key(ms_tui *t, int ch)
{
    ms_fleet *f = t->f;
    char why[256]; /* a refusal is logged by ms_fleet_control */
    if (t->help) { /* any key closes the help */
        t->help = false;
        if (ch != 'q')
            return;
    }
    switch (ch) {
    case '\t':
        t->tab = (t->tab + 1) % MS_TAB_COUNT;
        break;
    case KEY_BTAB:
        t->tab = (t->tab + MS_TAB_COUNT - 1) % MS_TAB_COUNT;
        break;
    case KEY_UP:
    case 'k':
        select_move(t, -1);
        break;
    case KEY_DOWN:
    case 'j':
        select_move(t, 1);
        break;
    case KEY_PPAGE:
        if (t->tab == MS_TAB_LOGS)
            scroll_logs(t, -1);
        break;
    case KEY_NPAGE:
        if (t->tab == MS_TAB_LOGS)
            scroll_logs(t, 1);
        break;
    case KEY_HOME:
        if (t->tab == MS_TAB_LOGS && ms_tui_collect_lines(t) && t->nlines > 0) {
            size_t b = t->log_rows > 0 ? (size_t)t->log_rows - 1 : 0;
            t->follow = false;
            t->anchor_seq = t->lines[b < t->nlines ? b : t->nlines - 1].l->seq;
        }
        break;
    case KEY_END:
        t->follow = true;
        break;
    case 'm':
        t->merged = !t->merged;
        t->follow = true;
        break;
    case 'r':
        if ((!t->merged || t->tab != MS_TAB_LOGS) && t->sel < f->n)
            (void)ms_fleet_control(f, t->sel, MS_FLEET_ACT_RESTART, 0, "dashboard", why, sizeof why);
        break;
    case 's':
        if ((!t->merged || t->tab != MS_TAB_LOGS) && t->sel < f->n)
            (void)ms_fleet_control(f, t->sel, ms_fleet_proc_running(f->procs[t->sel]) ? MS_FLEET_ACT_STOP
                                                                                      : MS_FLEET_ACT_START,
                                   0, "dashboard", why, sizeof why);
        break;
    case 'q':
        if (!t->quit_sent) {
            t->quit_sent = true;
            ms_fleet_shutdown(f, 0, "quit from the dashboard");
        }
        break;
    case '?':
    case 'h':
        t->help = true;
        break;
    case KEY_CTRL_L:
        clearok(curscr, TRUE);
        break;
    case KEY_RESIZE:
        clearok(curscr, TRUE);
        break;
    default:
        break;
    }
}

/* The terminal hung up: nobody can see or drive the dashboard any more.
 * Give the output back to the plain log (as without --tui) and go idle. */
static void detach(ms_tui *t)
{
    if (t->detached)
        return;
    t->detached = true;
    uv_poll_stop(&t->input);
    uv_timer_stop(&t->poll_timer);
    uv_timer_stop(&t->stats_timer);
    restore_terminal();
    ms_log_set_quiet(t->cfg.log, false);
}

static void on_input(uv_poll_t *h, int status, int events)
{
    ms_tui *t = h->data;
    if (t->stopped || t->detached || !curses_on)
        return;
    if (status < 0 || (events & UV_DISCONNECT)) {
        detach(t);
        return;
    }
    bool any = false;
    for (int i = 0; i < 256; i++) {
        int ch = getch();
        if (ch == ERR)
            break;
        any = true;
        on_key(t, ch);
        if (t->stopped)
            return;
    }
    if (any)
        redraw(t);
}

/* ---------------------------------------------------------------- start / stop */
static void free_tui(ms_tui *t)
{
    free(t->lines);
    free(t->tp);
    free(t);
}

static void on_closed(uv_handle_t *h)
{
    ms_tui *t = h->data;
    if (--t->open_handles == 0)
        free_tui(t);
}

/* Which entries routes point at (their req/s is shown). A slot whose
 * process is new (the last one in it was freed) starts afresh. */
static void note_routes(ms_tui *t)
{
    const ms_fleet *f = t->f;
    const ms_manifest *m = f->m;
    for (size_t i = 0; i < f->n; i++) {
        ms_tui_proc *tp = &t->tp[f->procs[i]->slot];
        if (tp->owner != f->procs[i]->id + 1) {
            memset(tp, 0, sizeof *tp);
            tp->cpu_pct = -1;
            tp->owner = f->procs[i]->id + 1;
        }
        tp->has_routes = false;
        for (size_t s = 0; s < m->nships; s++)
            for (size_t r = 0; r < m->ships[s].nroutes; r++)
                if (m->ships[s].routes[r].target == i)
                    tp->has_routes = true;
    }
}

void ms_tui_reloaded(ms_tui *t)
{
    note_routes(t);
    if (t->sel >= t->f->n)
        t->sel = t->f->n ? t->f->n - 1 : 0;
    redraw(t);
}

ms_tui *ms_tui_start(const ms_tui_config *cfg, char *why, size_t why_len)
{
    ms_tui *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    t->cfg = *cfg;
    t->f = cfg->fleet;
    t->tp = calloc(MS_FLEET_MAX_SLOTS, sizeof *t->tp);
    if (!t->tp) {
        free(t);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < MS_FLEET_MAX_SLOTS; i++)
        t->tp[i].cpu_pct = -1;
    note_routes(t);
    t->follow = true;
    t->started_ms = uv_now(cfg->loop);
    const char *nc = getenv("NO_COLOR");
    bool no_colour = nc && *nc;

    if (!setlocale(LC_CTYPE, "")) /* keep "C" when the environment's locale is unusable */
        (void)setlocale(LC_CTYPE, "C");
    const char *cs = nl_langinfo(CODESET);
    t->utf8 = cs && strcmp(cs, "UTF-8") == 0;

    /* SIGWINCH first, so ncurses does not install its own handler. */
    if (uv_signal_init(cfg->loop, &t->winch) != 0) {
        free_tui(t);
        snprintf(why, why_len, "cannot watch SIGWINCH");
        return NULL;
    }
    t->winch.data = t;
    t->open_handles++;
    uv_signal_start(&t->winch, on_winch, SIGWINCH);

    arm_restore();
    ms_log_set_quiet(cfg->log, true);
    SCREEN *scr = newterm(NULL, stdout, stdin);
    if (!scr) {
        ms_log_set_quiet(cfg->log, false);
        snprintf(why, why_len, "cannot initialise the terminal (TERM=%s)", getenv("TERM") ? getenv("TERM") : "");
        uv_close((uv_handle_t *)&t->winch, on_closed);
        return NULL;
    }
    set_term(scr);
    screen = scr;
    curses_on = 1;
    cbreak();               /* Ctrl-C and Ctrl-\ still send SIGINT and SIGQUIT: the fleet stops on them */
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(25);
    (void)curs_set(0);
    if (!no_colour && has_colors() && start_color() == OK) {
        (void)use_default_colors();
        init_pair(1, COLOR_GREEN, -1);
        init_pair(2, COLOR_YELLOW, -1);
        init_pair(3, COLOR_RED, -1);
        init_pair(4, COLOR_CYAN, -1);
        init_pair(5, COLOR_BLACK, COLOR_CYAN);
        t->colour = true;
    }
    /* The log writer may still print what was queued before it went quiet:
     * repaint everything a few times while that drains. */
    t->repaints_left = 3;

    uv_timer_init(cfg->loop, &t->poll_timer);
    uv_timer_init(cfg->loop, &t->stats_timer);
    t->poll_timer.data = t->stats_timer.data = t;
    t->open_handles += 2;
    if (uv_poll_init(cfg->loop, &t->input, STDIN_FILENO) == 0) {
        t->input.data = t;
        t->open_handles++;
        t->input_open = true;
        uv_poll_start(&t->input, UV_READABLE | UV_DISCONNECT, on_input);
    }
    sample_stats(t);
    redraw(t);
    uv_timer_start(&t->poll_timer, on_poll_timer, POLL_MS, POLL_MS);
    uv_timer_start(&t->stats_timer, on_stats_timer, STATS_MS, STATS_MS);
    return t;
}

/* Printed on the restored terminal: Mothership's own events were not shown
 * while the dashboard ran, so say how each process ended, with the last
 * lines of those that failed. */
static void print_summary(const ms_tui *t)
{
    const ms_fleet *f = t->f;
    printf("mothership: dashboard closed; fleet %s (exit %d)\n", f->phase == MS_FLEET_DONE ? "stopped" : "running",
           f->exit_code);
    for (size_t i = 0; i < f->n; i++) {
        const ms_proc *p = f->procs[i];
        char st[128];
        ms_tui_state_text(t, p, st, sizeof st);
        printf("  %-16s %-8s %s, %u restart%s\n", p->ship->name, ms_ship_kind_word(p->ship), st, p->restarts,
               p->restarts == 1 ? "" : "s");
        bool bad = p->state == MS_P_FAILED ||
                   (p->state != MS_P_STOPPED && (p->last_term_signal > 0 || p->last_exit_status > 0));
        if (!bad)
            continue;
        const ms_ring *r = &p->ring;
        size_t from = r->count > 5 ? r->count - 5 : 0;
        for (size_t k = from; k < r->count; k++) {
            const ms_ring_line *l = ms_ring_at(r, k);
            printf("    %s %.*s\n", l->stream == MS_STDERR ? "!" : "|", (int)(l->len > 200 ? 200 : l->len), l->text);
        }
    }
    fflush(stdout);
}

void ms_tui_stop(ms_tui *t)
{
    if (!t || t->stopped)
        return;
    t->stopped = true;
    bool shown = !t->detached;
    restore_terminal();
    if (shown)
        print_summary(t);
    if (screen) {
        delscreen(screen);
        screen = NULL;
    }
    ms_log_set_quiet(t->cfg.log, false);
    uv_close((uv_handle_t *)&t->winch, on_closed);
    uv_close((uv_handle_t *)&t->poll_timer, on_closed);
    uv_close((uv_handle_t *)&t->stats_timer, on_closed);
    if (t->input_open)
        uv_close((uv_handle_t *)&t->input, on_closed);
}
