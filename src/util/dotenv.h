/* dotenv.h: the dotenv format of `env_file` (KEY=VALUE lines, `export `,
 * quotes, `#` comments), parsed from a buffer; nothing is expanded or run. */
#ifndef MS_DOTENV_H
#define MS_DOTENV_H

#include <stdbool.h>
#include <stddef.h>

/* Called for each KEY=VALUE in file order; return false to stop (out of
 * memory). Both strings live until the callback returns. */
typedef bool (*ms_dotenv_cb)(void *ud, const char *key, const char *value);

/* Parse data (len bytes). Returns true when every line was well formed and
 * every callback returned true; else false with the 1-based line of the
 * problem in *err_line (0: a callback stopped it) and a reason in why. */
bool ms_dotenv_parse(const char *data, size_t len, ms_dotenv_cb cb, void *ud, int *err_line, char *why,
                     size_t why_len);

#endif
