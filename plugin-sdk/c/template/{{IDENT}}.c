/*
 * {{NAME}}: a Sluice operator.
 *
 * Prefixes every value with a configurable text and rejects empty values.
 * Settings (the `config` table of the operator in a job file):
 *
 * - prefix (default "> "): text put in front of each value.
 *
 * Build it with `sluice plugin build`, try it with `sluice plugin test`.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

/* The operator's state. One lives in each Wasm instance; the host keeps one
 * instance per partition, so it may hold state between batches. */
typedef struct {
    const char *prefix; /* settings strings live as long as the instance */
    size_t prefix_len;
} {{IDENT}};

/* Reads the settings; refusing them stops the job before it starts. */
sluice_error *operator_init(const sluice_config *config, void **state) {
    sluice_error *e =
        sluice_config_allow_only(config, (const char *[]){"prefix", NULL});
    if (e) return e;
    const char *prefix = sluice_config_get(config, "prefix");
    if (!prefix) prefix = "> ";
    char quoted[512];
    sluice_quote(quoted, sizeof quoted, prefix, strlen(prefix));
    sluice_log(SLUICE_INFO, "prefixing values with %s", quoted);
    {{IDENT}} *op = malloc(sizeof *op);
    if (!op) return sluice_failed("out of memory");
    op->prefix = prefix;
    op->prefix_len = strlen(prefix);
    *state = op;
    return NULL;
}

/* Called once per batch. Emit any number of records to `out`; reject a
 * record with sluice_reject (it goes to the job's dead-letter file with the
 * reason). */
sluice_error *operator_process(void *state, sluice_batch *input,
                               sluice_output *out) {
    {{IDENT}} *op = state;
    for (size_t i = 0; i < input->count; i++) {
        sluice_record r = sluice_batch_record(input, i);
        if (r.value_len == 0) {
            sluice_reject(out, r.index, "empty value");
            continue;
        }
        sluice_emit_begin(out, r.key, r.key_len, r.timestamp);
        sluice_value_append(out, op->prefix, op->prefix_len);
        sluice_value_append(out, r.value, r.value_len);
        sluice_emit_end(out);
    }
    return NULL;
}
