/* Native unit tests of split-words: `make test`. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "sluice_test.h"

#define EQ(p, n, s) (n == strlen(s) && memcmp(p, s, n) == 0)

static void lines_are(const char *const *got, const char *const *want) {
    size_t i = 0;
    for (; want[i]; i++) {
        if (!got[i] || strcmp(got[i], want[i])) {
            fprintf(stderr, "output %zu: got %s, want %s\n", i,
                    got[i] ? got[i] : "(end)", want[i]);
            assert(0);
        }
    }
    assert(!got[i]);
}

int main(void) {
    sluice_harness *h;
    const char *const *out;

    /* Splits on whitespace and keys by word. */
    assert(!sluice_harness_new(NULL, &h));
    sluice_output *in = sluice_harness_input(h);
    const char *vals[] = {"  the quick\tfox ", "", "fox"};
    for (int i = 0; i < 3; i++) sluice_emit(in, NULL, 0, vals[i], strlen(vals[i]), 5);
    sluice_batch b;
    assert(!sluice_harness_run(h, &b));
    const char *words[] = {"the", "quick", "fox", "fox"};
    assert(b.count == 4);
    for (size_t i = 0; i < 4; i++) {
        sluice_record r = sluice_batch_record(&b, i);
        assert(r.has_key && EQ(r.key, r.key_len, words[i]));
        assert(EQ(r.value, r.value_len, words[i]) && r.timestamp == 5);
    }
    sluice_harness_free(h);

    /* Lowercase and unkeyed. */
    assert(!sluice_harness_new((const char *[]){"lowercase", "true", "keyed", "false", NULL}, &h));
    assert(!sluice_harness_run_lines(h, (const char *[]){"The FOX", NULL}, &out));
    lines_are(out, (const char *[]){"the", "fox", NULL});
    sluice_harness_free(h);

    /* non-alphanumeric drops punctuation, keeps non-ASCII characters. */
    assert(!sluice_harness_new((const char *[]){"split_on", "non-alphanumeric", "keyed", "false", NULL}, &h));
    assert(!sluice_harness_run_lines(h, (const char *[]){"It was -- in short, the caf\xc3\xa9's \"best\"!", NULL}, &out));
    lines_are(out, (const char *[]){"It", "was", "in", "short", "the", "caf\xc3\xa9", "s", "best", NULL});
    sluice_harness_free(h);

    sluice_error *e = sluice_harness_new((const char *[]){"split_on", "commas", NULL}, &h);
    assert(e && e->kind == SLUICE_BAD_CONFIG);
    assert(!strcmp(e->message, "setting `split_on` = \"commas\" is not valid (accepted: whitespace, non-alphanumeric)"));
    sluice_error_free(e);

    e = sluice_harness_new((const char *[]){"lowercase", "yes", NULL}, &h);
    assert(e && e->kind == SLUICE_BAD_CONFIG);
    assert(!strcmp(e->message, "setting `lowercase` = \"yes\" is not valid: provided string was not `true` or `false`"));
    sluice_error_free(e);

    e = sluice_harness_new((const char *[]){"lowercas", "true", NULL}, &h);
    assert(e && !strcmp(e->message, "unknown setting `lowercas` (accepted: split_on, lowercase, keyed)"));
    sluice_error_free(e);
    puts("split-words: all tests passed");
    return 0;
}
