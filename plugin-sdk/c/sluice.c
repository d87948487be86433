/*
 * sluice.c - the Sluice C SDK: settings, record views, the output builder,
 * errors, and (in a Wasm build) the glue between the operator and the
 * bindings that `wit-bindgen c` generates from wit/operator.wit.
 *
 * Build it together with the operator. For Wasm, define the world
 * (-DSLUICE_WORLD_TRANSFORM, the default, or -DSLUICE_WORLD_REDUCE) and put
 * the generated bindings on the include path (-Ibuild/bindings); see BUILD.md.
 * Natively (cc, for unit tests) no bindings are needed.
 */
#include "sluice.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ memory */

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();
    return q;
}

static char *xstrndup(const char *s, size_t n) {
    char *d = xrealloc(NULL, n + 1);
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static char *vformat(const char *fmt, va_list ap) {
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *s = xrealloc(NULL, (size_t)n + 1);
    if ((size_t)n < sizeof small) {
        memcpy(s, small, (size_t)n + 1);
    } else {
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    }
    return s;
}

/* A growable array of bytes; element types other than u8 use the same
 * struct with len and cap counted in elements. */
typedef struct {
    void *p;
    size_t len, cap;
    /* Capacity to start with once the buffer was handed to the host (the
     * size it reached last time), so that every call does not regrow it. */
    size_t hint;
} vec;

static inline void vec_reserve(vec *v, size_t add, size_t elem) {
    if (v->cap - v->len >= add) return;
    size_t cap = v->cap ? v->cap * 2 : (v->hint > 16 ? v->hint : 16);
    if (cap < v->len + add) cap = v->len + add;
    v->p = xrealloc(v->p, cap * elem);
    v->cap = cap;
}

static inline void push_u32(vec *v, uint32_t x) {
    vec_reserve(v, 1, 4);
    ((uint32_t *)v->p)[v->len++] = x;
}

static inline void push_u8(vec *v, uint8_t x) {
    vec_reserve(v, 1, 1);
    ((uint8_t *)v->p)[v->len++] = x;
}

static inline void push_i64(vec *v, int64_t x) {
    vec_reserve(v, 1, 8);
    ((int64_t *)v->p)[v->len++] = x;
}

static inline void append_bytes(vec *v, const void *b, size_t n) {
    if (!n) return;
    vec_reserve(v, n, 1);
    memcpy((uint8_t *)v->p + v->len, b, n);
    v->len += n;
}

/* Resizes an u8 array to n entries, filling new ones with `fill`. */
static void resize_u8(vec *v, size_t n, uint8_t fill) {
    if (n <= v->len) { v->len = n; return; }
    vec_reserve(v, n - v->len, 1);
    memset((uint8_t *)v->p + v->len, fill, n - v->len);
    v->len = n;
}

static void resize_u32(vec *v, size_t n, uint32_t fill) {
    if (n <= v->len) { v->len = n; return; }
    vec_reserve(v, n - v->len, 4);
    for (size_t i = v->len; i < n; i++) ((uint32_t *)v->p)[i] = fill;
    v->len = n;
}

static void vec_free(vec *v) {
    free(v->p);
    v->p = NULL;
    v->len = v->cap = 0;
}

/* ------------------------------------------------------------ errors */

static sluice_error *new_error(sluice_error_kind kind, char *message) {
    sluice_error *e = xrealloc(NULL, sizeof *e);
    e->kind = kind;
    e->message = message;
    e->rejections = NULL;
    e->rejection_count = 0;
    return e;
}

sluice_error *sluice_bad_config(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *m = vformat(fmt, ap);
    va_end(ap);
    return new_error(SLUICE_BAD_CONFIG, m);
}

sluice_error *sluice_failed(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *m = vformat(fmt, ap);
    va_end(ap);
    return new_error(SLUICE_FAILED, m);
}

void sluice_error_free(sluice_error *e) {
    if (!e) return;
    free(e->message);
    for (size_t i = 0; i < e->rejection_count; i++) free(e->rejections[i].reason);
    free(e->rejections);
    free(e);
}

/* Rejections collected during a call. */
typedef struct {
    vec list; /* of sluice_rejection */
} rejections;

static void add_rejection(rejections *r, uint32_t index, char *reason) {
    vec_reserve(&r->list, 1, sizeof(sluice_rejection));
    sluice_rejection *x = (sluice_rejection *)r->list.p + r->list.len++;
    x->index = index;
    x->reason = reason;
}

/* Moves the rejections into a bad-records error (NULL when none). */
static sluice_error *take_rejections(rejections *r) {
    if (!r->list.len) return NULL;
    sluice_error *e = new_error(SLUICE_BAD_RECORDS, NULL);
    e->rejections = r->list.p;
    e->rejection_count = r->list.len;
    r->list.p = NULL;
    r->list.len = r->list.cap = 0;
    return e;
}

static void clear_rejections(rejections *r) {
    sluice_rejection *x = r->list.p;
    for (size_t i = 0; i < r->list.len; i++) free(x[i].reason);
    r->list.len = 0;
}

/* ---------------------------------------------------------- settings */

const char *sluice_config_get(const sluice_config *c, const char *key) {
    for (size_t i = 0; i < c->count; i++)
        if (strcmp(c->entries[i].key, key) == 0) return c->entries[i].value;
    return NULL;
}

sluice_error *sluice_config_require(const sluice_config *c, const char *key,
                                    const char **value) {
    const char *v = sluice_config_get(c, key);
    if (!v) return sluice_bad_config("missing required setting `%s`", key);
    *value = v;
    return NULL;
}

sluice_error *sluice_config_get_bool(const sluice_config *c, const char *key,
                                     bool fallback, bool *value) {
    const char *v = sluice_config_get(c, key);
    if (!v) { *value = fallback; return NULL; }
    if (strcmp(v, "true") == 0) { *value = true; return NULL; }
    if (strcmp(v, "false") == 0) { *value = false; return NULL; }
    char q[512];
    sluice_quote(q, sizeof q, v, strlen(v));
    return sluice_bad_config(
        "setting `%s` = %s is not valid: provided string was not `true` or `false`",
        key, q);
}

sluice_error *sluice_config_get_int(const sluice_config *c, const char *key,
                                    int64_t fallback, int64_t *value) {
    const char *v = sluice_config_get(c, key);
    if (!v) { *value = fallback; return NULL; }
    const char *why = NULL, *p = v;
    bool neg = false;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, x = 0;
    if (!*v) why = "cannot parse integer from empty string";
    else if (!*p) why = "invalid digit found in string";
    for (; !why && *p; p++) {
        if (*p < '0' || *p > '9') { why = "invalid digit found in string"; break; }
        uint64_t d = (uint64_t)(*p - '0');
        if (x > (limit - d) / 10) {
            why = neg ? "number too small to fit in target type"
                      : "number too large to fit in target type";
            break;
        }
        x = x * 10 + d;
    }
    if (!why) {
        *value = neg ? (int64_t)(0 - x) : (int64_t)x;
        return NULL;
    }
    char q[512];
    sluice_quote(q, sizeof q, v, strlen(v));
    return sluice_bad_config("setting `%s` = %s is not valid: %s", key, q, why);
}

sluice_error *sluice_config_allow_only(const sluice_config *c,
                                       const char *const *known) {
    for (size_t i = 0; i < c->count; i++) {
        const char *k = c->entries[i].key;
        bool ok = false;
        for (const char *const *n = known; n && *n; n++)
            if (strcmp(*n, k) == 0) { ok = true; break; }
        if (ok) continue;
        if (!known || !*known)
            return sluice_bad_config(
                "unknown setting `%s` (this operator takes no settings)", k);
        vec list = {0};
        for (const char *const *n = known; *n; n++) {
            if (n != known) append_bytes(&list, ", ", 2);
            append_bytes(&list, *n, strlen(*n));
        }
        push_u8(&list, 0);
        sluice_error *e = sluice_bad_config("unknown setting `%s` (accepted: %s)",
                                            k, (char *)list.p);
        vec_free(&list);
        return e;
    }
    return NULL;
}

/* ------------------------------------------------------------ quoting */

/* Decodes one UTF-8 character at s[0..n) (n >= 1); returns its length, or
 * the length of the maximal invalid subpart (>= 1) with *cp = U+FFFD. */
static size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    size_t need;
    uint32_t c;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) { need = 1; c = b & 0x1F; }
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 2; c = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3; c = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else { *cp = 0xFFFD; return 1; }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= n) { *cp = 0xFFFD; return i; }
        uint8_t x = s[i];
        if (x < lo || x > hi) { *cp = 0xFFFD; return i; }
        lo = 0x80; hi = 0xBF;
        c = (c << 6) | (x & 0x3F);
    }
    *cp = c;
    return i;
}

#include "sluice_escapes.inc"

/* Whether Rust's Debug formatting of a string shows `c` as \u{...}. */
static bool escaped_unicode(uint32_t c) {
    size_t lo = 0, hi = sizeof ESCAPED_RANGES / sizeof ESCAPED_RANGES[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < ESCAPED_RANGES[mid][0]) hi = mid;
        else if (c > ESCAPED_RANGES[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

typedef struct {
    char *dst;
    size_t size, len;
} sink;

static void put(sink *s, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++, s->len++)
        if (s->len + 1 < s->size) s->dst[s->len] = b[i];
}

size_t sluice_quote(char *dst, size_t size, const void *bytes, size_t len) {
    sink s = {dst, size, 0};
    const uint8_t *p = bytes;
    put(&s, "\"", 1);
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t n = utf8_next(p + i, len - i, &c);
        char buf[16];
        switch (c) {
        case '"': put(&s, "\\\"", 2); break;
        case '\\': put(&s, "\\\\", 2); break;
        case '\n': put(&s, "\\n", 2); break;
        case '\r': put(&s, "\\r", 2); break;
        case '\t': put(&s, "\\t", 2); break;
        case 0: put(&s, "\\0", 2); break;
        default:
            if (escaped_unicode(c)) {
                int k = snprintf(buf, sizeof buf, "\\u{%x}", (unsigned)c);
                put(&s, buf, (size_t)k);
            } else if (c == 0xFFFD && !(n == 3 && p[i] == 0xEF)) {
                put(&s, "\xEF\xBF\xBD", 3);
            } else {
                put(&s, (const char *)p + i, n);
            }
        }
        i += n;
    }
    put(&s, "\"", 1);
    if (size) dst[s.len < size ? s.len : size - 1] = 0;
    return s.len;
}

/* ------------------------------------------------------------- batch */

static const uint8_t empty_bytes[1];

sluice_record sluice_batch_record(const sluice_batch *b, size_t i) {
    sluice_record r;
    r.index = (uint32_t)i;
    uint32_t vs = i ? b->value_ends[i - 1] : 0;
    r.value = b->values ? b->values + vs : empty_bytes;
    r.value_len = b->value_ends[i] - vs;
    r.timestamp = b->timestamps[i];
    r.has_key = b->key_present && b->key_present[i];
    if (r.has_key) {
        uint32_t ks = i ? b->key_ends[i - 1] : 0;
        r.key = b->keys ? b->keys + ks : empty_bytes;
        r.key_len = b->key_ends[i] - ks;
    } else {
        r.key = NULL;
        r.key_len = 0;
    }
    r.batch = b;
    if (b->header_ends) {
        r.headers_start = i ? b->header_ends[i - 1] : 0;
        r.headers_end = b->header_ends[i];
    } else {
        r.headers_start = r.headers_end = 0;
    }
    return r;
}

size_t sluice_record_header_count(const sluice_record *r) {
    return r->headers_end - r->headers_start;
}

sluice_header sluice_record_header(const sluice_record *r, size_t h) {
    const sluice_batch *b = r->batch;
    size_t e = r->headers_start + h;
    sluice_header x;
    uint32_t ks = e ? b->header_key_ends[e - 1] : 0;
    x.key = b->header_keys ? b->header_keys + ks : empty_bytes;
    x.key_len = b->header_key_ends[e] - ks;
    x.has_value = !b->header_value_present || b->header_value_present[e];
    if (x.has_value) {
        uint32_t vs = e ? b->header_value_ends[e - 1] : 0;
        x.value = b->header_values ? b->header_values + vs : empty_bytes;
        x.value_len = b->header_value_ends[e] - vs;
    } else {
        x.value = NULL;
        x.value_len = 0;
    }
    return x;
}

/* ------------------------------------------------------------ output */

struct sluice_output {
    vec keys, key_ends, key_present, values, value_ends, timestamps;
    vec header_ends, header_keys, header_key_ends, header_values,
        header_value_ends, header_value_present;
    rejections rejected;
    /* sluice_output_pass_input: the output is this input batch. */
    sluice_batch *passed;
};

static inline void push_key(sluice_output *o, const void *key, size_t key_len) {
    if (key) {
        /* First keyed record: materialise "absent" for the records before. */
        if (o->key_present.len < o->value_ends.len)
            resize_u8(&o->key_present, o->value_ends.len, 0);
        append_bytes(&o->keys, key, key_len);
        push_u8(&o->key_present, 1);
    } else if (o->key_present.len) {
        push_u8(&o->key_present, 0);
    }
    push_u32(&o->key_ends, (uint32_t)o->keys.len);
}

void sluice_emit_begin(sluice_output *o, const void *key, size_t key_len,
                       int64_t timestamp) {
    push_key(o, key, key_len);
    push_i64(&o->timestamps, timestamp);
}

void sluice_value_append(sluice_output *o, const void *bytes, size_t len) {
    append_bytes(&o->values, bytes, len);
}

uint8_t *sluice_value_reserve(sluice_output *o, size_t len) {
    vec_reserve(&o->values, len, 1);
    uint8_t *p = (uint8_t *)o->values.p + o->values.len;
    o->values.len += len;
    return p;
}

void sluice_emit_end(sluice_output *o) {
    push_u32(&o->value_ends, (uint32_t)o->values.len);
    if (o->header_ends.len)
        push_u32(&o->header_ends, (uint32_t)o->header_key_ends.len);
}

void sluice_emit(sluice_output *o, const void *key, size_t key_len,
                 const void *value, size_t value_len, int64_t timestamp) {
    sluice_emit_begin(o, key, key_len, timestamp);
    append_bytes(&o->values, value, value_len);
    sluice_emit_end(o);
}

void sluice_emit_header(sluice_output *o, const void *key, size_t key_len,
                        const void *value, size_t value_len) {
    size_t n = o->value_ends.len;
    if (!n) abort(); /* emit the record first */
    /* First header of the batch: "no headers" for the records before. */
    if (o->header_ends.len < n) resize_u32(&o->header_ends, n, 0);
    append_bytes(&o->header_keys, key, key_len);
    push_u32(&o->header_key_ends, (uint32_t)o->header_keys.len);
    if (value) {
        append_bytes(&o->header_values, value, value_len);
        if (o->header_value_present.len) push_u8(&o->header_value_present, 1);
    } else {
        /* First null value: "present" for the entries before it. */
        resize_u8(&o->header_value_present, o->header_value_ends.len, 1);
        push_u8(&o->header_value_present, 0);
    }
    push_u32(&o->header_value_ends, (uint32_t)o->header_values.len);
    ((uint32_t *)o->header_ends.p)[n - 1] = (uint32_t)o->header_key_ends.len;
}

static void copy_headers(sluice_output *o, const sluice_record *r) {
    for (size_t h = 0, n = sluice_record_header_count(r); h < n; h++) {
        sluice_header x = sluice_record_header(r, h);
        sluice_emit_header(o, x.key, x.key_len, x.value, x.value_len);
    }
}

void sluice_forward(sluice_output *o, const sluice_record *r) {
    sluice_emit(o, r->key, r->key_len, r->value, r->value_len, r->timestamp);
    copy_headers(o, r);
}

void sluice_forward_value(sluice_output *o, const sluice_record *r,
                          const void *value, size_t value_len) {
    sluice_emit(o, r->key, r->key_len, value, value_len, r->timestamp);
    copy_headers(o, r);
}

void sluice_reject(sluice_output *o, uint32_t index, const char *reason) {
    add_rejection(&o->rejected, index, xstrndup(reason, strlen(reason)));
}

void sluice_rejectf(sluice_output *o, uint32_t index, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    add_rejection(&o->rejected, index, vformat(fmt, ap));
    va_end(ap);
}

void sluice_output_pass_input(sluice_output *o, sluice_batch *input) {
    o->passed = input;
}

void sluice_output_reserve(sluice_output *o, size_t records,
                           size_t value_bytes, size_t key_bytes) {
    vec_reserve(&o->values, value_bytes, 1);
    vec_reserve(&o->value_ends, records, 4);
    vec_reserve(&o->timestamps, records, 8);
    vec_reserve(&o->key_ends, records, 4);
    if (key_bytes) {
        vec_reserve(&o->keys, key_bytes, 1);
        vec_reserve(&o->key_present, records, 1);
    }
}

sluice_batch sluice_output_batch(const sluice_output *o) {
    if (o->passed) return *o->passed;
    sluice_batch b;
    b.count = o->value_ends.len;
    b.keys = o->keys.p;
    b.keys_len = o->keys.len;
    b.key_ends = o->key_ends.p;
    b.key_present = o->key_present.len ? o->key_present.p : NULL;
    b.values = o->values.p;
    b.values_len = o->values.len;
    b.value_ends = o->value_ends.p;
    b.timestamps = o->timestamps.p;
    b.header_ends = o->header_ends.len ? o->header_ends.p : NULL;
    b.header_count = o->header_key_ends.len;
    b.header_keys = o->header_keys.p;
    b.header_key_ends = o->header_key_ends.p;
    b.header_values = o->header_values.p;
    b.header_value_ends = o->header_value_ends.p;
    b.header_value_present =
        o->header_value_present.len ? o->header_value_present.p : NULL;
    return b;
}

/* Empties the output, keeping its buffers' capacity. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((unused))
#endif
static void output_clear(sluice_output *o) {
    o->keys.len = o->key_ends.len = o->key_present.len = 0;
    o->values.len = o->value_ends.len = o->timestamps.len = 0;
    o->header_ends.len = o->header_keys.len = o->header_key_ends.len = 0;
    o->header_values.len = o->header_value_ends.len = 0;
    o->header_value_present.len = 0;
    clear_rejections(&o->rejected);
    o->passed = NULL;
}

/* Runs the operator on `input` into `out` (cleared first); the rejections,
 * if any, become the error. Shared by the Wasm glue and the test harness. */
#if !defined(SLUICE_WORLD_REDUCE)
static sluice_error *run_operator(void *state, sluice_batch *input,
                                  sluice_output *out) {
    output_clear(out);
    sluice_error *e = operator_process(state, input, out);
    if (e) {
        clear_rejections(&out->rejected);
        return e;
    }
    return take_rejections(&out->rejected);
}
#endif

/* ------------------------------------------------------------ reduce */

struct sluice_accumulator {
    vec data, ends;
    rejections rejected;
    size_t mark; /* start of the current key's accumulator in data */
};

void sluice_accumulator_append(sluice_accumulator *a, const void *b, size_t n) {
    append_bytes(&a->data, b, n);
}

void sluice_accumulator_printf(sluice_accumulator *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    append_bytes(&a->data, s, strlen(s));
    free(s);
}

void sluice_reject_value(sluice_accumulator *a, uint32_t index,
                         const char *reason) {
    add_rejection(&a->rejected, index, xstrndup(reason, strlen(reason)));
}

void sluice_reject_valuef(sluice_accumulator *a, uint32_t index,
                          const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    add_rejection(&a->rejected, index, vformat(fmt, ap));
    va_end(ap);
}

sluice_value sluice_group_value(const sluice_group *g, size_t j) {
    size_t v = g->first_ + j;
    uint32_t s = v ? g->value_ends_[v - 1] : 0;
    sluice_value x;
    x.index = (uint32_t)v;
    x.bytes = g->values_ ? g->values_ + s : empty_bytes;
    x.len = g->value_ends_[v] - s;
    return x;
}

/* The groups of one reduce call, as plain arrays. */
typedef struct {
    const uint8_t *keys; size_t keys_len;
    const uint32_t *key_ends; size_t key_count;
    const uint8_t *accumulators; size_t accumulators_len;
    const uint32_t *accumulator_ends; size_t accumulator_ends_len;
    const uint8_t *has_accumulator; size_t has_accumulator_len;
    const uint8_t *values; size_t values_len;
    const uint32_t *value_ends; size_t value_count;
    const uint32_t *group_ends; size_t group_ends_len;
} groups_view;

#if defined(SLUICE_WORLD_REDUCE)
static char *check_ends(const char *name, const uint32_t *ends, size_t n,
                        size_t data_len) {
    uint32_t prev = 0;
    char buf[200];
    for (size_t i = 0; i < n; i++) {
        if (ends[i] < prev) {
            snprintf(buf, sizeof buf, "%s[%zu] = %u is below the previous end %u",
                     name, i, (unsigned)ends[i], (unsigned)prev);
            return xstrndup(buf, strlen(buf));
        }
        prev = ends[i];
    }
    if (prev != data_len) {
        snprintf(buf, sizeof buf, "%s ends at %u but its buffer has %zu bytes",
                 name, (unsigned)prev, data_len);
        return xstrndup(buf, strlen(buf));
    }
    return NULL;
}

static char *validate_groups(const groups_view *g) {
    size_t n = g->key_count;
    char buf[200];
    const char *names[3] = {"accumulator-ends", "has-accumulator", "group-ends"};
    size_t lens[3] = {g->accumulator_ends_len, g->has_accumulator_len,
                      g->group_ends_len};
    for (int i = 0; i < 3; i++)
        if (lens[i] != n) {
            snprintf(buf, sizeof buf, "%s has %zu entries for %zu keys", names[i],
                     lens[i], n);
            return xstrndup(buf, strlen(buf));
        }
    char *m;
    if ((m = check_ends("key-ends", g->key_ends, n, g->keys_len))) return m;
    if ((m = check_ends("accumulator-ends", g->accumulator_ends, n,
                        g->accumulators_len))) return m;
    if ((m = check_ends("value-ends", g->value_ends, g->value_count,
                        g->values_len))) return m;
    if ((m = check_ends("group-ends", g->group_ends, n, g->value_count)))
        return m;
    uint32_t start = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t end = g->accumulator_ends[k];
        if (!g->has_accumulator[k] && end != start) {
            snprintf(buf, sizeof buf,
                     "key %zu has no accumulator but an accumulator span of %u byte(s)",
                     k, (unsigned)(end - start));
            return xstrndup(buf, strlen(buf));
        }
        start = end;
    }
    return NULL;
}

/* Runs the reducer over every key of one call into `out` (cleared first).
 * Rejections of all keys come back together; any other error stops at the
 * key that returned it. */
static sluice_error *run_reducer(void *state, const groups_view *g,
                                 sluice_accumulator *out) {
    out->data.len = out->ends.len = 0;
    clear_rejections(&out->rejected);
    char *bad = validate_groups(g);
    if (bad) {
        sluice_error *e = sluice_failed("the host sent malformed groups: %s", bad);
        free(bad);
        return e;
    }
    vec_reserve(&out->data, g->accumulators_len, 1);
    vec_reserve(&out->ends, g->key_count, 4);
    for (size_t k = 0; k < g->key_count; k++) {
        sluice_group grp;
        uint32_t ks = k ? g->key_ends[k - 1] : 0;
        grp.key = g->keys ? g->keys + ks : empty_bytes;
        grp.key_len = g->key_ends[k] - ks;
        grp.has_accumulator = g->has_accumulator[k] != 0;
        if (grp.has_accumulator) {
            uint32_t as = k ? g->accumulator_ends[k - 1] : 0;
            grp.accumulator = g->accumulators ? g->accumulators + as : empty_bytes;
            grp.accumulator_len = g->accumulator_ends[k] - as;
        } else {
            grp.accumulator = NULL;
            grp.accumulator_len = 0;
        }
        grp.first_ = k ? g->group_ends[k - 1] : 0;
        grp.value_count = g->group_ends[k] - grp.first_;
        grp.values_ = g->values;
        grp.value_ends_ = g->value_ends;
        size_t mark = out->data.len, before = out->rejected.list.len;
        sluice_error *e = reducer_reduce(state, &grp, out);
        if (e) {
            if (e->kind == SLUICE_BAD_RECORDS) {
                for (size_t i = 0; i < e->rejection_count; i++)
                    add_rejection(&out->rejected, e->rejections[i].index,
                                  e->rejections[i].reason);
                e->rejection_count = 0;
                sluice_error_free(e);
                out->data.len = mark;
                continue;
            }
            clear_rejections(&out->rejected);
            return e;
        }
        if (out->rejected.list.len != before) {
            out->data.len = mark;
            continue;
        }
        push_u32(&out->ends, (uint32_t)out->data.len);
    }
    return take_rejections(&out->rejected);
}
#endif

/* ------------------------------------------------------- native log */

#ifndef __wasm__
static vec log_lines; /* of char* "LEVEL message" */
static const char *level_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"};

void sluice_log(sluice_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *m = vformat(fmt, ap);
    va_end(ap);
    const char *l = level_names[level <= SLUICE_ERROR ? level : SLUICE_ERROR];
    size_t n = strlen(l) + 1 + strlen(m);
    char *line = xrealloc(NULL, n + 1);
    snprintf(line, n + 1, "%s %s", l, m);
    free(m);
    vec_reserve(&log_lines, 1, sizeof(char *));
    ((char **)log_lines.p)[log_lines.len++] = line;
}

size_t sluice_test_log_count(void) { return log_lines.len; }

const char *sluice_test_log(size_t i) {
    return i < log_lines.len ? ((char **)log_lines.p)[i] : NULL;
}

void sluice_test_log_clear(void) {
    for (size_t i = 0; i < log_lines.len; i++) free(((char **)log_lines.p)[i]);
    log_lines.len = 0;
}

#include "sluice_test.inc"
#endif

/* --------------------------------------------------------- Wasm glue */

#ifdef __wasm__
#include "sluice_glue.inc"
#endif
