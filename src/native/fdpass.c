// fdpass: unix SOCK_SEQPACKET sockets that carry descriptors (SCM_RIGHTS), for the agent's
// handover to its successor. In C so that CMSG_* lay out msghdr and cmsghdr for the platform.
// Each message is one datagram with at most FDPASS_MAX_FDS descriptors. Sockets are non-blocking
// and close-on-exec; send and receive wait with poll up to a timeout. Failures return -errno.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FDPASS_MAX_FDS 253 // SCM_MAX_FD

static int address(const char *path, struct sockaddr_un *a) {
  size_t n = strlen(path);
  if (n >= sizeof a->sun_path) return -ENAMETOOLONG;
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  memcpy(a->sun_path, path, n);
  return 0;
}

static int fail(int fd) {
  int e = errno;
  close(fd);
  return -e;
}

// cred: pid, uid, gid (SO_PEERCRED). The pid is 0 when the peer's is not in our pid namespace.
static int peer_cred(int fd, int *cred) {
  struct ucred c;
  socklen_t len = sizeof c;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) < 0) return -1;
  cred[0] = (int)c.pid;
  cred[1] = (int)c.uid;
  cred[2] = (int)c.gid;
  return 0;
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

// Waits for events until deadline (ms, CLOCK_MONOTONIC); EINTR does not restart the time.
static int wait_until(int fd, short events, long long deadline) {
  struct pollfd p = {.fd = fd, .events = events};
  for (;;) {
    long long left = deadline - now_ms();
    int n = poll(&p, 1, left > 0 ? (int)left : 0);
    if (n > 0) return 0; // POLLHUP and POLLERR too: the call that follows reports them
    if (n == 0) return -ETIMEDOUT;
    if (errno != EINTR) return -errno;
  }
}

// Room for one message of MAX_FD_MESSAGE_BYTES (64 KiB) with its descriptors, whatever wmem_default is.
static void size_buffers(int fd) {
  int bytes = 256 * 1024;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

int fdpass_max_fds(void) { return FDPASS_MAX_FDS; }

// type: SOCK_SEQPACKET for the handover, SOCK_STREAM for the agent's gRPC socket. mode and gid
// (each -1: as bind makes them; gid is long long as gids go past INT_MAX) are the socket file's,
// set before anyone can connect. Never by a path lookup that follows a link: a racer could have
// swapped a symlink in after bind. Linux's unix_bind gives the new file the socket inode's mode
// less the umask, so fchmod before bind makes it at most `mode` from the start; after bind the
// group, then the bits the umask took, are set on the path itself (AT_SYMLINK_NOFOLLOW: a symlink
// there is refused, not followed).
int fdpass_listen(const char *path, int backlog, int type, int mode, long long gid) {
  struct sockaddr_un a;
  int r = address(path, &a);
  if (r) return r;
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  if (mode >= 0 && fchmod(fd, (mode_t)mode) < 0) return fail(fd);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) return fail(fd);
  if ((gid >= 0 && fchownat(AT_FDCWD, path, (uid_t)-1, (gid_t)gid, AT_SYMLINK_NOFOLLOW) < 0) ||
      (mode >= 0 && fchmodat(AT_FDCWD, path, (mode_t)mode, AT_SYMLINK_NOFOLLOW) < 0) ||
      listen(fd, backlog) < 0) {
    int e = errno;
    unlink(path);
    close(fd);
    return -e;
  }
  return fd;
}

// -EAGAIN when no connection is pending. cred: the peer's pid, uid and gid (SO_PEERCRED) as of
// its connect.
int fdpass_accept(int listener, int *cred) {
  int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return -errno;
  if (peer_cred(fd, cred) < 0) return fail(fd);
  size_buffers(fd);
  return fd;
}

// -ENOENT / -ECONNREFUSED when nobody listens at path; -ETIMEDOUT when its backlog stays full.
// cred: the listener's pid, uid and gid (SO_PEERCRED) as of its listen.
int fdpass_connect(const char *path, int *cred, int timeout_ms) {
  struct sockaddr_un a;
  int r = address(path, &a);
  if (r) return r;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  size_buffers(fd);
  long long deadline = now_ms() + timeout_ms;
  // A unix connect never waits half-done: it succeeds, or fails with EAGAIN while the backlog is full.
  while (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return fail(fd);
    if (now_ms() >= deadline) {
      close(fd);
      return -ETIMEDOUT;
    }
    poll(NULL, 0, 10);
  }
  if (peer_cred(fd, cred) < 0) return fail(fd);
  return fd;
}

long fdpass_send(int fd, const void *data, size_t len, const int *fds, int nfds, int timeout_ms) {
  if (nfds < 0 || nfds > FDPASS_MAX_FDS) return -EINVAL;
  union {
    char buf[CMSG_SPACE(FDPASS_MAX_FDS * sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    m.msg_control = control.buf;
    m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return -errno;
    int r = wait_until(fd, POLLOUT, deadline);
    if (r) return r;
  }
}

// Returns the message length (0: the peer closed the connection; messages are never empty) and
// the descriptors it carried in fds[0..*nfds). A message or descriptor list that did not fit is
// -EMSGSIZE, and the descriptors that arrived with it are closed.
long fdpass_recv(int fd, void *data, size_t cap, int *fds, int maxfds, int *nfds, int timeout_ms) {
  union {
    char buf[CMSG_SPACE(FDPASS_MAX_FDS * sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = data, .iov_len = cap};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t n;
  *nfds = 0;
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return -errno;
    int r = wait_until(fd, POLLIN, deadline);
    if (r) return r;
  }
  int count = 0, dropped = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) continue;
    int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    int *received = (int *)CMSG_DATA(c);
    for (int i = 0; i < k; i++) {
      if (count < maxfds) fds[count++] = received[i];
      else {
        close(received[i]);
        dropped = 1;
      }
    }
  }
  if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || dropped) {
    for (int i = 0; i < count; i++) close(fds[i]);
    return -EMSGSIZE;
  }
  *nfds = count;
  return n;
}
