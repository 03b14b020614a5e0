/* cli.h: shared helpers of the `stx` command-line tool (uses only the public header). */
#ifndef STX_CLI_H
#define STX_CLI_H

#include "stx.h"

#include <stdbool.h>
#include <stdio.h>

/* Prints "stx: <message>" to stderr; returns 1 (the exit code for errors). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parses "1,3,16,112,112" into dims; false on a malformed list. */
bool cli_parse_shape(const char *s, int64_t *dims, int *rank);
/* Parses a positive integer option value; false on junk. */
bool cli_parse_int(const char *s, long lo, long hi, long *out);
/* Creates the context honouring --threads (0: default). */
int cli_context(int threads, stx_context **ctx);
/* Loads a .npy input tensor (float32, or float64 for float64 models); one-line error. */
int cli_load_input(stx_context *ctx, const char *path, stx_tensor **x);
/* Loads a model, printing a one-line error on failure. */
int cli_load_model(stx_context *ctx, const char *path, stx_model **m);
double cli_now_ms(void);

int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_grad(int argc, char **argv);

#endif
