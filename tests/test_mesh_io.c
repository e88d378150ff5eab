/* test_mesh_io.c: system calls that write into blocks whose pages meshing
 * is copying (core/override_io.c).  TESSERA_MESH=on, set by
 * tests/CMakeLists.txt; the rounds are mesh_io_helper.c's.
 *
 * The kernel cannot wait in tessera's fault handler as a thread's write
 * does: a read(2) into a page being copied fails with EFAULT.  The raw
 * system call shows that the helper's rounds meet the fence (hundreds of
 * times a second on the development machine); read, recv and readv as
 * libtessera.so defines them must never fail so, and every byte must
 * arrive in order.  Built where the override is (not under TSan or ASan,
 * whose runtimes define these calls themselves).
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct io_run_s {
  unsigned long long calls, efault, meshes, bad, other;
  int status;
} io_run_t;

static io_run_t run_helper(const char *call, const char *seconds) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s' %s %s", TSR_MESH_IO_HELPER, call, seconds);
  FILE *f = popen(cmd, "r");
  cr_assert(f != NULL, "cannot run %s", cmd);
  io_run_t r;
  memset(&r, 0, sizeof r);
  char line[512];
  bool seen = false;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "calls=%llu efault=%llu meshes=%llu bad=%llu other=%llu", &r.calls, &r.efault, &r.meshes,
               &r.bad, &r.other) == 5)
      seen = true;
  r.status = pclose(f);
  cr_assert(seen, "%s printed no figures", cmd);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0,
            "%s failed (status %d): %llu wrong bytes, %llu other errors", cmd, r.status, r.bad, r.other);
  cr_assert_gt(r.calls, 1000, "%s: the reader made only %llu calls", cmd, r.calls);
  cr_assert_gt(r.meshes, 0, "%s: nothing was meshed", cmd);
  return r;
}

Test(mesh_io, the_raw_system_call_meets_meshings_fence) {
  /* up to five runs of a second: the window is real and these rounds
   * reach it, or the test below would prove nothing */
  unsigned long long efault = 0;
  for (int run = 0; run < 5 && efault == 0; run++) efault = run_helper("raw", "1").efault;
  cr_assert_gt(efault, 0, "no read(2) into a page being meshed failed with EFAULT in five seconds");
}

static void no_call_fails(const char *call) {
  io_run_t r = run_helper(call, "2");
  cr_assert_eq(r.efault, 0, "%s failed with EFAULT %llu times in %llu calls while %llu pages were meshed", call,
               r.efault, r.calls, r.meshes);
}

Test(mesh_io, read_never_fails_for_meshing) { no_call_fails("read"); }
Test(mesh_io, recv_never_fails_for_meshing) { no_call_fails("recv"); }
Test(mesh_io, readv_never_fails_for_meshing) { no_call_fails("readv"); }
