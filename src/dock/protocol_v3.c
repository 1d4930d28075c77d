/* protocol_v3.c: docking v3 (HTTP bays) payload codec; see protocol.h.
 * Placeholder: every function fails until the codec is written. */
#include "dock/protocol.h"

#include <string.h>

int ms_dock_parse_dock3(const uint8_t *p, size_t len, ms_dock_hello3 *out, char *err_msg, size_t err_len)
{
    (void)p, (void)len, (void)err_msg, (void)err_len;
    memset(out, 0, sizeof *out);
    return MS_DOCK_E_STATE;
}

void ms_dock_hello3_free(ms_dock_hello3 *m)
{
    (void)m;
}

int ms_dock_encode_dock3(ms_dock_buf *b, const char *ship, uint32_t pid, uint32_t threads)
{
    (void)b, (void)ship, (void)pid, (void)threads;
    return MS_DOCK_E_STATE;
}

int ms_dock_encode_moored3(ms_dock_buf *b, const ms_dock_kv *config, size_t n_config)
{
    (void)b, (void)config, (void)n_config;
    return MS_DOCK_E_STATE;
}

int ms_dock_encode_hail(ms_dock_buf *b, uint32_t request_id, uint64_t content_length,
                        const ms_dock_param *params, size_t n_params)
{
    (void)b, (void)request_id, (void)content_length, (void)params, (void)n_params;
    return MS_DOCK_E_STATE;
}

int ms_dock_parse_hail(const uint8_t *p, size_t len, ms_dock_hail *out, size_t max_params,
                       char *err_msg, size_t err_len)
{
    (void)p, (void)len, (void)max_params, (void)err_msg, (void)err_len;
    memset(out, 0, sizeof *out);
    return MS_DOCK_E_STATE;
}

void ms_dock_hail_free(ms_dock_hail *m)
{
    (void)m;
}

void ms_dock_put_haul_header(uint8_t out[MS_DOCK_HAUL_HEADER_LEN], uint32_t request_id, bool fin,
                             size_t data_len)
{
    (void)request_id, (void)fin, (void)data_len;
    memset(out, 0, MS_DOCK_HAUL_HEADER_LEN);
}

int ms_dock_encode_haul(ms_dock_buf *b, uint32_t request_id, bool fin, const void *data, size_t len)
{
    (void)b, (void)request_id, (void)fin, (void)data, (void)len;
    return MS_DOCK_E_STATE;
}

int ms_dock_parse_haul(const uint8_t *p, size_t len, uint32_t *request_id, bool *fin,
                       const uint8_t **data, size_t *data_len)
{
    (void)p, (void)len, (void)request_id, (void)fin, (void)data, (void)data_len;
    return MS_DOCK_E_STATE;
}

int ms_dock_parse_reply(const uint8_t *p, size_t len, ms_dock_reply *out, size_t max_headers,
                        char *err_msg, size_t err_len)
{
    (void)p, (void)len, (void)max_headers, (void)err_msg, (void)err_len;
    memset(out, 0, sizeof *out);
    return MS_DOCK_E_STATE;
}

void ms_dock_reply_free(ms_dock_reply *m)
{
    (void)m;
}

int ms_dock_encode_reply(ms_dock_buf *b, uint32_t request_id, uint16_t status, uint8_t kind,
                         const ms_dock_param *headers, size_t n_headers, const char *file_path,
                         size_t file_path_len)
{
    (void)b, (void)request_id, (void)status, (void)kind, (void)headers, (void)n_headers;
    (void)file_path, (void)file_path_len;
    return MS_DOCK_E_STATE;
}

int ms_dock_parse_ready(const uint8_t *p, size_t len, uint32_t *request_id)
{
    (void)p, (void)len, (void)request_id;
    return MS_DOCK_E_STATE;
}

int ms_dock_encode_ready(ms_dock_buf *b, uint32_t request_id)
{
    (void)b, (void)request_id;
    return MS_DOCK_E_STATE;
}
