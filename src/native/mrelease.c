// process_mrelease(2) with the retries its contract needs, called by the agent on a threadpool
// thread (koffi async) so that freeing gigabytes never blocks the event loop, and so that errno is
// read on the thread that made the call.
//
// After SIGKILL a process is "dying" only once the kernel marked its thread group as exiting:
// until then process_mrelease fails with EINVAL, and it may return EAGAIN or EINTR when it could
// not take the mm's lock or reap everything; all three are retried until timeout_ms. ESRCH means
// no thread holds the mm any more: the exit itself has released the memory, which is success too.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_process_mrelease
#define SYS_process_mrelease 448
#endif

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// 0 once the memory is released (by this call or by the exit), else the last errno.
int pidfd_agent_mrelease(int pidfd, int timeout_ms, int *attempts) {
  long long deadline = now_ns() + (long long)timeout_ms * 1000000LL;
  struct timespec pause = {0, 100000}; // 100us between attempts
  *attempts = 0;
  for (;;) {
    ++*attempts;
    if (syscall(SYS_process_mrelease, pidfd, 0) == 0) return 0;
    int e = errno;
    if (e == ESRCH) return 0;
    if (e != EINVAL && e != EAGAIN && e != EINTR) return e;
    if (now_ns() >= deadline) return e;
    nanosleep(&pause, NULL);
  }
}
