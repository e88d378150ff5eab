/* error.c: messages on stderr for bad calls and internal failures.
 *
 * Owns: the one place that reports a caller's mistake (tsri_error) and
 * counts it by kind, the warnings, and the assert printer.  Everything formats into a buffer on
 * the stack with a formatter of our own, so a report can be written from
 * inside malloc, from a fork child or while the heap is inconsistent.
 */
#include "internal.h"

_Atomic uint64_t tsri_error_counts[TSR_ERROR_KINDS];

static size_t put_str(char *buf, size_t size, size_t at, const char *s) {
  while (*s && at + 1 < size) buf[at++] = *s++;
  return at;
}

static size_t put_uint(char *buf, size_t size, size_t at, uint64_t v, unsigned base) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v != 0);
  while (n > 0 && at + 1 < size) buf[at++] = digits[--n];
  return at;
}

/* Format into buf (size > 0); returns the length. */
static size_t format(char *buf, size_t size, const char *fmt, va_list ap) {
  size_t at = 0;
  for (const char *f = fmt; *f && at + 1 < size; f++) {
    if (*f != '%') { buf[at++] = *f; continue; }
    f++;
    if (*f == 's') {
      const char *s = va_arg(ap, const char *);
      at = put_str(buf, size, at, s ? s : "(null)");
    } else if (*f == 'p') {
      at = put_str(buf, size, at, "0x");
      at = put_uint(buf, size, at, (uint64_t)(uintptr_t)va_arg(ap, void *), 16);
    } else if (*f == 'z' && f[1] == 'u') {
      f++;
      at = put_uint(buf, size, at, (uint64_t)va_arg(ap, size_t), 10);
    } else if (*f == 'd') {
      int v = va_arg(ap, int);
      if (v < 0) { at = put_str(buf, size, at, "-"); v = -v; }
      at = put_uint(buf, size, at, (uint64_t)v, 10);
    } else if (*f == 'x') {
      at = put_uint(buf, size, at, (uint64_t)va_arg(ap, unsigned), 16);
    } else if (*f == '%') {
      buf[at++] = '%';
    } else {
      break;
    }
  }
  buf[at] = 0;
  return at;
}

static void message(const char *kind, const char *fmt, va_list ap) {
  char buf[512];
  size_t at = put_str(buf, sizeof buf, 0, "tessera: ");
  at = put_str(buf, sizeof buf, at, kind);
  at += format(buf + at, sizeof buf - at - 1, fmt, ap);
  buf[at++] = '\n';
  tsri_os_write_stderr(buf, at);
}

void tsri_error_begin(tsr_error_kind_t kind, const char *fmt, ...) {
  atomic_fetch_add_explicit(&tsri_error_counts[kind], 1, memory_order_relaxed);
  va_list ap;
  va_start(ap, fmt);
  message("error: ", fmt, ap);
  va_end(ap);
}

void tsri_error_line(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  message("  ", fmt, ap);
  va_end(ap);
}

void tsri_error_end(void) {
  if (tsri_option(TSRI_OPT_ON_ERROR) == TSRI_ON_ERROR_ABORT) {
    static const char hint[] =
        "tessera: aborting (set TESSERA_ON_ERROR=continue to ignore such calls)\n";
    tsri_os_write_stderr(hint, sizeof hint - 1);
    tsri_os_abort();
  }
}

void tsri_error(tsr_error_kind_t kind, const char *fmt, ...) {
  atomic_fetch_add_explicit(&tsri_error_counts[kind], 1, memory_order_relaxed);
  va_list ap;
  va_start(ap, fmt);
  message("error: ", fmt, ap);
  va_end(ap);
  tsri_error_end();
}

void tsri_warning(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  message("warning: ", fmt, ap);
  va_end(ap);
}

_Noreturn void tsri_assert_fail(const char *expr, const char *file, int line) {
  char buf[512];
  size_t at = put_str(buf, sizeof buf, 0, "tessera: internal assertion failed: ");
  at = put_str(buf, sizeof buf, at, expr);
  at = put_str(buf, sizeof buf, at, " at ");
  at = put_str(buf, sizeof buf, at, file);
  at = put_str(buf, sizeof buf, at, ":");
  at = put_uint(buf, sizeof buf, at, (uint64_t)line, 10);
  at = put_str(buf, sizeof buf, at, "\n");
  tsri_os_write_stderr(buf, at);
  tsri_os_abort();
}
