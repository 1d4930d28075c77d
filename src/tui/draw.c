/* draw.c: what the dashboard shows. Every redraw paints the whole screen
 * into ncurses' virtual screen (erase + draw); ncurses sends only what
 * changed. Text from children is sanitised (control characters become '?')
 * and clipped to its column, so nothing a process prints can move the
 * cursor or spill into another row. */
#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>

#include "ms_config.h"
#include "tui/tui_impl.h"

enum { C_GREEN = 1, C_YELLOW, C_RED, C_CYAN, C_BAR };

static attr_t colour(const ms_tui *t, int pair)
{
    return t->colour ? (attr_t)COLOR_PAIR(pair) : 0;
}

/* Put UTF-8 text at (y, x), at most maxw columns; returns the columns used. */
static int put(int y, int x, int maxw, const char *s, size_t len, attr_t attr)
{
    if (maxw <= 0 || y < 0 || y >= LINES || x >= COLS)
        return 0;
    if (x + maxw > COLS)
        maxw = COLS - x;
    wchar_t wbuf[512];
    int cols = 0;
    size_t nw = 0;
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t i = 0;
    while (i < len && nw < sizeof wbuf / sizeof wbuf[0]) {
        wchar_t wc;
        size_t k = mbrtowc(&wc, s + i, len - i, &st);
        if (k == (size_t)-1 || k == (size_t)-2 || k == 0) {
            memset(&st, 0, sizeof st);
            wc = L'?';
            k = 1;
        }
        int w = wcwidth(wc);
        if (wc == L'\t') {
            wc = L' ';
            w = 1;
        } else if (w < 0) {
            wc = L'?';
            w = 1;
        }
        if (cols + w > maxw)
            break;
        wbuf[nw++] = wc;
        cols += w;
        i += k;
    }
    if (nw == 0)
        return 0;
    attron(attr);
    mvaddnwstr(y, x, wbuf, (int)nw);
    attroff(attr);
    return cols;
}

static int puts_at(int y, int x, int maxw, const char *s, attr_t attr)
{
    return put(y, x, maxw, s, strlen(s), attr);
}

/* Fill a row with spaces in attr (for selection bars). */
static void fill_row(int y, attr_t attr)
{
    if (y < 0 || y >= LINES)
        return;
    attron(attr);
    mvhline(y, 0, ' ', COLS);
    attroff(attr);
}

static void fmt_duration(uint64_t ms, char *buf, size_t len)
{
    uint64_t s = ms / 1000;
    if (s < 60)
        snprintf(buf, len, "%llus", (unsigned long long)s);
    else if (s < 3600)
        snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
    else if (s < 86400)
        snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600), (unsigned long long)(s % 3600 / 60));
    else
        snprintf(buf, len, "%llud%02lluh", (unsigned long long)(s / 86400), (unsigned long long)(s % 86400 / 3600));
}

static void fmt_bytes(uint64_t b, char *buf, size_t len)
{
    if (b < 1024 * 1024)
        snprintf(buf, len, "%lluK", (unsigned long long)(b / 1024));
    else if (b < 1024ull * 1024 * 1024)
        snprintf(buf, len, "%.1fM", (double)b / (1024.0 * 1024.0));
    else
        snprintf(buf, len, "%.2fG", (double)b / (1024.0 * 1024.0 * 1024.0));
}

static void fmt_exit(const ms_proc *p, char *buf, size_t len)
{
    if (p->last_term_signal > 0) {
        const char *abbrev = sigabbrev_np(p->last_term_signal);
        if (abbrev)
            snprintf(buf, len, "SIG%s", abbrev);
        else
            snprintf(buf, len, "signal %d", p->last_term_signal);
    } else if (p->last_exit_status >= 0) {
        snprintf(buf, len, "exit %d", p->last_exit_status);
    } else {
        buf[0] = '\0';
    }
}

int ms_tui_state_text(const ms_tui *t, const ms_proc *p, char *buf, size_t len)
{
    char ex[32];
    fmt_exit(p, ex, sizeof ex);
    uint64_t now = uv_now(t->cfg.loop);
    if (!p->selected) {
        snprintf(buf, len, "not selected");
        return 0;
    }
    switch (p->state) {
    case MS_P_WAITING:
        snprintf(buf, len, "waiting");
        return C_YELLOW;
    case MS_P_STARTING:
        snprintf(buf, len, "starting");
        return C_YELLOW;
    case MS_P_READY:
        if (p->roll || (p->twin && p->twin->roll)) { /* a rolling restart is replacing it */
            snprintf(buf, len, "%s", __atomic_load_n(&p->draining, __ATOMIC_ACQUIRE) ? "draining" : "rolling");
            return C_YELLOW;
        }
        snprintf(buf, len, "%s", p->healthy == 0 ? "unhealthy" : p->healthy == 1 ? "healthy" : "ready");
        return p->healthy == 0 ? C_RED : C_GREEN;
    case MS_P_BACKOFF: {
        uint64_t left = p->backoff_until > now ? p->backoff_until - now : 0;
        snprintf(buf, len, "%s %.1fs%s%s%s", p->loop_paused ? "paused" : "backoff", (double)left / 1000.0,
                 ex[0] ? " (" : "", ex, ex[0] ? ")" : "");
        return p->loop_paused ? C_RED : C_YELLOW;
    }
    case MS_P_DONE:
        snprintf(buf, len, "done (exit 0)");
        return 0;
    case MS_P_FAILED:
        snprintf(buf, len, "failed%s%s%s", ex[0] ? " (" : "", ex, ex[0] ? ")" : "");
        return C_RED;
    case MS_P_SKIPPED:
        snprintf(buf, len, "skipped");
        return C_RED;
    case MS_P_STOPPING:
        snprintf(buf, len, "stopping");
        return C_YELLOW;
    case MS_P_STOPPED:
        snprintf(buf, len, "stopped%s%s%s", ex[0] ? " (" : "", ex, ex[0] ? ")" : "");
        return 0;
    case MS_P_SCHEDULED:
        snprintf(buf, len, "scheduled%s%s%s", ex[0] ? " (" : "", ex, ex[0] ? ")" : "");
        return 0;
    }
    snprintf(buf, len, "?");
    return 0;
}

static const char *phase_word(ms_fleet_phase ph)
{
    switch (ph) {
    case MS_FLEET_LAUNCHING: return "launching";
    case MS_FLEET_RUNNING: return "running";
    case MS_FLEET_STOPPING: return "stopping";
    case MS_FLEET_DONE: return "stopped";
    }
    return "?";
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 1099511628211ull;
}

uint64_t ms_tui_generation(const ms_tui *t)
{
    const ms_fleet *f = t->f;
    uint64_t h = 1469598103934665603ull;
    h = mix(h, (uint64_t)f->phase);
    for (size_t i = 0; i < f->n; i++) {
        const ms_proc *p = f->procs[i];
        h = mix(h, p->ring.total);
        h = mix(h, (uint64_t)p->state);
        h = mix(h, p->restarts);
        h = mix(h, (uint64_t)(unsigned)p->pid);
        h = mix(h, (uint64_t)(unsigned)p->ship_pid);
        h = mix(h, (uint64_t)(unsigned)__atomic_load_n(&p->healthy, __ATOMIC_RELAXED));
        h = mix(h, (uint64_t)(unsigned)__atomic_load_n(&p->breaker, __ATOMIC_RELAXED));
        h = mix(h, p->loop_paused);
    }
    return h;
}

/* ---------------------------------------------------------------- header and footer */
static void draw_header(ms_tui *t)
{
    const ms_fleet *f = t->f;
    const ms_manifest *m = f->m;
    uint64_t now = uv_now(t->cfg.loop);
    char up[32], buf[1024];
    fmt_duration(now - f->started_at, up, sizeof up);
    size_t nready = 0, nrun = 0, ndown = 0;
    uint64_t rps = 0;
    for (size_t i = 0; i < f->n; i++) {
        const ms_proc *p = f->procs[i];
        if (p->state == MS_P_READY)
            nready++;
        if (p->pid > 0)
            nrun++;
        if (p->selected && (p->state == MS_P_BACKOFF || p->state == MS_P_FAILED || p->state == MS_P_SKIPPED))
            ndown++;
        const ms_tui_proc *tp = &t->tp[f->procs[i]->slot];
        rps += tp->rps[(tp->rps_head + MS_TUI_RPS_SECONDS - 1) % MS_TUI_RPS_SECONDS];
    }
    fill_row(0, colour(t, C_BAR) | (t->colour ? 0 : A_REVERSE));
    int x = 0;
    attr_t bar = colour(t, C_BAR) | (t->colour ? 0 : A_REVERSE);
    snprintf(buf, sizeof buf, " mothership %s ", MS_VERSION);
    x += puts_at(0, x, COLS - x, buf, bar | A_BOLD);
    snprintf(buf, sizeof buf, "| up %s | fleet %s | %zu entries: %zu ready, %zu running, %zu down | %llu req/s |",
             up, phase_word(f->phase), f->n, nready, nrun, ndown, (unsigned long long)rps);
    x += puts_at(0, x, COLS - x, buf, bar);
    if (m->global.nbinds == 0) {
        puts_at(0, x, COLS - x, " no binds", bar);
    } else {
        for (size_t b = 0; b < m->global.nbinds; b++) {
            snprintf(buf, sizeof buf, " %s %s", m->global.binds[b].name, m->global.binds[b].addr.text);
            x += puts_at(0, x, COLS - x, buf, bar);
        }
    }

    /* tabs */
    static const char *const names[MS_TAB_COUNT] = { "Overview", "Logs", "Modules" };
    move(1, 0);
    clrtoeol();
    x = 1;
    for (int i = 0; i < MS_TAB_COUNT; i++) {
        snprintf(buf, sizeof buf, i == t->tab ? "[%s]" : " %s ", names[i]);
        attr_t a = i == t->tab ? (A_REVERSE | A_BOLD) : 0;
        x += puts_at(1, x, COLS - x, buf, a);
        x += puts_at(1, x, COLS - x, " ", 0);
    }
    if (f->phase == MS_FLEET_STOPPING)
        puts_at(1, x + 2, COLS - x - 2, "stopping the fleet (Ctrl-C twice to kill)", colour(t, C_YELLOW) | A_BOLD);
    else if (t->oom)
        puts_at(1, x + 2, COLS - x - 2, "out of memory: some lines are not shown", colour(t, C_RED) | A_BOLD);
}

static void draw_footer(ms_tui *t)
{
    const char *keys = t->tab == MS_TAB_LOGS
                           ? " Tab/S-Tab tabs  \xe2\x86\x91/\xe2\x86\x93 process  PgUp/PgDn scroll  End follow  m merged"
                             "  r restart  s stop/start  q quit  ? help"
                           : " Tab/S-Tab tabs  \xe2\x86\x91/\xe2\x86\x93 select  r restart  s stop/start  q quit  ? help";
    if (!t->utf8)
        keys = t->tab == MS_TAB_LOGS ? " Tab/S-Tab tabs  Up/Down process  PgUp/PgDn scroll  End follow  m merged"
                                       "  r restart  s stop/start  q quit  ? help"
                                     : " Tab/S-Tab tabs  Up/Down select  r restart  s stop/start  q quit  ? help";
    attr_t bar = colour(t, C_BAR) | (t->colour ? 0 : A_REVERSE);
    fill_row(LINES - 1, bar);
    puts_at(LINES - 1, 0, COLS, keys, bar);
}

/* ---------------------------------------------------------------- overview */
static void sparkline(const ms_tui *t, const ms_tui_proc *tp, char *buf, size_t len, int cells)
{
    static const char *const blocks_u[] = { " ", "\xe2\x96\x81", "\xe2\x96\x82", "\xe2\x96\x83", "\xe2\x96\x84",
                                            "\xe2\x96\x85", "\xe2\x96\x86", "\xe2\x96\x87", "\xe2\x96\x88" };
    static const char *const blocks_a[] = { " ", ".", ".", ":", ":", "-", "=", "+", "#" };
    const char *const *blocks = t->utf8 ? blocks_u : blocks_a;
    buf[0] = '\0';
    if (tp->rps_seen == 0 || cells <= 0)
        return;
    int per = (MS_TUI_RPS_SECONDS + cells - 1) / cells;
    uint64_t sums[MS_TUI_RPS_SECONDS];
    uint64_t max = 0;
    for (int c = 0; c < cells; c++) {
        sums[c] = 0;
        for (int k = 0; k < per; k++) {
            int off = c * per + k; /* from the oldest sample (at rps_head) */
            if (off >= MS_TUI_RPS_SECONDS)
                continue;
            size_t idx = (tp->rps_head + (size_t)off) % MS_TUI_RPS_SECONDS;
            sums[c] += tp->rps[idx];
        }
        if (sums[c] > max)
            max = sums[c];
    }
    size_t used = 0;
    for (int c = 0; c < cells; c++) {
        int lvl = max ? (int)((sums[c] * 8 + max - 1) / max) : 0;
        const char *b = blocks[lvl];
        size_t bl = strlen(b);
        if (used + bl + 1 > len)
            break;
        memcpy(buf + used, b, bl);
        used += bl;
    }
    buf[used] = '\0';
}

static void routes_text(const ms_fleet *f, size_t i, char *buf, size_t len)
{
    const ms_manifest *m = f->m;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t s = 0; s < m->nships; s++) {
        for (size_t r = 0; r < m->ships[s].nroutes; r++) {
            const ms_route *rt = &m->ships[s].routes[r];
            if (rt->target != i)
                continue;
            int n = snprintf(buf + used, len - used, "%s%s:%s", used ? " " : "", rt->bind, rt->pattern);
            if (n < 0 || (size_t)n >= len - used) {
                buf[len - 1] = '\0';
                return;
            }
            used += (size_t)n;
        }
    }
    if (used == 0)
        snprintf(buf, len, "-");
}

typedef struct col {
    const char *title;
    int w;
} col;

enum { K_NAME, K_GROUP, K_KIND, K_STATE, K_PID, K_UP, K_RST, K_HEALTH, K_BREAKER, K_CPU, K_RSS, K_RPS, K_SPARK,
       K_ROUTES, K_NCOLS };
static const col cols_def[K_NCOLS] = {
    { "NAME", 14 }, { "GROUP", 9 }, { "KIND", 8 }, { "STATE", 22 }, { "PID", 7 }, { "UPTIME", 7 },
    { "RST", 3 },   { "HEALTH", 9 }, { "BREAKER", 9 }, { "CPU%", 5 }, { "RSS", 7 }, { "REQ/S", 5 },
    { "LAST 60s", 20 }, { "ROUTES", 0 },
};
static const bool right_aligned[K_NCOLS] = { [K_PID] = true, [K_UP] = true, [K_RST] = true, [K_CPU] = true,
                                              [K_RSS] = true, [K_RPS] = true };

static int put_cell(int y, int x, int k, const char *s, attr_t a)
{
    int w = cols_def[k].w ? cols_def[k].w : COLS - x;
    if (right_aligned[k]) {
        int sl = (int)strlen(s);
        int pad = w > sl ? w - sl : 0;
        put(y, x + pad, w - pad, s, strlen(s), a);
    } else {
        put(y, x, w, s, strlen(s), a);
    }
    return x + w + 1;
}

static void draw_overview(ms_tui *t)
{
    const ms_fleet *f = t->f;
    int top = 3, rows = LINES - 1 - top;
    int x = 2;
    for (int k = 0; k < K_NCOLS; k++)
        x = put_cell(2, x, k, cols_def[k].title, A_BOLD);
    if (rows <= 0)
        return;
    size_t first = 0;
    if (t->sel >= (size_t)rows)
        first = t->sel - (size_t)rows + 1;
    uint64_t now = uv_now(t->cfg.loop);
    for (size_t i = first; i < f->n && (int)(i - first) < rows; i++) {
        const ms_proc *p = f->procs[i];
        const ms_tui_proc *tp = &t->tp[f->procs[i]->slot];
        int y = top + (int)(i - first);
        bool sel = i == t->sel;
        attr_t base = sel ? A_REVERSE : 0;
        if (sel) {
            fill_row(y, A_REVERSE);
            put(y, 0, 1, ">", 1, A_REVERSE | A_BOLD);
        }
        char buf[512];
        x = 2;
        x = put_cell(y, x, K_NAME, p->ship->name, base | A_BOLD);
        x = put_cell(y, x, K_GROUP, p->ship->group ? p->ship->group : "-", base);
        x = put_cell(y, x, K_KIND, ms_ship_kind_word(p->ship), base);
        int sc = ms_tui_state_text(t, p, buf, sizeof buf);
        x = put_cell(y, x, K_STATE, buf, base | (sc ? colour(t, sc) : 0) | (sc == C_RED ? A_BOLD : 0));
        if (p->pid > 0) /* the ship's own process; its shim's until the shim has said */
            snprintf(buf, sizeof buf, "%d", p->ship_pid > 0 ? p->ship_pid : p->pid);
        else
            snprintf(buf, sizeof buf, "-");
        x = put_cell(y, x, K_PID, buf, base);
        if (p->pid > 0 && now >= p->started_at)
            fmt_duration(now - p->started_at, buf, sizeof buf);
        else
            snprintf(buf, sizeof buf, "-");
        x = put_cell(y, x, K_UP, buf, base);
        snprintf(buf, sizeof buf, "%u", p->restarts);
        x = put_cell(y, x, K_RST, buf, base);
        int healthy = __atomic_load_n(&p->healthy, __ATOMIC_RELAXED);
        bool has_check = p->ship->health.enabled;
        const char *hw = !has_check ? "-" : healthy == 1 ? "healthy" : healthy == 0 ? "unhealthy" : "unknown";
        x = put_cell(y, x, K_HEALTH, hw, base | (healthy == 0 && has_check ? colour(t, C_RED) : 0));
        int br = __atomic_load_n(&p->breaker, __ATOMIC_RELAXED);
        x = put_cell(y, x, K_BREAKER, has_check ? ms_breaker_name((ms_breaker)br) : "-",
                     base | (br != MS_BREAKER_CLOSED ? colour(t, C_RED) : 0));
        if (p->pid > 0 && tp->cpu_pct >= 0)
            snprintf(buf, sizeof buf, "%.1f", tp->cpu_pct);
        else
            snprintf(buf, sizeof buf, "-");
        x = put_cell(y, x, K_CPU, buf, base);
        if (p->pid > 0 && tp->rss_bytes > 0)
            fmt_bytes(tp->rss_bytes, buf, sizeof buf);
        else
            snprintf(buf, sizeof buf, "-");
        x = put_cell(y, x, K_RSS, buf, base);
        if (tp->has_routes)
            snprintf(buf, sizeof buf, "%u", tp->rps[(tp->rps_head + MS_TUI_RPS_SECONDS - 1) % MS_TUI_RPS_SECONDS]);
        else
            snprintf(buf, sizeof buf, "-");
        x = put_cell(y, x, K_RPS, buf, base);
        sparkline(t, tp, buf, sizeof buf, cols_def[K_SPARK].w);
        x = put_cell(y, x, K_SPARK, buf, base | colour(t, C_CYAN));
        uint64_t clients;
        if (p->ship->kind == MS_BAY && !p->ship->http_bay && t->cfg.bay_clients &&
            t->cfg.bay_clients(t->cfg.requests_arg, i, &clients)) {
            /* a bay's load is its clients, not its handshakes per second */
            int n = snprintf(buf, sizeof buf, "%llu client%s  ", (unsigned long long)clients, clients == 1 ? "" : "s");
            routes_text(f, i, buf + n, sizeof buf - (size_t)n);
        } else if (p->ship->kind == MS_UPSTREAM) {
            /* not ours: where it is reached */
            int n = snprintf(buf, sizeof buf, "at %.200s  ", p->ship->bind.text);
            routes_text(f, i, buf + n, sizeof buf - (size_t)n);
        } else {
            routes_text(f, i, buf, sizeof buf);
        }
        put_cell(y, x, K_ROUTES, buf, base);
    }
}

/* ---------------------------------------------------------------- logs */
static int by_seq(const void *a, const void *b)
{
    uint64_t x = ((const ms_tui_line *)a)->l->seq, y = ((const ms_tui_line *)b)->l->seq;
    return x < y ? -1 : x > y;
}

static bool reserve(ms_tui *t, size_t n)
{
    if (n <= t->lines_cap)
        return true;
    size_t cap = t->lines_cap ? t->lines_cap : 256;
    while (cap < n)
        cap *= 2;
    ms_tui_line *nl = realloc(t->lines, cap * sizeof *nl);
    if (!nl)
        return false;
    t->lines = nl;
    t->lines_cap = cap;
    return true;
}

bool ms_tui_collect_lines(ms_tui *t)
{
    const ms_fleet *f = t->f;
    t->nlines = 0;
    t->oom = false;
    if (f->n == 0)
        return true;
    size_t want = 0;
    for (size_t i = 0; i < f->n; i++)
        if (t->merged || i == t->sel)
            want += f->procs[i]->ring.count;
    if (!reserve(t, want)) {
        t->oom = true;
        return false;
    }
    for (size_t i = 0; i < f->n; i++) {
        if (!t->merged && i != t->sel)
            continue;
        const ms_ring *r = &f->procs[i]->ring;
        for (size_t k = 0; k < r->count; k++)
            t->lines[t->nlines++] = (ms_tui_line){ ms_ring_at(r, k), i };
    }
    if (t->merged)
        qsort(t->lines, t->nlines, sizeof *t->lines, by_seq);
    return true;
}

size_t ms_tui_bottom_index(const ms_tui *t)
{
    if (t->follow || t->nlines == 0)
        return t->nlines ? t->nlines - 1 : 0;
    /* the last line with seq <= anchor (lines are in seq order) */
    size_t lo = 0, hi = t->nlines;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->lines[mid].l->seq <= t->anchor_seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? lo - 1 : 0;
}

#define LIST_W 16

static void draw_logs(ms_tui *t)
{
    const ms_fleet *f = t->f;
    int top = 2, bottom = LINES - 2; /* rows top..bottom inclusive */
    /* left: the sources */
    put(top, 0, LIST_W, t->merged ? ">all" : " all", 4, t->merged ? A_REVERSE | A_BOLD : 0);
    for (size_t i = 0; i < f->n && top + 1 + (int)i <= bottom; i++) {
        bool sel = !t->merged && i == t->sel;
        char buf[64];
        snprintf(buf, sizeof buf, "%c%-*.*s", sel ? '>' : ' ', LIST_W - 2, LIST_W - 2, f->procs[i]->ship->name);
        int sc = f->procs[i]->state == MS_P_READY ? C_GREEN
                 : (f->procs[i]->state == MS_P_BACKOFF || f->procs[i]->state == MS_P_FAILED) ? C_RED : 0;
        put(top + 1 + (int)i, 0, LIST_W, buf, strlen(buf), sel ? A_REVERSE | A_BOLD : (sc ? colour(t, sc) : 0));
    }
    if (COLS > LIST_W)
        mvvline(top, LIST_W, ACS_VLINE, bottom - top + 1);
    int x0 = LIST_W + 2, w = COLS - x0;
    if (w <= 4)
        return;
    (void)ms_tui_collect_lines(t);
    int rows = bottom - top; /* one title row, then text */
    t->log_rows = rows > 0 ? rows : 0;
    size_t b = ms_tui_bottom_index(t);
    char title[256];
    const char *src = t->merged ? "all processes" : f->n ? f->procs[t->sel]->ship->name : "-";
    if (t->nlines == 0)
        snprintf(title, sizeof title, "%s: no output yet", src);
    else if (t->follow)
        snprintf(title, sizeof title, "%s: %zu lines, following (stderr marked !)", src, t->nlines);
    else
        snprintf(title, sizeof title, "%s: line %zu of %zu, scrolled (PgDn/End to follow)", src, b + 1, t->nlines);
    puts_at(top, x0, w, title, A_BOLD);
    if (t->nlines == 0 || rows <= 0)
        return;
    size_t shown = (size_t)rows;
    size_t first = b + 1 >= shown ? b + 1 - shown : 0;
    int y = top + 1;
    for (size_t k = first; k <= b && y <= bottom; k++, y++) {
        const ms_tui_line *ln = &t->lines[k];
        const ms_ring_line *l = ln->l;
        bool err = l->stream == MS_STDERR;
        char pre[96];
        time_t secs = (time_t)(l->time_ms / 1000);
        struct tm tm;
        char hms[16] = "--:--:--";
        if (localtime_r(&secs, &tm))
            strftime(hms, sizeof hms, "%H:%M:%S", &tm);
        int x = x0;
        snprintf(pre, sizeof pre, "%s %c ", hms, err ? '!' : ' ');
        x += puts_at(y, x, COLS - x, pre, err ? colour(t, C_RED) | A_BOLD : 0);
        if (t->merged) {
            snprintf(pre, sizeof pre, "%-12.12s| ", f->procs[ln->proc]->ship->name);
            x += puts_at(y, x, COLS - x, pre, colour(t, C_CYAN));
        }
        put(y, x, COLS - x, l->text, l->len, err ? colour(t, C_RED) : 0);
    }
}

/* ---------------------------------------------------------------- modules */
static void draw_modules(ms_tui *t)
{
    const ms_manifest *m = t->f->m;
    static const col mc[] = { { "NAME", 16 }, { "PHASE", 9 }, { "ON ERROR", 9 }, { "CALLS", 7 },
                              { "BLOCKS", 7 }, { "ERRORS", 7 }, { "ROUTES", 0 } };
    int x = 2;
    for (size_t k = 0; k < sizeof mc / sizeof mc[0]; k++) {
        puts_at(2, x, mc[k].w ? mc[k].w : COLS - x, mc[k].title, A_BOLD);
        x += mc[k].w + 1;
    }
    int y = 3;
    if (m->nmodules == 0)
        puts_at(y++, 2, COLS - 2, "no [[module]] in the manifest", 0);
    for (size_t i = 0; i < m->nmodules && y < LINES - 3; i++, y++) {
        const ms_module *mod = &m->modules[i];
        char routes[512];
        size_t used = 0;
        routes[0] = '\0';
        for (size_t r = 0; r < mod->routes.len && used + 1 < sizeof routes; r++) {
            int n = snprintf(routes + used, sizeof routes - used, "%s%s", r ? " " : "", mod->routes.items[r]);
            if (n < 0)
                break;
            used += (size_t)n < sizeof routes - used ? (size_t)n : sizeof routes - used - 1;
        }
        if (mod->routes.len == 0)
            snprintf(routes, sizeof routes, "every path");
        char calls[24] = "-", blocks[24] = "-", errors[24] = "-";
        uint64_t nc, nb, ne;
        if (t->cfg.module_stats && t->cfg.module_stats(t->cfg.requests_arg, i, &nc, &nb, &ne)) {
            snprintf(calls, sizeof calls, "%llu", (unsigned long long)nc);
            snprintf(blocks, sizeof blocks, "%llu", (unsigned long long)nb);
            snprintf(errors, sizeof errors, "%llu", (unsigned long long)ne);
        }
        const char *cells[] = { mod->name, mod->phase == MS_PHASE_RESPONSE ? "response" : "request",
                                mod->fail_open ? "open" : "closed", calls, blocks, errors, routes };
        x = 2;
        for (size_t k = 0; k < sizeof mc / sizeof mc[0]; k++) {
            puts_at(y, x, mc[k].w ? mc[k].w : COLS - x, cells[k], k == 0 ? A_BOLD : 0);
            x += mc[k].w + 1;
        }
    }
    if (m->nmodules > 0 && !t->cfg.module_stats)
        puts_at(y + 1, 2, COLS - 2, "payloads run in the data plane, which has no binds here: no calls", 0);
}

/* ---------------------------------------------------------------- help */
static void draw_help(ms_tui *t)
{
    static const char *const text[] = {
        "Keys",
        "",
        "Tab / Shift-Tab   next / previous tab",
        "Up / Down         select a process (Logs: \"all\" is the merged view)",
        "PgUp / PgDn       scroll the logs; Home oldest, End follow",
        "m                 Logs: merged view of every process on/off",
        "r                 restart the selected process",
        "s                 stop the selected process / start it again",
        "q                 quit: stop the fleet in order (as SIGTERM does)",
        "Ctrl-L            repaint",
        "?                 this help",
        "",
        "Lines marked ! came from stderr.   Any key closes this help.",
    };
    int n = (int)(sizeof text / sizeof text[0]);
    int w = 74, h = n + 2;
    if (w > COLS)
        w = COLS;
    if (h > LINES)
        h = LINES;
    int y0 = (LINES - h) / 2, x0 = (COLS - w) / 2;
    for (int y = 0; y < h; y++) {
        move(y0 + y, x0);
        for (int x = 0; x < w; x++)
            addch(' ');
    }
    if (w >= 2 && h >= 2) {
        mvaddch(y0, x0, ACS_ULCORNER);
        mvhline(y0, x0 + 1, ACS_HLINE, w - 2);
        mvaddch(y0, x0 + w - 1, ACS_URCORNER);
        mvvline(y0 + 1, x0, ACS_VLINE, h - 2);
        mvvline(y0 + 1, x0 + w - 1, ACS_VLINE, h - 2);
        mvaddch(y0 + h - 1, x0, ACS_LLCORNER);
        mvhline(y0 + h - 1, x0 + 1, ACS_HLINE, w - 2);
        mvaddch(y0 + h - 1, x0 + w - 1, ACS_LRCORNER);
    }
    for (int i = 0; i < n && i + 1 < h - 1; i++)
        puts_at(y0 + 1 + i, x0 + 2, w - 4, text[i], i == 0 ? A_BOLD : 0);
}

void ms_tui_draw(ms_tui *t)
{
    erase();
    if (LINES < 5 || COLS < 20) {
        puts_at(0, 0, COLS, "terminal too small", A_BOLD);
        refresh();
        return;
    }
    draw_header(t);
    switch (t->tab) {
    case MS_TAB_OVERVIEW: draw_overview(t); break;
    case MS_TAB_LOGS: draw_logs(t); break;
    default: draw_modules(t); break;
    }
    draw_footer(t);
    if (t->help)
        draw_help(t);
    refresh();
}
