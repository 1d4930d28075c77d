/* reload.c: a new manifest applied to a running fleet (see reload.h). */
#include "cli/reload.h"

#include "cli/run.h"

bool ms_run_reload(ms_run *r, bool check_only, const char *who, json_t **result)
{
    (void)r;
    (void)check_only;
    (void)who;
    if (result)
        *result = json_pack("{s:s, s:[{s:s}]}", "result", "refused", "problems", "text",
                            "reloading is not available yet");
    return false;
}

void ms_reload_print(const json_t *result, FILE *out)
{
    const json_t *problems = json_object_get(result, "problems");
    size_t i;
    const json_t *p;
    if (json_array_size(problems) > 0) {
        json_array_foreach(problems, i, p) {
            const char *text = json_string_value(json_object_get(p, "text"));
            fprintf(out, "%s\n", text ? text : "?");
        }
        return;
    }
    const json_t *plan = json_object_get(result, "plan");
    if (!json_is_object(plan)) {
        const char *r = json_string_value(json_object_get(result, "result"));
        fprintf(out, "reload %s\n", r ? r : "failed");
        return;
    }
    /* one line per kind of change, in the order a reload applies them;
     * unchanged entries are only counted */
    static const struct { const char *key, *label; bool count, why; } lines[] = {
        { "restart", "restart", false, true }, { "start", "start", false, false }, { "stop", "stop", false, false },
        { "unchanged", "unchanged", true, false }, { "swap", "swap", false, false },
        { "needs_restart", "needs a restart of Mothership", false, false },
    };
    const json_t *why = json_object_get(plan, "why");
    bool changes = false;
    for (size_t l = 0; l < sizeof lines / sizeof lines[0]; l++) {
        const json_t *list = json_object_get(plan, lines[l].key);
        size_t n = json_array_size(list);
        if (n == 0)
            continue;
        if (lines[l].count) {
            fprintf(out, "%s: %zu entr%s\n", lines[l].label, n, n == 1 ? "y" : "ies");
            continue;
        }
        changes = true;
        fprintf(out, "%s: ", lines[l].label);
        json_array_foreach(list, i, p) {
            const char *name = json_string_value(p);
            const char *what = name && lines[l].why ? json_string_value(json_object_get(why, name)) : NULL;
            fprintf(out, "%s%s", i ? ", " : "", name ? name : "?");
            if (what)
                fprintf(out, " (%s)", what);
        }
        fputc('\n', out);
    }
    if (!changes)
        fprintf(out, "nothing to change\n");
}
