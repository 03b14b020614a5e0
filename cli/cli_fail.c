/* cli_fail.c: the CLI's one-line error, in its own file so that test tools linking a few CLI
 * files (tests/phase_report_tool.c) use it without cli/main.c. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("stx: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}
