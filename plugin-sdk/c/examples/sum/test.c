/* Native unit tests of sum: `make test` (built with -DSLUICE_WORLD_REDUCE). */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "sluice_test.h"

#define ACC(h, k) sluice_reducer_harness_accumulator(h, k)

int main(void) {
    sluice_reducer_harness *h;
    assert(!sluice_reducer_harness_new(NULL, &h));
    assert(!sluice_reducer_harness_run(h, (const char *[]){"a", "1", "b", " 5 ", "a", "-3", NULL}));
    assert(!strcmp(ACC(h, "a"), "-2") && !strcmp(ACC(h, "b"), "5"));
    assert(!sluice_reducer_harness_run(h, (const char *[]){"b", "10", "c", "0", NULL}));
    assert(!strcmp(ACC(h, "b"), "15") && !strcmp(ACC(h, "c"), "0"));
    sluice_reducer_harness_free(h);

    /* Rejects non-numbers naming the value, and keeps the state. */
    assert(!sluice_reducer_harness_new(NULL, &h));
    assert(!sluice_reducer_harness_run(h, (const char *[]){"a", "1", NULL}));
    sluice_error *e = sluice_reducer_harness_run(h, (const char *[]){"a", "2", "b", "x7", "a", "1.5", NULL});
    assert(e && e->kind == SLUICE_BAD_RECORDS && e->rejection_count == 2);
    assert(e->rejections[0].index == 2 && e->rejections[1].index == 1);
    assert(!strcmp(e->rejections[1].reason, "value \"x7\" is not a decimal integer (accepted: -9223372036854775808 to 9223372036854775807)"));
    sluice_error_free(e);
    assert(!strcmp(ACC(h, "a"), "1") && ACC(h, "b") == NULL);
    assert(!sluice_reducer_harness_run(h, (const char *[]){"a", "2", NULL}));
    assert(!strcmp(ACC(h, "a"), "3"));
    sluice_reducer_harness_free(h);

    /* Overflow. */
    assert(!sluice_reducer_harness_new(NULL, &h));
    assert(!sluice_reducer_harness_run(h, (const char *[]){"a", "9223372036854775807", NULL}));
    e = sluice_reducer_harness_run(h, (const char *[]){"a", "1", NULL});
    assert(e && e->kind == SLUICE_BAD_RECORDS);
    assert(!strcmp(e->rejections[0].reason, "value \"1\" would overflow the total 9223372036854775807 of key \"a\" (a signed 64-bit integer)"));
    sluice_error_free(e);
    assert(!sluice_reducer_harness_run(h, (const char *[]){"a", "-1", NULL}));
    e = sluice_reducer_harness_run(h, (const char *[]){"b", "99999999999999999999", NULL});
    assert(e);
    sluice_error_free(e);
    assert(!sluice_reducer_harness_run(h, (const char *[]){"m", "-9223372036854775808", "p", "+7", "t", "\xe2\x80\x83" "12\t", NULL}));
    assert(!strcmp(ACC(h, "m"), "-9223372036854775808") && !strcmp(ACC(h, "p"), "7") && !strcmp(ACC(h, "t"), "12"));
    e = sluice_reducer_harness_run(h, (const char *[]){"q", "0123456789012345678901234567890123456789xyz", NULL});
    assert(e && strstr(e->rejections[0].reason, "\"0123456789012345678901234567890123456789\"... is not"));
    sluice_error_free(e);
    sluice_reducer_harness_free(h);

    e = sluice_reducer_harness_new((const char *[]){"x", "1", NULL}, &h);
    assert(e && e->kind == SLUICE_BAD_CONFIG);
    sluice_error_free(e);
    puts("sum: all tests passed");
    return 0;
}
