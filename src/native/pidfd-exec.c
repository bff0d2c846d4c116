// pidfd-exec: the agent's exec helper. The agent posix_spawns it (stdio, cwd, session and signal
// state already set up by posix_spawn); it applies what posix_spawn cannot express, then execve()s
// the target in the same process, so the PID and the agent's pidfd stay the same process.
//
//   pidfd-exec [--setns FD] [--cgroup-fd FD]... [--rlimit RES:SOFT:HARD]... [--umask OCTAL] [--groups G,G,...]
//              [--gid GID] [--uid UID] [--chdir DIR] [--stdout a|t:PATH] [--stderr a|t:PATH]
//              [--pdeathsig SIG] [--nnp] [--no-exec] [--candidate FILE]... -- PATH ARGV0 [ARG...]
//
// --setns FD joins the mount, UTS, IPC, network and cgroup namespaces of the process pidfd FD
// names, first, and only if the helper's own user namespace owns each (else stage setns_owner):
// the cgroup move after it happens in that cgroup namespace (cgroup v2 only lets a process move
// within its own), and --chdir, the output files and PATH's execve resolve in that mount namespace
// (the node's filesystem). --no-exec stops after
// setup with exit status 0: the agent's start-up probe of --setns.
//
// --candidate FILE, in PATH's order, replaces PATH: the helper searches them as execvp searches
// PATH, after the credential change, so a link the caller put in a directory of PATH is followed
// with the target's permissions, never root's (the agent lists only the files its policy allows).
// Before each execve it reports "try INDEX" on fd 3: the last one before end-of-file is the file
// that runs (the agent's audit names it).
//
// Descriptors: 3 is the report pipe; 4 holds the target's environment as NUL-terminated
// "NAME=value" strings (a sealed memfd). The helper itself is started with an empty environment:
// the request's LD_PRELOAD, LD_AUDIT, GCONV_PATH... must never act in a process that is still root.
// The environment only reaches the final execve.
//
// SOFT/HARD are numbers or "inf". Setup happens in the order listed (cgroup and limits while still
// privileged; the working directory and output files with the target's credentials, after the
// change, so a caller can neither make root create or append to a file nor start in a directory
// the target may not enter; the death signal after the credential change,
// which would clear it). Any failure is reported on fd 3 as "<stage> <errno>\n" followed by
// _exit(127); fd 3 is close-on-exec, so end-of-file without data tells the agent that execve
// succeeded.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define REPORT_FD 3
#define ENV_FD 4
#define MAX_GROUPS 1024
// (uid_t)-1 and (gid_t)-1 mean "unchanged" to setresuid/setresgid: asking for them would keep root.
#define NO_ID 0xffffffffUL

static void fail(const char *stage, int err) {
  char buf[128];
  int n = snprintf(buf, sizeof buf, "%s %d\n", stage, err);
  if (n > 0) (void)!write(REPORT_FD, buf, (size_t)n);
  _exit(127);
}

// Which --candidate failed, as "exec:INDEX" (the agent names its path).
static void fail_candidate(size_t index, int err) {
  char stage[32];
  snprintf(stage, sizeof stage, "exec:%zu", index);
  fail(stage, err);
}

// glibc's execvpe (posix/execvpe.c) without its /bin/sh fallback for ENOEXEC, which a path with a
// slash does not get either: a file that is missing, under a non-directory or on a gone mount goes
// on to the next; a denied one too, remembered (the first is reported if no later one runs); any
// other failure (ENOEXEC, ELOOP, ETXTBSY, E2BIG...) ends the search at that file.
static void exec_search(char **files, size_t count, char **args, char **env) {
  size_t denied = count;
  for (size_t k = 0; k < count; k++) {
    char line[32];
    int n = snprintf(line, sizeof line, "try %zu\n", k);
    if (write(REPORT_FD, line, (size_t)n) != n) fail_candidate(k, errno);
    execve(files[k], args, env);
    switch (errno) {
      case EACCES:
        if (denied == count) denied = k;
        break;
      case ENOENT: case ENOTDIR: case ESTALE: case ENODEV: case ETIMEDOUT:
        break;
      default:
        fail_candidate(k, errno);
    }
  }
  if (denied < count) fail_candidate(denied, EACCES);
  fail("exec", ENOENT);
}

static unsigned long number(const char *stage, const char *text, int base) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(text, &end, base);
  if (errno || *text == '\0' || *text == '-' || *end != '\0') fail(stage, EINVAL);
  return v;
}

static unsigned long id(const char *stage, const char *text) {
  unsigned long v = number(stage, text, 10);
  if (v >= NO_ID) fail(stage, EINVAL);
  return v;
}

static rlim_t limit(const char *text) {
  return strcmp(text, "inf") == 0 ? RLIM_INFINITY : (rlim_t)strtoull(text, NULL, 10);
}

// The environment, read whole from ENV_FD; the fd is closed so the target never inherits it.
static char **read_env(void) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf) fail("env", ENOMEM);
  for (;;) {
    if (len == cap) {
      char *bigger = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap *= 2);
      if (!bigger) fail("env", ENOMEM);
      buf = bigger;
    }
    ssize_t n = pread(ENV_FD, buf + len, cap - len, (off_t)len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("env", errno);
    if (n == 0) break;
    len += (size_t)n;
  }
  close(ENV_FD);
  if (len > 0 && buf[len - 1] != '\0') fail("env", EINVAL);
  size_t count = 0;
  for (size_t i = 0; i < len; i++) count += buf[i] == '\0';
  char **env = calloc(count + 1, sizeof *env);
  if (!env) fail("env", ENOMEM);
  for (size_t i = 0, k = 0; i < len; i += strlen(buf + i) + 1) env[k++] = buf + i;
  return env;
}

// The namespaces --setns joins, the mount namespace last: until then /proc is still the agent's.
static const struct {
  unsigned long by_pidfd; // PIDFD_GET_*_NAMESPACE (Linux 6.11)
  const char *name;       // under /proc/PID/ns, for older kernels
  int type;
} JOINED[] = {
  {_IO(0xFF, 4), "net", CLONE_NEWNET},
  {_IO(0xFF, 2), "ipc", CLONE_NEWIPC},
  {_IO(0xFF, 10), "uts", CLONE_NEWUTS},
  {_IO(0xFF, 1), "cgroup", CLONE_NEWCGROUP},
  {_IO(0xFF, 3), "mnt", CLONE_NEWNS},
};
#define JOINED_COUNT (sizeof JOINED / sizeof JOINED[0])
#define NS_GET_USERNS _IO(0xb7, 0x1)

// The pid a pidfd names, from its fdinfo (for kernels without the namespace ioctls).
static pid_t pid_of(int pidfd) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("setns", errno);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) fail("setns", n < 0 ? errno : EINVAL);
  buf[n] = '\0';
  const char *line = strstr(buf, "\nPid:\t");
  if (line == NULL) fail("setns", EINVAL);
  long pid = strtol(line + 6, NULL, 10);
  if (pid <= 0) fail("setns", ESRCH);
  return (pid_t)pid;
}

// One of the target's namespaces as a descriptor: by its pidfd, else by /proc/PID/ns/NAME opened
// while the pidfd shows the process still alive (so the PID was not reused meanwhile).
static int namespace_of(int pidfd, size_t i, pid_t *pid) {
  int fd = ioctl(pidfd, JOINED[i].by_pidfd, 0);
  if (fd >= 0 || (errno != ENOTTY && errno != EINVAL)) {
    if (fd < 0) fail("setns", errno);
    return fd;
  }
  if (*pid == 0) *pid = pid_of(pidfd);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)*pid, JOINED[i].name);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("setns", errno == ENOENT ? ESRCH : errno);
  if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) != 0) fail("setns", errno);
  return fd;
}

// Joins the target's namespaces only if the helper's own user namespace owns each of them. One a
// tenant made (unshare -Urm) is owned by the tenant's user namespace: joining its mount namespace
// as root, outside that user namespace, would run the child where the tenant controls /etc (say
// ld.so.preload) and setuid still works, i.e. as root on the node. The descriptors checked are the
// ones joined, so the target cannot swap its namespaces in between.
static void join_namespaces(const char *fd_text) {
  int pidfd = (int)number("setns", fd_text, 10);
  int ours = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
  struct stat own, owner_st;
  if (ours < 0 || fstat(ours, &own) != 0) fail("setns", errno);
  close(ours);
  int fds[JOINED_COUNT];
  pid_t pid = 0;
  for (size_t i = 0; i < JOINED_COUNT; i++) {
    fds[i] = namespace_of(pidfd, i, &pid);
    int owner = ioctl(fds[i], NS_GET_USERNS);
    if (owner < 0) fail("setns_owner", errno);
    if (fstat(owner, &owner_st) != 0) fail("setns", errno);
    close(owner);
    if (owner_st.st_dev != own.st_dev || owner_st.st_ino != own.st_ino) fail("setns_owner", EPERM);
  }
  for (size_t i = 0; i < JOINED_COUNT; i++) {
    if (setns(fds[i], JOINED[i].type) != 0) fail("setns", errno);
    close(fds[i]);
  }
  close(pidfd);
}

static void join_cgroup(const char *fd_text) {
  int fd = (int)number("cgroup", fd_text, 10);
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
    groups[n++] = (gid_t)id("setgroups", g);
  }
  if (setgroups(n, groups) != 0) fail("setgroups", errno);
  free(copy);
}

// "a:PATH" appends, "t:PATH" truncates; opened with the credentials the target will have.
static void open_output(const char *stage, int target, const char *spec) {
  if ((spec[0] != 'a' && spec[0] != 't') || spec[1] != ':') fail(stage, EINVAL);
  int flags = O_WRONLY | O_CREAT | O_NOCTTY | O_CLOEXEC | (spec[0] == 'a' ? O_APPEND : O_TRUNC);
  int fd = open(spec + 2, flags, 0644);
  if (fd < 0) fail(stage, errno);
  if (dup2(fd, target) < 0) fail(stage, errno);
  close(fd);
}

int main(int argc, char **argv) {
  if (fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC) != 0) _exit(126);
  char **env = read_env();
  int i = 1, nnp = 0, pdeathsig = 0, no_exec = 0;
  long uid = -1, gid = -1;
  const char *out = NULL, *err = NULL, *dir = NULL;
  char **candidates = calloc((size_t)argc, sizeof *candidates);
  size_t candidate_count = 0;
  if (!candidates) fail("usage", ENOMEM);
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(opt, "--nnp") == 0) { nnp = 1; continue; }
    if (strcmp(opt, "--no-exec") == 0) { no_exec = 1; continue; }
    if (!val) fail("usage", EINVAL);
    i++;
    if (strcmp(opt, "--setns") == 0) join_namespaces(val);
    else if (strcmp(opt, "--cgroup-fd") == 0) join_cgroup(val);
    else if (strcmp(opt, "--rlimit") == 0) set_rlimit(val);
    else if (strcmp(opt, "--umask") == 0) umask((mode_t)number("umask", val, 8));
    else if (strcmp(opt, "--groups") == 0) set_groups(val);
    else if (strcmp(opt, "--gid") == 0) gid = (long)id("setgid", val);
    else if (strcmp(opt, "--uid") == 0) uid = (long)id("setuid", val);
    else if (strcmp(opt, "--chdir") == 0) dir = val;
    else if (strcmp(opt, "--stdout") == 0) out = val;
    else if (strcmp(opt, "--stderr") == 0) err = val;
    else if (strcmp(opt, "--pdeathsig") == 0) pdeathsig = (int)number("pdeathsig", val, 10);
    else if (strcmp(opt, "--candidate") == 0) candidates[candidate_count++] = argv[i];
    else fail("usage", EINVAL);
  }
  if (i + 2 > argc) fail("usage", EINVAL);
  if (gid >= 0 && setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) fail("setgid", errno);
  if (uid >= 0 && setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) fail("setuid", errno);
  if (dir && chdir(dir) != 0) fail("chdir", errno);
  if (out) open_output("stdout", STDOUT_FILENO, out);
  if (err) open_output("stderr", STDERR_FILENO, err);
  if (pdeathsig) {
    pid_t agent = getppid();
    if (prctl(PR_SET_PDEATHSIG, pdeathsig) != 0) fail("pdeathsig", errno);
    if (getppid() != agent) fail("pdeathsig", ESRCH);  // the agent died before the signal was armed
  }
  if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs", errno);
  if (no_exec) _exit(0);
  if (candidate_count > 0) exec_search(candidates, candidate_count, argv + i + 2, env);
  execve(argv[i + 1], argv + i + 2, env);
  fail("exec", errno);
}
