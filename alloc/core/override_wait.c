/* override_wait.c: the waits of the read family (override_io.c has the
 * reads and the why): poll and ppoll write each pollfd's revents back,
 * select and pselect their sets, the epoll waits the events, all after
 * the wait.  Small sets go through the stack, all at once; larger ones,
 * and epoll's events (which the kernel puts back when it cannot copy
 * them), are waited for again after an EFAULT of meshing's.
 */
#include "override_io.h"

/* ---- poll, ppoll, select, pselect, epoll ----------------------------------- */

typedef int (*poll_fn)(struct pollfd *, nfds_t, int);
typedef int (*ppoll_fn)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);

static int poll_call(struct pollfd *fds, nfds_t count, int timeout, const struct timespec *ts, const sigset_t *mask,
                     bool p) {
  return p ? IO_FN(IO_PPOLL, ppoll_fn)(fds, count, ts, mask) : IO_FN(IO_POLL, poll_fn)(fds, count, timeout);
}

/* A set that is ours: through the stack when small; a larger one is
 * polled again after an EFAULT of meshing's (the kernel writes revents
 * after the wait, so that one may wait its timeout again). */
__attribute__((noinline)) static int poll_ours(struct pollfd *fds, nfds_t count, int timeout,
                                               const struct timespec *ts, const sigset_t *mask, bool p) {
  if (count <= IO_BOUNCE_POLL) {
    struct pollfd f[IO_BOUNCE_POLL];
    memcpy(f, fds, count * sizeof *fds);
    int r = poll_call(f, count, timeout, ts, mask, p);
    /* the kernel writes revents back after the wait, interrupted or not;
     * not when it turned the call away */
    if (r >= 0 || (errno != EINVAL && errno != EFAULT && errno != ENOMEM))
      for (nfds_t i = 0; i < count; i++) fds[i].revents = f[i].revents;
    return r;
  }
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    int r = poll_call(fds, count, timeout, ts, mask, p);
    if (r != -1 || errno != EFAULT || !tsri_mesh_fenced_since(seen)) return r;
  }
}

TSRI_EXPORT int poll(struct pollfd *fds, nfds_t count, int timeout) {
  if (tsr_likely(!tsri_mesh_is_armed()) || count == 0 || !OURS(fds, count * sizeof *fds)) return IO_FN(IO_POLL, poll_fn)(fds, count, timeout);
  return poll_ours(fds, count, timeout, NULL, NULL, false);
}
TSRI_EXPORT int ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask) {
  if (tsr_likely(!tsri_mesh_is_armed()) || count == 0 || !OURS(fds, count * sizeof *fds))
    return IO_FN(IO_PPOLL, ppoll_fn)(fds, count, timeout, mask);
  return poll_ours(fds, count, 0, timeout, mask, true);
}

typedef int (*select_fn)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
typedef int (*pselect_fn)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);

/* select's or (p) pselect's time and mask */
typedef struct select_wait_s {
  struct timeval *timeout;
  const struct timespec *ts;
  const sigset_t *mask;
  bool p;
} select_wait_t;

static int select_call(int count, fd_set **sets, const select_wait_t *w) {
  if (w->p) return IO_FN(IO_PSELECT, pselect_fn)(count, sets[0], sets[1], sets[2], w->ts, w->mask);
  return IO_FN(IO_SELECT, select_fn)(count, sets[0], sets[1], sets[2], w->timeout);
}

/* Through the stack, all of them: the kernel writes each set back in
 * turn, and one failing would leave the others changed.  bytes: what the
 * kernel reads and writes of each, whole longs. */
__attribute__((noinline)) static int select_ours(int count, fd_set **sets, const select_wait_t *w, size_t bytes) {
  fd_set s[3];
  fd_set *on_stack[3];
  struct timeval t;
  for (int i = 0; i < 3; i++) {
    on_stack[i] = sets[i] != NULL ? &s[i] : NULL;
    if (sets[i] != NULL) memcpy(&s[i], sets[i], bytes);
  }
  select_wait_t mine = *w;
  if (w->timeout != NULL) {
    t = *w->timeout;
    mine.timeout = &t;
  }
  int r = select_call(count, on_stack, &mine);
  if (r >= 0)
    for (int i = 0; i < 3; i++)
      if (sets[i] != NULL) memcpy(sets[i], &s[i], bytes);
  if (w->timeout != NULL) *w->timeout = t;   /* Linux writes the time left, whatever the result */
  return r;
}

static int select_any(int count, fd_set **sets, const select_wait_t *w) {
  size_t bytes = count > 0 ? ((size_t)count + 8 * sizeof(long) - 1) / (8 * sizeof(long)) * sizeof(long) : 0;
  bool mine = w->timeout != NULL && OURS(w->timeout, sizeof *w->timeout);
  for (int i = 0; i < 3; i++) mine |= sets[i] != NULL && bytes > 0 && OURS(sets[i], bytes);
  if (!mine || bytes > sizeof(fd_set)) return select_call(count, sets, w);
  return select_ours(count, sets, w, bytes);
}

TSRI_EXPORT int select(int count, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *timeout) {
  fd_set *sets[3] = { rd, wr, ex };
  select_wait_t w = { .timeout = timeout };
  return select_any(count, sets, &w);
}

/* pselect leaves its timeout as it was (the C library hands the kernel a
 * copy) */
TSRI_EXPORT int pselect(int count, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *timeout,
                        const sigset_t *mask) {
  fd_set *sets[3] = { rd, wr, ex };
  select_wait_t w = { .ts = timeout, .mask = mask, .p = true };
  return select_any(count, sets, &w);
}

typedef int (*epoll_pwait_fn)(int, struct epoll_event *, int, int, const sigset_t *);
typedef int (*epoll_pwait2_fn)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);

enum { EPOLL_WAIT, EPOLL_PWAIT, EPOLL_PWAIT2 };

/* The kernel puts back the events it could not copy: wait again. */
static int epoll_any(int fd, struct epoll_event *events, int count, int timeout, const struct timespec *ts,
                     const sigset_t *mask, int kind) {
  bool mine = tsri_mesh_is_armed() && count > 0 && OURS(events, (size_t)count * sizeof *events);
  for (;;) {
    uint64_t seen = tsri_mesh_fences();
    int r = kind == EPOLL_PWAIT2 ? IO_FN(IO_EPOLL_PWAIT2, epoll_pwait2_fn)(fd, events, count, ts, mask)
            : kind == EPOLL_PWAIT
                ? IO_FN(IO_EPOLL_PWAIT, epoll_pwait_fn)(fd, events, count, timeout, mask)
                : IO_FN(IO_EPOLL_WAIT, int (*)(int, struct epoll_event *, int, int))(fd, events, count, timeout);
    if (!mine || r != -1 || errno != EFAULT || !tsri_mesh_fenced_since(seen)) return r;
  }
}

TSRI_EXPORT int epoll_wait(int fd, struct epoll_event *events, int count, int timeout) {
  return epoll_any(fd, events, count, timeout, NULL, NULL, EPOLL_WAIT);
}
TSRI_EXPORT int epoll_pwait(int fd, struct epoll_event *events, int count, int timeout, const sigset_t *mask) {
  return epoll_any(fd, events, count, timeout, NULL, mask, EPOLL_PWAIT);
}
/* declared here too: C libraries before glibc 2.35 lack it */
TSRI_EXPORT int epoll_pwait2(int fd, struct epoll_event *events, int count, const struct timespec *timeout,
                             const sigset_t *mask);
TSRI_EXPORT int epoll_pwait2(int fd, struct epoll_event *events, int count, const struct timespec *timeout,
                             const sigset_t *mask) {
  return epoll_any(fd, events, count, 0, timeout, mask, EPOLL_PWAIT2);
}

/* ---- their _FORTIFY_SOURCE forms (override_io.c has the others) ---------- */

TSRI_EXPORT int __poll_chk(struct pollfd *fds, nfds_t count, int timeout, size_t fds_len);
TSRI_EXPORT int __poll_chk(struct pollfd *fds, nfds_t count, int timeout, size_t fds_len) {
  if (fds_len / sizeof *fds < count)
    return IO_FN(IO_POLL_CHK, int (*)(struct pollfd *, nfds_t, int, size_t))(fds, count, timeout, fds_len);
  return poll(fds, count, timeout);
}

TSRI_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask,
                            size_t fds_len);
TSRI_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask,
                            size_t fds_len) {
  if (fds_len / sizeof *fds < count)
    return IO_FN(IO_PPOLL_CHK, int (*)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *, size_t))(
        fds, count, timeout, mask, fds_len);
  return ppoll(fds, count, timeout, mask);
}
