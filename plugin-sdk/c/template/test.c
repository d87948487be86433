/* Native unit tests of {{NAME}}: `make test` (no Wasm needed). */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "sluice_test.h"

static void prefixes_values(void) {
    sluice_harness *h;
    const char *const *out;
    assert(!sluice_harness_new((const char *[]){"prefix", "* ", NULL}, &h));
    assert(!sluice_harness_run_lines(h, (const char *[]){"hello", "world", NULL}, &out));
    assert(!strcmp(out[0], "* hello") && !strcmp(out[1], "* world") && !out[2]);
    sluice_harness_free(h);
}

static void logs_the_prefix(void) {
    sluice_harness *h;
    sluice_test_log_clear();
    assert(!sluice_harness_new(NULL, &h));
    assert(sluice_test_log_count() == 1);
    assert(!strcmp(sluice_test_log(0), "INFO prefixing values with \"> \""));
    sluice_harness_free(h);
}

static void rejects_empty_values_by_index(void) {
    sluice_harness *h;
    assert(!sluice_harness_new(NULL, &h));
    sluice_error *e = sluice_harness_run_lines(h, (const char *[]){"ok", "", NULL}, NULL);
    assert(e && e->kind == SLUICE_BAD_RECORDS && e->rejection_count == 1);
    assert(e->rejections[0].index == 1);
    assert(!strcmp(e->rejections[0].reason, "empty value"));
    sluice_error_free(e);
    sluice_harness_free(h);
}

static void unknown_setting_is_refused(void) {
    sluice_harness *h;
    sluice_error *e = sluice_harness_new((const char *[]){"prefx", "x", NULL}, &h);
    assert(e && e->kind == SLUICE_BAD_CONFIG);
    assert(!strcmp(e->message, "unknown setting `prefx` (accepted: prefix)"));
    sluice_error_free(e);
}

int main(void) {
    prefixes_values();
    logs_the_prefix();
    rejects_empty_values_by_index();
    unknown_setting_is_refused();
    puts("{{NAME}}: all tests passed");
    return 0;
}
