/* fork_helper.c: the hard cases of fork, one per run of this program, in
 * a process of its own that starts with one thread, as glibc's tests do
 * (test_fork_libc.c runs it with a deadline):
 *
 *   fork_helper signal_in_fork | signal_in_malloc | stdio | mesh
 *
 * Exit status 0 when the scenario went through; otherwise a line on
 * stderr says what went wrong.  A scenario that deadlocks never ends.
 *
 * The scenarios of glibc's malloc tests that hung under tessera, written
 * anew for it:
 *  - signal_in_fork (glibc's tst-mallocfork): a child of ours sends its
 *    parent a signal at once, so the signal often lands while the parent
 *    is still inside fork; the handler forks again.
 *  - signal_in_malloc (tst-mallocfork2): another process sends signals
 *    as fast as it can while this one allocates and frees; the handler
 *    forks, so fork runs on top of an interrupted malloc or free.
 *  - mesh: a process with one thread whose pages are meshed (mesh.c)
 *    forks: the child's memory must be its own.
 *  - stdio (tst-malloc-fork-deadlock, glibc bug 19431): threads fork
 *    while one flushes every stream (fflush(NULL): the C library's list
 *    of streams locked, then each stream) and others read a long line
 *    from streams of their own (a stream locked while its buffer grows).
 *
 * Built twice: fork_helper, with the tsr_ names, where a reader grows its
 * line as glibc's getline does, with the stream locked (flockfile); and
 * fork_helper_override (TSR_SCENARIO_STANDARD), with the C names, linked
 * to the override, where getline itself calls tessera's realloc.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "tsr_test.h"

#include "tsr_scenario.h"

static void say(const char *what) {
  (void)!write(2, what, strlen(what));
}

/* The child's status, waited for through the interruptions of signals. */
static int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

/* A fork from a signal handler: a child that leaves at once. */
static volatile sig_atomic_t handler_forks;
static volatile sig_atomic_t handler_failed;

static void fork_and_wait(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  if (pid < 0 || wait_child(pid) != 0) handler_failed = 1;
  handler_forks++;
}

static bool install(int sig, void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL) == 0;
}

/* ------------------------------------------------------------------------
 * signal_in_fork
 * ---------------------------------------------------------------------- */

static void on_alarm(int sig) {
  (void)sig;
  fork_and_wait();
}

static int signal_in_fork(int rounds) {
  if (!install(SIGALRM, on_alarm)) return 2;
  pid_t parent = getpid();
  for (int i = 0; i < rounds; i++) {
    void *p = S_MALLOC(sizeof(int));
    pid_t pid = fork();
    if (pid == 0) {
      kill(parent, SIGALRM);
      _exit(0);
    }
    if (pid < 0 || wait_child(pid) != 0) {
      say("signal_in_fork: the signalling child failed\n");
      return 3;
    }
    S_FREE(p);
  }
  if (handler_failed) {
    say("signal_in_fork: a fork in the handler failed\n");
    return 4;
  }
  return 0;
}

/* ------------------------------------------------------------------------
 * signal_in_malloc
 * ---------------------------------------------------------------------- */

static volatile pid_t sender;
static volatile sig_atomic_t signalled;

/* One fork per step of the main loop: the sender is stopped until the
 * loop lets it go again, so that the loop makes progress. */
static void on_usr1(int sig) {
  (void)sig;
  if (signalled) return;
  if (sender > 0) kill(sender, SIGSTOP);
  signalled = 1;
  fork_and_wait();
}

static void send_forever(pid_t target) {
  for (;;) {
    if (kill(target, SIGUSR1) != 0) _exit(0);
    sched_yield();
  }
}

/* Until `signals` came during an allocation, or `seconds` passed.  Sizes
 * up to 300 KiB: small blocks, whose slow paths take the arena's and the
 * heaps' locks, and large ones, each of which takes the large-block lock. */
static int signal_in_malloc(int signals, double seconds) {
  enum { OBJECTS = 1009 };
  static void *objects[OBJECTS];
  if (!install(SIGUSR1, on_usr1)) return 2;
  pid_t me = getpid();
  pid_t pid = fork();
  if (pid == 0) send_forever(me);
  if (pid < 0) return 3;
  sender = pid;
  uint64_t rng = 12345;
  int got = 0;
  double until = tsr_test_now() + seconds;
  while (got < signals && tsr_test_now() < until) {
    uint64_t r = tsr_test_rand(&rng);
    size_t slot = (size_t)(r % OBJECTS);
    size_t size = (size_t)((r >> 20) % ((r & 1) ? 70000 : 300000));
    kill(sender, SIGCONT);
    signalled = 0;
    S_FREE(objects[slot]);
    objects[slot] = S_MALLOC(size);
    if (signalled) got++;
    if (objects[slot] == NULL) {
      say("signal_in_malloc: malloc failed\n");
      return 4;
    }
  }
  install(SIGUSR1, (void (*)(int))SIG_IGN);
  kill(sender, SIGKILL);
  wait_child(sender);
  for (size_t i = 0; i < OBJECTS; i++) S_FREE(objects[i]);
  if (handler_failed) {
    say("signal_in_malloc: a fork in the handler failed\n");
    return 5;
  }
  if (got == 0) {
    say("signal_in_malloc: no signal came\n");
    return 6;
  }
  return 0;
}

/* ------------------------------------------------------------------------
 * stdio
 * ---------------------------------------------------------------------- */

/* Longer than the largest size class: the last steps of a line's growth
 * take the large-block lock, with the stream locked. */
#define LINE_CHARS 200000

static _Atomic int stdio_stop;
static _Atomic int stdio_failed;
static char stdio_path[64];

static void *forker(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&stdio_stop, memory_order_relaxed)) {
    pid_t pid = fork();
    if (pid == 0) _exit(17);
    int status = pid < 0 ? -1 : wait_child(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 17) atomic_store(&stdio_failed, 1);
  }
  return NULL;
}

/* One line of f, as glibc's getdelim reads it: the stream locked while
 * the buffer grows.  With the C names, getline itself. */
static ssize_t read_line(FILE *f, char **line, size_t *cap) {
#if TSR_SCENARIO_STANDARD
  return getline(line, cap, f);
#else
  size_t len = 0;
  int c;
  flockfile(f);
  while ((c = getc_unlocked(f)) != EOF && c != '\n') {
    if (len + 2 > *cap) {
      size_t want = *cap ? *cap * 2 : 120;
      char *q = S_REALLOC(*line, want);
      if (q == NULL) break;
      *line = q;
      *cap = want;
    }
    (*line)[len++] = (char)c;
  }
  if (*line != NULL) (*line)[len] = 0;
  funlockfile(f);
  return c == '\n' ? (ssize_t)len + 1 : -1;
#endif
}

static void *reader(void *arg) {
  (void)arg;
  FILE *f = fopen(stdio_path, "r");
  if (f == NULL) {
    atomic_store(&stdio_failed, 1);
    return NULL;
  }
  while (!atomic_load_explicit(&stdio_stop, memory_order_relaxed)) {
    rewind(f);
    char *line = NULL;
    size_t cap = 0;
    if (read_line(f, &line, &cap) != LINE_CHARS + 1) atomic_store(&stdio_failed, 1);
    S_FREE(line);
  }
  fclose(f);
  return NULL;
}

static void *flusher(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&stdio_stop, memory_order_relaxed)) {
    if (fflush(NULL) != 0) atomic_store(&stdio_failed, 1);
  }
  return NULL;
}

static int stdio(int forkers, int readers, double seconds) {
  snprintf(stdio_path, sizeof stdio_path, "/tmp/tsr-fork-stdio-%ld", (long)getpid());
  FILE *w = fopen(stdio_path, "w");
  if (w == NULL) return 2;
  for (int i = 0; i < LINE_CHARS; i++) fputc('x', w);
  fputc('\n', w);
  if (fclose(w) != 0) return 3;
  enum { MAX_THREADS = 64 };
  pthread_t t[MAX_THREADS];
  int n = 0;
  for (int i = 0; i < forkers && n < MAX_THREADS; i++) pthread_create(&t[n++], NULL, forker, NULL);
  for (int i = 0; i < readers && n < MAX_THREADS; i++) pthread_create(&t[n++], NULL, reader, NULL);
  pthread_create(&t[n++], NULL, flusher, NULL);
  tsr_test_sleep_ms((long)(seconds * 1000));
  atomic_store(&stdio_stop, 1);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  unlink(stdio_path);
  if (atomic_load(&stdio_failed)) {
    say("stdio: a fork, a read or a flush failed\n");
    return 4;
  }
  return 0;
}

/* mesh (TESSERA_MESH=on, no reclaimer: the process keeps one thread): a
 * process whose sparse pages share physical pages forks.  The child must
 * have memory of its own, as it was at fork: the parent's writes after
 * fork must not reach it, nor its writes the parent. */
static int mesh_fork(void) {
  enum { COUNT = 40000, SIZE = 64 };
  static unsigned char *all[COUNT], *kept[COUNT];
  size_t n = 0;
  uint64_t seed = 9;
  for (size_t i = 0; i < COUNT; i++) {
    all[i] = S_MALLOC(SIZE);
    if (all[i] == NULL) return 1;
    memset(all[i], 0x11, SIZE);
  }
  for (size_t i = 0; i < COUNT; i++) {
    if (tsr_test_rand(&seed) % 16 == 0) kept[n++] = all[i];
    else S_FREE(all[i]);
  }
  tsr_collect();
  tsr_pins_t t;
  tsr_pins(&t, NULL, 0);
  if (t.meshes == 0) {
    say("mesh: nothing was meshed\n");
    return 1;
  }
  int to_child[2], to_parent[2];
  if (pipe(to_child) != 0 || pipe(to_parent) != 0) return 1;
  char c = 0;
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    if (read(to_child[0], &c, 1) != 1) _exit(2);
    for (size_t i = 0; i < n; i++)
      for (size_t j = 0; j < SIZE; j++)
        if (kept[i][j] != 0x11) _exit(3);
    for (size_t i = 0; i < n; i++) memset(kept[i], 0x33, SIZE);
    _exit(write(to_parent[1], &c, 1) == 1 ? 0 : 2);
  }
  for (size_t i = 0; i < n; i++) memset(kept[i], 0x22, SIZE);
  if (write(to_child[1], &c, 1) != 1 || read(to_parent[0], &c, 1) != 1) return 1;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < SIZE; j++)
      if (kept[i][j] != 0x22) {
        say("mesh: the child's write reached the parent\n");
        return 1;
      }
  int status = wait_child(pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    say(WIFEXITED(status) && WEXITSTATUS(status) == 3 ? "mesh: the parent's write reached the child\n"
                                                       : "mesh: the child failed\n");
    return 1;
  }
  for (size_t i = 0; i < n; i++) S_FREE(kept[i]);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "signal_in_fork") == 0) return signal_in_fork(300);
  if (argc == 2 && strcmp(argv[1], "signal_in_malloc") == 0)
    return signal_in_malloc(1000, (double)tsr_test_seconds() * 3);
  if (argc == 2 && strcmp(argv[1], "stdio") == 0) return stdio(4, 8, (double)tsr_test_seconds() * 2);
  if (argc == 2 && strcmp(argv[1], "mesh") == 0) return mesh_fork();
  say("usage: fork_helper signal_in_fork|signal_in_malloc|stdio|mesh\n");
  return 2;
}
