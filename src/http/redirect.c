/* redirect.c: the Location of a plain bind's redirect to https (see
 * redirect.h). */
#include "http/redirect.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

uint16_t ms_redirect_https_port(const ms_global *g)
{
    for (size_t i = 0; i < g->nbinds; i++)
        if (g->binds[i].tls && g->binds[i].addr.kind == MS_ADDR_TCP)
            return g->binds[i].addr.port;
    return 0;
}

static bool name_byte(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '.' || ch == '_';
}

static bool digits(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* The host part of a Host value without its port: its length, or 0 when
 * the value is not "name", "name:port", "[v6]" or "[v6]:port". */
static size_t host_part(const char *h, size_t n)
{
    if (n == 0)
        return 0;
    size_t end;
    if (h[0] == '[') {
        const char *close = memchr(h, ']', n);
        if (!close)
            return 0;
        end = (size_t)(close - h) + 1;
        if (end < 4)
            return 0;
        for (size_t i = 1; i + 1 < end; i++) {
            char ch = h[i];
            bool hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
            if (!hex && ch != ':' && ch != '.')
                return 0;
        }
    } else {
        end = 0;
        while (end < n && h[end] != ':') {
            if (!name_byte(h[end]))
                return 0;
            end++;
        }
        if (end == 0)
            return 0;
    }
    if (end == n)
        return end;
    if (h[end] != ':' || !digits(h + end + 1, n - end - 1))
        return 0;
    return end;
}

size_t ms_redirect_location(const char *host, size_t host_len, uint16_t port, const char *target,
                            size_t target_len, char *out, size_t cap)
{
    size_t hl = host ? host_part(host, host_len) : 0;
    if (hl == 0 || target_len == 0 || target[0] != '/')
        return 0;
    char portbuf[8] = "";
    if (port != 0 && port != 443)
        snprintf(portbuf, sizeof portbuf, ":%u", (unsigned)port);
    size_t pl = strlen(portbuf);
    size_t need = 8 + hl + pl + target_len;
    if (need > cap)
        return 0;
    memcpy(out, "https://", 8);
    memcpy(out + 8, host, hl);
    memcpy(out + 8 + hl, portbuf, pl);
    memcpy(out + 8 + hl + pl, target, target_len);
    return need;
}
