/* run_signals.c: the signals `mothership run` ignores, and SIGHUP's reload
 * (see run_signals.h). */
#include "cli/run_signals.h"

#include <assert.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct caught {
    uv_signal_t h;
    int signum;
    bool logged;              /* the first one was logged */
    struct ms_run_signals *owner;
} caught;

struct ms_run_signals {
    ms_log *log;
    caught *sigs;
    size_t n;
    size_t open;              /* handles not closed yet */
    void (*on_hup)(void *arg);
    void *on_hup_arg;
    void (*on_usr1)(void *arg);
    void *on_usr1_arg;
};

/* Ignored and logged once each; SIGRTMIN..SIGRTMAX are added at run time. */
static const struct {
    int sig;
    const char *name;
} ignored[] = {
    { SIGUSR2, "SIGUSR2" }, { SIGALRM, "SIGALRM" }, { SIGPWR, "SIGPWR" },   { SIGVTALRM, "SIGVTALRM" },
    { SIGPROF, "SIGPROF" }, { SIGIO, "SIGIO" },     { SIGXCPU, "SIGXCPU" }, { SIGXFSZ, "SIGXFSZ" },
#ifdef SIGSTKFLT
    { SIGSTKFLT, "SIGSTKFLT" },
#endif
};

/* "SIGUSR2", "SIGRTMIN", "SIGRTMIN+3" */
static void signal_name(int sig, char *out, size_t cap)
{
    if (sig == SIGHUP || sig == SIGUSR1) {
        snprintf(out, cap, "%s", sig == SIGHUP ? "SIGHUP" : "SIGUSR1");
        return;
    }
    if (sig > SIGRTMIN && sig <= SIGRTMAX) {
        snprintf(out, cap, "SIGRTMIN+%d", sig - SIGRTMIN);
        return;
    }
    if (sig == SIGRTMIN) {
        snprintf(out, cap, "SIGRTMIN");
        return;
    }
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
        if (ignored[i].sig == sig) {
            snprintf(out, cap, "%s", ignored[i].name);
            return;
        }
    }
    snprintf(out, cap, "signal %d", sig);
}

static void on_signal(uv_signal_t *h, int signum)
{
    caught *c = h->data;
    char name[32];
    signal_name(signum, name, sizeof name);
    ms_log_field sf = ms_log_str("signal", name);
    if (signum == SIGHUP && c->owner->on_hup) {
        ms_log_event_fields(c->owner->log, MS_INFO, NULL, "signal", &sf, 1, "received %s: reloading the manifest",
                            name);
        c->owner->on_hup(c->owner->on_hup_arg);
    } else if (signum == SIGHUP) {
        ms_log_event_fields(c->owner->log, MS_INFO, NULL, "signal", &sf, 1,
                            "received %s: reload is not supported yet: ignored", name);
    } else if (signum == SIGUSR1 && c->owner->on_usr1) {
        ms_log_event_fields(c->owner->log, MS_INFO, NULL, "signal", &sf, 1,
                            "received %s: phased restart of the ships with a bind", name);
        c->owner->on_usr1(c->owner->on_usr1_arg);
    } else if (signum == SIGUSR1) {
        ms_log_event_fields(c->owner->log, MS_INFO, NULL, "signal", &sf, 1,
                            "received %s: phased restart is not supported yet: ignored", name);
    } else if (!c->logged) {
        ms_log_event_fields(c->owner->log, MS_WARN, NULL, "signal", &sf, 1,
                            "received %s: ignored (further ones are not logged)", name);
    }
    c->logged = true;
}

static void on_closed(uv_handle_t *h)
{
    caught *c = h->data;
    ms_run_signals *s = c->owner;
    assert(s->open > 0);
    if (--s->open == 0) {
        free(s->sigs);
        free(s);
    }
}

static void close_handles(ms_run_signals *s)
{
    if (s->n == 0) {
        free(s->sigs);
        free(s);
        return;
    }
    for (size_t i = 0; i < s->n; i++)
        uv_close((uv_handle_t *)&s->sigs[i].h, on_closed);
}

ms_run_signals *ms_run_signals_start(uv_loop_t *loop, ms_log *log)
{
    size_t nfixed = sizeof ignored / sizeof ignored[0];
    size_t nrt = SIGRTMAX >= SIGRTMIN ? (size_t)(SIGRTMAX - SIGRTMIN + 1) : 0;
    size_t total = 2 + nfixed + nrt;
    ms_run_signals *s = calloc(1, sizeof *s);
    caught *sigs = calloc(total, sizeof *sigs);
    if (!s || !sigs) {
        free(s);
        free(sigs);
        return NULL;
    }
    s->log = log;
    s->sigs = sigs;
    int fixed[2 + sizeof ignored / sizeof ignored[0]] = { SIGHUP, SIGUSR1 };
    for (size_t i = 0; i < nfixed; i++)
        fixed[2 + i] = ignored[i].sig;
    bool ok = true;
    for (size_t i = 0; i < total && ok; i++) {
        caught *c = &sigs[i];
        c->signum = i < 2 + nfixed ? fixed[i] : SIGRTMIN + (int)(i - 2 - nfixed);
        c->owner = s;
        if (uv_signal_init(loop, &c->h) != 0) {
            ok = false;
            break;
        }
        c->h.data = c;
        s->n++;
        s->open++;
        ok = uv_signal_start(&c->h, on_signal, c->signum) == 0;
        uv_unref((uv_handle_t *)&c->h);
    }
    if (!ok) {
        close_handles(s); /* back to the defaults: nothing ignored is inherited */
        return NULL;
    }
    return s;
}

void ms_run_signals_on_hup(ms_run_signals *s, void (*fn)(void *arg), void *arg)
{
    if (!s)
        return;
    s->on_hup = fn;
    s->on_hup_arg = arg;
}

void ms_run_signals_close(ms_run_signals *s)
{
    if (!s)
        return;
    int signums[sizeof ignored / sizeof ignored[0] + 2 + 64];
    size_t n = 0;
    for (size_t i = 0; i < s->n && n < sizeof signums / sizeof signums[0]; i++)
        signums[n++] = s->sigs[i].signum;
    close_handles(s);
    /* Closing restored the defaults; nothing is spawned from here on. */
    for (size_t i = 0; i < n; i++)
        signal(signums[i], SIG_IGN);
}

void ms_run_signals_on_usr1(ms_run_signals *s, void (*fn)(void *arg), void *arg)
{
    if (!s)
        return;
    s->on_usr1 = fn;
    s->on_usr1_arg = arg;
}
