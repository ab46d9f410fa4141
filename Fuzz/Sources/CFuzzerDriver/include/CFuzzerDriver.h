#ifndef C_FUZZER_DRIVER_H
#define C_FUZZER_DRIVER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (linked in by -sanitize=fuzzer): parses libFuzzer's flags from
/// argc/argv and runs `callback` on each input, returning the process's exit status.
/// Called from each target's main.swift, since SwiftPM gives an executable its own `main`.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

/// Writes `message` and a newline to standard error, then aborts: libFuzzer saves the input.
__attribute__((noreturn)) void fuzz_fail(const char *message);

#endif
