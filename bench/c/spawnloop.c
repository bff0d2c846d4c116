// spawnloop: the physical limit of "start a process, learn it exited" and "signal a running
// process, learn it died" on this machine, in C. Adapted from shared/baselines/peers/c/spawnbench.c.
// Exits are learnt the agent's way, without the agent: a pidfd per child, poll(), then
// waitid(P_PIDFD) (waitpid(-1) would scan every child, O(N) with N held).
//
// usage: spawnloop tput <conc> <n>             /bin/true n times, conc in flight
//        spawnloop sig  <conc> <n> <settle_ms> batches of conc `sleep 100000`: settle, SIGTERM
//                                              all, reap all (latency = kill -> reap, per child)
//        spawnloop start <n>                   start n `sleep 100000` one after another, each with
//                                              its pidfd (the agent's start_1000 in C); then kill all
//        spawnloop suite <t1> <t16> <s1> <s16> <settle_ms>   all of them under one SPAWNLOOP_HOLD:
//                                              tput c=1/16 with posix_spawn, then with clone,
//                                              sig c=1/16; one JSON line each, with "case"
// env:   SPAWNLOOP_HOLD=N   first start N `sleep 100000` children, each held by a pidfd, like a
//                           manager with N processes (killed and reaped at the end)
//        SPAWNLOOP_SPAWN=clone  spawn with clone(CLONE_VM|CLONE_VFORK|CLONE_FILES|CLONE_PIDFD)
//                           and close_range(3, ~0, CLOSE_RANGE_UNSHARE) in the child before
//                           execve, instead of posix_spawn: the child copies 3 descriptors, not
//                           the whole table (posix_spawn copies all N, and exec closes them)
// prints one JSON object per run: {"wall_s":..,"bad":..,"lat_ns":[..]}
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

extern char **environ;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static char *true_argv[] = {"/bin/true", NULL};
static char *sleep_argv[] = {"/bin/sleep", "100000", NULL};
static int use_clone;
static char *clone_stack;
enum { STACK_SIZE = 1 << 16 };

static void die(const char *what) {
  perror(what);
  exit(1);
}

static int clone_child(void *arg) {
  char **argv = arg;
  syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_UNSHARE);
  execve(argv[0], argv, environ);
  _exit(127);
}

/** Starts argv; returns a pidfd for it. */
static int spawn(char **argv) {
  if (use_clone) {
    int pidfd = -1;
    // CLONE_VFORK: we are suspended until the child execs, so one stack serves every child.
    if (clone(clone_child, clone_stack + STACK_SIZE, CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PIDFD | SIGCHLD, argv, &pidfd) < 0) die("clone");
    return pidfd;
  }
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
  if (rc) {
    errno = rc;
    die("posix_spawn");
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) die("pidfd_open");
  return pidfd;
}

/** Reaps the exited child behind pidfd and closes it; returns its wait status code/signal. */
static siginfo_t reap(int pidfd) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (syscall(SYS_waitid, P_PIDFD, pidfd, &si, WEXITED, NULL) < 0) die("waitid");
  close(pidfd);
  return si;
}

static const char *label;

static void print_json(double wall, int bad, const uint64_t *lat, int n) {
  printf("{");
  if (label) printf("\"case\":\"%s\",", label);
  printf("\"wall_s\":%.6f,\"bad\":%d,\"lat_ns\":[", wall, bad);
  for (int i = 0; i < n; i++) printf(i ? ",%llu" : "%llu", (unsigned long long)lat[i]);
  printf("]}\n");
  fflush(stdout);
}

static void tput(int conc, int n) {
  uint64_t *lat = calloc((size_t)n, sizeof *lat);
  uint64_t *t0 = calloc((size_t)conc, sizeof *t0);
  struct pollfd *pfd = calloc((size_t)conc, sizeof *pfd);
  int started = 0, done = 0, bad = 0;
  uint64_t T0 = now_ns();
  for (int s = 0; s < conc; s++) {
    pfd[s].fd = -1;
    pfd[s].events = POLLIN;
    if (started < n) {
      t0[s] = now_ns();
      pfd[s].fd = spawn(true_argv);
      started++;
    }
  }
  while (done < n) {
    if (poll(pfd, (nfds_t)conc, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    for (int s = 0; s < conc; s++) {
      if (pfd[s].fd < 0 || !(pfd[s].revents & POLLIN)) continue;
      siginfo_t si = reap(pfd[s].fd);
      lat[done++] = now_ns() - t0[s];
      if (!(si.si_code == CLD_EXITED && si.si_status == 0)) bad++;
      pfd[s].fd = -1;
      if (started < n) {
        t0[s] = now_ns();
        pfd[s].fd = spawn(true_argv);
        started++;
      }
    }
  }
  print_json((double)(now_ns() - T0) / 1e9, bad, lat, n);
}

static void sig(int conc, int n, int settle_ms) {
  uint64_t *lat = calloc((size_t)n, sizeof *lat);
  uint64_t *t0 = calloc((size_t)conc, sizeof *t0);
  struct pollfd *pfd = calloc((size_t)conc, sizeof *pfd);
  int done = 0, bad = 0;
  uint64_t T0 = now_ns();
  while (done < n) {
    int k = n - done < conc ? n - done : conc;
    for (int s = 0; s < k; s++) {
      pfd[s].fd = spawn(sleep_argv);
      pfd[s].events = POLLIN;
    }
    struct timespec ts = {settle_ms / 1000, (long)(settle_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    for (int s = 0; s < k; s++) {
      t0[s] = now_ns();
      if (syscall(SYS_pidfd_send_signal, pfd[s].fd, SIGTERM, NULL, 0) < 0) die("pidfd_send_signal");
    }
    for (int left = k; left > 0;) {
      if (poll(pfd, (nfds_t)k, -1) < 0) {
        if (errno == EINTR) continue;
        die("poll");
      }
      for (int s = 0; s < k; s++) {
        if (pfd[s].fd < 0 || !(pfd[s].revents & POLLIN)) continue;
        siginfo_t si = reap(pfd[s].fd);
        lat[done++] = now_ns() - t0[s];
        if (!(si.si_code == CLD_KILLED && si.si_status == SIGTERM)) bad++;
        pfd[s].fd = -1;
        left--;
      }
    }
  }
  print_json((double)(now_ns() - T0) / 1e9, bad, lat, n);
}

static int *held;
static int nheld;

static void hold(int n) {
  struct rlimit rl = {(rlim_t)n + 1024, (rlim_t)n + 1024};
  if (setrlimit(RLIMIT_NOFILE, &rl) < 0) die("setrlimit");
  held = calloc((size_t)n, sizeof *held);
  for (nheld = 0; nheld < n; nheld++) held[nheld] = spawn(sleep_argv);
}

static void unhold(void) {
  for (int i = 0; i < nheld; i++) syscall(SYS_pidfd_send_signal, held[i], SIGKILL, NULL, 0);
  for (int i = 0; i < nheld; i++) reap(held[i]);
}

int main(int argc, char **argv) {
  const char *how = getenv("SPAWNLOOP_SPAWN");
  use_clone = how && !strcmp(how, "clone");
  clone_stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (clone_stack == MAP_FAILED) die("mmap");
  const char *h = getenv("SPAWNLOOP_HOLD");
  if (h && atoi(h) > 0) {
    int how_asked = use_clone;
    use_clone = 1; // fast whatever the table size; the held sleepers are the same either way
    hold(atoi(h));
    use_clone = how_asked;
  }
  if (argc >= 4 && !strcmp(argv[1], "tput")) tput(atoi(argv[2]), atoi(argv[3]));
  else if (argc >= 5 && !strcmp(argv[1], "sig")) sig(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
  else if (argc >= 3 && !strcmp(argv[1], "start")) {
    uint64_t T0 = now_ns();
    hold(atoi(argv[2]));
    label = "start";
    print_json((double)(now_ns() - T0) / 1e9, 0, NULL, 0);
  } else if (argc >= 7 && !strcmp(argv[1], "suite")) {
    int settle = atoi(argv[6]);
    for (use_clone = 0; use_clone <= 1; use_clone++) {
      label = use_clone ? "tput-clone-1" : "tput-posix-1";
      tput(1, atoi(argv[2]));
      label = use_clone ? "tput-clone-16" : "tput-posix-16";
      tput(16, atoi(argv[3]));
    }
    use_clone = 0;
    label = "sig-1";
    sig(1, atoi(argv[4]), settle);
    label = "sig-16";
    sig(16, atoi(argv[5]), settle);
  } else {
    fprintf(stderr, "usage: spawnloop tput CONC N | sig CONC N SETTLE_MS | start N | suite T1 T16 S1 S16 SETTLE_MS\n");
    return 2;
  }
  unhold();
  return 0;
}
