// pidfd-spawn: start a program with clone(CLONE_VM|CLONE_VFORK|CLONE_FILES|CLONE_PIDFD), for the
// common case of a child whose stdio is /dev/null or the agent's own 0-2. Unlike posix_spawn, the
// child does not copy the agent's descriptor table (10,000 pidfds when 10,000 processes are held)
// only to close it again: it shares the table until close_range(3, ~0U, CLOSE_RANGE_UNSHARE),
// which unshares only fds 0-2. C only runs in the child; it shares the agent's memory until execve
// (vfork semantics), so it only makes system calls on its own stack and reports a failure through
// memory the parent reads after the child is gone.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_BYTES (64 * 1024)

struct job {
  const char *path;
  char *const *argv;
  char *const *envp;
  const char *cwd;   // NULL: the agent's
  int stdio[3];      // -1: /dev/null; otherwise the agent's fd of that number (inherit)
  int new_session;   // else a new process group
  int cgroup_procs;  // -1, or the agent's open cgroup.procs of the cgroup the child moves into
  volatile int err;  // errno of the failed step, written by the child
  volatile int step; // which step failed (1 unshare, 2 signals, 3 stdio, 4 session, 5 chdir, 6 exec, 7 cgroup)
};

static int child(void *arg) {
  struct job *j = arg;
  // First, while the agent's descriptors are still shared: into the cgroup before the program can
  // start anything, so no descendant is ever left in the agent's cgroup.
  if (j->cgroup_procs >= 0 && write(j->cgroup_procs, "0", 1) != 1) { j->step = 7; goto fail; }
  // Only 0-2 stay; the rest of the shared table is not copied.
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_UNSHARE) != 0) { j->step = 1; goto fail; }
  // The parent blocked every signal before clone: reset dispositions (a handler is the agent's
  // code, and ignored ones would survive exec), then unblock.
  // The kernel's struct (glibc's differs, and its wrapper refuses its own signals 32 and 33).
  struct { void *handler; unsigned long flags; void *restorer; unsigned long mask; } dfl = {SIG_DFL, 0, NULL, 0};
  for (int sig = 1; sig < _NSIG; sig++) syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
  unsigned long none = 0;
  for (int fd = 0; fd < 3; fd++) {
    if (j->stdio[fd] >= 0) {
      // The agent's own fd: it is close-on-exec in the agent (libuv), keep it open here.
      if (fcntl(fd, F_SETFD, 0) != 0) { j->step = 3; goto fail; }
      continue;
    }
    int null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (null < 0) { j->step = 3; goto fail; }
    if (null != fd) {
      if (dup2(null, fd) < 0) { j->step = 3; goto fail; }
      close(null);
    }
  }
  if ((j->new_session ? setsid() : setpgid(0, 0)) < 0) { j->step = 4; goto fail; }
  if (j->cwd && chdir(j->cwd) != 0) { j->step = 5; goto fail; }
  if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none) != 0) { j->step = 2; goto fail; }
  execve(j->path, j->argv, j->envp);
  j->step = 6;
fail:
  j->err = errno;
  _exit(127);
}

/**
 * Returns a pidfd (close-on-exec) and stores the pid, or returns -errno with *failed_step set
 * (the failed child is already reaped then). Thread-safe: each call has its own stack.
 */
int pidfd_agent_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
                      int stdin_fd, int stdout_fd, int stderr_fd, int new_session, int cgroup_procs,
                      int *pid_out, int *failed_step) {
  struct job j = {path, argv, envp, cwd, {stdin_fd, stdout_fd, stderr_fd}, new_session, cgroup_procs, 0, 0};
  char *stack = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return -errno;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int pidfd = -1;
  pid_t pid = clone(child, stack + STACK_BYTES, CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PIDFD | SIGCHLD, &j, &pidfd);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  munmap(stack, STACK_BYTES);
  if (pid < 0) return -clone_errno;
  if (j.step != 0) {
    siginfo_t si;
    while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR) {}
    close(pidfd);
    *failed_step = j.step;
    return -j.err;
  }
  *pid_out = pid;
  return pidfd;
}
