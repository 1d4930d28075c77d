/* fleet.h: the supervisor. Owns every ship and bay of a manifest on the
 * control loop: starts them in dependency order once their dependencies are
 * ready, decides readiness (oneshot exit 0, health check, bind accepting,
 * bay socket accepting, worker grace), keeps them alive (critical ships stop
 * the fleet; others restart with backoff under a crash-loop breaker), runs
 * health checks with circuit breakers, and stops everything dependents-first.
 *
 * State a data-plane thread may read lives in atomics (ready, healthy,
 * breaker); everything else belongs to the control loop. */
#ifndef MS_FLEET_H
#define MS_FLEET_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "fleet/cgroup.h"
#include "fleet/logs.h"
#include "fleet/probe.h"
#include "manifest/manifest.h"

typedef enum ms_pstate {
    MS_P_WAITING,    /* waiting for its dependencies */
    MS_P_STARTING,   /* running, not ready yet */
    MS_P_READY,      /* running and ready */
    MS_P_BACKOFF,    /* exited; a restart is scheduled */
    MS_P_DONE,       /* oneshot that exited 0 */
    MS_P_FAILED,     /* gave up on it */
    MS_P_SKIPPED,    /* a dependency failed: never started */
    MS_P_STOPPING,   /* asked to stop (SIGTERM sent) */
    MS_P_STOPPED,    /* stopped by Mothership */
    MS_P_SCHEDULED,  /* a scheduled job between runs: waits for its next time */
} ms_pstate;

typedef enum ms_breaker { MS_BREAKER_CLOSED, MS_BREAKER_OPEN, MS_BREAKER_HALF_OPEN } ms_breaker;

const char *ms_pstate_name(ms_pstate s);
const char *ms_breaker_name(ms_breaker b);

/* Entries a fleet can have at once, reloads included: live ones and retired
 * ones not freed yet (each takes a slot; a freed one's slot is reused). */
#define MS_FLEET_MAX_SLOTS 1024

typedef struct ms_fleet ms_fleet;
typedef struct ms_outpipe ms_outpipe;
typedef struct ms_report ms_report;

typedef struct ms_proc {
    ms_fleet *fleet;
    const ms_ship *ship;
    size_t index;                /* in the current manifest (changes with a reload) */
    size_t slot;                 /* fixed for the process's life, < MS_FLEET_MAX_SLOTS: a bay's index in the
                                    hub; taken again by a new entry once the process is freed */
    uint64_t id;                 /* unique over the fleet's life (what holds per-slot state tells owners apart) */
    unsigned colour;
    bool selected;               /* after --only/--except */
    ms_pstate state;
    int pid;                     /* the launch shim: leads the process group; 0 when not running */
    int ship_pid;                /* the ship's own process, as the shim reported it (what users
                                    see; 0 until known): read it with ms_process_ship_pid */
    bool started_logged;         /* "started (pid N)" said for this run */
    bool ready_deferred;         /* ready before the pid report came: ready_how waits for it */
    char ready_how[160];

    /* read by other threads */
    int ready_flag;              /* atomic: 1 when it may take traffic */
    int healthy;                 /* atomic: 1 healthy, 0 unhealthy, -1 unknown/unchecked */
    int breaker;                 /* atomic ms_breaker */

    uint64_t started_at;         /* uv_now of the last spawn */
    uint64_t ready_at;
    int last_exit_status;        /* -1: none yet */
    int last_term_signal;
    unsigned restarts;
    unsigned crashes_in_row;     /* drives the backoff */
    uint64_t crash_times[32];    /* ring, for the crash-loop breaker */
    size_t crash_head, crash_count;
    uint64_t backoff_until;      /* uv_now when the restart is due */
    bool loop_paused;
    bool settled;                /* has been ready or done, or has failed once: no longer holds the launch */

    /* health */
    unsigned health_fail_run, health_ok_run;
    uint64_t breaker_opened_at;
    uint64_t health_checks, health_failures;
    char last_health_error[320];
    bool stranger_logged;        /* this run: a stranger's listener answered its probe (logged once) */
    uint64_t port_wait_since;    /* restarting: uv_now since its port has been busy (0: not waiting) */

    /* CPU time of its processes as scrapes saw it (clock ticks): a counter
     * that never goes back across exits and restarts (fleet_metrics.c) */
    int cpu_pid;                 /* the run cpu_seen belongs to */
    uint64_t cpu_seen, cpu_carried;
    uint64_t rss_seen;           /* resident pages at the last scrape */

    /* libuv */
    uv_process_t process;
    bool process_open;
    struct ms_outpipe *pipes[2]; /* stdout, stderr of the current run */
    struct ms_report *report;    /* the shim's pid report of the current run, until read */
    int open_pipes;              /* including pipes of earlier runs still draining */
    uv_timer_t timer;            /* probe retry, worker grace, backoff */
    uv_timer_t deadline;         /* ready timeout, stop grace */
    uv_timer_t health_timer;
    bool timers_open;
    ms_probe *probe;             /* readiness probe in flight */
    ms_probe *health_probe;      /* health check in flight */
    ms_target target;            /* where it listens (ships with bind, bays) */
    bool has_target;
    char *socket_path;           /* bays: MS_SOCKET_PATH */
    uint64_t stop_sent_at;
    uint64_t stop_grace_ms;      /* from the stop signal to SIGKILL, this stop */
    bool kill_sent;
    bool stop_requested;         /* stopped by the user (dashboard): no restart */
    bool restart_requested;      /* stopping in order to start again */

    bool retired;                /* its entry left the manifest in a reload: stopped, freed once nothing uses it */
    int closing;                 /* freed: its timers still closing */
    bool reload_restart;         /* restarting with a new definition: not counted as a restart */
    bool stop_deferred;          /* that restart waits for retired dependents to stop first */
    const ms_ship *stop_as;      /* its old definition, to stop with (stop signal, timeout); else NULL */

    /* Replicas and rolls. The data plane reads the atomics; the fleet's
     * roll (replacing instances one at a time) writes them. */
    unsigned parity;             /* 0: listens at ship->bind; 1: at ship->bind_alt (a surge replacement) */
    struct ms_proc *twin;        /* atomic pointer: the entry's other process for surges (parity 1 when
                                    this is 0 and back), or NULL; set once, freed with this one */
    int draining;                /* atomic: 1 = the data plane sends it no new request */
    int holding;                 /* atomic: 1 = restarting in place: requests wait for it to be ready
                                    (bounded, up to ready_timeout) instead of a 503 */
    int inflight;                /* atomic: requests the data plane has on it, not finished */
    uint64_t eject_until;        /* atomic: uv_hrtime() in ms before which the balancer skips it */
    uint64_t ejections;          /* atomic: times passive health ejected it */
    unsigned spawns;             /* runs started (a roll tells its new run from the old one) */
    struct ms_roll *roll;        /* the roll replacing this entry's process, or NULL (control loop) */

    /* Scheduled jobs (ship->schedule): health_timer (a job has no health
     * check) fires at each match; a match while a run is still going is
     * skipped. */
    int64_t next_run;            /* wall-clock seconds (time_t) of the next match; 0: none */
    unsigned runs_skipped;       /* matches skipped: the last run was still going */

    char *cgroup;                /* its cgroup's directory (fleet/cgroup.h) since its last spawn, or NULL */

    size_t *deps;                /* indexes of what it depends on */
    size_t ndeps;
    ms_ring ring;                /* recent output */
} ms_proc;

typedef enum ms_fleet_phase { MS_FLEET_LAUNCHING, MS_FLEET_RUNNING, MS_FLEET_STOPPING, MS_FLEET_DONE } ms_fleet_phase;

struct ms_fleet {
    uv_loop_t *loop;
    const ms_manifest *m;
    ms_log *log;
    ms_proc **procs;             /* in manifest order; each allocated on its own (its handles do not move) */
    size_t n;                    /* the manifest's entries: procs[0..n) */
    size_t nall;                 /* with the retired ones after them: procs[n..nall) */
    uint64_t next_id;            /* ms_proc.id of the next process */
    bool preparing;              /* a reload is prepared, not yet committed or abandoned */
    ms_manifest **held;          /* manifests the fleet's processes point into (one reference each) */
    size_t nheld;
    bool started;                /* ms_fleet_start was called */
    ms_fleet_phase phase;
    int exit_code;
    char *self_exe;
    char *shim_path;             /* the embedded shim in a memfd ("/proc/self/fd/N"), else self_exe */
    int shim_fd;
    char *socket_dir;
    uint64_t started_at;
    uint64_t launched_at;        /* when the launch was over */
    bool launched;               /* the launch is over (every entry settled) */
    unsigned signals_seen;
    uint64_t log_seq;
    uv_signal_t sigint, sigterm, sigquit, sigchld;
    uv_timer_t hold_timer;       /* "still waiting for ..." during shutdown */
    uv_timer_t reap_timer;       /* orphan sweep */
    int *inherited;              /* children it had before starting any (never killed) */
    size_t ninherited;
    int open_handles;            /* fleet-level handles still open */
    void (*on_done)(ms_fleet *f, void *arg);
    void *on_done_arg;
    /* Called once when a shutdown begins, before any process is stopped (the
     * data plane stops accepting and drains); the fleet goes on stopping
     * processes when ms_fleet_drained() is called. */
    void (*drain)(ms_fleet *f, void *arg);
    void *drain_arg;
    /* Called when the launch is over (phase RUNNING) and when a shutdown
     * begins (phase STOPPING), or NULL. */
    void (*phase_changed)(ms_fleet *f, void *arg);
    void *phase_arg;
    bool draining;
    uint64_t shutdown_began_at;  /* loop time the fleet's shutdown began */
    /* The wall clock of schedules: real time, or (tests only, from
     * $MS_TEST_TIME_SCALE) time running clock_scale times faster from
     * clock_base_ms on. */
    unsigned clock_scale;
    int64_t clock_base_ms;
    ms_cgroups cgroups;          /* the entries' cgroups, when Mothership's own is delegated */
    /* Bays: the docking side (src/dock/link.c). Without it a bay is ready
     * once its socket accepts connections. */
    void (*bay_started)(void *arg, ms_proc *p);  /* spawned: dock with it */
    void (*bay_exited)(void *arg, ms_proc *p);   /* its process has ended */
    void *bay_arg;
    /* A line of a process's output was added to its ring (the control
     * socket's log followers), or NULL. */
    void (*line_added)(void *arg, ms_proc *p, const ms_ring_line *l);
    void *line_added_arg;
    /* A retired process is freed once it has stopped (no process, output
     * pipe or probe left) and neither of these says it is still in use:
     * proc_held (the data plane: a generation points at it) and bay_held
     * (the docking side: its link is still closing), both NULL when there
     * is no such side. slot_freed resets what is kept by slot (the hub's
     * bay, the link) before the slot is given to a new entry. */
    bool (*proc_held)(void *arg, const ms_proc *p);
    void *proc_held_arg;
    bool (*bay_held)(void *arg, const ms_proc *p);
    void (*slot_freed)(void *arg, size_t slot);
    struct ms_roll *rolls;       /* rolls under way (fleet/roll.h) */
};

/* From the docking side: the bay of slot i docked (ready), or its link
 * failed while it runs (it is killed and restarted per its policy; why is
 * logged). */
void ms_fleet_bay_docked(ms_fleet *f, size_t i, const char *how);
void ms_fleet_bay_lost(ms_fleet *f, size_t i, const char *why);

void ms_fleet_drained(ms_fleet *f);

/* Select entries for --only / --except (comma-separated lists of tags or
 * groups, either may be NULL; a group is a ship's fleet.<group> or a bay's
 * type). --only keeps entries with any of the words plus everything they
 * depend on; --except removes entries with any of the words. Removing a
 * dependency of a kept entry is an error. selected[i] is set per ship. On
 * error returns false with a message in why. */
bool ms_fleet_select(const ms_manifest *m, const char *only, const char *except, bool *selected, char *why,
                     size_t why_len);

/* Prepare the fleet on loop (nothing is started). NULL + why on failure. */
ms_fleet *ms_fleet_new(uv_loop_t *loop, const ms_manifest *m, const bool *selected, ms_log *log, char *why,
                       size_t why_len);
/* Start launching; on_done is called once every process has stopped, after
 * which ms_fleet_free may be called and the loop will end. */
void ms_fleet_start(ms_fleet *f, void (*on_done)(ms_fleet *f, void *arg), void *arg);
/* Free the retired processes nothing uses any more (done on the fleet's
 * periodic sweep and before a reload is prepared); their slots are free
 * again. */
void ms_fleet_free_retired(ms_fleet *f);
/* Begin an orderly shutdown (as SIGTERM does). exit_code is what run returns. */
void ms_fleet_shutdown(ms_fleet *f, int exit_code, const char *why);
/* Restart entry i now (a health check's restart; the user's go through
 * ms_fleet_control). */
void ms_fleet_restart_proc(ms_fleet *f, size_t i);
void ms_fleet_free(ms_fleet *f);

/* Control actions (the control socket and the dashboard: one code path).
 * Each is logged as a "control" event naming who asked ("uid 1000 pid 4242",
 * "dashboard"). restart: stop, then start again; stop: stop and keep it
 * stopped (no restart by policy); start: start a stopped, failed or done
 * entry at once (a running one is left alone); signal: send signo to its
 * process group. False + why when it cannot be done (the fleet is stopping,
 * the entry is left out, waits for dependencies, is not running for a
 * signal). i < f->n. */
typedef enum ms_fleet_action {
    MS_FLEET_ACT_RESTART,
    MS_FLEET_ACT_STOP,
    MS_FLEET_ACT_START,
    MS_FLEET_ACT_SIGNAL,
} ms_fleet_action;
bool ms_fleet_control(ms_fleet *f, size_t i, ms_fleet_action a, int signo, const char *who, char *why,
                      size_t why_len);
const char *ms_fleet_action_name(ms_fleet_action a);
bool ms_fleet_proc_running(const ms_proc *p);
/* Where ships' and bays' sockets go: socket_dir, else $MS_SOCKET_DIR, else
 * $XDG_RUNTIME_DIR/mothership, else /tmp/mothership (m may be NULL). Freed
 * by the caller; NULL when out of memory. */
char *ms_fleet_socket_dir(const ms_manifest *m);

/* ---- reload: a new manifest for a running fleet ----
 * What becomes of each entry of the new manifest. Running entries that no
 * change names are removed. */
#define MS_FLEET_NEW SIZE_MAX
typedef struct ms_fleet_change {
    size_t old;          /* the running entry of the same name (index in f->procs), or MS_FLEET_NEW */
    bool restart;        /* its definition changed: stopped, then started with the new one */
} ms_fleet_change;

typedef struct ms_fleet_next ms_fleet_next;

/* Prepare the fleet for manifest m: changes[i] and selected[i] (after
 * --only/--except) for m->ships[i]. Nothing is visible or started yet. NULL
 * + why on failure (nothing changed). */
ms_fleet_next *ms_fleet_prepare(ms_fleet *f, ms_manifest *m, const bool *selected, const ms_fleet_change *changes,
                                char *why, size_t why_len);
/* The processes of m's entries in m's order, for the data plane's next
 * configuration: the array is valid from prepare until the next commit (the
 * data plane copies it); a removed entry's process is kept, stopped, until
 * no generation of the data plane points at it (proc_held). */
ms_proc *const *ms_fleet_next_procs(const ms_fleet_next *nx);
/* Drop a prepared reload: nothing changes. */
void ms_fleet_abandon(ms_fleet_next *nx);
/* Apply it (cannot fail): removed entries stop (dependents first), changed
 * ones restart with their new definition once stopped, new ones start in
 * dependency order, the rest are not touched (same pid). f->m becomes m; the
 * fleet holds references (ms_manifest_ref) on the manifests its processes
 * still use. Frees nx. */
void ms_fleet_commit(ms_fleet_next *nx);

/* Up: ready and not failing its health check, or a job that exited 0. */
bool ms_fleet_entry_up(const ms_proc *p);
/* While launching: true when p still holds the launch, i.e. it is starting
 * for the first time, or waiting for dependencies that may still come up.
 * An entry that has been ready, has finished, has failed or crashed once,
 * or waits behind one that did, does not. */
bool ms_fleet_holds_launch(const ms_fleet *f, const ms_proc *p);
/* Liveness (/health): the launch is over, every critical entry is up, and
 * the fleet is running or draining requests (not yet stopping processes). */
bool ms_fleet_live(const ms_fleet *f);
/* Readiness (/ready): running (launched, no shutdown begun) with every
 * critical entry up. */
bool ms_fleet_ready(const ms_fleet *f);

/* The wall clock schedules follow, in milliseconds since the epoch. */
int64_t ms_fleet_wall_ms(const ms_fleet *f);

#endif
