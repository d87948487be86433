/*
 * sluice_test.h - run a Sluice C operator natively, without Wasm, in unit
 * tests (compile test.c, the operator, and sluice.c with cc; see the
 * template's Makefile). The harness calls the operator the way the Wasm glue
 * does, so rejections come back as a SLUICE_BAD_RECORDS error.
 */
#ifndef SLUICE_TEST_H
#define SLUICE_TEST_H

#include "sluice.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Log lines the operator wrote with sluice_log, as "LEVEL message"
 * ("INFO prefixing values with ..."), oldest first. */
size_t sluice_test_log_count(void);
const char *sluice_test_log(size_t i);
void sluice_test_log_clear(void);

#if !defined(SLUICE_WORLD_REDUCE)

typedef struct sluice_harness sluice_harness;

/* Calls operator_init with `settings`, a NULL-terminated array of
 * key, value, key, value, ... (NULL: no settings). On error returns it
 * (free it with sluice_error_free) and sets *h to NULL. */
sluice_error *sluice_harness_new(const char *const *settings,
                                 sluice_harness **h);
void sluice_harness_free(sluice_harness *h);

/* The input of the next run, emptied: add records with sluice_emit,
 * sluice_emit_header, ... */
sluice_output *sluice_harness_input(sluice_harness *h);

/* Runs operator_process over the input built. On success *result is the
 * output batch (valid until the next run; read it with
 * sluice_batch_record). */
sluice_error *sluice_harness_run(sluice_harness *h, sluice_batch *result);

/* Runs over unkeyed records with these values (a NULL-terminated array),
 * timestamp 0. On success *values is a NULL-terminated array of the output
 * values as strings (valid until the next run). */
sluice_error *sluice_harness_run_lines(sluice_harness *h,
                                       const char *const *lines,
                                       const char *const **values);

#else

typedef struct sluice_reducer_harness sluice_reducer_harness;

/* Calls reducer_init with `settings` (as for sluice_harness_new). The
 * harness keeps each key's accumulator, as the host does. */
sluice_error *sluice_reducer_harness_new(const char *const *settings,
                                         sluice_reducer_harness **h);
void sluice_reducer_harness_free(sluice_reducer_harness *h);

/* One reduce call over records given as a NULL-terminated array of
 * key, value, key, value, ...: grouped by key in first-seen order, each
 * key with its accumulator so far. Rejection indices are positions of the
 * records in `records` (0 for the first pair). On success the keys'
 * accumulators are updated. */
sluice_error *sluice_reducer_harness_run(sluice_reducer_harness *h,
                                         const char *const *records);

/* The accumulator of `key` (NUL-terminated), or NULL when it has none. */
const char *sluice_reducer_harness_accumulator(sluice_reducer_harness *h,
                                               const char *key);
#endif

#ifdef __cplusplus
}
#endif
#endif /* SLUICE_TEST_H */
