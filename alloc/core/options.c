/* options.c: every TESSERA_* environment setting, in one table.
 *
 * Owns: the names, defaults and bounds of the options, and reading them.
 * The environment name is TESSERA_ plus the upper-cased name.  Each option
 * is read once, lazily, on first use, without malloc; an invalid value
 * (not a number, out of bounds, an unknown word) is reported as a warning
 * and the default stays.  docs/options.md carries the same table.
 */
#include "internal.h"

typedef struct option_desc_s {
  const char *env;        /* environment variable */
  int64_t def;            /* default */
  int64_t min, max;       /* bounds, inclusive */
  const char *const *words;  /* accepted words (value = index), or NULL: a number */
  bool string;            /* any text: tsri_option_string gives it, tsri_option 1 if set */
  bool bytes;             /* a number of bytes: K, M, G or T (powers of 1024) may follow */
  bool privileged;        /* ignored in secure mode (tsri_os_secure): it names a file,
                             writes the heap's layout out, or changes how the
                             program fails, which its unprivileged caller may not */
  bool flags;             /* a list of words (value: bit i for words[i]), separated
                             by commas; "all" sets every bit, "none" or "off" none */
} option_desc_t;

static const char *const on_error_words[] = { "abort", "continue", NULL };
static const char *const track_words[] = { "stats", "sample", "full", NULL };
static const char *const format_words[] = { "text", "json", "openmetrics", "folded", NULL };
static const char *const mesh_words[] = { "off", "on", NULL };
static const char *const signal_words[] = { "none", "usr1", "usr2", "hup", NULL };
static const char *const debug_words[] = { "guard", "fill", "quarantine", NULL };

static const option_desc_t option_table[TSRI_OPT_COUNT] = {
  /* Milliseconds a free page or a freed large block stays committed before
   * it goes back to the OS; 0: at once; -1: never. */
  [TSRI_OPT_PURGE_DELAY_MS] = { "TESSERA_PURGE_DELAY_MS", 10, -1, 3600000, NULL, false, false, false, false },
  /* What a bad free/realloc does after its message: abort (as glibc) or
   * continue (ignore the call). */
  [TSRI_OPT_ON_ERROR] = { "TESSERA_ON_ERROR", TSRI_ON_ERROR_ABORT, 0, 1, on_error_words, false, false, true, false },
  /* Cap, in MiB, on freed large blocks kept mapped for reuse within the
   * purge delay (the cache also stays below 1/8 of the live large bytes,
   * or 32 MiB); 0 releases them on free. */
  [TSRI_OPT_LARGE_CACHE_MB] = { "TESSERA_LARGE_CACHE_MB", 256, 0, 65536, NULL, false, false, false, false },
  /* Milliseconds between two passes in which a thread gives back the OS
   * pages lying wholly inside free blocks of its partly used pages; 0: no
   * such passes (tsr_collect still does one). */
  [TSRI_OPT_TRIM_MS] = { "TESSERA_TRIM_MS", 10, 0, 3600000, NULL, false, false, false, false },
  /* Milliseconds between two passes of the background reclaimer, which
   * decommits free pages and cached large blocks and trims the pages of
   * threads that stopped allocating, so that an idle process gives memory
   * back; it starts once the process is a second old.  0: no reclaimer. */
  [TSRI_OPT_RECLAIM_MS] = { "TESSERA_RECLAIM_MS", 250, 0, 3600000, NULL, false, false, false, false },
  /* Meshing: two sparsely used OS pages of one size class whose live
   * blocks sit at different offsets share one physical page (mesh.c). */
  [TSRI_OPT_MESH] = { "TESSERA_MESH", 0, 0, 1, mesh_words, false, false, false, false },
  /* Milliseconds between two meshing passes over a heap. */
  [TSRI_OPT_MESH_MS] = { "TESSERA_MESH_MS", 250, 1, 3600000, NULL, false, false, false, false },
  /* Per-block records: stats (none), sample (about one per SAMPLE_BYTES
   * allocated), full (every block).  tsr_track_set changes it later. */
  [TSRI_OPT_TRACK] = { "TESSERA_TRACK", TSR_TRACK_SAMPLE, 0, 2, track_words, false, false, false, false },
  /* Mean bytes allocated between two sampled blocks. */
  [TSRI_OPT_SAMPLE_BYTES] = { "TESSERA_SAMPLE_BYTES", 512 * 1024, 1, (int64_t)1 << 40, NULL, false, false, false, false },
  /* Write a report at exit (and on the signal or interval below) to
   * "stderr" or to this file, appended; "%p" becomes the process id. */
  [TSRI_OPT_REPORT] = { "TESSERA_REPORT", 0, 0, 1, NULL, true, false, true, false },
  /* Format of those reports: text, json, openmetrics or folded. */
  [TSRI_OPT_REPORT_FORMAT] = { "TESSERA_REPORT_FORMAT", TSR_FORMAT_TEXT, 0, 3, format_words, false, false, false, false },
  /* A signal (usr1, usr2, hup) that asks for a report; a thread of
   * tessera's writes it, never the signal handler. */
  [TSRI_OPT_REPORT_SIGNAL] = { "TESSERA_REPORT_SIGNAL", 0, 0, 3, signal_words, false, false, true, false },
  /* Seconds between two reports in a running process; 0: none. */
  [TSRI_OPT_REPORT_INTERVAL_S] = { "TESSERA_REPORT_INTERVAL_S", 0, 0, 31536000, NULL, false, false, true, false },
  /* Sites listed in a report (the biggest). */
  [TSRI_OPT_REPORT_SITES] = { "TESSERA_REPORT_SITES", 50, 1, 1000000, NULL, false, false, false, false },
  /* Cap, in bytes, on the address space tessera holds in reservations
   * (arenas, large blocks, records); past it a request that needs a new
   * reservation gets NULL/ENOMEM.  0: no cap (the OS's own limit). */
  [TSRI_OPT_RESERVE_LIMIT] = { "TESSERA_RESERVE_LIMIT", 0, 0, (int64_t)1 << 62, NULL, false, true, true, false },
  /* The debug checks (track/debug.c), a list: guard (canary bytes past
   * each block's requested size, checked on free, realloc and tsr_check),
   * fill (new blocks and freed ones filled with patterns, the freed
   * pattern checked when the block is handed out again), quarantine
   * (freed blocks held back, FIFO, before reuse); all; none. */
  [TSRI_OPT_DEBUG] = { "TESSERA_DEBUG", 0, 0, TSRI_DEBUG_ALL, debug_words, false, false, false, true },
  /* Bytes of freed blocks the quarantine holds back (TESSERA_DEBUG). */
  [TSRI_OPT_QUARANTINE_BYTES] = { "TESSERA_QUARANTINE_BYTES", 16 << 20, 0, (int64_t)1 << 40, NULL, false, true, false, false },
  /* Guarded sampling (track/guarded.c): about one allocation in this many
   * is placed between inaccessible pages, and a fault there is reported;
   * 1: every one that fits a free slot; 0: none. */
  [TSRI_OPT_GUARD_SAMPLE] = { "TESSERA_GUARD_SAMPLE", 100000, 0, (int64_t)1 << 40, NULL, false, false, false, false },
  /* Slots of guarded sampling: its blocks live at the same time, each an
   * OS page between two inaccessible ones. */
  [TSRI_OPT_GUARD_SLOTS] = { "TESSERA_GUARD_SLOTS", 32, 1, 4096, NULL, false, false, false, false },
  /* Testing: OS calls made to fail with ENOMEM on purpose, a list of
   * point[:nth[:count]] (os/inject.c, docs/options.md). */
  [TSRI_OPT_FAIL] = { "TESSERA_FAIL", 0, 0, 1, NULL, true, false, true, false },
};

/* A text setting is copied when it is read: a program may overwrite its
 * environment strings later (a server setting its process title writes
 * over them), and the report at exit still needs the path.  Untouched
 * rows of the copies cost no memory (zero pages never written). */
#define OPTION_TEXT_MAX 4096
static _Atomic int64_t option_value[TSRI_OPT_COUNT];
static const char *_Atomic option_text[TSRI_OPT_COUNT];
static char option_copy[TSRI_OPT_COUNT][OPTION_TEXT_MAX];
static _Atomic int option_read[TSRI_OPT_COUNT];
static _Atomic uint32_t option_ignored;   /* bit per option set but ignored in secure mode */

static bool parse_number(const char *s, int64_t *out) {
  bool neg = *s == '-';
  if (neg) s++;
  if (*s == 0) return false;
  int64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10) return false;
    v = v * 10 + (*s - '0');
  }
  *out = neg ? -v : v;
  return true;
}

/* A byte count: a number and an optional K, M, G or T (any case, an
 * optional B or iB after it: 64M, 64MiB, 64mb). */
static bool parse_bytes(const char *s, int64_t *out) {
  char digits[24];
  size_t n = 0;
  while (s[n] >= '0' && s[n] <= '9') {
    if (n + 1 >= sizeof digits) return false;
    digits[n] = s[n];
    n++;
  }
  digits[n] = 0;
  if (n == 0 || !parse_number(digits, out)) return false;
  const char *u = s + n;
  unsigned shift = 0;
  switch (*u | 0x20) {
    case 'k': shift = 10; break;
    case 'm': shift = 20; break;
    case 'g': shift = 30; break;
    case 't': shift = 40; break;
    default: return *u == 0;
  }
  u++;
  if ((*u | 0x20) == 'i') u++;
  if ((*u | 0x20) == 'b') u++;
  if (*u != 0 || *out > (INT64_MAX >> shift)) return false;
  *out <<= shift;
  return true;
}

static bool parse_word(const char *s, const char *const *words, int64_t *out) {
  if (words == signal_words && (s[0] | 0x20) == 's' && (s[1] | 0x20) == 'i' && (s[2] | 0x20) == 'g')
    s += 3;   /* SIGUSR2 as well as USR2 */
  for (int64_t i = 0; words[i] != NULL; i++) {
    const char *w = words[i], *t = s;
    while (*w && (*t | 0x20) == *w) { w++; t++; }
    if (*w == 0 && *t == 0) { *out = i; return true; }
  }
  return false;
}

/* A list of words from words, one bit each, separated by commas. */
static bool parse_flags(const char *s, const char *const *words, int64_t *out) {
  int64_t all = 0;
  for (int64_t i = 0; words[i] != NULL; i++) all |= (int64_t)1 << i;
  *out = 0;
  while (*s) {
    char word[32];
    size_t n = 0;
    while (*s && *s != ',') {
      if (n + 1 >= sizeof word) return false;
      word[n++] = *s++;
    }
    word[n] = 0;
    if (*s == ',') s++;
    static const char *const all_words[] = { "none", "off", "0", "all", "on", "1", NULL };
    int64_t i;
    if (n == 0) continue;
    if (parse_word(word, all_words, &i)) *out |= i >= 3 ? all : 0;
    else if (parse_word(word, words, &i)) *out |= (int64_t)1 << i;
    else return false;
  }
  return true;
}

static int64_t option_load(tsri_option_t opt) {
  const option_desc_t *d = &option_table[opt];
  int64_t v = d->def;
  const char *s = tsri_os_getenv(d->env);
  if (s != NULL && *s != 0 && d->privileged && tsri_os_secure()) {
    atomic_fetch_or_explicit(&option_ignored, (uint32_t)1 << opt, memory_order_relaxed);
    s = NULL;
  }
  if (d->string) {
    size_t n = s != NULL ? strlen(s) : 0;
    if (n >= OPTION_TEXT_MAX) {
      tsri_warning("%s is %zu characters long, more than tessera keeps; it is ignored", d->env, n);
      n = 0;
    }
    if (n != 0) memcpy(option_copy[opt], s, n + 1);
    atomic_store_explicit(&option_text[opt], n != 0 ? option_copy[opt] : NULL, memory_order_release);
    return n != 0;
  }
  if (s != NULL && *s != 0) {
    int64_t parsed;
    bool ok = d->flags ? parse_flags(s, d->words, &parsed)
            : d->words ? parse_word(s, d->words, &parsed)
            : d->bytes ? parse_bytes(s, &parsed) : parse_number(s, &parsed);
    if (ok && parsed >= d->min && parsed <= d->max) v = parsed;
    else tsri_warning("%s=%s is not valid; using the default", d->env, s);
  }
  return v;
}

int64_t tsri_option(tsri_option_t opt) {
  if (tsr_likely(atomic_load_explicit(&option_read[opt], memory_order_acquire)))
    return atomic_load_explicit(&option_value[opt], memory_order_relaxed);
  int64_t v = option_load(opt);
  atomic_store_explicit(&option_value[opt], v, memory_order_relaxed);
  atomic_store_explicit(&option_read[opt], 1, memory_order_release);
  return v;
}

const char *tsri_option_string(tsri_option_t opt) {
  tsri_option(opt);
  return atomic_load_explicit(&option_text[opt], memory_order_acquire);
}

uint32_t tsri_options_ignored(void) { return atomic_load_explicit(&option_ignored, memory_order_relaxed); }

const char *tsri_option_name(tsri_option_t opt) { return option_table[opt].env; }

bool tsri_options_init(void) {
  for (int i = 0; i < TSRI_OPT_COUNT; i++) {
    atomic_store_explicit(&option_read[i], 0, memory_order_relaxed);
    tsri_option((tsri_option_t)i);
  }
  return tsri_os_env_ready();
}
