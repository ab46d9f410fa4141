// libFuzzer, linked by -sanitize=fuzzer, defines the driver; this file adds the failure.
#include "CFuzzerDriver.h"

#include <stdio.h>
#include <stdlib.h>

void fuzz_fail(const char *message) {
    fprintf(stderr, "%s\n", message);
    fflush(stderr);
    abort();
}
