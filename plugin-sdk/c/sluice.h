/*
 * sluice.h - write Sluice stream operators in C.
 *
 * An operator is a C file that defines two functions, compiled together with
 * sluice.c into a WebAssembly component (see BUILD.md):
 *
 *   // world "transform": a map, flatMap, filter or key-by step
 *   sluice_error *operator_init(const sluice_config *config, void **state);
 *   sluice_error *operator_process(void *state, sluice_batch *input,
 *                                  sluice_output *out);
 *
 *   // world "reduce": a keyed reducer; called once per key of each batch
 *   sluice_error *reducer_init(const sluice_config *config, void **state);
 *   sluice_error *reducer_reduce(void *state, const sluice_group *group,
 *                                sluice_accumulator *out);
 *
 * Return NULL for success, or an error made with sluice_bad_config() or
 * sluice_failed(). Reject single records with sluice_reject() (or values of a
 * reduce call with sluice_reject_value()): the SDK turns them into the
 * contract's `bad-records` error at the end of the call.
 *
 * The host calls the component once per micro-batch of one partition, never
 * once per record. The batch arrives as a handful of flat buffers; this header
 * gives per-record views over them (sluice_batch_record) and an output builder
 * (sluice_emit, sluice_forward, ...). Nothing here is copied per record.
 *
 * Pointers in a sluice_record, sluice_header, sluice_group or sluice_value
 * point into the input batch and are valid until the operator returns.
 *
 * The same operator code compiles natively (cc) for unit tests: sluice_log()
 * then records lines for sluice_test_log(), and sluice_test.h runs the
 * operator on records without Wasm.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SLUICE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SLUICE_PRINTF(f, a)
#endif

/* ---------------------------------------------------------------- errors */

typedef enum {
    /* The settings are unusable: the job does not start. */
    SLUICE_BAD_CONFIG,
    /* Some input records cannot be processed (see sluice_reject). */
    SLUICE_BAD_RECORDS,
    /* The operator failed as a whole: the job stops with the message. */
    SLUICE_FAILED,
} sluice_error_kind;

/* Why one input record (or reduce value) was rejected. */
typedef struct {
    uint32_t index;
    char *reason;
} sluice_rejection;

/* An operator's error. Made by the functions below; the SDK frees it. */
typedef struct sluice_error {
    sluice_error_kind kind;
    char *message;                 /* SLUICE_BAD_CONFIG, SLUICE_FAILED */
    sluice_rejection *rejections;  /* SLUICE_BAD_RECORDS */
    size_t rejection_count;
} sluice_error;

/* A `bad-config` error with a printf-formatted message. */
sluice_error *sluice_bad_config(const char *fmt, ...) SLUICE_PRINTF(1, 2);
/* A `failed` error with a printf-formatted message. */
sluice_error *sluice_failed(const char *fmt, ...) SLUICE_PRINTF(1, 2);
/* Frees an error (only needed in native tests; the SDK frees the errors
 * operators return). NULL is fine. */
void sluice_error_free(sluice_error *error);

/* ------------------------------------------------------------------ log */

typedef enum {
    SLUICE_TRACE,
    SLUICE_DEBUG,
    SLUICE_INFO,
    SLUICE_WARN,
    SLUICE_ERROR,
} sluice_level;

/* Writes one line to the host log (printf-formatted), tagged with the job,
 * operator and worker. Natively, the line is kept for sluice_test_log(). */
void sluice_log(sluice_level level, const char *fmt, ...) SLUICE_PRINTF(2, 3);

/* ------------------------------------------------------------- settings */

/* The operator's settings: the `config` table of its entry in the job file,
 * as key/value strings (NUL-terminated). */
typedef struct {
    const char *key;
    const char *value;
} sluice_setting;

typedef struct sluice_config {
    const sluice_setting *entries;
    size_t count;
} sluice_config;

/* The value of `key`, or NULL when it is not set. */
const char *sluice_config_get(const sluice_config *config, const char *key);

/* Sets *value to the value of `key`, or returns
 * "missing required setting `key`". */
sluice_error *sluice_config_require(const sluice_config *config,
                                    const char *key, const char **value);

/* Sets *value to the boolean `key` ("true" or "false"), or to `fallback` when
 * it is not set; any other text is a bad-config error naming the key and
 * the value. */
sluice_error *sluice_config_get_bool(const sluice_config *config,
                                     const char *key, bool fallback,
                                     bool *value);

/* Sets *value to the integer `key` (decimal, optional sign, as Rust's
 * i64::from_str), or to `fallback` when it is not set; anything else is a
 * bad-config error naming the key, the value and why (Rust's message). */
sluice_error *sluice_config_get_int(const sluice_config *config,
                                    const char *key, int64_t fallback,
                                    int64_t *value);

/* Refuses any key not in `known`, a NULL-terminated array (NULL: the
 * operator takes no settings), with "unknown setting `k` (accepted: a, b)".
 *   sluice_config_allow_only(config, (const char *[]){"a", "b", NULL});  */
sluice_error *sluice_config_allow_only(const sluice_config *config,
                                       const char *const *known);

/* ------------------------------------------------------------ the batch */

/* A micro-batch in the contract's columnar layout (wit/operator.wit). The
 * buffers are the operator's to read; `values` and `keys` may also be
 * changed in place (a map that keeps record boundaries can then hand the
 * whole batch back with sluice_output_pass_input). */
typedef struct sluice_batch {
    size_t count;                  /* number of records */
    uint8_t *keys;
    size_t keys_len;
    const uint32_t *key_ends;      /* count entries */
    const uint8_t *key_present;    /* count entries, or NULL: no keys */
    uint8_t *values;
    size_t values_len;
    const uint32_t *value_ends;    /* count entries */
    const int64_t *timestamps;     /* count entries */
    /* Headers: header_ends is NULL when no record has headers. */
    const uint32_t *header_ends;   /* count entries */
    size_t header_count;           /* number of header entries */
    const uint8_t *header_keys;
    const uint32_t *header_key_ends;
    const uint8_t *header_values;
    const uint32_t *header_value_ends;
    const uint8_t *header_value_present; /* or NULL: no null values */
} sluice_batch;

/* One record of a batch (a view, nothing copied). */
typedef struct sluice_record {
    uint32_t index;          /* position in the input batch */
    bool has_key;            /* a record without a key differs from an empty key */
    const uint8_t *key;      /* NULL when !has_key */
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t timestamp;       /* event time, ms since the Unix epoch */
    /* Headers: entries [headers_start, headers_end) of `batch`; use
     * sluice_record_header_count / sluice_record_header. */
    const sluice_batch *batch;
    uint32_t headers_start, headers_end;
} sluice_record;

/* One header of a record: a key and a value that may be null. */
typedef struct {
    const uint8_t *key;      /* UTF-8 text */
    size_t key_len;
    bool has_value;          /* false: a null value (Kafka) */
    const uint8_t *value;    /* NULL when !has_value */
    size_t value_len;
} sluice_header;

/* Record `i` (0 <= i < batch->count). O(1). */
sluice_record sluice_batch_record(const sluice_batch *batch, size_t i);

/* Number of headers of a record, and header `h` of them (0 <= h < count):
 *   for (size_t h = 0; h < sluice_record_header_count(&r); h++) {
 *       sluice_header hd = sluice_record_header(&r, h); ...  }           */
size_t sluice_record_header_count(const sluice_record *record);
sluice_header sluice_record_header(const sluice_record *record, size_t h);

/* --------------------------------------------------------------- output */

/* Where an operator writes its output records and rejections. */
typedef struct sluice_output sluice_output;

/* Appends a record without headers. `key` NULL: no key (a non-NULL key of
 * length 0 is an empty key). */
void sluice_emit(sluice_output *out, const void *key, size_t key_len,
                 const void *value, size_t value_len, int64_t timestamp);

/* Appends a copy of `record`: key, value, timestamp and headers. */
void sluice_forward(sluice_output *out, const sluice_record *record);

/* Appends `record` with another value: same key, timestamp and headers. */
void sluice_forward_value(sluice_output *out, const sluice_record *record,
                          const void *value, size_t value_len);

/* Building a value in place, without a temporary buffer:
 *   sluice_emit_begin(out, key, key_len, ts);     // starts a record
 *   sluice_value_append(out, "> ", 2);            // any number of times
 *   uint8_t *p = sluice_value_reserve(out, n);    // or write n bytes at p
 *   sluice_emit_end(out);                         // finishes it           */
void sluice_emit_begin(sluice_output *out, const void *key, size_t key_len,
                       int64_t timestamp);
void sluice_value_append(sluice_output *out, const void *bytes, size_t len);
uint8_t *sluice_value_reserve(sluice_output *out, size_t len);
void sluice_emit_end(sluice_output *out);

/* Adds a header to the record emitted last; `value` NULL: a null value.
 * The key must be UTF-8 text (the host refuses the batch otherwise). */
void sluice_emit_header(sluice_output *out, const void *key, size_t key_len,
                        const void *value, size_t value_len);

/* Rejects input record `index` with a reason (copied): the host sends it to
 * the dead-letter file, or stops the job naming it. */
void sluice_reject(sluice_output *out, uint32_t index, const char *reason);
void sluice_rejectf(sluice_output *out, uint32_t index, const char *fmt, ...)
    SLUICE_PRINTF(3, 4);

/* Makes the input batch, as changed in place, the whole output: no copy.
 * Only when nothing was emitted to `out` yet; emit nothing afterwards. */
void sluice_output_pass_input(sluice_output *out, sluice_batch *input);

/* Grows the output's buffers ahead of emitting, when the size is known. */
void sluice_output_reserve(sluice_output *out, size_t records,
                           size_t value_bytes, size_t key_bytes);

/* The records emitted so far, as a batch (valid until the next emit). */
sluice_batch sluice_output_batch(const sluice_output *out);

/* --------------------------------------------------------------- reduce */

/* One key of a reduce call: the key, its accumulator so far, and its new
 * values (at least one), in the order their records arrived. */
typedef struct sluice_group {
    const uint8_t *key;
    size_t key_len;
    bool has_accumulator;        /* false: the key is new */
    const uint8_t *accumulator;  /* NULL when !has_accumulator */
    size_t accumulator_len;
    size_t value_count;
    /* internal */
    const uint8_t *values_;
    const uint32_t *value_ends_;
    size_t first_;
} sluice_group;

/* One new value of a group. */
typedef struct {
    uint32_t index;       /* for sluice_reject_value */
    const uint8_t *bytes;
    size_t len;
} sluice_value;

/* Value `j` of a group (0 <= j < group->value_count). */
sluice_value sluice_group_value(const sluice_group *group, size_t j);

/* Where a reducer writes the key's new accumulator (it starts empty). */
typedef struct sluice_accumulator sluice_accumulator;

void sluice_accumulator_append(sluice_accumulator *out, const void *bytes,
                               size_t len);
void sluice_accumulator_printf(sluice_accumulator *out, const char *fmt, ...)
    SLUICE_PRINTF(2, 3);

/* Rejects value `index` of the call (sluice_value.index) with a reason. The
 * SDK reports every rejected value of the call at once; the host then keeps
 * all accumulators as they were and calls again without them. */
void sluice_reject_value(sluice_accumulator *out, uint32_t index,
                         const char *reason);
void sluice_reject_valuef(sluice_accumulator *out, uint32_t index,
                          const char *fmt, ...) SLUICE_PRINTF(3, 4);

/* -------------------------------------------------------------- helpers */

/* Writes `bytes` as a quoted string the way the Rust SDK's messages show
 * values ("a \"b\"\n", invalid UTF-8 as U+FFFD), snprintf-style: at most
 * `size` bytes with the NUL; returns the length it needed. */
size_t sluice_quote(char *dst, size_t size, const void *bytes, size_t len);

/* ---------------------------------------------- what an operator defines */

#if defined(SLUICE_WORLD_REDUCE)
sluice_error *reducer_init(const sluice_config *config, void **state);
sluice_error *reducer_reduce(void *state, const sluice_group *group,
                             sluice_accumulator *out);
#else
sluice_error *operator_init(const sluice_config *config, void **state);
sluice_error *operator_process(void *state, sluice_batch *input,
                               sluice_output *out);
#endif

#ifdef __cplusplus
}
#endif
#endif /* SLUICE_H */
