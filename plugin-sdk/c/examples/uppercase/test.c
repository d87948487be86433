/* Native unit tests of uppercase: `make test`. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "sluice_test.h"

#define EQ(p, n, s) (n == strlen(s) && memcmp(p, s, n) == 0)

int main(void) {
    sluice_harness *h;
    assert(!sluice_harness_new(NULL, &h));

    sluice_output *in = sluice_harness_input(h);
    sluice_emit(in, "k", 1, "hello, World 1", 14, 7);
    sluice_emit_header(in, "trace", 5, "t-1", 3);
    sluice_emit_header(in, "trace", 5, NULL, 0);
    sluice_emit(in, NULL, 0, "\xc3\xbcn\xc3\xaf" "code ok", 12, 8);
    sluice_batch out;
    assert(!sluice_harness_run(h, &out));
    assert(out.count == 2);
    sluice_record r = sluice_batch_record(&out, 0);
    assert(r.has_key && EQ(r.key, r.key_len, "k"));
    assert(EQ(r.value, r.value_len, "HELLO, WORLD 1") && r.timestamp == 7);
    assert(sluice_record_header_count(&r) == 2);
    sluice_header hd = sluice_record_header(&r, 0);
    assert(EQ(hd.key, hd.key_len, "trace") && EQ(hd.value, hd.value_len, "t-1"));
    assert(!sluice_record_header(&r, 1).has_value);
    r = sluice_batch_record(&out, 1);
    assert(!r.has_key && r.key == NULL);
    assert(EQ(r.value, r.value_len, "\xc3\xbcN\xc3\xaf" "CODE OK"));
    assert(sluice_record_header_count(&r) == 0);
    sluice_harness_free(h);

    sluice_error *e = sluice_harness_new((const char *[]){"x", "1", NULL}, &h);
    assert(e && e->kind == SLUICE_BAD_CONFIG);
    assert(!strcmp(e->message, "unknown setting `x` (this operator takes no settings)"));
    sluice_error_free(e);
    puts("uppercase: all tests passed");
    return 0;
}
