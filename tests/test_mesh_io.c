/* test_mesh_io.c: system calls that write into blocks whose pages meshing
 * is copying (core/override_io.c).  TESSERA_MESH=on, set by
 * tests/CMakeLists.txt; the rounds are mesh_io_helper.c's.
 *
 * The kernel cannot wait in tessera's fault handler as a thread's write
 * does: a read(2) into a page being copied fails with EFAULT, a call that
 * takes what it reads before it copies it out (recvmsg's header, address
 * and descriptors, a datagram, an eventfd's count, an accepted connection
 * whose address it could not write) loses it, and a file's
 * read stops short at a fenced page past its first.  The raw system call shows that
 * the helper's rounds meet the fence (hundreds of times a second on the
 * development machine).  The calls as libtessera.so defines them must
 * never fail so, and nothing may be lost: every byte of the stream
 * arrives in order, every datagram, count and descriptor is taken, every
 * file read comes back whole.  And a fork handler that runs before
 * tessera's, while fork keeps every meshed page read-only, has its reads
 * into those pages come back rather than wait for ever
 * (mesh_io_fork_helper.c).  An EFAULT of the program's own
 * still comes back.  Built where the override is (not under TSan or
 * ASan, whose runtimes define these calls themselves).
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
  char line[512], said[1024] = "";
  bool seen = false;
  while (fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "calls=%llu efault=%llu meshes=%llu bad=%llu other=%llu", &r.calls, &r.efault, &r.meshes,
               &r.bad, &r.other) == 5)
      seen = true;
    else if (strlen(said) + strlen(line) < sizeof said)
      strcat(said, line);
  }
  r.status = pclose(f);
  cr_assert(seen, "%s printed no figures: %s", cmd, said);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0,
            "%s failed (status %d): %llu lost or wrong, %llu other errors; %s", cmd, r.status, r.bad, r.other, said);
  cr_assert_gt(r.calls, 1000, "%s: the reader made only %llu calls", cmd, r.calls);
  cr_assert_gt(r.meshes, 0, "%s: nothing was meshed", cmd);
  return r;
}

Test(mesh_io, the_raw_system_call_meets_meshings_fence) {
  /* up to five runs of a second: the window is real and these rounds
   * reach it, or the tests below would prove nothing */
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
Test(mesh_io, recvfrom_loses_no_byte_for_the_address) { no_call_fails("recvfrom"); }
Test(mesh_io, recvmsg_loses_no_byte_for_the_header) { no_call_fails("recvmsg"); }
Test(mesh_io, an_eventfd_loses_no_count) { no_call_fails("eventfd"); }
Test(mesh_io, poll_never_fails_for_meshing) { no_call_fails("poll"); }
Test(mesh_io, a_read_too_big_for_the_stack_is_made_again) { no_call_fails("readbig"); }
Test(mesh_io, a_datagram_is_not_lost_for_its_senders_address) { no_call_fails("dgram"); }
Test(mesh_io, no_descriptor_passed_is_lost_for_its_control_data) { no_call_fails("fds"); }
Test(mesh_io, a_file_read_comes_back_whole) { no_call_fails("file"); }
Test(mesh_io, no_connection_is_lost_for_its_address) { no_call_fails("accept"); }
Test(mesh_io, recvmmsg_loses_no_datagram_for_the_vector) { no_call_fails("mmsg"); }
Test(mesh_io, a_preadv2_read_comes_back_whole) { no_call_fails("preadv2"); }
Test(mesh_io, pselect_never_fails_for_meshing) { no_call_fails("pselect"); }
Test(mesh_io, epoll_pwait2_never_fails_for_meshing) { no_call_fails("epoll2"); }

/* recvmmsg made in pieces (its vector, or its vector and buffers, in the
 * heap) answers as the kernel does: mesh_mmsg_helper.c's cases */
Test(mesh_io, recvmmsg_in_pieces_answers_as_the_kernel) {
  FILE *f = popen("'" TSR_MESH_MMSG_HELPER "'", "r");
  cr_assert(f != NULL);
  char said[4096] = "", line[256];
  while (fgets(line, sizeof line, f) != NULL)
    if (strlen(said) + strlen(line) < sizeof said) strcat(said, line);
  int status = pclose(f);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "recvmmsg through the heap differs from the kernel's:\n%s",
            said);
  cr_assert_not_null(strstr(said, "differences=0"), "%s", said);
}

Test(mesh_io, an_efault_of_the_programs_own_comes_back) {
  io_run_t r = run_helper("badptr", "1");
  cr_assert_eq(r.efault, r.calls, "a read into address 8 returned EFAULT %llu times in %llu calls", r.efault, r.calls);
}

Test(mesh_io, a_fork_handler_reading_during_forks_fence_goes_on) {
  FILE *f = popen("'" TSR_MESH_IO_FORK_HELPER "'", "r");
  cr_assert(f != NULL);
  char line[256] = "";
  if (fgets(line, sizeof line, f) == NULL) line[0] = 0;   /* a helper ended by its alarm prints nothing */
  int status = pclose(f);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "the fork handler's reads did not all come back (status %d, \"%s\"): a wait for fork's fence that "
            "only the forking thread lowers ends in the helper's alarm", status, line);
}
