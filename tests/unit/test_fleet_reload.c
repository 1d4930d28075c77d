/* test_fleet_reload.c: a fleet taking new manifests (ms_fleet_prepare and
 * ms_fleet_commit) keeps what it holds bounded: a thousand reloads of an
 * unchanged entry, or of an entry renamed each time (the old one retired),
 * leave the heap where a hundred left it; a retired process's slot is taken
 * again once it is freed, never while something still holds it. The
 * entries are not selected, so no process is started. */
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "fleet/fleet.h"
#include "fleet/logs.h"

static ms_manifest *load_named(const char *dir, const char *name)
{
    char text[512];
    snprintf(text, sizeof text, "[mothership]\nsocket_dir = \"%s\"\n[[fleet.web]]\nname = \"%s\"\ncommand = \"sleep\"\n"
             "args = [\"100\"]\n", dir, name);
    ms_diags d;
    ms_diags_init(&d, "test.toml");
    ms_manifest *m = ms_manifest_load_buffer(text, strlen(text), "test.toml", dir, &d);
    if (!m)
        ms_diags_print(&d, stderr);
    ms_diags_free(&d);
    assert_non_null(m);
    return m;
}

static ms_manifest *load(const char *dir)
{
    return load_named(dir, "a");
}

static void reload(ms_fleet *f, const char *dir)
{
    ms_manifest *m = load(dir);
    bool selected[1] = { false };
    ms_fleet_change changes[1] = { { .old = 0, .restart = false } };
    char why[256] = "";
    ms_fleet_next *nx = ms_fleet_prepare(f, m, selected, changes, why, sizeof why);
    if (!nx)
        fail_msg("prepare: %s", why);
    ms_fleet_commit(nx);
    ms_manifest_free(m); /* the fleet holds its own reference */
}

static void test_reloads_keep_the_heap_bounded(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ms-test-fr-XXXXXX");
    assert_non_null(mkdtemp(dir));
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(null >= 0);
    ms_log *log = ms_log_open(null, true, false);
    assert_non_null(log);
    ms_manifest *m = load(dir);
    bool selected[1] = { false };
    char why[256] = "";
    ms_fleet *f = ms_fleet_new(&loop, m, selected, log, why, sizeof why);
    if (!f)
        fail_msg("fleet: %s", why);
    ms_fleet_start(f, NULL, NULL);
    reload(f, dir);
    ms_manifest_free(m); /* as `run` does: the first commit took a reference on it */
    for (int i = 0; i < 100; i++)
        reload(f, dir);
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 1000; i++)
        reload(f, dir);
    size_t after = mallinfo2().uordblks;
    /* a leak of even 16 bytes a reload would show as 16000 */
    assert_true(after < before + 8192);
    ms_fleet_shutdown(f, 0, "test");
    uv_run(&loop, UV_RUN_DEFAULT); /* the fleet closes its handles once it is done */
    assert_int_equal(uv_loop_close(&loop), 0);
    ms_fleet_free(f);
    ms_log_close(log);
    rmdir(dir);
}

/* One entry, renamed: the old one is retired, the new one takes a slot.
 * False (and why) when the fleet refuses it. */
static bool rename_entry(ms_fleet *f, const char *dir, int k, char *why, size_t why_len)
{
    char name[32];
    snprintf(name, sizeof name, "e%d", k);
    ms_manifest *m = load_named(dir, name);
    bool selected[1] = { false };
    ms_fleet_change changes[1] = { { .old = MS_FLEET_NEW, .restart = false } };
    ms_fleet_next *nx = ms_fleet_prepare(f, m, selected, changes, why, why_len);
    if (nx)
        ms_fleet_commit(nx);
    ms_manifest_free(m);
    return nx != NULL;
}

typedef struct holder {
    bool hold;                /* every process is held */
    size_t freed[4096];       /* slots given back, in order */
    size_t nfreed;
} holder;

static bool held(void *arg, const ms_proc *p)
{
    (void)p;
    return ((holder *)arg)->hold;
}

static void slot_freed(void *arg, size_t slot)
{
    holder *h = arg;
    if (h->nfreed < sizeof h->freed / sizeof h->freed[0])
        h->freed[h->nfreed++] = slot;
}

typedef struct rig {
    char dir[64];
    uv_loop_t loop;
    ms_log *log;
    ms_fleet *f;
} rig;

static void rig_up(rig *r)
{
    snprintf(r->dir, sizeof r->dir, "/tmp/ms-test-fr-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    assert_int_equal(uv_loop_init(&r->loop), 0);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(null >= 0);
    r->log = ms_log_open(null, true, false);
    assert_non_null(r->log);
    ms_manifest *m = load_named(r->dir, "e0");
    bool selected[1] = { false };
    char why[256] = "";
    r->f = ms_fleet_new(&r->loop, m, selected, r->log, why, sizeof why);
    if (!r->f)
        fail_msg("fleet: %s", why);
    ms_fleet_start(r->f, NULL, NULL);
    assert_true(rename_entry(r->f, r->dir, 1, why, sizeof why));
    ms_manifest_free(m); /* the first commit took a reference on it */
}

static void rig_down(rig *r)
{
    ms_fleet_shutdown(r->f, 0, "test");
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&r->loop), 0);
    ms_fleet_free(r->f);
    ms_log_close(r->log);
    rmdir(r->dir);
}

static void test_renamed_entries_past_the_slot_count_keep_the_heap_bounded(void **state)
{
    (void)state;
    rig r;
    rig_up(&r);
    char why[256] = "";
    int k = 2;
    for (; k < 100; k++) {
        if (!rename_entry(r.f, r.dir, k, why, sizeof why))
            fail_msg("reload %d: %s", k, why);
        uv_run(&r.loop, UV_RUN_NOWAIT); /* the freed processes' timers close */
    }
    size_t before = mallinfo2().uordblks;
    for (; k < 100 + 2 * MS_FLEET_MAX_SLOTS; k++) {
        if (!rename_entry(r.f, r.dir, k, why, sizeof why))
            fail_msg("reload %d: %s", k, why);
        uv_run(&r.loop, UV_RUN_NOWAIT);
    }
    size_t after = mallinfo2().uordblks;
    assert_true(after < before + 8192);
    assert_true(r.f->nall <= 3); /* the entry, and at most the last two retired */
    assert_true(r.f->nheld <= 3);
    rig_down(&r);
}

static void test_a_held_process_keeps_its_slot_until_let_go(void **state)
{
    (void)state;
    rig r;
    rig_up(&r);
    holder *h = calloc(1, sizeof *h);
    assert_non_null(h);
    r.f->proc_held = held;
    r.f->proc_held_arg = h;
    r.f->slot_freed = slot_freed;
    r.f->bay_arg = h;
    h->hold = true;
    char why[256] = "";
    int k = 2;
    while (rename_entry(r.f, r.dir, k, why, sizeof why))
        k++;
    /* every slot is taken by the entry and the retired ones nothing freed */
    assert_int_equal(r.f->nall, MS_FLEET_MAX_SLOTS);
    assert_non_null(strstr(why, "no slot is free"));
    assert_int_equal(h->nfreed, 0);
    h->hold = false;
    assert_true(rename_entry(r.f, r.dir, k, why, sizeof why));
    assert_int_equal(h->nfreed, MS_FLEET_MAX_SLOTS - 1);
    /* the new entry took the lowest free slot */
    assert_int_equal(r.f->n, 1);
    assert_int_equal(r.f->procs[0]->slot, 0);
    rig_down(&r);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reloads_keep_the_heap_bounded),
        cmocka_unit_test(test_renamed_entries_past_the_slot_count_keep_the_heap_bounded),
        cmocka_unit_test(test_a_held_process_keeps_its_slot_until_let_go),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
