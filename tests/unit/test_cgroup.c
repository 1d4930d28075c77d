/* test_cgroup.c: the entries' cgroups (fleet/cgroup.c) against a plain
 * directory tree standing for a delegated cgroup: the controllers offered
 * are enabled for the children, Mothership's pid goes to supervisor/, each
 * limit is written in the kernel's format ("max" when unset), paths per
 * kind and parity, what a limit needs, and the reasons given when the
 * tree cannot be used. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fleet/cgroup.h"

static char root[256];

static void put(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_file(const char *name, const char *want)
{
    char p[512], got[256] = "";
    snprintf(p, sizeof p, "%s/%s", root, name);
    FILE *f = fopen(p, "r");
    if (!f)
        fail_msg("%s: missing", name);
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    fclose(f);
    if (strcmp(got, want) != 0)
        fail_msg("%s: \"%s\", want \"%s\"", name, got, want);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/ms-test-cgroup-XXXXXX");
    assert_non_null(mkdtemp(root));
    put("cgroup.subtree_control", "");
    put("cgroup.procs", "");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void test_tree(void **state)
{
    (void)state;
    put("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma\n");
    ms_cgroups cg;
    ms_cgroups_init(&cg, root);
    assert_true(cg.usable);
    assert_false(cg.real);
    assert_int_equal(cg.controllers, MS_CG_MEMORY | MS_CG_CPU | MS_CG_PIDS);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    expect_file("supervisor/cgroup.procs", pid);
    expect_file("cgroup.subtree_control", "+memory +cpu +pids");

    ms_ship s = { .kind = MS_SHIP, .name = "web#1", .memory_max = 3ull << 30, .cpu_max_milli = 1500,
                  .pids_max = 64 };
    assert_int_equal(ms_cgroup_needs(&s), MS_CG_MEMORY | MS_CG_CPU | MS_CG_PIDS);
    char *path = ms_cgroup_path(&cg, &s, 0), *alt = ms_cgroup_path(&cg, &s, 1);
    char want[300];
    snprintf(want, sizeof want, "%s/ship.web#1", root);
    assert_string_equal(path, want);
    snprintf(want, sizeof want, "%s/ship.web#1.1", root);
    assert_string_equal(alt, want);
    char why[300];
    int fd = ms_cgroup_prepare(&cg, path, &s, why, sizeof why);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "42\n", 3), 3);
    close(fd);
    expect_file("ship.web#1/memory.max", "3221225472\n");
    expect_file("ship.web#1/cpu.max", "150000 100000\n");
    expect_file("ship.web#1/pids.max", "64\n");
    expect_file("ship.web#1/cgroup.procs", "42\n");

    /* a reload: new values; unset ones back to "max" */
    s.memory_max = 0;
    s.cpu_max_milli = 10;
    s.pids_max = 0;
    assert_int_equal(ms_cgroup_needs(&s), MS_CG_CPU);
    assert_true(ms_cgroup_apply(&cg, path, &s, why, sizeof why));
    expect_file("ship.web#1/memory.max", "max\n");
    expect_file("ship.web#1/cpu.max", "1000 100000\n");
    expect_file("ship.web#1/pids.max", "max\n");
    assert_false(ms_cgroup_release(&cg, path)); /* a plain tree's files stay */

    ms_ship bay = { .kind = MS_BAY, .name = "chat" };
    char *bp = ms_cgroup_path(&cg, &bay, 0);
    snprintf(want, sizeof want, "%s/bay.chat", root);
    assert_string_equal(bp, want);
    assert_int_equal(ms_cgroup_needs(&bay), 0);
    free(bp);
    free(path);
    free(alt);
    ms_cgroups_free(&cg);
    assert_null(ms_cgroup_path(&cg, &s, 0));
}

static void test_some_controllers(void **state)
{
    (void)state;
    put("cgroup.controllers", "cpu io\n");
    ms_cgroups cg;
    ms_cgroups_init(&cg, root);
    assert_true(cg.usable);
    assert_int_equal(cg.controllers, MS_CG_CPU);
    expect_file("cgroup.subtree_control", "+cpu");
    ms_ship s = { .kind = MS_SHIP, .name = "w", .memory_max = 1 << 20, .cpu_max_milli = 250 };
    char *path = ms_cgroup_path(&cg, &s, 0), why[300];
    int fd = ms_cgroup_prepare(&cg, path, &s, why, sizeof why);
    assert_true(fd >= 0);
    close(fd);
    char p[512];
    snprintf(p, sizeof p, "%s/ship.w/memory.max", root);
    assert_int_equal(access(p, F_OK), -1); /* no memory controller: not written */
    expect_file("ship.w/cpu.max", "25000 100000\n");
    free(path);
    ms_cgroups_free(&cg);
}

static void test_unusable(void **state)
{
    (void)state;
    ms_cgroups cg;
    char gone[300];
    snprintf(gone, sizeof gone, "%s/nowhere", root);
    ms_cgroups_init(&cg, gone);
    assert_false(cg.usable);
    assert_non_null(strstr(cg.why, "nowhere"));
    ms_cgroups_free(&cg);

    /* no cgroup.controllers: not a cgroup */
    ms_cgroups_init(&cg, root);
    assert_false(cg.usable);
    assert_non_null(strstr(cg.why, "cgroup.controllers"));
    ms_cgroups_free(&cg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_some_controllers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unusable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
