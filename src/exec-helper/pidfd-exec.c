// pidfd-exec: the agent's exec helper. The agent posix_spawns it (stdio, cwd, session and signal
// state already set up by posix_spawn); it applies what posix_spawn cannot express, then execve()s
// the target in the same process, so the PID and the agent's pidfd stay the same process.
//
//   pidfd-exec [--cgroup DIR] [--rlimit RES:SOFT:HARD]... [--umask OCTAL] [--groups G,G,...]
//              [--gid GID] [--uid UID] [--pdeathsig SIG] [--nnp] -- PATH ARGV0 [ARG...]
//
// SOFT/HARD are numbers or "inf". Setup happens in the order listed (cgroup and limits while still
// privileged; the death signal after the credential change, which would clear it). Any failure is
// reported on fd 3 as "<stage> <errno>\n" followed by _exit(127); fd 3 is close-on-exec, so end-of-
// file without data tells the agent that execve succeeded. The environment is the target's.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define REPORT_FD 3
#define MAX_GROUPS 1024

extern char **environ;

static void fail(const char *stage, int err) {
  char buf[128];
  int n = snprintf(buf, sizeof buf, "%s %d\n", stage, err);
  if (n > 0) (void)!write(REPORT_FD, buf, (size_t)n);
  _exit(127);
}

static unsigned long number(const char *stage, const char *text, int base) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(text, &end, base);
  if (errno || *text == '\0' || *end != '\0') fail(stage, EINVAL);
  return v;
}

static rlim_t limit(const char *text) {
  return strcmp(text, "inf") == 0 ? RLIM_INFINITY : (rlim_t)strtoull(text, NULL, 10);
}

static void join_cgroup(const char *dir) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= (int)sizeof path) fail("cgroup", ENAMETOOLONG);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail("cgroup", errno);
  if (write(fd, "0\n", 2) != 2) fail("cgroup", errno);
  close(fd);
}

static void set_rlimit(const char *spec) {
  char stage[64];
  int resource;
  char soft[32], hard[32];
  if (sscanf(spec, "%d:%31[^:]:%31s", &resource, soft, hard) != 3) fail("rlimit", EINVAL);
  snprintf(stage, sizeof stage, "setrlimit:%d", resource);
  struct rlimit rl = {limit(soft), limit(hard)};
  if (setrlimit(resource, &rl) != 0) fail(stage, errno);
}

static void set_groups(const char *list) {
  gid_t groups[MAX_GROUPS];
  size_t n = 0;
  char *copy = strdup(list), *save = NULL;
  if (!copy) fail("setgroups", ENOMEM);
  for (char *g = strtok_r(copy, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
    if (n == MAX_GROUPS) fail("setgroups", E2BIG);
    groups[n++] = (gid_t)number("setgroups", g, 10);
  }
  if (setgroups(n, groups) != 0) fail("setgroups", errno);
  free(copy);
}

int main(int argc, char **argv) {
  if (fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC) != 0) _exit(126);
  int i = 1, nnp = 0, pdeathsig = 0;
  long uid = -1, gid = -1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(opt, "--nnp") == 0) { nnp = 1; continue; }
    if (!val) fail("usage", EINVAL);
    i++;
    if (strcmp(opt, "--cgroup") == 0) join_cgroup(val);
    else if (strcmp(opt, "--rlimit") == 0) set_rlimit(val);
    else if (strcmp(opt, "--umask") == 0) umask((mode_t)number("umask", val, 8));
    else if (strcmp(opt, "--groups") == 0) set_groups(val);
    else if (strcmp(opt, "--gid") == 0) gid = (long)number("setgid", val, 10);
    else if (strcmp(opt, "--uid") == 0) uid = (long)number("setuid", val, 10);
    else if (strcmp(opt, "--pdeathsig") == 0) pdeathsig = (int)number("pdeathsig", val, 10);
    else fail("usage", EINVAL);
  }
  if (i + 2 > argc) fail("usage", EINVAL);
  if (gid >= 0 && setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) fail("setgid", errno);
  if (uid >= 0 && setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) fail("setuid", errno);
  if (pdeathsig) {
    pid_t agent = getppid();
    if (prctl(PR_SET_PDEATHSIG, pdeathsig) != 0) fail("pdeathsig", errno);
    if (getppid() != agent) fail("pdeathsig", ESRCH);  // the agent died before the signal was armed
  }
  if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs", errno);
  execve(argv[i + 1], argv + i + 2, environ);
  fail("exec", errno);
}
