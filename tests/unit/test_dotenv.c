/* test_dotenv.c: unit tests of the env_file parser (util/dotenv.h): each
 * form of a line, and each malformed one with its line number. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "util/dotenv.h"

typedef struct got {
    char text[1024]; /* "K=V;" for each pair */
    int calls, stop_at;
} got;

static bool collect(void *ud, const char *key, const char *value)
{
    got *g = ud;
    if (++g->calls == g->stop_at)
        return false;
    size_t n = strlen(g->text);
    snprintf(g->text + n, sizeof g->text - n, "%s=%s;", key, value);
    return true;
}

static void parses(const char *in, const char *want)
{
    got g = { .stop_at = -1 };
    char why[128] = "";
    int line = -1;
    bool ok = ms_dotenv_parse(in, strlen(in), collect, &g, &line, why, sizeof why);
    if (!ok)
        fail_msg("\"%s\": line %d: %s", in, line, why);
    assert_string_equal(g.text, want);
}

static void fails(const char *in, size_t len, int want_line, const char *want_why)
{
    got g = { .stop_at = -1 };
    char why[128] = "";
    int line = -1;
    assert_false(ms_dotenv_parse(in, len, collect, &g, &line, why, sizeof why));
    assert_int_equal(line, want_line);
    if (!strstr(why, want_why))
        fail_msg("\"%s\": \"%s\" does not say \"%s\"", in, why, want_why);
}

static void test_forms(void **state)
{
    (void)state;
    parses("", "");
    parses("\n\n  \n# only a comment\n", "");
    parses("A=1", "A=1;");
    parses("A=1\nB=2\n", "A=1;B=2;");
    parses("A=1\r\nB=2\r\n", "A=1;B=2;");
    parses("export A=1\nexport\tB = 2\n", "A=1;B=2;");
    parses("export=1\nexports=2\n", "export=1;exports=2;");
    parses("  A  =   spaced out   \n", "A=spaced out;");
    parses("A=x # comment\nB=x#not\n", "A=x;B=x#not;");
    parses("A= # only a comment\nB=#not a comment\n", "A=;B=#not a comment;");
    parses("A=\nB=  \n", "A=;B=;");
    parses("A='single $HOME \\n'\n", "A=single $HOME \\n;");
    parses("A=\"a\\nb\\tc\\r\\\"\\\\\\$\"\n", "A=a\nb\tc\r\"\\$;");
    parses("A=\"two\nlines\"\nB='x\ny'\n", "A=two\nlines;B=x\ny;");
    parses("A=\"x\" # comment\nB='y'   \n", "A=x;B=y;");
    parses("A=\"cont\\\ninued\"\n", "A=continued;");
    parses("A=$(rm -rf /) `id` ${B}\n", "A=$(rm -rf /) `id` ${B};");
    parses("_a9=1\n", "_a9=1;");
    parses("A=1\nA=2\n", "A=1;A=2;"); /* the caller decides: the last wins */
}

static void test_errors(void **state)
{
    (void)state;
    fails("9A=1\n", 5, 1, "expected KEY=VALUE");
    fails("A=1\n\n=x\n", 8, 3, "expected KEY=VALUE");
    fails("A=1\nB\n", 6, 2, "expected '='");
    fails("A-B=1\n", 6, 1, "expected '='");
    fails("A=1\nB=\"open\nC=3\n", 15, 2, "unterminated double-quoted");
    fails("A='open\n", 8, 1, "unterminated single-quoted");
    fails("A='x' y\n", 8, 1, "unexpected text after the closing quote");
    fails("A=\"\\q\"\n", 7, 1, "unknown escape");
    fails("A=1\nB=\0\n", 7, 2, "NUL byte");
}

static void test_callback_stops(void **state)
{
    (void)state;
    got g = { .stop_at = 2 };
    char why[64];
    int line = -1;
    assert_false(ms_dotenv_parse("A=1\nB=2\nC=3\n", 12, collect, &g, &line, why, sizeof why));
    assert_int_equal(line, 0);
    assert_string_equal(g.text, "A=1;");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
