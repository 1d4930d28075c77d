/* test_toml.c: cmocka unit tests for the TOML parser (src/manifest/toml.h).
 *
 * Role: pin down the parts of the API the manifest layer relies on that the
 * toml-test conformance suite does not check: line/column of keys, values
 * and tables, document key order, the lookup helpers, type names, strings
 * with U+0000, the exact error messages and positions of typical mistakes,
 * the nesting limit and linear behaviour on a large document. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/toml.h"

static toml_node *parse_ok(const char *doc)
{
    toml_error err;
    toml_node *root = toml_parse(doc, strlen(doc), &err);
    if (!root)
        fail_msg("unexpected parse error %d:%d: %s", err.line, err.col, err.msg);
    return root;
}

static void test_positions(void **state)
{
    (void)state;
    const char *doc = "# comment\n"
                      "name = \"web\"\n"           /* line 2 */
                      "  port =   8080\n"          /* line 3 */
                      "[server]\n"                 /* line 4 */
                      "host.name = 'x'\n"          /* line 5 */
                      "[a.b.c]\n"                  /* line 6 */
                      "[[fleet.web]]\n"            /* line 7 */
                      "cmd = [1,\n  2]\n";         /* lines 8-9 */
    toml_node *root = parse_ok(doc);
    assert_int_equal(root->line, 1);
    assert_int_equal(root->col, 1);

    const toml_kv *kv = toml_get_kv(root, "name");
    assert_non_null(kv);
    assert_int_equal(kv->line, 2);
    assert_int_equal(kv->col, 1);
    assert_int_equal(kv->value->line, 2);
    assert_int_equal(kv->value->col, 8);

    kv = toml_get_kv(root, "port");
    assert_int_equal(kv->line, 3);
    assert_int_equal(kv->col, 3);
    assert_int_equal(kv->value->col, 12);

    /* [server]: table at its '[' header, key at the segment */
    kv = toml_get_kv(root, "server");
    assert_int_equal(kv->line, 4);
    assert_int_equal(kv->col, 2);
    assert_int_equal(kv->value->line, 4);
    assert_int_equal(kv->value->col, 1);
    /* dotted key: table created at its segment, key at the last segment */
    const toml_kv *host = toml_get_kv(kv->value, "host");
    assert_int_equal(host->line, 5);
    assert_int_equal(host->col, 1);
    assert_int_equal(host->value->line, 5);
    assert_int_equal(host->value->col, 1);
    const toml_kv *hn = toml_get_kv(host->value, "name");
    assert_int_equal(hn->line, 5);
    assert_int_equal(hn->col, 6);
    assert_int_equal(hn->value->col, 13);

    /* implicit tables: at the header segment that created them */
    const toml_node *a = toml_get(root, "a");
    assert_int_equal(a->line, 6);
    assert_int_equal(a->col, 2);
    const toml_node *b = toml_get(a, "b");
    assert_int_equal(b->col, 4);
    const toml_node *c = toml_get(b, "c");
    assert_int_equal(c->line, 6);
    assert_int_equal(c->col, 1);

    const toml_node *web = toml_get(toml_get(root, "fleet"), "web");
    assert_int_equal(web->type, TOML_ARRAY);
    assert_int_equal(web->line, 7);
    const toml_node *w0 = toml_at(web, 0);
    assert_int_equal(w0->line, 7);
    assert_int_equal(w0->col, 1);
    const toml_node *cmd = toml_get(w0, "cmd");
    assert_int_equal(cmd->line, 8);
    assert_int_equal(cmd->col, 7);
    assert_int_equal(toml_at(cmd, 1)->line, 9);
    assert_int_equal(toml_at(cmd, 1)->col, 3);
    toml_free(root);
}

static void test_explicit_after_implicit_position(void **state)
{
    (void)state;
    toml_node *root = parse_ok("[a.b]\nx = 1\n\n[a]\ny = 2\n");
    const toml_kv *kv = toml_get_kv(root, "a");
    /* once defined by [a], the table and key point at that header */
    assert_int_equal(kv->line, 4);
    assert_int_equal(kv->col, 2);
    assert_int_equal(kv->value->line, 4);
    assert_int_equal(kv->value->col, 1);
    assert_int_equal(toml_len(kv->value), 2);
    assert_string_equal(toml_kv_at(kv->value, 0)->key, "b");
    assert_string_equal(toml_kv_at(kv->value, 1)->key, "y");
    toml_free(root);
}

static void test_key_order(void **state)
{
    (void)state;
    toml_node *root = parse_ok("zeta = 1\nalpha = 2\n\"m m\" = 3\nb.x = 4\nb.a = 5\n"
                               "[tbl]\nq = 1\n[other]\n[tbl.sub]\n");
    const char *want[] = {"zeta", "alpha", "m m", "b", "tbl", "other"};
    assert_int_equal(toml_len(root), 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(toml_kv_at(root, i)->key, want[i]);
    const toml_node *b = toml_get(root, "b");
    assert_string_equal(toml_kv_at(b, 0)->key, "x");
    assert_string_equal(toml_kv_at(b, 1)->key, "a");
    const toml_node *tbl = toml_get(root, "tbl");
    assert_string_equal(toml_kv_at(tbl, 0)->key, "q");
    assert_string_equal(toml_kv_at(tbl, 1)->key, "sub");
    toml_free(root);
}

static void test_lookups(void **state)
{
    (void)state;
    toml_node *root = parse_ok("a = [1, 'two', {x = 3}]\nt = {}\n");
    const toml_node *a = toml_get(root, "a");
    assert_non_null(a);
    assert_int_equal(toml_len(a), 3);
    assert_int_equal(toml_at(a, 0)->u.integer, 1);
    assert_string_equal(toml_at(a, 1)->u.str.ptr, "two");
    assert_int_equal(toml_get(toml_at(a, 2), "x")->u.integer, 3);
    assert_null(toml_at(a, 3));
    assert_null(toml_get(root, "missing"));
    assert_null(toml_get_kv(root, "missing"));
    assert_null(toml_get(a, "x"));           /* array is not a table */
    assert_null(toml_at(root, 0));           /* table is not an array */
    assert_null(toml_kv_at(a, 0));
    assert_null(toml_kv_at(root, 2));
    assert_null(toml_get(NULL, "a"));
    assert_int_equal(toml_len(NULL), 0);
    assert_int_equal(toml_len(toml_at(a, 0)), 0);
    assert_int_equal(toml_len(toml_get(root, "t")), 0);
    assert_int_equal(toml_get(root, "t")->type, TOML_TABLE);
    toml_free(root);
    toml_free(NULL);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(toml_type_name(TOML_STRING), "string");
    assert_string_equal(toml_type_name(TOML_INTEGER), "integer");
    assert_string_equal(toml_type_name(TOML_FLOAT), "float");
    assert_string_equal(toml_type_name(TOML_BOOL), "boolean");
    assert_string_equal(toml_type_name(TOML_TABLE), "table");
    assert_string_equal(toml_type_name(TOML_ARRAY), "array");
    assert_string_equal(toml_type_name(TOML_DATETIME), "datetime");
    assert_string_equal(toml_type_name(TOML_DATETIME_LOCAL), "datetime");
    assert_string_equal(toml_type_name(TOML_DATE_LOCAL), "date");
    assert_string_equal(toml_type_name(TOML_TIME_LOCAL), "time");
}

static void test_strings(void **state)
{
    (void)state;
    toml_node *root = parse_ok("nul = \"a\\u0000b\"\n"
                               "\"k\\u0000ey\" = 1\n"
                               "esc = \"tab\\there \\U0001F680 \\\"q\\\"\"\n"
                               "lit = 'C:\\path'\n"
                               "ml = \"\"\"\nline1\\\n   line2\r\nend\"\"\"\n"
                               "mll = '''\n'x''''\n"
                               "empty = \"\"\n");
    const toml_node *n = toml_get(root, "nul");
    assert_int_equal(n->type, TOML_STRING);
    assert_int_equal(n->u.str.len, 3);
    assert_memory_equal(n->u.str.ptr, "a\0b", 4);
    const toml_kv *kv = toml_kv_at(root, 1);
    assert_int_equal(kv->key_len, 4);
    assert_memory_equal(kv->key, "k\0ey", 5);
    assert_null(toml_get(root, "k"));   /* NUL-terminated lookup cannot match it */
    assert_string_equal(toml_get(root, "esc")->u.str.ptr, "tab\there \xF0\x9F\x9A\x80 \"q\"");
    assert_string_equal(toml_get(root, "lit")->u.str.ptr, "C:\\path");
    assert_string_equal(toml_get(root, "ml")->u.str.ptr, "line1line2\nend");
    assert_string_equal(toml_get(root, "mll")->u.str.ptr, "'x'");
    assert_int_equal(toml_get(root, "empty")->u.str.len, 0);
    assert_string_equal(toml_get(root, "empty")->u.str.ptr, "");
    toml_free(root);
}

static void test_scalars(void **state)
{
    (void)state;
    toml_node *root = parse_ok("max = 9223372036854775807\nmin = -9223372036854775808\n"
                               "hex = 0xDEAD_beef\noct = 0o755\nbin = 0b1010\nus = 1_000\n"
                               "f = -1.5e3\ninf = -inf\nnan = nan\nt = true\nf2 = false\n"
                               "dt = 1979-05-27T07:32:00.999999-07:30\n"
                               "dtz = 1979-05-27 07:32:00z\n"
                               "ldt = 2024-02-29T23:59:60\n"
                               "ld = 2000-02-29\nlt = 07:32:00.5\n");
    assert_int_equal(toml_get(root, "max")->u.integer, INT64_MAX);
    assert_true(toml_get(root, "min")->u.integer == INT64_MIN);
    assert_int_equal(toml_get(root, "hex")->u.integer, 0xDEADBEEF);
    assert_int_equal(toml_get(root, "oct")->u.integer, 0755);
    assert_int_equal(toml_get(root, "bin")->u.integer, 10);
    assert_int_equal(toml_get(root, "us")->u.integer, 1000);
    assert_true(toml_get(root, "f")->u.flt == -1500.0);
    double inf = toml_get(root, "inf")->u.flt;
    assert_true(inf < -1e308 && inf * 0 != inf * 0);
    double nan = toml_get(root, "nan")->u.flt;
    assert_true(nan != nan);
    assert_true(toml_get(root, "t")->u.boolean);
    assert_false(toml_get(root, "f2")->u.boolean);

    const toml_node *dt = toml_get(root, "dt");
    assert_int_equal(dt->type, TOML_DATETIME);
    assert_int_equal(dt->u.dt.year, 1979);
    assert_int_equal(dt->u.dt.second, 0);
    assert_int_equal(dt->u.dt.nanosecond, 999999000);
    assert_int_equal(dt->u.dt.frac_digits, 6);
    assert_int_equal(dt->u.dt.offset_minutes, -(7 * 60 + 30));
    assert_false(dt->u.dt.offset_z);
    const toml_node *dtz = toml_get(root, "dtz");
    assert_int_equal(dtz->type, TOML_DATETIME);
    assert_true(dtz->u.dt.offset_z);
    assert_int_equal(dtz->u.dt.minute, 32);
    assert_int_equal(toml_get(root, "ldt")->type, TOML_DATETIME_LOCAL);
    assert_int_equal(toml_get(root, "ldt")->u.dt.second, 60);
    const toml_node *ld = toml_get(root, "ld");
    assert_int_equal(ld->type, TOML_DATE_LOCAL);
    assert_int_equal(ld->u.dt.day, 29);
    const toml_node *lt = toml_get(root, "lt");
    assert_int_equal(lt->type, TOML_TIME_LOCAL);
    assert_int_equal(lt->u.dt.nanosecond, 500000000);
    assert_int_equal(lt->u.dt.year, 0);
    toml_free(root);
}

typedef struct bad_case {
    const char *doc;
    int line, col;
    const char *msg;
} bad_case;

static void test_errors(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"name = \"a\"\nname = \"b\"\n", 2, 1, "duplicate key \"name\""},
        {"[a]\nx = 1\n\n  [a]\n", 4, 4, "table \"a\" is already defined"},
        {"name \"x\"\n", 1, 6, "expected '=' after key, found '\"'"},
        {"s = \"bad \\q escape\"\n", 1, 10, "invalid escape \\q in string"},
        {"n = 99999999999999999999\n", 1, 5,
         "integer 99999999999999999999 does not fit in 64 bits"},
        {"n = -9223372036854775809\n", 1, 5,
         "integer -9223372036854775809 does not fit in 64 bits"},
        {"[fruit]\napple.color = 'red'\n[fruit.apple]\n", 3, 8,
         "table \"apple\" is already defined by dotted keys"},
        {"t = {a = 1}\n[t.b]\n", 2, 2, "cannot extend inline table \"t\""},
        {"t = {a = 1}\nt.b = 2\n", 2, 1, "cannot add keys to inline table \"t\""},
        {"a = [1]\n[[a]]\n", 2, 3, "cannot append to static array \"a\" with [[...]]"},
        {"[[a]]\n[a]\n", 2, 2, "key \"a\" is already defined as an array of tables"},
        {"a = 1\na.b = 2\n", 2, 1, "key \"a\" is already defined as an integer"},
        {"d = 2023-02-29\n", 1, 5, "invalid day 29 for 2023-02"},
        {"t = 24:00:00\n", 1, 5, "time 24:00:00 is out of range"},
        {"x = 1 2\n", 1, 7, "expected end of line after value, found '2'"},
        {"s = \"open\nx = 1\n", 1, 10, "unterminated string (newline before closing quote)"},
        {"a = \"\\uD800\"\n", 1, 6, "escape \\uD800 is not a Unicode scalar value"},
        {"k = 1\r\n\rx = 2\n", 2, 1, "carriage return must be followed by a newline"},
        {"ok = 1\n# bad \x01 comment\n", 2, 7, "control character 0x01 is not allowed in a comment"},
        {"s = 'caf\xC3'\n", 1, 9, "invalid UTF-8 byte 0xc3"},
        {"v = bare\n", 1, 5, "invalid value (strings must be quoted)"},
        {"t = {a = 1,\n b = 2}\n", 1, 12, "expected a key, found end of line"},
        {"a = [1 2]\n", 1, 8, "expected ',' or ']' in array, found '2'"},
        {"x = 01\n", 1, 5, "leading zeros are not allowed in 01"},
        {"[a\n", 1, 3, "expected ']' to close the table header, found end of line"},
        {"x =\n", 1, 4, "expected a value, found end of line"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        toml_error err;
        memset(&err, 0x55, sizeof err);
        toml_node *root = toml_parse(cases[i].doc, strlen(cases[i].doc), &err);
        if (root) {
            toml_free(root);
            fail_msg("case %zu accepted: %s", i, cases[i].doc);
        }
        if (strcmp(err.msg, cases[i].msg) != 0 || err.line != cases[i].line ||
            err.col != cases[i].col)
            fail_msg("case %zu: got %d:%d: %s\n  want %d:%d: %s", i, err.line, err.col, err.msg,
                     cases[i].line, cases[i].col, cases[i].msg);
    }
}

static void test_error_without_err(void **state)
{
    (void)state;
    assert_null(toml_parse("= 1", 3, NULL));
    /* NULL data is the empty document */
    toml_node *root = toml_parse(NULL, 0, NULL);
    assert_non_null(root);
    assert_int_equal(toml_len(root), 0);
    toml_free(root);
    /* data need not be NUL-terminated: only len bytes are read */
    root = toml_parse("a = 12345", 6, NULL);
    assert_non_null(root);
    assert_int_equal(toml_get(root, "a")->u.integer, 12);
    toml_free(root);
}

static char *repeat(const char *pre, const char *unit, size_t n, const char *post)
{
    size_t lp = strlen(pre), lu = strlen(unit), lq = strlen(post);
    char *s = malloc(lp + lu * n + lq + 1);
    assert_non_null(s);
    memcpy(s, pre, lp);
    for (size_t i = 0; i < n; i++)
        memcpy(s + lp + i * lu, unit, lu);
    memcpy(s + lp + lu * n, post, lq + 1);
    return s;
}

static void test_depth_limit(void **state)
{
    (void)state;
    toml_error err;
    /* TOML_MAX_DEPTH nested arrays are fine (the root table is depth 0) */
    char *open = repeat("a = ", "[", TOML_MAX_DEPTH, "");
    char *doc = repeat(open, "]", TOML_MAX_DEPTH, "\n");
    toml_node *root = toml_parse(doc, strlen(doc), &err);
    assert_non_null(root);
    toml_free(root);
    free(open);
    free(doc);

    open = repeat("a = ", "[", TOML_MAX_DEPTH + 1, "");
    doc = repeat(open, "]", TOML_MAX_DEPTH + 1, "\n");
    assert_null(toml_parse(doc, strlen(doc), &err));
    assert_string_equal(err.msg, "nesting deeper than 128 levels");
    assert_int_equal(err.line, 1);
    assert_int_equal(err.col, 5 + TOML_MAX_DEPTH);
    free(open);
    free(doc);

    /* a million opening brackets: no stack overflow, just the error */
    doc = repeat("a = ", "[{x=", 1000000, "");
    assert_null(toml_parse(doc, strlen(doc), &err));
    assert_string_equal(err.msg, "nesting deeper than 128 levels");
    free(doc);

    /* dotted keys and headers are bounded too */
    doc = repeat("k", ".k", 5000, " = 1\n");
    assert_null(toml_parse(doc, strlen(doc), &err));
    assert_string_equal(err.msg, "key has more than 128 parts");
    free(doc);
    doc = repeat("[k", ".k", 5000, "]\n");
    assert_null(toml_parse(doc, strlen(doc), &err));
    free(doc);
}

static void test_large_input(void **state)
{
    (void)state;
    enum { N = 100000 };
    size_t cap = (size_t)N * 32, len = 0;
    char *doc = malloc(cap);
    assert_non_null(doc);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(doc + len, cap - len, "key%d = %d\n", i, i);
    len += (size_t)snprintf(doc + len, cap - len, "[[t]]\n[[t]]\n[t.sub]\nx = 1\n");
    toml_error err;
    toml_node *root = toml_parse(doc, len, &err);
    assert_non_null(root);
    assert_int_equal(toml_len(root), N + 1);
    const toml_kv *last = toml_kv_at(root, N - 1);
    assert_string_equal(last->key, "key99999");
    assert_int_equal(last->line, N);
    assert_int_equal(toml_get(root, "key54321")->u.integer, 54321);
    assert_int_equal(toml_len(toml_get(root, "t")), 2);
    toml_free(root);

    /* a duplicate at the very end is still found */
    len += (size_t)snprintf(doc + len, cap - len, "key0 = 1\nkey0 = 2\n");
    assert_null(toml_parse(doc, len, &err));
    assert_string_equal(err.msg, "duplicate key \"key0\"");
    assert_int_equal(err.line, N + 6);
    free(doc);
}

static void test_tables_and_arrays(void **state)
{
    (void)state;
    toml_node *root = parse_ok("[fruit]\napple.color = 'red'\napple.taste.sweet = true\n"
                               "[fruit.apple.texture]\nsmooth = true\n"
                               "[[products]]\nname = 'Hammer'\n[[products]]\n"
                               "[[products]]\nname = 'Nail'\n[products.dims]\nx = 1\n"
                               "inline = {a.b = 1, c = [1, 'x', {d = 2}]}\n");
    const toml_node *apple = toml_get(toml_get(root, "fruit"), "apple");
    assert_int_equal(toml_len(apple), 3);
    assert_true(toml_get(toml_get(apple, "texture"), "smooth")->u.boolean);
    const toml_node *products = toml_get(root, "products");
    assert_int_equal(toml_len(products), 3);
    assert_int_equal(toml_len(toml_at(products, 1)), 0);
    const toml_node *p2 = toml_at(products, 2);
    assert_string_equal(toml_get(p2, "name")->u.str.ptr, "Nail");
    assert_int_equal(toml_get(toml_get(p2, "dims"), "x")->u.integer, 1);
    const toml_node *in = toml_get(toml_get(p2, "dims"), "inline");
    assert_int_equal(toml_get(toml_get(in, "a"), "b")->u.integer, 1);
    assert_int_equal(toml_len(toml_get(in, "c")), 3);
    toml_free(root);
}

static void test_bom_crlf(void **state)
{
    (void)state;
    const char *doc = "\xEF\xBB\xBF" "a = 1\r\nb = \"\"\"x\r\ny\"\"\"\r\n";
    toml_node *root = parse_ok(doc);
    assert_int_equal(toml_get_kv(root, "a")->col, 1);
    assert_int_equal(toml_get_kv(root, "b")->line, 2);
    assert_string_equal(toml_get(root, "b")->u.str.ptr, "x\ny"); /* CRLF -> LF */
    toml_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_explicit_after_implicit_position),
        cmocka_unit_test(test_key_order),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_error_without_err),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_large_input),
        cmocka_unit_test(test_tables_and_arrays),
        cmocka_unit_test(test_bom_crlf),
    };
    return cmocka_run_group_tests_name("toml", tests, NULL, NULL);
}
