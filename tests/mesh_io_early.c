/* mesh_io_early.c: a library whose constructor registers a fork handler
 * before tessera registers its own (mesh_io_fork_helper links it after
 * the override), so that its parent handler runs while meshing's fork
 * fence is still up: every page meshed is read-only then, and the
 * handler reads into blocks on such pages (test_mesh_io.c). */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

static unsigned char **targets;
static int target_count, source_fd;
int early_ran, early_reads, early_efaults;

void early_targets(unsigned char **blocks, int count, int fd);
void early_targets(unsigned char **blocks, int count, int fd) {
  targets = blocks;
  target_count = count;
  source_fd = fd;
}

static void early_parent(void) {
  early_ran++;
  for (int i = 0; i < target_count; i++) {
    ssize_t r = read(source_fd, targets[i], 1);
    if (r == 1) early_reads++;
    else if (r < 0 && errno == EFAULT) early_efaults++;
  }
}

__attribute__((constructor)) static void early_init(void) { pthread_atfork(NULL, early_parent, NULL); }
