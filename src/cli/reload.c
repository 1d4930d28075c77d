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
    json_array_foreach(problems, i, p)
        fprintf(out, "%s\n", json_string_value(json_object_get(p, "text")));
}
