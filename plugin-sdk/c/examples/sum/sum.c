/*
 * sum: a keyed reducer adding up decimal integers per key.
 *
 * Each record's value is a signed 64-bit integer in decimal text;
 * surrounding whitespace is ignored. The accumulator is the key's running
 * total as decimal text. A value that is not an integer, or that would make
 * the total overflow, is rejected with a reason naming the value, and the
 * total stays as it was.
 *
 *   [[operators]]
 *   reducer = "sum.wasm"
 */
#include <stdio.h>
#include <string.h>

#include "sluice.h"

/* Length of the Unicode White_Space character at p[0..n), or 0 (Rust's
 * str::trim); `back`: the one ending at p[n-1]. */
static size_t space_at(const uint8_t *p, size_t n, bool back) {
    static const char *const multi[] = {
        "\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81",
        "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85",
        "\xE2\x80\x86", "\xE2\x80\x87", "\xE2\x80\x88", "\xE2\x80\x89",
        "\xE2\x80\x8A", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF",
        "\xE2\x81\x9F", "\xE3\x80\x80"};
    if (!n) return 0;
    uint8_t c = back ? p[n - 1] : p[0];
    if (c == ' ' || (c >= '\t' && c <= '\r')) return 1;
    for (size_t i = 0; i < sizeof multi / sizeof *multi; i++) {
        size_t l = strlen(multi[i]);
        if (l <= n && memcmp(back ? p + n - l : p, multi[i], l) == 0) return l;
    }
    return 0;
}

/* Parses trimmed decimal text as an int64_t (Rust's i64::from_str). */
static bool parse(const uint8_t *p, size_t n, int64_t *out) {
    size_t l;
    while ((l = space_at(p, n, false))) p += l, n -= l;
    while ((l = space_at(p, n, true))) n -= l;
    bool neg = false;
    if (n && (p[0] == '+' || p[0] == '-')) neg = p[0] == '-', p++, n--;
    if (!n) return false;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        uint64_t d = p[i] - '0';
        if (x > (limit - d) / 10) return false;
        x = x * 10 + d;
    }
    *out = neg ? (int64_t)(0 - x) : (int64_t)x;
    return true;
}

/* A value quoted for a message, shortened to 40 bytes when long. */
static const char *quoted(char *buf, size_t size, const uint8_t *p, size_t n) {
    size_t max = 40;
    size_t k = sluice_quote(buf, size, p, n < max ? n : max);
    if (n > max && k + 4 <= size) strcpy(buf + k, "...");
    return buf;
}

sluice_error *reducer_init(const sluice_config *config, void **state) {
    (void)state;
    return sluice_config_allow_only(config, NULL);
}

sluice_error *reducer_reduce(void *state, const sluice_group *g,
                             sluice_accumulator *out) {
    (void)state;
    char qk[512], qv[512];
    int64_t total = 0;
    if (g->has_accumulator &&
        !parse(g->accumulator, g->accumulator_len, &total))
        return sluice_failed("the accumulator of key %s is not an integer: %s",
                             quoted(qk, sizeof qk, g->key, g->key_len),
                             quoted(qv, sizeof qv, g->accumulator,
                                    g->accumulator_len));
    for (size_t j = 0; j < g->value_count; j++) {
        sluice_value v = sluice_group_value(g, j);
        int64_t x;
        if (!parse(v.bytes, v.len, &x)) {
            sluice_reject_valuef(out, v.index,
                "value %s is not a decimal integer (accepted: "
                "-9223372036854775808 to 9223372036854775807)",
                quoted(qv, sizeof qv, v.bytes, v.len));
        } else if (__builtin_add_overflow(total, x, &x)) {
            sluice_reject_valuef(out, v.index,
                "value %s would overflow the total %lld of key %s (a signed "
                "64-bit integer)",
                quoted(qv, sizeof qv, v.bytes, v.len), (long long)total,
                quoted(qk, sizeof qk, g->key, g->key_len));
        } else {
            total = x;
        }
    }
    sluice_accumulator_printf(out, "%lld", (long long)total);
    return NULL;
}
