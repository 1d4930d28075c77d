/* shim.c: the launch shim (see shim.h). */
#include "fleet/shim.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t parent_died;

static void on_parent_death(int sig)
{
    (void)sig;
    parent_died = 1;
}

static void on_forward(int sig)
{
    (void)sig; /* the command is in our group and got the signal too */
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

int ms_shim_main(int argc, char **argv)
{
    if (argc < 6 || strcmp(argv[4], "--") != 0) {
        fprintf(stderr, "mothership: internal: bad shim arguments\n");
        return 127;
    }
    pid_t parent = (pid_t)atol(argv[2]);
    int report_fd = strcmp(argv[3], "-") == 0 ? -1 : atoi(argv[3]);
    char **cmd = argv + 5;
    /* the report pipe is Mothership's and ours: never the command's */
    if (report_fd >= 0 && fcntl(report_fd, F_SETFD, FD_CLOEXEC) != 0)
        report_fd = -1;

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

    /* Stop signals reach the whole group; the shim waits for the command. */
    static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
    sa.sa_handler = on_forward;
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaction(forwarded[i], &sa, NULL);

    /* A stop signal sent to the group before the command exists would be
     * lost (pending signals are not inherited by fork): hold them across the
     * fork; one that came before means the command is not started at all,
     * and one that came during the fork is passed on to it. */
    sigset_t stops, saved;
    sigemptyset(&stops);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        if (forwarded[i] != SIGWINCH)
            sigaddset(&stops, forwarded[i]);
    sigprocmask(SIG_BLOCK, &stops, &saved);
    sigset_t early;
    if (sigpending(&early) == 0) {
        for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) {
            int sig = forwarded[i];
            if (sig != SIGWINCH && sigismember(&early, sig)) {
                signal(sig, SIG_DFL);
                sigset_t one;
                sigemptyset(&one);
                sigaddset(&one, sig);
                sigprocmask(SIG_UNBLOCK, &one, NULL); /* dies of it, as the command would have */
                _exit(128 + sig);
            }
        }
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
    sigset_t during;
    if (sigpending(&during) == 0)
        for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
            if (forwarded[i] != SIGWINCH && sigismember(&during, forwarded[i]))
                kill(child, forwarded[i]);
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
        if (parent_died) {
            kill_descendants();
            kill(0, SIGKILL); /* the whole group, us included */
            _exit(137);
        }
        int st;
        pid_t p = waitpid(-1, &st, 0);
        if (p < 0) {
            if (errno == EINTR)
                continue;
            break; /* no children left */
        }
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
