/* test_manifest_docs.c: docs/manifest.md documents every key the loader
 * accepts. For each table ms_manifest_keys() knows, the doc's section about
 * that table must have a key-table row ("| `key` | ...") for every key in
 * the loader's list, so the page cannot fall behind the loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "manifest/manifest.h"

/* The loader's table names and the heading of the doc section about each. */
static const struct { const char *table, *heading; } SECTIONS[] = {
    { "mothership", "## `[mothership]`" },
    { "http", "### `[mothership.http]`" },
    { "bind", "### `[mothership.bind]`" },
    { "tls", "### `[mothership.tls]`" },
    { "tls.certs", "### `[[mothership.tls.certs]]`" },
    { "bind.tls", "### `[mothership.bind]`" },
    { "acme", "### `[mothership.acme]`" },
    { "static_dirs", "### `[[mothership.static_dirs]]`" },
    { "ship", "## `[[fleet.<group>]]`: ships" },
    { "restart", "### `restart`" },
    { "healthcheck", "### `healthcheck`" },
    { "route", "### `routes`" },
    { "bay", "## `[[bays.websocket]]`: bays" },
    { "http_bay", "## `[[bays.http]]`: HTTP bays" },
    { "upstream", "### `[[mothership.upstreams]]`" },
    { "module", "## `[[modules]]`: WASM payloads" },
    { "uplink", "## `[[uplinks]]`" },
};
#define NSECTIONS (sizeof SECTIONS / sizeof SECTIONS[0])

static char *read_doc(void)
{
    FILE *f = fopen(MS_MANIFEST_MD, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0 && n < (8L << 20));
    rewind(f);
    char *text = malloc((size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    text[n] = '\0';
    fclose(f);
    return text;
}

static int heading_level(const char *line)
{
    int n = 0;
    while (line[n] == '#')
        n++;
    return n > 0 && line[n] == ' ' ? n : 0;
}

static bool is_section_heading(const char *line, size_t len)
{
    for (size_t i = 0; i < NSECTIONS; i++)
        if (strlen(SECTIONS[i].heading) == len && strncmp(SECTIONS[i].heading, line, len) == 0)
            return true;
    return false;
}

/* The text of the section under heading: up to the next heading of the same
 * or a higher level, or the next heading of another table. Fenced code is
 * skipped (a TOML comment is not a heading). NULL when there is no such
 * heading. */
static char *section(const char *doc, const char *heading)
{
    size_t hlen = strlen(heading);
    const char *start = NULL, *end = NULL;
    int level = 0;
    bool fenced = false;
    for (const char *line = doc; *line; ) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (strncmp(line, "```", 3) == 0) {
            fenced = !fenced;
        } else if (!fenced && heading_level(line) > 0) {
            if (!start && len == hlen && strncmp(line, heading, hlen) == 0) {
                start = line;
                level = heading_level(line);
            } else if (start && (heading_level(line) <= level || is_section_heading(line, len))) {
                end = line;
                break;
            }
        }
        line = nl ? nl + 1 : line + len;
    }
    if (!start)
        return NULL;
    if (!end)
        end = start + strlen(start);
    char *s = malloc((size_t)(end - start) + 1);
    assert_non_null(s);
    memcpy(s, start, (size_t)(end - start));
    s[end - start] = '\0';
    return s;
}

/* Has the section a table row whose first cell names the key? */
static bool documents(const char *sec, const char *key)
{
    char want[128];
    snprintf(want, sizeof want, "`%s`", key);
    for (const char *line = sec; line && *line; ) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (line[0] == '|') {
            const char *cell_end = memchr(line + 1, '|', len - 1);
            size_t cell = cell_end ? (size_t)(cell_end - line) : len;
            for (const char *p = line; p + strlen(want) <= line + cell; p++)
                if (strncmp(p, want, strlen(want)) == 0)
                    return true;
        }
        line = nl ? nl + 1 : NULL;
    }
    return false;
}

static void every_key_is_documented(void **state)
{
    (void)state;
    char *doc = read_doc();
    size_t missing = 0, checked = 0;
    for (size_t i = 0; i < NSECTIONS; i++) {
        const char *const *keys = ms_manifest_keys(SECTIONS[i].table);
        assert_non_null(keys);
        char *sec = section(doc, SECTIONS[i].heading);
        if (!sec) {
            fprintf(stderr, "docs/manifest.md: no section \"%s\" for the loader's table \"%s\"\n",
                    SECTIONS[i].heading, SECTIONS[i].table);
            missing++;
            continue;
        }
        for (size_t k = 0; keys[k]; k++, checked++)
            if (!documents(sec, keys[k])) {
                fprintf(stderr, "docs/manifest.md: %s: no row for the key `%s` that the loader accepts\n",
                        SECTIONS[i].heading, keys[k]);
                missing++;
            }
        free(sec);
    }
    free(doc);
    assert_true(checked > 100);
    assert_int_equal(missing, 0);
}

/* "What a reload changes" says what a change of each key of an entry and of
 * [mothership] does (a [mothership] table by its own name, e.g.
 * `[mothership.env]`). */
static size_t undocumented_in(const char *doc, const char *heading, const char *table)
{
    char *sec = section(doc, heading);
    if (!sec) {
        fprintf(stderr, "docs/manifest.md: no section \"%s\"\n", heading);
        return 1;
    }
    const char *const *keys = ms_manifest_keys(table);
    assert_non_null(keys);
    size_t missing = 0;
    for (size_t k = 0; keys[k]; k++) {
        char as_table[96], as_array[96];
        snprintf(as_table, sizeof as_table, "[mothership.%s]", keys[k]);
        snprintf(as_array, sizeof as_array, "[[mothership.%s]]", keys[k]);
        if (documents(sec, keys[k]) || documents(sec, as_table) || documents(sec, as_array))
            continue;
        fprintf(stderr, "docs/manifest.md: %s: no row says what a change of `%s` (%s) does\n", heading, keys[k],
                table);
        missing++;
    }
    free(sec);
    return missing;
}

static void every_key_says_what_a_reload_does(void **state)
{
    (void)state;
    char *doc = read_doc();
    size_t missing = undocumented_in(doc, "### Ships and bays", "ship") +
                     undocumented_in(doc, "### Ships and bays", "bay") +
                     undocumented_in(doc, "### Global settings", "mothership");
    free(doc);
    assert_int_equal(missing, 0);
}

/* The check itself: a section without a row for a key fails. */
static void a_missing_row_is_found(void **state)
{
    (void)state;
    const char *doc = "## `[[uplinks]]`\n\n| key | meaning |\n|---|---|\n| `url` | where |\n"
                      "\n```toml\n# a comment\n```\n\n| `name`, `wait` | ... |\nsee `timeout`\n## next\n| `timeout` |\n";
    char *sec = section(doc, "## `[[uplinks]]`");
    assert_non_null(sec);
    assert_true(documents(sec, "url"));
    assert_true(documents(sec, "name"));
    assert_true(documents(sec, "wait"));
    assert_false(documents(sec, "timeout")); /* only in prose here, and in the next section's row */
    free(sec);
    assert_null(section(doc, "## `[[modules]]`: WASM payloads"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_key_is_documented),
        cmocka_unit_test(every_key_says_what_a_reload_does),
        cmocka_unit_test(a_missing_row_is_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
