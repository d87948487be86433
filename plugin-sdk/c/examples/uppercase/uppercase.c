/*
 * uppercase: a map that upper-cases the ASCII letters of each value.
 *
 * Keys, key presence, timestamps and headers pass through unchanged. Works
 * on the whole batch at once: the value buffer is converted in place, in one
 * loop that clang turns into SIMD code (-msimd128); record boundaries do not
 * move, so the input batch becomes the output batch without a copy.
 */
#include "sluice.h"

sluice_error *operator_init(const sluice_config *config, void **state) {
    (void)state;
    return sluice_config_allow_only(config, NULL); /* takes no settings */
}

/* Upper-cases ASCII letters. Written in 8-bit arithmetic so that clang
 * turns it into 16-byte SIMD (i8x16.add, i8x16.lt_u, v128.bitselect). */
static void ascii_uppercase(uint8_t *restrict p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        uint8_t d = (uint8_t)(c - (uint8_t)'a');
        p[i] = d < 26 ? (uint8_t)(c - 32) : c;
    }
}

sluice_error *operator_process(void *state, sluice_batch *input,
                               sluice_output *out) {
    (void)state;
    ascii_uppercase(input->values, input->values_len);
    sluice_output_pass_input(out, input);
    return NULL;
}
