/* textesc.h — text from configs made safe for a terminal and the journal.
 *
 * Names, hosts and paths come from files anyone who can write a config wrote; printed raw,
 * a newline forges a line and an ESC or C1 byte drives the terminal. Everything tcpmapctl
 * prints and every diag passes through here. This file knows nothing of configs or output
 * streams beyond a FILE *. */
#pragma once

#include <stddef.h>
#include <stdio.h>

/* A copy of the first `len` bytes of `s` (up to its NUL) with C0 controls, DEL, C1 controls
 * (U+0080-U+009F as UTF-8) and bytes that are not well-formed UTF-8 written as \xHH (\n, \t
 * and \r as such), and a backslash doubled, so that the output is unambiguous. Printable
 * ASCII and well-formed UTF-8 pass unchanged. Returns NULL when out of memory. */
char *textesc(const char *s, size_t len);
/* The same, written to `out`. */
void textesc_fputs(const char *s, FILE *out);
/* Copy everything readable from `in` to `out` escaped line by line (the newlines kept). */
void textesc_copy_lines(FILE *in, FILE *out);
