/* trigger.c: reports written without a call from the program: at exit
 * and at the first allocation failure (TESSERA_REPORT), on a signal
 * (TESSERA_REPORT_SIGNAL) and every few seconds
 * (TESSERA_REPORT_INTERVAL_S).
 *
 * Owns: the reporter thread, started at load and again in a fork child,
 * and the report at exit.  The core starts nothing for reports: these
 * run from constructors and a destructor of this layer.
 */
#include "report.h"

/* A symbol for a static Windows program's link to ask for (-Wl,-u, which
 * the CMake target tessera::prefixed adds; CMakeLists.txt says why), so
 * that this object, and with it the constructor and the report at exit,
 * comes along from libtessera-prefixed.a. */
tsri_hidden extern const char tsri_report_triggers_anchor;
const char tsri_report_triggers_anchor = 1;

static _Atomic int trigger_running;
static _Atomic int trigger_signalled;

static void on_report_signal(void) {
  atomic_store_explicit(&trigger_signalled, 1, memory_order_relaxed);
  tsri_os_wakeup_post();
}

static void report_write(const char *reason) {
  const char *dest = tsri_option_string(TSRI_OPT_REPORT);
  tsri_report_to((tsr_format_t)tsri_option(TSRI_OPT_REPORT_FORMAT), dest ? dest : "stderr", reason);
}

/* None in a process that forbade itself system calls since it started
 * (os.h: tsri_os_restricted): the report's calls may be what kills it,
 * and OpenSSH's child also limits the files it writes to 0 bytes, where a
 * write, even of a warning to a stderr that is a file, raises SIGXFSZ. */
static void report_now(const char *reason) {
  if (!tsri_os_restricted()) report_write(reason);
}

static void trigger_thread(void *arg) {
  (void)arg;
  uint64_t interval_ms = (uint64_t)tsri_option(TSRI_OPT_REPORT_INTERVAL_S) * 1000;
  uint64_t next = interval_ms ? tsri_os_clock_ms() + interval_ms : 0;
  for (;;) {
    uint64_t now = tsri_os_clock_ms();
    tsri_os_wakeup_wait(next == 0 ? 0 : (next > now ? next - now : 1));
    if (atomic_exchange_explicit(&trigger_signalled, 0, memory_order_relaxed)) report_now("signal");
    if (next != 0 && tsri_os_clock_ms() >= next) {
      report_now("interval");
      next = tsri_os_clock_ms() + interval_ms;
    }
  }
}

static void triggers_start(void) {
  int64_t sig = tsri_option(TSRI_OPT_REPORT_SIGNAL);
  int64_t interval = tsri_option(TSRI_OPT_REPORT_INTERVAL_S);
  if (sig == 0 && interval == 0) return;
  if (atomic_exchange_explicit(&trigger_running, 1, memory_order_acq_rel)) return;
  int rc = tsri_os_wakeup_init();
  if (rc == 0) rc = tsri_os_thread_start(trigger_thread, NULL);
  if (rc != 0) {
    /* EPERM: a fork child that forbade itself system calls (os.h:
     * tsri_os_restricted) is told nothing, as for the reclaimer: a write
     * to a stderr that is a file raises SIGXFSZ in OpenSSH's child */
    if (rc != EPERM)
      tsri_warning("cannot start the report thread; TESSERA_REPORT_SIGNAL and _INTERVAL_S are off");
    return;
  }
  if (sig != 0 && tsri_os_signal((int)sig, on_report_signal) != 0)
    tsri_warning("cannot install the handler of TESSERA_REPORT_SIGNAL");
}

/* A fork child, at its first allocation slow path (the core calls it so:
 * init.c, tsri_on_fork_child): its parent's report thread is not there. */
static void triggers_restart(void) {
  int running = 1;
  if (atomic_compare_exchange_strong_explicit(&trigger_running, &running, 0, memory_order_acq_rel,
                                              memory_order_relaxed))
    triggers_start();
}

/* At load, after the core's constructor (priority 101) has read the
 * options the triggers depend on. */
/* TESSERA_REPORT: the report at failure, written by the thread whose
 * request the OS refused (the core calls it so: own.c, tsri_refused),
 * before that request returns NULL, holding none of tessera's locks.  The
 * first refusal only: a program that retries smaller requests would
 * write one per try; the later ones are counted in the reports after. */
static _Atomic int failure_reported;

static void report_at_failure(void) {
  if (atomic_exchange_explicit(&failure_reported, 1, memory_order_relaxed)) return;
  report_now("failure");
}

__attribute__((constructor)) static void triggers_at_load(void) {
  tsri_init();
  tsri_on_fork_child(triggers_restart);
  if (tsri_option_string(TSRI_OPT_REPORT) != NULL) tsri_on_refusal(report_at_failure);
  triggers_start();
}

/* TESSERA_REPORT: the report at exit, after the program's own atexit
 * handlers and destructors (ours was registered before theirs). */
__attribute__((destructor)) static void report_at_exit(void) {
  /* restricted (report_now): not even the C library's freeres then */
  if (tsri_option_string(TSRI_OPT_REPORT) == NULL || tsri_os_restricted()) return;
  if (tsri_os_others_gone()) {
    /* a thread that was ended holding one of our locks would hang the
     * report, and the process with it */
    tsri_warning("no report at exit: the process's other threads ended before tessera was "
                 "unloaded; link tessera statically or call tsr_report() before exit");
    return;
  }
  tsri_os_runtime_freeres();
  report_write("exit");   /* restricted: asked above */
}
