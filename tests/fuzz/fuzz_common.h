/* fuzz_common.h: helpers shared by the fuzz harnesses (tests/fuzz/fuzz_*.c).
 *
 * Each harness defines LLVMFuzzerTestOneInput. Built with clang -fsanitize=fuzzer (STX_FUZZ=ON)
 * it is a libFuzzer target; linked with replay_main.c (any compiler, the ASan test build) it
 * replays a corpus and the crash inputs found so far (ctest fuzz_replay_*).
 *
 * Harnesses that need files work in one private temporary folder per process (mkdtemp under
 * $TMPDIR or /tmp), removed at exit. A harness must never read outside it. */
#ifndef STX_FUZZ_COMMON_H
#define STX_FUZZ_COMMON_H

#include "stx.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The process's private temporary folder (created on first use; NULL when that fails). */
const char *fuzz_tmpdir(void);
/* Writes size bytes to path (replacing it); 0 on success. */
int fuzz_write_file(const char *path, const void *data, size_t size);
/* A context with one thread (fuzzing and replay stay deterministic and cheap). */
stx_context *fuzz_context(void);

#endif
