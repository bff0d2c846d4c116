// pidfd-spawn: start a program with clone(CLONE_VM|CLONE_VFORK|CLONE_FILES|CLONE_PIDFD), for every
// child that needs neither the exec helper nor a terminal. Unlike posix_spawn, the
// child does not copy the agent's descriptor table (10,000 pidfds when 10,000 processes are held)
// only to close it again: it shares the table until close_range(3, ~0U, CLOSE_RANGE_UNSHARE),
// which unshares only fds 0-2 (a pipe or file for 0-2 it then takes from the agent with
// pidfd_getfd). C only runs in the child; it shares the agent's memory until execve
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
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_BYTES (64 * 1024)

struct job {
  const char *path;
  char *const *argv;
  char *const *envp;
  const char *cwd;   // NULL: the agent's
  int stdio[3];      // -1: /dev/null; the target's own number: the agent's (inherit); else an agent fd to dup onto it
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
  // Other agent fds are gone from this table: the child takes its own reference to each one it
  // needs from the agent, through a pidfd (pidfd_getfd), rather than a copy of the whole table.
  int fetched[3] = {-1, -1, -1};
  int agent = -1;
  for (int fd = 0; fd < 3; fd++) {
    if (j->stdio[fd] < 0 || j->stdio[fd] == fd) continue;
    if (agent < 0) {
      pid_t ppid = getppid();
      agent = (int)syscall(SYS_pidfd_open, ppid, 0);
      // The number names the agent only while it is still our parent (it may have died meanwhile).
      if (agent >= 0 && getppid() != ppid) errno = ESRCH;
      if (agent < 0 || getppid() != ppid) { j->step = 3; goto fail; }
    }
    fetched[fd] = (int)syscall(SYS_pidfd_getfd, agent, j->stdio[fd], 0);
    if (fetched[fd] < 0) { j->step = 3; goto fail; }
  }
  if (agent >= 0) close(agent);
  for (int fd = 0; fd < 3; fd++) {
    if (fetched[fd] >= 0) {
      if (dup2(fetched[fd], fd) < 0) { j->step = 3; goto fail; }
      close(fetched[fd]);
      continue;
    }
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

/** Clones and execs j on `stack` (STACK_BYTES); returns the pidfd or -errno with j->step set. */
static int start_job(struct job *j, char *stack, int *pid_out) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int pidfd = -1;
  pid_t pid = clone(child, stack + STACK_BYTES, CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PIDFD | SIGCHLD, j, &pidfd);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid < 0) return -clone_errno;
  if (j->step != 0) {
    siginfo_t si;
    while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR) {}
    close(pidfd);
    return -j->err;
  }
  *pid_out = pid;
  return pidfd;
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
  int rc = start_job(&j, stack, pid_out);
  munmap(stack, STACK_BYTES);
  if (rc < 0) *failed_step = j.step;
  return rc;
}

// The spawner: threads of the agent that each wait for a request on one end of a SOCK_SEQPACKET
// socketpair, clone + exec it as above, and answer on the same socket. The agent's main thread
// sends requests without blocking and reads answers when its end turns readable, so a spawn
// costs it two plain system calls instead of a threadpool round trip per spawn.
//
// A request is one message: struct request, then NUL-terminated strings: path, cwd (if has_cwd),
// argc arguments, envc environment entries. An answer is struct answer.
struct request {
  uint32_t id;
  int32_t stdio[3];
  int32_t new_session;
  int32_t cgroup_procs;
  uint32_t argc;
  uint32_t envc;
  uint32_t has_cwd;
};

struct answer {
  uint32_t id;
  int32_t result; // the pidfd, or -errno
  int32_t step;   // the failed step, as for pidfd_agent_spawn
  int32_t pid;
  uint64_t ino;   // the pidfd's pidfs inode
};

#define REQUEST_BYTES (128 * 1024)

int pidfd_spawner_max_request(void) { return REQUEST_BYTES; }

/** Points out[0..n) at the next n strings of buf[*at..len); false if the message ends first. */
static int take_strings(char *buf, size_t len, size_t *at, char **out, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    char *end = memchr(buf + *at, '\0', len - *at);
    if (end == NULL) return 0;
    out[i] = buf + *at;
    *at = (size_t)(end - buf) + 1;
  }
  return 1;
}

static void serve(int sock, struct request *req, char *buf, size_t len, char *stack) {
  struct answer a = {req->id, -EINVAL, 0, 0, 0};
  char **ptrs = NULL;
  if (req->argc < REQUEST_BYTES && req->envc < REQUEST_BYTES) ptrs = malloc(((size_t)req->argc + req->envc + 4) * sizeof *ptrs);
  if (ptrs == NULL) {
    a.result = -ENOMEM;
  } else {
    char **path = ptrs, **cwd = ptrs + 1, **argv = ptrs + 2, **envp = argv + req->argc + 1;
    size_t at = sizeof *req;
    *cwd = NULL;
    if (take_strings(buf, len, &at, path, 1) && take_strings(buf, len, &at, cwd, req->has_cwd ? 1 : 0) &&
        take_strings(buf, len, &at, argv, req->argc) && take_strings(buf, len, &at, envp, req->envc) && at == len) {
      argv[req->argc] = NULL;
      envp[req->envc] = NULL;
      struct job j = {*path, argv, envp, *cwd, {req->stdio[0], req->stdio[1], req->stdio[2]}, req->new_session, req->cgroup_procs, 0, 0};
      a.result = start_job(&j, stack, &a.pid);
      a.step = j.step;
      struct stat st;
      if (a.result >= 0 && fstat(a.result, &st) == 0) a.ino = st.st_ino;
    }
    free(ptrs);
  }
  ssize_t sent;
  while ((sent = send(sock, &a, sizeof a, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
  if (sent == (ssize_t)sizeof a || a.result < 0) return;
  // Nobody will take this child: it must not run on unmanaged, and its pidfd is closed here once.
  syscall(SYS_pidfd_send_signal, a.result, SIGKILL, NULL, 0);
  siginfo_t si;
  while (waitid(P_PIDFD, (id_t)a.result, &si, WEXITED) < 0 && errno == EINTR) {}
  close(a.result);
}

static void *spawner(void *arg) {
  int sock = (int)(intptr_t)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); // the agent's signal handlers run on its own threads
  char *buf = malloc(REQUEST_BYTES);
  char *stack = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (buf != NULL && stack != MAP_FAILED) {
    for (;;) {
      ssize_t n = recv(sock, buf, REQUEST_BYTES, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break; // the agent closed its end
      struct request req;
      if ((size_t)n < sizeof req) continue; // no id to answer to
      memcpy(&req, buf, sizeof req);
      serve(sock, &req, buf, (size_t)n, stack);
    }
  }
  free(buf);
  if (stack != MAP_FAILED) munmap(stack, STACK_BYTES);
  return NULL;
}

static int threads_left = 0;
static pthread_mutex_t left_lock = PTHREAD_MUTEX_INITIALIZER;

static void *spawner_thread(void *arg) {
  spawner(arg);
  pthread_mutex_lock(&left_lock);
  int last = --threads_left == 0;
  pthread_mutex_unlock(&left_lock);
  if (last) close((int)(intptr_t)arg);
  return NULL;
}

/**
 * Starts `threads` spawner threads that share one socket; returns the agent's end (non-blocking,
 * close-on-exec) or -errno. The threads own the other end together and run until the agent
 * closes its end; the last one to leave closes it.
 */
int pidfd_spawner_start(int threads) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return -errno;
  if (fcntl(sv[0], F_SETFL, O_NONBLOCK) != 0) {
    int e = errno;
    close(sv[0]);
    close(sv[1]);
    return -e;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_mutex_lock(&left_lock);
  threads_left = threads;
  int started = 0, err = 0;
  for (; started < threads; started++) {
    pthread_t t;
    if ((err = pthread_create(&t, &attr, spawner_thread, (void *)(intptr_t)sv[1])) != 0) break;
    pthread_setname_np(t, "pidfd-spawner");
  }
  threads_left = started;
  pthread_mutex_unlock(&left_lock);
  pthread_attr_destroy(&attr);
  if (started == 0) {
    close(sv[0]);
    close(sv[1]);
    return -err;
  }
  return sv[0];
}
