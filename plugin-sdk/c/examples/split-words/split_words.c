/*
 * split-words: a flatMap from lines to words.
 *
 * Splits each value into words and emits one record per non-empty word,
 * keyed by the word (so a following `count` groups by word). Settings:
 *
 * - split_on (`whitespace` or `non-alphanumeric`, default `whitespace`):
 *   what separates words. `non-alphanumeric` also drops punctuation: any
 *   byte that is not an ASCII letter or digit, or part of a non-ASCII
 *   character, separates words.
 * - lowercase (true/false, default false): lower-case ASCII letters.
 * - keyed (true/false, default true): set the word as the key.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

typedef struct {
    bool separator[256]; /* a table, not a function call per byte */
    bool lowercase, keyed;
    uint8_t *lowered;    /* the lowercased word, reused across records */
    size_t lowered_cap;
} split_words;

sluice_error *operator_init(const sluice_config *config, void **state) {
    sluice_error *e = sluice_config_allow_only(
        config, (const char *[]){"split_on", "lowercase", "keyed", NULL});
    if (e) return e;
    const char *split_on = sluice_config_get(config, "split_on");
    if (!split_on) split_on = "whitespace";
    bool punct;
    if (strcmp(split_on, "whitespace") == 0) {
        punct = false;
    } else if (strcmp(split_on, "non-alphanumeric") == 0) {
        punct = true;
    } else {
        char q[512];
        sluice_quote(q, sizeof q, split_on, strlen(split_on));
        return sluice_bad_config("setting `split_on` = %s is not valid "
                                 "(accepted: whitespace, non-alphanumeric)", q);
    }
    split_words *s = calloc(1, sizeof *s);
    if (!s) return sluice_failed("out of memory");
    for (int b = 0; b < 256; b++) {
        bool alnum = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') ||
                     (b >= 'A' && b <= 'Z');
        /* Rust's u8::is_ascii_whitespace: no \v. */
        bool space = b == ' ' || b == '\t' || b == '\n' || b == '\f' || b == '\r';
        /* Bytes >= 0x80 belong to non-ASCII characters, kept whole. */
        s->separator[b] = punct ? !(alnum || b >= 0x80) : space;
    }
    if ((e = sluice_config_get_bool(config, "lowercase", false, &s->lowercase)) ||
        (e = sluice_config_get_bool(config, "keyed", true, &s->keyed))) {
        free(s);
        return e;
    }
    *state = s;
    return NULL;
}

sluice_error *operator_process(void *state, sluice_batch *input,
                               sluice_output *out) {
    split_words *s = state;
    /* Size the output once: text has a word every few bytes. */
    size_t bytes = input->values_len;
    sluice_output_reserve(out, bytes / 4, bytes, s->keyed ? bytes : 0);
    const bool *sep = s->separator;
    for (size_t r = 0; r < input->count; r++) {
        sluice_record rec = sluice_batch_record(input, r);
        const uint8_t *v = rec.value;
        size_t n = rec.value_len, i = 0;
        while (i < n) {
            while (i < n && sep[v[i]]) i++;
            size_t start = i;
            while (i < n && !sep[v[i]]) i++;
            if (start == i) break;
            const uint8_t *word = v + start;
            size_t len = i - start;
            if (s->lowercase) {
                if (len > s->lowered_cap) {
                    uint8_t *p = realloc(s->lowered, len);
                    if (!p) return sluice_failed("out of memory");
                    s->lowered = p;
                    s->lowered_cap = len;
                }
                for (size_t j = 0; j < len; j++) {
                    uint8_t c = word[j];
                    uint8_t d = (uint8_t)(c - (uint8_t)'A');
                    s->lowered[j] = d < 26 ? (uint8_t)(c + 32) : c;
                }
                word = s->lowered;
            }
            sluice_emit(out, s->keyed ? word : NULL, len, word, len,
                        rec.timestamp);
        }
    }
    return NULL;
}
