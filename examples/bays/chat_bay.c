/* chat_bay.c: an example bay built with libdock (docs/libdock.md). Every
 * message from any client goes to every connected client, sender included,
 * in arrival order and with the same kind (text or binary).
 *
 * Config (the manifest's config table, from Moored): "greeting", when set,
 * is sent as a text message to each new client first. Environment:
 * MS_SOCKET_PATH and MS_SHIP (set by Mothership); DOCK_V1=1 docks as a
 * plain v1 bay, DOCK_RESUME=0 without the resume feature. With resume (the
 * default) the room outlives the process: Mothership keeps the clients open
 * while the bay restarts and boards them again, marked resumed, and they
 * are members again (no second greeting). Messages sent to the old process
 * and not yet read by it are lost. The connected clients are kept in a dense array indexed by
 * a hash table, so thousands of clients cost O(1) per Boarding/Disembark.
 * Exits 0 on SIGTERM or SIGINT; serves again after Mothership re-docks. */
#include "libdock/dock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a set of conn_ids: dense array + open-addressing index ---- */

typedef struct {
    uint32_t *ids;     /* the members, in no particular order */
    size_t n, cap;
    size_t *slots;     /* 0: empty, else 1 + index into ids; linear probing */
    size_t nslots;     /* a power of two, at least twice n */
} client_set;

static size_t hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* The slot holding id, or the empty slot where it would go. */
static size_t find_slot(const client_set *s, uint32_t id)
{
    size_t mask = s->nslots - 1, i = hash32(id) & mask;
    while (s->slots[i] && s->ids[s->slots[i] - 1] != id)
        i = (i + 1) & mask;
    return i;
}

static bool set_rehash(client_set *s, size_t nslots)
{
    size_t *slots = calloc(nslots, sizeof *slots);
    if (!slots)
        return false;
    free(s->slots);
    s->slots = slots;
    s->nslots = nslots;
    for (size_t k = 0; k < s->n; k++)
        s->slots[find_slot(s, s->ids[k])] = k + 1;
    return true;
}

/* false only when out of memory. */
static bool set_add(client_set *s, uint32_t id)
{
    if ((s->n + 1) * 2 > s->nslots && !set_rehash(s, s->nslots ? s->nslots * 2 : 64))
        return false;
    size_t i = find_slot(s, id);
    if (s->slots[i])
        return true;   /* already a member */
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        uint32_t *ids = realloc(s->ids, cap * sizeof *ids);
        if (!ids)
            return false;
        s->ids = ids;
        s->cap = cap;
    }
    s->ids[s->n] = id;
    s->slots[i] = ++s->n;
    return true;
}

static void set_remove(client_set *s, uint32_t id)
{
    if (!s->nslots)
        return;
    size_t mask = s->nslots - 1, i = find_slot(s, id);
    if (!s->slots[i])
        return;
    size_t idx = s->slots[i] - 1;
    /* Backward-shift deletion keeps every probe chain unbroken. */
    s->slots[i] = 0;
    for (size_t j = (i + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        size_t k = hash32(s->ids[s->slots[j] - 1]) & mask;   /* its home slot */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            s->slots[i] = s->slots[j];
            s->slots[j] = 0;
            i = j;
        }
    }
    /* Fill the hole in the dense array with its last member. */
    size_t last = s->n - 1;
    if (idx != last) {
        uint32_t moved = s->ids[last];
        s->slots[find_slot(s, moved)] = idx + 1;
        s->ids[idx] = moved;
    }
    s->n--;
}

static void set_clear(client_set *s)
{
    s->n = 0;
    if (s->slots)
        memset(s->slots, 0, s->nslots * sizeof *s->slots);
}

static void set_free(client_set *s)
{
    free(s->ids);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* ---- the bay ---- */

static client_set clients;

static void on_docked(dock_bay *bay, void *user)
{
    (void)user;
    const char *greeting = dock_bay_config(bay, "greeting");
    fprintf(stderr, "chat-bay: docked as %s, binary=%s, resume=%s, greeting=%s\n", dock_bay_ship(bay),
            dock_bay_binary(bay) ? "yes" : "no", dock_bay_resume(bay) ? "yes" : "no", greeting ? greeting : "(none)");
}

static void on_boarding(dock_bay *bay, uint32_t conn_id, const char *path,
                        const char *remote_addr, const dock_kv *headers, size_t n_headers,
                        void *user)
{
    (void)path;
    (void)remote_addr;
    (void)headers;
    (void)n_headers;
    (void)user;
    char err[256];
    if (!set_add(&clients, conn_id)) {
        fprintf(stderr, "chat-bay: out of memory for client %u: closing it\n", (unsigned)conn_id);
        if (dock_bay_send_disembark(bay, conn_id, 1011, "out of memory", err, sizeof err) < 0)
            fprintf(stderr, "chat-bay: client %u: %s\n", (unsigned)conn_id, err);
        return;
    }
    if (dock_bay_boarding_resumed(bay))
        return; /* back in the room after a restart: greeted already */
    const char *greeting = dock_bay_config(bay, "greeting");
    if (greeting && dock_bay_send_text(bay, conn_id, greeting, err, sizeof err) < 0)
        fprintf(stderr, "chat-bay: greeting client %u: %s\n", (unsigned)conn_id, err);
}

static void on_disembark(dock_bay *bay, uint32_t conn_id, uint16_t code, const char *reason,
                         void *user)
{
    (void)bay;
    (void)code;
    (void)reason;
    (void)user;
    set_remove(&clients, conn_id);
}

static void on_cargo(dock_bay *bay, uint32_t conn_id, const uint8_t *data, size_t len,
                     bool binary, void *user)
{
    (void)user;
    char err[256] = "";
    size_t dropped = 0;
    for (size_t i = 0; i < clients.n; i++)
        if (dock_bay_send_cargo(bay, clients.ids[i], data, len, binary, err, sizeof err) < 0)
            dropped++;
    if (dropped)
        fprintf(stderr, "chat-bay: message from client %u not delivered to %zu of %zu clients: %s\n",
                (unsigned)conn_id, dropped, clients.n, err);
}

static void on_link_ended(dock_bay *bay, const char *reason, void *user)
{
    (void)bay;
    (void)user;
    set_clear(&clients);   /* a new link starts with no clients */
    fprintf(stderr, "chat-bay: link ended: %s; waiting for Mothership to dock again\n", reason);
}

int main(void)
{
    const char *v1 = getenv("DOCK_V1"), *resume = getenv("DOCK_RESUME");
    dock_options opt = {
        .v1_only = v1 && strcmp(v1, "1") == 0,
        .resume = !(resume && strcmp(resume, "0") == 0),
        .cb = {
            .docked = on_docked,
            .boarding = on_boarding,
            .cargo = on_cargo,
            .disembark = on_disembark,
            .link_ended = on_link_ended,
        },
    };
    char err[256];
    dock_bay *bay = dock_bay_open(&opt, err, sizeof err);
    if (!bay) {
        fprintf(stderr, "chat-bay: %s\n", err);
        return 1;
    }
    if (dock_bay_stop_on_signals(bay, err, sizeof err) != DOCK_OK) {
        fprintf(stderr, "chat-bay: %s\n", err);
        dock_bay_close(bay);
        return 1;
    }
    int rc;
    while ((rc = dock_bay_run(bay, err, sizeof err)) == DOCK_LINK_ENDED)
        ;   /* reported by on_link_ended; accept the next link */
    if (rc != DOCK_STOPPED)
        fprintf(stderr, "chat-bay: %s\n", err);
    dock_bay_close(bay);
    set_free(&clients);
    return rc == DOCK_STOPPED ? 0 : 1;
}
