/* shim.c: the launch shim (see shim.h). */
#include "fleet/shim.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The command, once forked; 0 before and once it has exited. */
static volatile sig_atomic_t command_pid;
static pid_t mothership_pid;

/* A signal Mothership sent went to the whole group (the command got it
 * too), and so did one a process of the group sent to the group. Anything
 * else was sent to the shim alone, by a user who took its pid for the
 * server's (`kill -HUP`): pass it on to the command. */
static void on_forward(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    int saved = errno;
    pid_t to = (pid_t)command_pid;
    bool from_user = si->si_code == SI_USER || si->si_code == SI_QUEUE || si->si_code == SI_TKILL;
    if (to > 0 && from_user && si->si_pid != mothership_pid && getpgid(si->si_pid) != getpgrp())
        kill(to, sig);
    errno = saved;
}

/* Signals the shim catches: those Mothership stops a ship with (sent to the
 * group), and those app servers take as commands (reload, more or fewer
 * workers, reopen logs), which must not stop or kill the shim. */
static const int forwarded[] = { SIGTERM, SIGINT,  SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2,
                                 SIGWINCH, SIGTTIN, SIGTTOU, SIGALRM, SIGABRT, SIGPWR };
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])

/* The ones whose default action is not to end a process. */
static bool harmless_by_default(int sig)
{
    return sig == SIGWINCH || sig == SIGTTIN || sig == SIGTTOU;
}

/* The signals libc keeps for itself (32 and 33 in glibc, below SIGRTMIN)
 * refuse sigaction, so one that an ancestor of Mothership left ignored
 * would stay ignored in every ship. The kernel's own call sets them back
 * to their default (the kernel's struct: handler, flags, restorer, mask). */
static void reset_libc_signals(void)
{
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        unsigned long mask;
    } dfl = { SIG_DFL, 0, NULL, 0 };
    for (int sig = SIGRTMIN - 1; sig > SIGSYS; sig--)
        (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
}

static int pdeath_signal(void)
{
    return SIGRTMIN + 4;
}

/* As a subreaper, every orphan of the subtree becomes our child, even one
 * that left the process group with setsid() (a daemon). Kill them all, and
 * their groups, until none is left. Async-signal-safe: raw syscalls only. */
static void kill_descendants(void)
{
    char path[64];
    int n = 0;
    pid_t self = getpid();
    /* "/proc/self/task/<pid>/children" without stdio */
    const char *pre = "/proc/self/task/";
    for (const char *q = pre; *q; q++)
        path[n++] = *q;
    char digits[16];
    int d = 0;
    for (pid_t v = self; v > 0 && d < 15; v /= 10)
        digits[d++] = (char)('0' + v % 10);
    while (d > 0)
        path[n++] = digits[--d];
    const char *post = "/children";
    for (const char *q = post; *q; q++)
        path[n++] = *q;
    path[n] = '\0';
    for (int round = 0; round < 10000; round++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return;
        char buf[4096];
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r <= 0)
            return; /* no children left */
        buf[r] = '\0';
        pid_t pid = 0;
        for (ssize_t i = 0; i <= r; i++) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                pid = pid * 10 + (buf[i] - '0');
            } else if (pid > 0) {
                kill(-pid, SIGKILL); /* its group, if it leads one */
                kill(pid, SIGKILL);
                pid = 0;
            }
        }
        /* every child got SIGKILL: reap one (blocking), then look again, since
         * the dead ones' children are reparented to us */
        while (waitpid(-1, NULL, 0) < 0 && errno == EINTR)
            ;
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
}

/* Mothership is gone: the whole subtree goes, from the handler itself. A
 * flag checked before each waitpid() would be missed if the signal came
 * between the check and the call, leaving the shim waiting for a command
 * that may never end. Never returns; only async-signal-safe calls. */
static void on_parent_death(int sig)
{
    (void)sig;
    kill_descendants();
    kill(0, SIGKILL); /* the whole group, us included */
    _exit(137);
}

int ms_shim_main(int argc, char **argv)
{
    int cgroup_fd = -1;
    char **cmd;
    if (argc >= 7 && strcmp(argv[5], "--") == 0) {
        cmd = argv + 6;
    } else if (argc >= 8 && strcmp(argv[6], "--") == 0) {
        cgroup_fd = atoi(argv[5]);
        cmd = argv + 7;
    } else {
        fprintf(stderr, "mothership: internal: bad shim arguments\n");
        return 127;
    }
    pid_t parent = (pid_t)atol(argv[2]);
    int report_fd = strcmp(argv[3], "-") == 0 ? -1 : atoi(argv[3]);
    int stop_sig = atoi(argv[4]);
    if (cgroup_fd >= 0) {
        /* into the entry's cgroup before anything is started: all the
         * command ever starts is in it */
        char line[24];
        int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
        ssize_t w;
        do
            w = write(cgroup_fd, line, (size_t)n);
        while (w < 0 && errno == EINTR);
        if (w != n)
            fprintf(stderr, "mothership: cannot join the cgroup of \"%s\": %s (its limits do not apply)\n",
                    argv[0], strerror(errno));
        close(cgroup_fd);
    }
    /* the report pipe is Mothership's and ours: never the command's */
    if (report_fd >= 0 && fcntl(report_fd, F_SETFD, FD_CLOEXEC) != 0)
        report_fd = -1;
    /* `ps` and `top` show "ms-shim <ship>", not the memfd's bare number */
    (void)prctl(PR_SET_NAME, argv[0]);

    /* We are the group leader (Mothership spawned us detached: setsid). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_parent_death;
    sigemptyset(&sa.sa_mask);
    if (sigaction(pdeath_signal(), &sa, NULL) != 0 || prctl(PR_SET_PDEATHSIG, pdeath_signal()) != 0) {
        fprintf(stderr, "mothership: cannot arm the parent-death signal: %s\n", strerror(errno));
        return 127;
    }
    if (getppid() != parent) /* Mothership died before prctl */
        return 127;
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);

    /* Caught: the stop signal reaches the whole group, the shim waits for
     * the command; a signal for the server sent to the shim is passed on. */
    mothership_pid = parent;
    sigset_t caught, saved;
    sigemptyset(&caught);
    for (size_t i = 0; i < N_FORWARDED; i++)
        sigaddset(&caught, forwarded[i]);
    if (stop_sig > 0 && stop_sig < NSIG && stop_sig != SIGKILL && stop_sig != SIGSTOP)
        sigaddset(&caught, stop_sig);
    /* A signal sent to the group before the command exists would be lost
     * (pending signals are not inherited by fork): hold them across the
     * fork. A stop that came before means the command is not started at
     * all; the others, and any that came during the fork, are passed on. */
    sigprocmask(SIG_BLOCK, &caught, &saved);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_forward;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask); /* one at a time */
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&caught, sig) == 1)
            sigaction(sig, &sa, NULL);
    struct timespec now = { 0, 0 };
    int held[N_FORWARDED + 1];
    size_t nheld = 0;
    siginfo_t si;
    int got;
    while ((got = sigtimedwait(&caught, &si, &now)) > 0) {
        if (got == stop_sig || !harmless_by_default(got)) {
            signal(got, SIG_DFL);
            sigset_t one;
            sigemptyset(&one);
            sigaddset(&one, got);
            sigprocmask(SIG_UNBLOCK, &one, NULL);
            raise(got); /* dies of it, as the command would have */
            _exit(128 + got);
        }
        if (nheld < sizeof held / sizeof held[0])
            held[nheld++] = got;
    }
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "mothership: pipe: %s\n", strerror(errno));
        return 127;
    }
    pid_t self = getpid();
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "mothership: fork: %s\n", strerror(errno));
        return 127;
    }
    if (child == 0) {
        /* The command dies with the shim, even of a SIGKILL the shim cannot
         * act on. If the shim died before prctl, we are an orphan already. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != self)
            _exit(127);
        close(errpipe[0]);
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        /* Every signal at its default, real-time ones included (libuv
         * resets only 1..31 in the shim, and Mothership ignores some). */
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                sigaction(sig, &dfl, NULL); /* EINVAL for libc's own: harmless */
        reset_libc_signals();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(cmd[0], cmd);
        int e = errno;
        ssize_t w = write(errpipe[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(errpipe[1]);
    if (report_fd >= 0) {
        /* Tell Mothership the command's pid (the one users see), then let go
         * of the pipe: its end of file says the report is complete. */
        char line[24];
        int n = snprintf(line, sizeof line, "%ld\n", (long)child);
        signal(SIGPIPE, SIG_IGN); /* Mothership gone: the parent-death signal handles it */
        ssize_t w;
        do
            w = write(report_fd, line, (size_t)n);
        while (w < 0 && errno == EINTR);
        close(report_fd);
    }
    for (size_t i = 0; i < nheld; i++)
        kill(child, held[i]);
    while ((got = sigtimedwait(&caught, &si, &now)) > 0)
        kill(child, got);
    command_pid = child;
    sigprocmask(SIG_SETMASK, &saved, NULL);
    int exec_errno = 0;
    ssize_t r;
    do
        r = read(errpipe[0], &exec_errno, sizeof exec_errno);
    while (r < 0 && errno == EINTR);
    close(errpipe[0]);
    if (r == (ssize_t)sizeof exec_errno)
        fprintf(stderr, "mothership: cannot run \"%s\": %s\n", cmd[0], strerror(exec_errno));

    int status = 0;
    for (;;) {
        /* look before reaping: the command's pid stops being a target
         * for forwarded signals before it can be reused */
        siginfo_t gone;
        memset(&gone, 0, sizeof gone);
        if (waitid(P_ALL, 0, &gone, WEXITED | WNOWAIT) != 0) {
            if (errno == EINTR)
                continue;
            break; /* no children left */
        }
        if (gone.si_pid == child)
            command_pid = 0;
        int st;
        pid_t p;
        do
            p = waitpid(gone.si_pid, &st, 0);
        while (p < 0 && errno == EINTR);
        if (p == child) {
            status = st;
            break;
        }
        /* an orphan of the subtree: reaped */
    }
    /* The command is gone: nothing it started may outlive it, neither what
     * is left in its process group nor daemons that left the group. */
    signal(SIGTERM, SIG_IGN);
    kill(0, SIGTERM);
    kill_descendants();
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
        _exit(128 + sig);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 127;
}
