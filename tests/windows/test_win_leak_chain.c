/* test_win_leak_chain.c: the call stacks of a program built -O2 without
 * frame pointers, as a release build is (CMake gives this file
 * -O2 -fomit-frame-pointer in every build type).  Its main calls three
 * functions in a chain, the innermost allocates through tessera-malloc.h,
 * and the block leaks.  The program checks that the site of the leak names
 * the whole chain and main (the folded report, "outermost;...;innermost
 * bytes"); ctest checks that the text report at exit (TESSERA_REPORT=stderr)
 * lists the same frames under "leaks at exit".
 *
 * The functions are extern and noipa: no clone with a suffixed name
 * (.constprop, .isra), no inlining.  Each uses its callee's result after the
 * call, so that no call becomes a tail jump, which would take the caller's
 * frame off the stack. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tessera-malloc.h>

#define CHAIN __attribute__((noipa))

volatile size_t chain_sink;

CHAIN char *chain_inner(size_t n) {
  char *p = malloc(n);
  chain_sink += p != NULL;
  return p;
}

CHAIN char *chain_middle(size_t n) {
  char *p = chain_inner(n + 16);
  chain_sink += p != NULL;
  return p;
}

CHAIN char *chain_outer(size_t n) {
  char *p = chain_middle(n + 16);
  chain_sink += p != NULL;
  return p;
}

static char folded[1 << 16];
static size_t folded_len;

static void collect(const char *text, size_t len, void *arg) {
  (void)arg;
  if (len > sizeof folded - 1 - folded_len) len = sizeof folded - 1 - folded_len;
  memcpy(folded + folded_len, text, len);
  folded_len += len;
  folded[folded_len] = 0;
}

/* The folded line of the leak's site holds main and the chain, in this
 * order, main first on the line or after a frame below it. */
static int chain_named(void) {
  static const char chain[] = "main;chain_outer;chain_middle;chain_inner ";
  for (const char *at = strstr(folded, chain); at != NULL; at = strstr(at + 1, chain))
    if (at == folded || at[-1] == '\n' || at[-1] == ';') return 1;
  return 0;
}

int main(void) {
  char *leak = chain_outer(1000);
  int ok = leak != NULL && tsr_report(TSR_FORMAT_FOLDED, collect, NULL) == 0 && chain_named();
  if (!ok) printf("the leak's site does not name main and the chain; the folded report:\n%s", folded);
  printf("%d passed, %d failed\n", ok, !ok);
  return ok ? 0 : 1;
}
