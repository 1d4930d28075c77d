/* test_ports.c: who listens on a TCP port (src/fleet/ports.c): lines of
 * /proc/net/tcp{,6}; a port this process listens on is not free and is
 * held by it; and a listener's holder is in the root's tree, an older
 * stranger outside it, or a process started after the root (a proxy). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "fleet/ports.h"

static void test_parse_proc_lines(void **state)
{
    (void)state;
    int family;
    unsigned char addr[16];
    unsigned port;
    unsigned long inode;
    /* 127.0.0.1:3000, LISTEN */
    assert_true(ms_port_parse_proc_line("   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 "
                                        "00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0",
                                        &family, addr, &port, &inode));
    assert_int_equal(family, AF_INET);
    assert_int_equal(port, 3000);
    assert_int_equal(inode, 123456);
    struct in_addr lo;
    inet_pton(AF_INET, "127.0.0.1", &lo);
    assert_memory_equal(addr, &lo, 4);
    /* ESTABLISHED: not a listener */
    assert_false(ms_port_parse_proc_line("   1: 0100007F:0BB8 0100007F:D2F0 01 00000000:00000000 00:00000000 "
                                         "00000000  1000        0 654321 1 0000000000000000 20 4 30 10 -1",
                                         &family, addr, &port, &inode));
    /* [::1]:8080, LISTEN */
    assert_true(ms_port_parse_proc_line("   0: 00000000000000000000000001000000:1F90 "
                                        "00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 "
                                        "00000000  1000        0 777 1 0000000000000000 100 0 0 10 0",
                                        &family, addr, &port, &inode));
    assert_int_equal(family, AF_INET6);
    assert_int_equal(port, 8080);
    assert_int_equal(inode, 777);
    struct in6_addr lo6;
    inet_pton(AF_INET6, "::1", &lo6);
    assert_memory_equal(addr, &lo6, 16);
    /* the header line, garbage, an odd address length */
    assert_false(ms_port_parse_proc_line("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
                                         "retrnsmt   uid  timeout inode", &family, addr, &port, &inode));
    assert_false(ms_port_parse_proc_line("", &family, addr, &port, &inode));
    assert_false(ms_port_parse_proc_line("   0: 0100007:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 "
                                         "00000000  1000        0 1 1", &family, addr, &port, &inode));
}

/* A listener on 127.0.0.1, any port; its address in *sa. */
static int listen_any(struct sockaddr_storage *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    memset(sa, 0, sizeof *sa);
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)s4, sizeof *s4), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof *s4;
    assert_int_equal(getsockname(fd, (struct sockaddr *)s4, &len), 0);
    return fd;
}

static void test_a_port_we_listen_on(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    int fd = listen_any(&sa);
    unsigned port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    char host[] = "127.0.0.1", wild[] = "0.0.0.0", other[] = "127.0.0.2";
    ms_addr a = { .kind = MS_ADDR_TCP, .host = host, .port = (uint16_t)port };
    ms_port_holder h;
    assert_false(ms_port_free(&a, NULL, &h));
    assert_int_equal(h.pid, getpid());
    assert_true(strstr(h.command, "test_ports") != NULL);
    assert_false(ms_port_free(&a, NULL, NULL));
    a.host = wild; /* a wildcard collides with every address */
    assert_false(ms_port_free(&a, NULL, &h));
    assert_int_equal(h.pid, getpid());
    a.host = other; /* another address of the same port is free */
    assert_true(ms_port_free(&a, NULL, &h));
    assert_int_equal(h.pid, 0);

    /* our own tree */
    assert_int_equal(ms_port_owner_of(&sa, getpid(), &h), MS_PORT_OWNER_TREE);
    assert_int_equal(ms_port_owner_of(&sa, getppid(), &h), MS_PORT_OWNER_TREE);
    /* a process started after us: we are an older stranger to its tree.
     * Start times count in clock ticks: be a few ticks old first. */
    usleep(50000);
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* not left behind by a failed assert */
        close(fd); /* the listener is ours alone once the child says so */
        ssize_t w = write(gate[1], "x", 1);
        (void)w;
        pause();
        _exit(0);
    }
    char x;
    assert_int_equal(read(gate[0], &x, 1), 1);
    close(gate[0]);
    close(gate[1]);
    assert_int_equal(ms_port_owner_of(&sa, child, &h), MS_PORT_OWNER_STRANGER);
    assert_int_equal(h.pid, getpid());
    close(fd);

    /* a listener of a process started after the root, outside its tree (a
     * proxy the ship asked for): newer */
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    usleep(50000); /* start times count in clock ticks: a few ticks after the child */
    pid_t proxy = fork();
    assert_true(proxy >= 0);
    if (proxy == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct sockaddr_storage psa;
        listen_any(&psa);
        ssize_t w = write(ready[1], &psa, sizeof psa);
        (void)w;
        pause();
        _exit(0);
    }
    struct sockaddr_storage psa;
    assert_int_equal(read(ready[0], &psa, sizeof psa), (ssize_t)sizeof psa);
    assert_int_equal(ms_port_owner_of(&psa, child, &h), MS_PORT_OWNER_NEWER);
    assert_int_equal(h.pid, proxy);
    assert_int_equal(ms_port_owner_of(&psa, getpid(), &h), MS_PORT_OWNER_TREE);
    kill(proxy, SIGKILL);
    waitpid(proxy, NULL, 0);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(ready[0]);
    close(ready[1]);

    /* nobody listens there any more */
    assert_int_equal(ms_port_owner_of(&sa, getpid(), &h), MS_PORT_OWNER_UNKNOWN);
    a.host = host;
    assert_true(ms_port_free(&a, NULL, &h));
}

/* A wildcard listener is reached at every local address, but not at one
 * that is not this host's (a container's address): that is not told. */
static void test_a_wildcard_listener_and_a_remote_address(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in any = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
    assert_int_equal(bind(fd, (struct sockaddr *)&any, sizeof any), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof any;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&any, &len), 0);
    char lo[] = "127.0.0.1", remote[] = "192.0.2.1";
    ms_addr a = { .kind = MS_ADDR_TCP, .host = lo, .port = ntohs(any.sin_port) };
    ms_port_holder h;
    assert_false(ms_port_free(&a, NULL, &h));
    assert_int_equal(h.pid, getpid());
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
    s4->sin_family = AF_INET;
    s4->sin_port = any.sin_port;
    inet_pton(AF_INET, lo, &s4->sin_addr);
    assert_int_equal(ms_port_owner_of(&sa, getpid(), &h), MS_PORT_OWNER_TREE);
    a.host = remote;
    assert_true(ms_port_free(&a, NULL, &h));
    inet_pton(AF_INET, remote, &s4->sin_addr);
    assert_int_equal(ms_port_owner_of(&sa, getpid(), &h), MS_PORT_OWNER_UNKNOWN);
    close(fd);
}

/* A ship declared at an IPv4-mapped IPv6 address ([::ffff:127.0.0.1]) is
 * reached at the IPv4 listener of /proc/net/tcp: that listener is found,
 * and so is its holder. */
static void test_an_ipv4_mapped_address(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    int fd = listen_any(&sa);
    uint16_t port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    char mapped[] = "::ffff:127.0.0.1";
    ms_addr a = { .kind = MS_ADDR_TCP, .host = mapped, .port = port };
    ms_port_holder h;
    assert_false(ms_port_free(&a, NULL, &h));
    assert_int_equal(h.pid, getpid());
    struct sockaddr_storage msa;
    memset(&msa, 0, sizeof msa);
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&msa;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, mapped, &s6->sin6_addr), 1);
    assert_int_equal(ms_port_owner_of(&msa, getpid(), &h), MS_PORT_OWNER_TREE);
    close(fd);
}

/* An IPv4 wildcard listener does not take connections to an IPv6 address:
 * an older one on 0.0.0.0 is not the holder of a port at [::1] that a
 * process started after the root listens on. */
static void test_an_ipv4_wildcard_is_not_an_ipv6_listener(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int one = 1;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    struct sockaddr_in any = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
    assert_int_equal(bind(fd, (struct sockaddr *)&any, sizeof any), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof any;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&any, &len), 0);

    pid_t root = fork();
    assert_true(root >= 0);
    if (root == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(fd);
        pause();
        _exit(0);
    }
    usleep(50000); /* start times count in clock ticks */
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t proxy = fork();
    assert_true(proxy >= 0);
    if (proxy == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(fd);
        int s6 = socket(AF_INET6, SOCK_STREAM, 0);
        struct sockaddr_in6 lo = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT,
                                   .sin6_port = any.sin_port };
        char ok = s6 >= 0 && bind(s6, (struct sockaddr *)&lo, sizeof lo) == 0 && listen(s6, 4) == 0 ? 'y' : 'n';
        ssize_t w = write(ready[1], &ok, 1);
        (void)w;
        pause();
        _exit(0);
    }
    char ok = 'n';
    assert_int_equal(read(ready[0], &ok, 1), 1);
    if (ok == 'y') { /* else no IPv6 loopback here */
        struct sockaddr_storage sa;
        memset(&sa, 0, sizeof sa);
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = any.sin_port;
        ms_port_holder h;
        assert_int_equal(ms_port_owner_of(&sa, root, &h), MS_PORT_OWNER_NEWER);
        assert_int_equal(h.pid, proxy);
    }
    kill(proxy, SIGKILL);
    waitpid(proxy, NULL, 0);
    kill(root, SIGKILL);
    waitpid(root, NULL, 0);
    close(ready[0]);
    close(ready[1]);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_proc_lines),
        cmocka_unit_test(test_a_port_we_listen_on),
        cmocka_unit_test(test_a_wildcard_listener_and_a_remote_address),
        cmocka_unit_test(test_an_ipv4_mapped_address),
        cmocka_unit_test(test_an_ipv4_wildcard_is_not_an_ipv6_listener),
    };
    return cmocka_run_group_tests_name("ports", tests, NULL, NULL);
}
