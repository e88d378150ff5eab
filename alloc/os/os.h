/* os.h: the platform interface.  Everything tessera asks of the operating
 * system goes through these functions; one implementation per OS
 * (posix.c, windows.c), chosen by CMake.  Nothing outside alloc/os/ includes
 * an OS header for memory, threads or I/O.
 *
 * Layer: alloc/os/ is the bottom of the four (docs/design.md).  Besides
 * memory, threads, files and signals it owns what needs the platform's
 * formats: the stack walk (unwind*.c and cfi.c: the DWARF CFI of
 * .eh_frame, on x86-64 Linux and i686 Windows) and symbols (symbols_elf.c,
 * windows_symbols.c, DWARF line tables).  It calls no other layer of tessera, and no function of
 * the heap.
 *
 * Contract, for every function below unless it says otherwise:
 *  - addresses and sizes are multiples of tsri_os_page_size() (memory
 *    functions), output pointers are non-NULL;
 *  - the return value is 0 on success or an errno value (ENOMEM, EINVAL,
 *    ENOTSUP) on failure, and errno itself is left as the caller had it;
 *  - nothing here calls malloc, so every function may be used while the
 *    heap is being initialised or from a fork handler.
 *
 * Memory states: a range is reserved (address space only, any access
 * faults), committed (readable and writable, zero on first touch after a
 * commit), or released (no longer ours).  Reserve and commit map onto
 * mmap(PROT_NONE) and mprotect on POSIX, onto VirtualAlloc MEM_RESERVE and
 * MEM_COMMIT on Windows.
 */
#ifndef TSR_OS_H
#define TSR_OS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define tsri_hidden
#else
#define tsri_hidden __attribute__((visibility("hidden")))
#endif

/* ---- sizes ------------------------------------------------------------ */

/* The unit of commit and protection (4 KiB on x86-64 Linux and Windows). */
tsri_hidden size_t tsri_os_page_size(void);
/* The unit and alignment of reservations (the page size on POSIX, 64 KiB on
 * Windows). */
tsri_hidden size_t tsri_os_granularity(void);

/* ---- memory ----------------------------------------------------------- */

/* Reserve size bytes aligned to align (a power of two, at least the
 * granularity).  The range is not accessible until committed. */
tsri_hidden int tsri_os_reserve(size_t size, size_t align, void **out);
/* Placement.  Reservations and allocations go where the OS puts them,
 * except that in a 32-bit Windows process an aligned reservation (an
 * arena) takes the lowest free aligned window, and the two calls for
 * large blocks below are made top down (MEM_TOP_DOWN): long-lived small
 * blocks at the bottom, large blocks, which come and go, at the top, so
 * that the free space between stays one range (FastMM's rule; windows.c).
 * On POSIX the kernel's own order stands (Linux hands out mappings top
 * down, under the stack). */

/* Reserve size bytes that, where the OS allows, are read and written
 * without a commit (*open true; POSIX: mapped readable and writable with
 * MAP_NORESERVE, so a page costs memory once touched, and no commit or
 * decommit ever changes a protection, which would split the mapping and
 * count against vm.max_map_count); elsewhere (Windows) a plain
 * reservation, committed as usual (*open false). */
tsri_hidden int tsri_os_reserve_open(size_t size, size_t align, void **out, bool *open);
/* Reserve and commit in one call: size bytes, readable, writable, zero. */
tsri_hidden int tsri_os_alloc(size_t size, size_t align, void **out);
/* The same for a large block: placed high (see Placement). */
tsri_hidden int tsri_os_alloc_high(size_t size, size_t align, void **out);
/* Memory for a moment, outside the cap: as tsri_os_alloc (page-aligned)
 * and tsri_os_release, but not counted against TESSERA_RESERVE_LIMIT, so
 * that a report about running out is written when the cap is reached
 * (its tables, the snapshot of the large blocks). */
tsri_hidden int tsri_os_alloc_uncapped(size_t size, void **out);
tsri_hidden void tsri_os_release_uncapped(void *addr, size_t size);
/* Make [addr, addr+size) of a reservation readable, writable and zero where
 * it was not committed before. */
tsri_hidden int tsri_os_commit(void *addr, size_t size);
/* Give the physical memory behind [addr, addr+size) back; the range stays
 * reserved, its contents are gone, and it must be committed again before
 * use.  Whether an access in between faults depends on the OS (Windows:
 * yes; POSIX: the range reads as zero, so that no mapping is split, but
 * for locked memory, below). */
tsri_hidden int tsri_os_decommit(void *addr, size_t size);
/* Whether the program locked its memory (POSIX: mlockall; the kernel
 * refuses to discard locked pages): decommit then makes a range
 * inaccessible, and memory from tsri_os_reserve_open must be committed
 * before use like any other.  False for good until first seen. */
tsri_hidden bool tsri_os_memory_locked(void);
/* Discard the contents of committed [addr, addr+size) and give the
 * physical memory back, keeping the range committed and accessible: the
 * next touch gets fresh pages (zero on POSIX; on Windows, MEM_RESET,
 * whatever the OS left there, so callers must not count on zero).  For
 * free blocks inside pages that are in use. */
tsri_hidden int tsri_os_reset(void *addr, size_t size);
/* Give the whole reservation [addr, addr+size) back to the OS. */
tsri_hidden int tsri_os_release(void *addr, size_t size);
/* Move or resize a committed reservation made by tsri_os_alloc without
 * copying where the OS can (mremap); ENOTSUP where it cannot. */
tsri_hidden int tsri_os_remap(void *addr, size_t old_size, size_t new_size, void **out);
/* Cap the address space held in reservations (tsri_os_reserve,
 * tsri_os_alloc, a growing tsri_os_remap) at limit bytes, 0: no cap.  A
 * call that would pass it answers ENOMEM without asking the OS; releases
 * give their bytes back to the budget.  Set once while tessera comes up
 * (TESSERA_RESERVE_LIMIT); counts from the first reservation on. */
tsri_hidden void tsri_os_reserve_limit(uint64_t limit);
/* Bytes of address space held in reservations now (what the cap counts). */
tsri_hidden uint64_t tsri_os_reserved(void);
/* The biggest reservation the OS grants now, to the granularity, up to
 * TSRI_OS_PROBE_MAX (4 GiB: all of a 32-bit process; on 64-bit it means
 * "at least that", and the OS's cost of a reservation grows with its
 * size under wine): a binary search of reservations, each released at
 * once, so nothing is kept and the cap is not consulted.  What decides
 * whether a large request can succeed, whatever the OS's map calls free
 * (wine's VirtualQuery calls much of the free space reserved). */
#define TSRI_OS_PROBE_MAX ((uint64_t)1 << 32)
tsri_hidden uint64_t tsri_os_largest_reservation(void);

/* ---- threads ---------------------------------------------------------- */

/* Register fn to be called with value when a thread that called
 * tsri_os_thread_set exits.  Called once, during initialisation; when the
 * OS refuses then, tsri_os_thread_set tries again. */
tsri_hidden int tsri_os_thread_exit_init(void (*fn)(void *value));
/* Attach value to the calling thread for the exit callback (NULL: none).
 * 0, or ENOMEM when the OS refuses (the callback will not run for this
 * thread). */
tsri_hidden int tsri_os_thread_set(void *value);
/* Let another thread run (used by spins that waited too long). */
tsri_hidden void tsri_os_yield(void);
/* Sleep while *addr == expected; may return early, for no reason (the
 * caller checks again).  Linux sleeps on a futex; Windows and other POSIX
 * systems yield once (windows.c says why not WaitOnAddress).  For the
 * locks of core/internal.h. */
tsri_hidden void tsri_os_wait(_Atomic int *addr, int expected);
/* Wake one thread sleeping in tsri_os_wait on addr. */
tsri_hidden void tsri_os_wake(_Atomic int *addr);
/* True when the process runs with privileges its caller lacks
 * (set-user-ID, set-group-ID, file capabilities: Linux's AT_SECURE), so
 * that settings from the caller's environment must not steer it.  Always
 * false on Windows. */
tsri_hidden bool tsri_os_secure(void);
/* Whether the calling thread may make fewer system calls than when
 * tessera started: a seccomp filter installed since (OpenSSH's
 * privilege-separated child, a program sandboxing itself), seen as it was
 * installed (tsri_os_restriction_seen) or read from the thread's state,
 * or a refusal to open that state (a filter's, a Landlock ruleset's; a
 * chroot without /proc is no such thing).  Such a filter may kill the
 * process at the first call it does not name, so tessera then starts no
 * thread (tsri_os_thread_start refuses with EPERM) and meshing stops.
 * tsri_os_restriction_note, at start, takes the state to compare with
 * (Linux: the Seccomp and Seccomp_filters lines of
 * /proc/thread-self/status; where it cannot be read then, only a filter
 * seen as it was installed counts, and on other systems none).  Once
 * true, true for good (but where the file could not be opened for want
 * of a descriptor or of memory: true for that call alone);
 * tsri_os_restricted_known says so without asking the OS again.  Reads
 * a file of the kernel's each call until then: for calls made at most a
 * few times a second. */
tsri_hidden void tsri_os_restriction_note(void);
tsri_hidden bool tsri_os_restricted(void);
/* The program installed a seccomp filter through the C library (the
 * override's prctl and syscall saw it: posix_seccomp.c):
 * restricted from now on, without a look at /proc, an openat that a few
 * filters kill the process for. */
tsri_hidden void tsri_os_restriction_seen(void);
tsri_hidden bool tsri_os_restricted_known(void);
/* True once the OS has ended the process's other threads wherever they
 * stood (Windows: a DLL's detach during ExitProcess), so that a lock one of
 * them held stays held for good.  Always false on POSIX, where exit()
 * runs the destructors while the other threads still run. */
tsri_hidden bool tsri_os_others_gone(void);
/* Ask the C++ runtime to free the blocks it keeps for the life of the
 * process and frees at exit only when a leak checker asks (libstdc++'s
 * emergency exception pool, 72 KiB allocated as it loads, through
 * __gnu_cxx::__freeres, the call valgrind makes): before a report at
 * exit, so that they are not leaks.  No effect without that runtime. */
tsri_hidden void tsri_os_runtime_freeres(void);
/* The C++ name `name` (mangled, "_Z...", up to any symbol version after
 * an '@') decoded into out (size bytes, cut to fit) by the process's C++
 * runtime (__cxa_demangle, which allocates from the heap): true when
 * decoded; false for other names and without that runtime. */
tsri_hidden bool tsri_os_demangle(const char *name, char *out, size_t size);
/* Register the three fork handlers (POSIX only; 0 and no effect elsewhere). */
tsri_hidden int tsri_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
/* True when the C library knows that the process never had a second
 * thread (glibc 2.32 and later: __libc_single_threaded, which glibc's own
 * fork reads to take no lock then); false when it may have had one, or
 * the C library cannot say (and always on Windows). */
tsri_hidden bool tsri_os_single_threaded(void);
/* The C library's lock on its list of open streams, which its fork takes
 * after the fork handlers' prepare and before its own malloc's locks
 * (glibc: _IO_list_lock; recursive, so fork taking it again is fine).
 * Fork's prepare takes it before tessera's locks, for the same order as
 * glibc's malloc; unlock gives it back in the parent and resets it in the
 * child (child: true).  No effect where the C library does not export it
 * (musl) and on Windows. */
tsri_hidden void tsri_os_stdio_lock(void);
tsri_hidden void tsri_os_stdio_unlock(bool child);

/* ---- call stacks and symbols ------------------------------------------- */

/* Store up to max return addresses of the calling thread's stack in frames,
 * innermost first, after dropping the `skip` innermost frames above the
 * caller of this function (skip 0: frames[0] is where the caller returns
 * to).  Returns how many were stored.  Must not allocate, must not take a
 * lock that a malloc caller may hold, and must give an answer (possibly
 * short) on any stack, including a thread's first and last frames. */
tsri_hidden size_t tsri_os_stack_capture(void **frames, size_t max, size_t skip);

/* Remembering stacks.  A thread that allocates in a loop captures the same
 * stack over and over; where the platform can prove that the stack is
 * unchanged by re-reading the few stack words its walk read last time
 * (TSRI_OS_STACK_MEMO is 1), a capture that finds its stack in the memo
 * costs those loads instead of a walk.  The memo belongs to one thread,
 * starts zeroed, and must be zeroed again before another thread uses it.
 * Elsewhere the memo is never consulted and every capture walks. */
#if defined(__x86_64__) && defined(__linux__)
#define TSRI_OS_STACK_MEMO 1
#else
#define TSRI_OS_STACK_MEMO 0
#endif
#define TSRI_OS_MEMO_WAYS 4     /* stacks remembered per thread */
#define TSRI_OS_MEMO_READS 48   /* stack words a remembered walk may have read */

typedef struct tsri_os_memo_way_s {
  uintptr_t fp;                 /* frame the walk started from; 0: empty */
  uintptr_t key;                /* the caller's key for the stack */
  uint32_t tag;                 /* what the caller named it; 0: not named yet */
  uint32_t reads;               /* words read by the walk */
  uint32_t off[TSRI_OS_MEMO_READS];    /* their addresses, as offsets from fp */
  uintptr_t val[TSRI_OS_MEMO_READS];   /* and what they held */
} tsri_os_memo_way_t;

typedef struct tsri_os_stack_memo_s {
  tsri_os_memo_way_t way[TSRI_OS_MEMO_WAYS];
  uint32_t pending;             /* 1 + the way the last walk filled; 0: none */
} tsri_os_stack_memo_t;

/* Both memo functions take fp, the frame address
 * (__builtin_frame_address(0)) of the function capturing, which keeps a
 * frame pointer for it and is still running: the walk starts there, and a
 * remembered stack is found again only from the same frame.
 *
 * tsri_os_stack_memo_find: the name that tsri_os_stack_memo_tag gave the
 * stack an earlier capture with the same fp and key walked, when the
 * calling thread's stack is provably still that stack; 0 otherwise.  key
 * must be the return address held by a frame the walk passes, which no
 * frame nearer fp returns to (the return address of the program's call
 * into the capturing code): unless it is the first word the walk read,
 * the memo does not read that word again, since the reads before it fix
 * where it lies and the key is what it holds.
 *
 * tsri_os_stack_capture_memo: tsri_os_stack_capture from fp's function
 * outwards (the first frames may be that function's own), noting in the
 * memo what the walk read; a tsri_os_stack_memo_tag before the thread's
 * next capture names the stack just walked. */
#if TSRI_OS_STACK_MEMO
/* The way a stack captured from frame fp with key is kept in. */
static inline size_t tsri_os_memo_way(uintptr_t fp, uintptr_t key) {
  return (size_t)(((fp ^ key) * 0x9E3779B97F4A7C15ull) >> 32) % TSRI_OS_MEMO_WAYS;
}

/* Inline: under full tracking every allocation asks.  It reads words of
 * other frames, which the address and thread sanitizers would take for
 * wild accesses. */
__attribute__((no_sanitize("address", "thread"))) static inline uint32_t
tsri_os_stack_memo_find(const tsri_os_stack_memo_t *memo, void *fp, uintptr_t key) {
  typedef uintptr_t __attribute__((aligned(1), may_alias)) stack_word_t;
  const tsri_os_memo_way_t *w = &memo->way[tsri_os_memo_way((uintptr_t)fp, key)];
  if (w->fp != (uintptr_t)fp || w->key != key) return 0;
  for (uint32_t i = 0; i < w->reads; i++)
    if (*(const stack_word_t *)((uintptr_t)fp + w->off[i]) != w->val[i]) return 0;
  return w->tag;   /* 0 until tagged */
}
tsri_hidden size_t tsri_os_stack_capture_memo(void **frames, size_t max, tsri_os_stack_memo_t *memo,
                                              void *fp, uintptr_t key);
tsri_hidden void tsri_os_stack_memo_tag(tsri_os_stack_memo_t *memo, uint32_t tag);
#else
static inline uint32_t tsri_os_stack_memo_find(const tsri_os_stack_memo_t *memo, void *fp, uintptr_t key) {
  (void)memo;
  (void)fp;
  (void)key;
  return 0;
}
static inline size_t tsri_os_stack_capture_memo(void **frames, size_t max, tsri_os_stack_memo_t *memo,
                                                void *fp, uintptr_t key) {
  (void)memo;
  (void)fp;
  (void)key;
  return tsri_os_stack_capture(frames, max, 0);
}
static inline void tsri_os_stack_memo_tag(tsri_os_stack_memo_t *memo, uint32_t tag) {
  (void)memo;
  (void)tag;
}
#endif

typedef struct tsri_os_symbol_s {
  char function[256];        /* symbol name; "" when unknown */
  uintptr_t offset;          /* addr - start of that function */
  char module[256];          /* path of the executable or shared object */
  uintptr_t module_offset;   /* addr - the module's load address (for addr2line) */
  char file[256];            /* source file; "" without line information */
  unsigned line;             /* 0 without line information */
} tsri_os_symbol_t;

/* Name the code at addr (a return address: the call before it is looked
 * up).  0, or ENOENT when addr is in no module.  Calls between
 * tsri_os_symbols_begin and tsri_os_symbols_end share the files they
 * opened; outside such a batch each call opens and closes its own.  Never
 * allocates from the heap. */
tsri_hidden void tsri_os_symbols_begin(void);
tsri_hidden int tsri_os_symbolize(const void *addr, tsri_os_symbol_t *out);
tsri_hidden void tsri_os_symbols_end(void);

/* ---- process, files, address space, report triggers ---------------------- */

/* The OS id of the calling thread (gettid) and of the process. */
tsri_hidden uint32_t tsri_os_thread_id(void);
tsri_hidden uint32_t tsri_os_process_id(void);
/* The path of the running program into buf (size > 0), "" when unknown. */
tsri_hidden void tsri_os_program(char *buf, size_t size);

/* Open path for appending (created 0600 when missing, not through a
 * symbolic link), write, close.  A write stops where the file would pass
 * the process's file size limit (POSIX: RLIMIT_FSIZE, whose SIGXFSZ would
 * end the process), with EFBIG. */
tsri_hidden int tsri_os_file_append(const char *path, intptr_t *handle);
tsri_hidden int tsri_os_file_write(intptr_t handle, const char *text, size_t len);
tsri_hidden void tsri_os_file_close(intptr_t handle);

/* One mapping of the address space, as the OS describes it. */
typedef struct tsri_os_region_s {
  uintptr_t start, end;
  bool accessible;            /* false: reserved only (POSIX: no access at all;
                                 Windows: MEM_RESERVE, nothing committed) */
  unsigned prot;              /* 1 read, 2 write, 4 execute */
  const char *name;           /* file, [heap], [stack]...; "" anonymous */
  unsigned type;              /* TSR_REGION_TYPE_* of tessera.h (private, mapped,
                                 image); 0 where the OS does not say (POSIX) */
  uintptr_t base;             /* start of the reservation the region belongs to
                                 (Windows AllocationBase); 0 where unknown */
  unsigned holder;            /* TSRI_OS_HOLDER_*: who holds it, where the OS
                                 layer can tell */
} tsri_os_region_t;

/* Who holds a region, as far as the OS layer can tell (report.c adds
 * tessera's own and the images and mapped files).  Windows: a private
 * reservation with a guard page (or the calling thread's stack) is a
 * stack; one that holds a heap's handle (GetProcessHeaps) is a heap.
 * Linux: [stack] and anonymous memory right above a one-page guard with
 * no access (a thread's stack as the C library maps it) are stacks;
 * [heap] is the C library's heap. */
#define TSRI_OS_HOLDER_NONE 0u
#define TSRI_OS_HOLDER_STACK 1u
#define TSRI_OS_HOLDER_HEAP 2u
/* Call fn for every mapping, in address order (a nonzero return stops);
 * lo and hi get the bounds of the user address space.  0, or an errno
 * value when the OS will not say.  Under wine, the free parts of wine's
 * own reserved areas, which its VirtualQuery calls MEM_RESERVE, are
 * left out (free), as VirtualAlloc grants them (windows.c). */
tsri_hidden int tsri_os_regions(int (*fn)(const tsri_os_region_t *r, void *arg), void *arg,
                                uintptr_t *lo, uintptr_t *hi);

/* Run fn(arg) on a new thread of its own that the program never sees.
 * EPERM, and no system call, where tsri_os_restricted. */
tsri_hidden int tsri_os_thread_start(void (*fn)(void *arg), void *arg);
/* A wake-up that a signal handler may post: wait returns after a post, or
 * after timeout_ms (0: wait for a post only). */
tsri_hidden int tsri_os_wakeup_init(void);
tsri_hidden void tsri_os_wakeup_post(void);
tsri_hidden void tsri_os_wakeup_wait(uint64_t timeout_ms);
/* Install handler for signal `which` (1 USR1, 2 USR2, 3 HUP); the handler
 * must only do what is safe in a signal handler.  0, or ENOTSUP. */
tsri_hidden int tsri_os_signal(int which, void (*handler)(void));

/* ---- memory mapped at two addresses (core/mesh.c) ----------------------
 * A file of the process's own (a memfd on Linux) whose pages can be mapped
 * at more than one address, so that two sparsely used pages can share one
 * physical page.  Where the OS has no such file (Windows, for now) open
 * answers ENOSYS and meshing stays off.  All but open, close and why act
 * on whole OS pages and return 0 or an errno value. */
tsri_hidden int tsri_os_share_open(void);
/* Why open answers ENOSYS here, for the report's meshing state
 * `unsupported`: a phrase that names what the OS lacks, or NULL where it
 * has such a file (Linux).  Windows asks the OS once (windows_fault.c). */
tsri_hidden const char *tsri_os_share_why(void);
/* Close the file (a fork child drops its parent's). */
tsri_hidden void tsri_os_share_close(void);
/* Whether the file is still open: a program may close descriptors it did
 * not open, and another file may take the number.  The calls below check
 * it too and answer EBADF without touching that other file. */
tsri_hidden bool tsri_os_share_ok(void);
/* Make the file at least bytes long (its pages cost nothing until used). */
tsri_hidden int tsri_os_share_size(uint64_t bytes);
/* Copy size bytes from src into the file at off. */
tsri_hidden int tsri_os_share_write(uint64_t off, const void *src, size_t size);
/* Map the file's [off, off+size) read-write, shared, at addr, in place of
 * whatever was mapped there (atomically: no access sees a hole). */
tsri_hidden int tsri_os_share_map(void *addr, size_t size, uint64_t off);
/* Give the file's [off, off+size) back to the OS (a hole reads as zero). */
tsri_hidden int tsri_os_share_punch(uint64_t off, size_t size);
/* Map fresh private zero pages, read-write, at addr in place of what was
 * mapped there. */
tsri_hidden int tsri_os_private_map(void *addr, size_t size);
/* Make committed [addr, addr+size) read-only (write false) or read-write. */
tsri_hidden int tsri_os_protect(void *addr, size_t size, bool write);
/* Make [addr, addr+size) of a reservation inaccessible again (any access
 * faults) and give its memory back: the opposite of tsri_os_commit, for
 * guard pages and freed guarded slots (POSIX: a fresh PROT_NONE
 * mapping in its place; Windows: MEM_DECOMMIT). */
tsri_hidden int tsri_os_guard(void *addr, size_t size);
/* The most mappings the process may hold (vm.max_map_count on Linux). */
tsri_hidden size_t tsri_os_map_limit(void);
/* Catch access faults: fn(addr) is called for every fault of the process
 * (in the faulting thread, in a signal handler or a vectored exception
 * handler: it may only do what is safe there) and returns true when the
 * access should run again; false passes the fault on to the next fn
 * registered, and after the last to the handler the program had (POSIX;
 * on Windows to the exception handlers after ours).  Up to
 * TSRI_OS_FAULT_FNS functions, each registered once (a second call with
 * the same fn changes nothing); the handler is installed by the first.
 * 0, ENOSPC when every place is taken, ENOSYS where the OS cannot,
 * EPERM where tsri_os_restricted (rt_sigaction may kill the process).
 * tsri_os_fault_front makes sure it is still the first to see a fault:
 * where the program put a handler of its own in its place (POSIX), it goes
 * back in front and passes on to that one; false when it cannot (or was
 * never installed). */
#define TSRI_OS_FAULT_FNS 4
tsri_hidden int tsri_os_fault_catch(bool (*fn)(void *addr));
tsri_hidden bool tsri_os_fault_front(void);
/* Hold back the calling thread's asynchronous signals (not the faults),
 * saving its mask, and put it back: a handler that ran on a thread while
 * it holds a page read-only, and wrote there, would wait for itself. */
typedef struct tsri_os_sigmask_s {
  uint64_t words[16];
} tsri_os_sigmask_t;
tsri_hidden void tsri_os_signals_hold(tsri_os_sigmask_t *saved);
tsri_hidden void tsri_os_signals_restore(const tsri_os_sigmask_t *saved);
/* A pipe for a fork child to tell its parent it is ready: handles [0]
 * read, [1] write; read_byte waits for a byte or the writer's close. */
tsri_hidden int tsri_os_pipe(intptr_t handles[2]);
tsri_hidden void tsri_os_pipe_read_byte(intptr_t handle);
#if !defined(_WIN32)
/* read(2) for tessera's own reads (a /proc file, the fork pipe), straight
 * to the kernel on Linux: not through the read that libtessera.so
 * defines for the program (core/override_io.c).  Bytes read, or -1 with
 * errno set. */
tsri_hidden intptr_t tsri_os_read(int fd, void *buf, size_t size);
/* The definition of the C library function `name` that comes after
 * libtessera.so (dlsym with RTLD_NEXT), or NULL. */
tsri_hidden void *tsri_os_next_symbol(const char *name);
/* What a read from fd that fails part way does with what it did not copy:
 * TSRI_FD_FILE (a regular file or a block device: there to be read again,
 * at the offset reached), TSRI_FD_STREAM (a pipe or a stream socket:
 * there, first in line), TSRI_FD_OTHER (a datagram socket, an eventfd, a
 * timerfd, a signalfd, a terminal: it may be gone). */
enum { TSRI_FD_OTHER, TSRI_FD_FILE, TSRI_FD_STREAM };
tsri_hidden int tsri_os_fd_kind(int fd);
#endif

/* ---- failure injection (inject.c) ----------------------------------------
 * For tests of running out: each call below that can fail for want of
 * memory or address space is a named point, and TESSERA_FAIL (read by
 * core/options.c, handed over by core/init.c) makes chosen calls at a
 * point fail with ENOMEM without asking the OS.  The names are those of
 * the calls without tsri_os_; thread_key is tsri_os_thread_exit_init.
 * tsri_os_alloc_high and tsri_os_thread_start count at their own point
 * only, not at alloc as well. */
typedef enum tsri_os_point_e {
  TSRI_OS_POINT_RESERVE,
  TSRI_OS_POINT_RESERVE_OPEN,
  TSRI_OS_POINT_ALLOC,
  TSRI_OS_POINT_ALLOC_HIGH,
  TSRI_OS_POINT_COMMIT,
  TSRI_OS_POINT_DECOMMIT,
  TSRI_OS_POINT_RESET,
  TSRI_OS_POINT_REMAP,
  TSRI_OS_POINT_THREAD_KEY,
  TSRI_OS_POINT_THREAD_SET,
  TSRI_OS_POINT_THREAD_START,
  TSRI_OS_POINT_SHARE_OPEN,
  TSRI_OS_POINT_SHARE_SIZE,
  TSRI_OS_POINT_SHARE_WRITE,
  TSRI_OS_POINT_SHARE_MAP,
  TSRI_OS_POINT_SHARE_PUNCH,
  TSRI_OS_POINT_PRIVATE_MAP,
  TSRI_OS_POINT_PROTECT,
  TSRI_OS_POINT_GUARD,
  TSRI_OS_POINTS
} tsri_os_point_t;

/* Put the rules of spec in force (TESSERA_FAIL's syntax, docs/options.md:
 * point[:nth[:count]], separated by commas; NULL or "": none), replacing
 * any before; counting starts.  0, or EINVAL (nothing changed) for a spec
 * that does not parse. */
tsri_hidden int tsri_os_fail_set(const char *spec);
/* The point's name ("" for a bad one). */
tsri_hidden const char *tsri_os_point_name(tsri_os_point_t point);
/* Calls made at point since a setting came into force, and how many of
 * them were made to fail. */
tsri_hidden void tsri_os_fail_counts(tsri_os_point_t point, uint64_t *calls, uint64_t *failed);
/* Whether this call at point must fail (and count it); the backends ask
 * through TSRI_OS_FAIL, which costs a load of one flag while nothing is
 * in force. */
tsri_hidden bool tsri_os_fail_now(tsri_os_point_t point);
tsri_hidden extern _Atomic int tsri_os_fail_armed;
#define TSRI_OS_FAIL(point) \
  (__builtin_expect(atomic_load_explicit(&tsri_os_fail_armed, memory_order_relaxed) != 0, 0) && \
   tsri_os_fail_now(point))

/* ---- host services ---------------------------------------------------- */

/* Milliseconds from an arbitrary fixed point, monotonic, to the OS's
 * clock tick (a few ms).  Cheap, but on POSIX still a call into the vDSO
 * (about 5 ns); on Windows a read of a word the kernel keeps
 * (TSRI_OS_CLOCK_IS_A_READ). */
tsri_hidden uint64_t tsri_os_clock_ms(void);
#if defined(_WIN32)
#define TSRI_OS_CLOCK_IS_A_READ 1
#else
#define TSRI_OS_CLOCK_IS_A_READ 0
#endif
/* Nanoseconds from an arbitrary fixed point, monotonic: for timing
 * tessera's own pauses. */
tsri_hidden uint64_t tsri_os_clock_ns(void);
/* Sleep for about ms milliseconds. */
tsri_hidden void tsri_os_sleep_ms(uint32_t ms);
/* The value of environment variable name, or NULL; never allocates. */
tsri_hidden const char *tsri_os_getenv(const char *name);
/* Whether the C library has set up the environment yet: an allocation
 * made before its start-up code ran (a sanitizer's runtime, the dynamic
 * loader) sees none. */
tsri_hidden bool tsri_os_env_ready(void);
/* Write len bytes to standard error, ignoring failures; cut, as
 * tsri_os_file_write cuts, where it is a file at its size limit. */
tsri_hidden void tsri_os_write_stderr(const char *text, size_t len);
/* Terminate the process abnormally, as abort() does. */
tsri_hidden _Noreturn void tsri_os_abort(void);

#endif /* TSR_OS_H */
