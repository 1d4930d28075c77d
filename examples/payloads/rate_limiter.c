/* rate_limiter.c - request phase: a token bucket per client address, kept in
 * the guest's memory between requests.  Each address may make `burst`
 * requests at once and `rate` per second on average; beyond that it gets
 * 429 Too Many Requests with Retry-After (whole seconds until a token is
 * back).
 *
 * Build (meson does it; no libc needed):
 *   clang --target=wasm32 -nostdlib -Wl,--no-entry -Wl,--export-dynamic -O2 \
 *         -o rate_limiter.wasm rate_limiter.c
 *
 *   [[modules]]
 *   name = "ratelimit"
 *   wasm = "examples/payloads/rate_limiter.wasm"
 *   config = { rate = "10", burst = "20" }     # defaults: 10/s, burst 20
 *
 * State lives per worker: with N workers an address gets up to N times the
 * rate (Mothership keeps one instance per module per worker), and a worker's
 * buckets start over if this module ever fails a call.  The table has 4096
 * slots; a new address takes a free slot among 8 probes or the least
 * recently seen one, so memory stays fixed (about 300 KiB). */

typedef unsigned char u8;
typedef unsigned int u32;
typedef long long s64;
typedef unsigned long long u64;

#define IMPORT(n) __attribute__((import_module("mothership"), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))

IMPORT("get") int ms_get(int field, char *buf, int len);
IMPORT("get_config") int ms_get_config(const char *key, int key_len, char *buf, int len);
IMPORT("block") int ms_block(int status, const char *body, int len);
IMPORT("block_header") int ms_block_header(const char *name, int name_len, const char *val,
                                           int val_len);
IMPORT("log") void ms_log(int level, const char *msg, int len);
IMPORT("now_ms") s64 ms_now_ms(void);

enum { FIELD_CLIENT = 3 };

/* The compiler may turn loops into calls to these; there is no libc. */
__attribute__((visibility("hidden"))) void *memset(void *d, int c, unsigned long n)
{
    volatile u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

__attribute__((visibility("hidden"))) void *memcpy(void *d, const void *s, unsigned long n)
{
    volatile u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

#define SLOTS 4096u
#define PROBES 8u
#define KEY_MAX 46 /* the longest IPv6 text */

typedef struct bucket {
    s64 tokens;   /* milli-tokens */
    s64 last_ms;  /* last refill */
    u32 hash;
    u8 used, key_len;
    char key[KEY_MAX];
} bucket;

static bucket table[SLOTS];
static s64 rate = 10;    /* tokens per second (= milli-tokens per ms) */
static s64 burst = 20;

static int slen(const char *s)
{
    int n = 0;
    while (s[n])
        n++;
    return n;
}

/* Config value as a positive integer (1..1000000); dflt when absent, -1 when bad. */
static s64 config_int(const char *key, s64 dflt)
{
    char buf[16];
    int n = ms_get_config(key, slen(key), buf, (int)sizeof buf);
    if (n < 0)
        return dflt;
    if (n == 0 || n > 7)
        return -1;
    s64 v = 0;
    for (int i = 0; i < n; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
        v = v * 10 + (buf[i] - '0');
    }
    return v >= 1 && v <= 1000000 ? v : -1;
}

EXPORT("init") int init(void)
{
    rate = config_int("rate", 10);
    burst = config_int("burst", 20);
    if (rate < 0 || burst < 0) {
        static const char msg[] = "config rate and burst must be integers from 1 to 1000000";
        ms_log(3, msg, (int)sizeof msg - 1);
        return 1;
    }
    return 0;
}

static u32 fnv1a(const char *s, int n)
{
    u32 h = 2166136261u;
    for (int i = 0; i < n; i++)
        h = (h ^ (u8)s[i]) * 16777619u;
    return h;
}

static bucket *find(const char *key, int n, s64 now)
{
    u32 h = fnv1a(key, n);
    bucket *victim = 0;
    for (u32 p = 0; p < PROBES; p++) {
        bucket *b = &table[(h + p) & (SLOTS - 1)];
        if (!b->used) {
            if (!victim || victim->used)
                victim = b;
            continue;
        }
        if (b->hash == h && b->key_len == n) {
            int same = 1;
            for (int i = 0; i < n && same; i++)
                same = b->key[i] == key[i];
            if (same)
                return b;
        }
        if (!victim || (victim->used && b->last_ms < victim->last_ms))
            victim = b;
    }
    victim->used = 1;
    victim->hash = h;
    victim->key_len = (u8)n;
    for (int i = 0; i < n; i++)
        victim->key[i] = key[i];
    victim->tokens = burst * 1000;
    victim->last_ms = now;
    return victim;
}

static int utoa(u64 v, char *out)
{
    char tmp[24];
    int n = 0, k = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        out[k++] = tmp[--n];
    return k;
}

EXPORT("on_request") int on_request(void)
{
    char addr[64];
    int n = ms_get(FIELD_CLIENT, addr, (int)sizeof addr);
    if (n < 0)
        n = 0;
    if (n > KEY_MAX)
        n = KEY_MAX;
    s64 now = ms_now_ms();
    bucket *b = find(addr, n, now);

    s64 cap = burst * 1000;
    if (now > b->last_ms) {
        s64 elapsed = now - b->last_ms;
        if (elapsed >= (cap - b->tokens) / rate + 1)
            b->tokens = cap;
        else
            b->tokens += elapsed * rate;
        if (b->tokens > cap)
            b->tokens = cap;
    }
    b->last_ms = now; /* a clock that went back only delays the refill */

    if (b->tokens >= 1000) {
        b->tokens -= 1000;
        return 0;
    }
    s64 wait_ms = (1000 - b->tokens + rate - 1) / rate;
    s64 secs = (wait_ms + 999) / 1000;
    if (secs < 1)
        secs = 1;
    char val[24];
    int vl = utoa((u64)secs, val);
    static const char retry[] = "Retry-After", ct[] = "Content-Type",
                      text[] = "text/plain; charset=utf-8", body[] = "Too Many Requests\n";
    ms_block_header(retry, (int)sizeof retry - 1, val, vl);
    ms_block_header(ct, (int)sizeof ct - 1, text, (int)sizeof text - 1);
    ms_block(429, body, (int)sizeof body - 1);
    return 1;
}
