// The whole native surface of the agent: every koffi declaration lives here and nothing outside
// kernel/ imports koffi. Layouts follow ../shared/PIDFD_REFERENCE.md (x86_64 and arm64, LP64).
import koffi from 'koffi';

type NativeFunction = ReturnType<ReturnType<typeof koffi.load>['func']>;

export const libc = koffi.load('libc.so.6');

const arm64 = process.arch === 'arm64';

/** Syscall numbers for the calls glibc 2.36 has no (complete) wrapper for. */
export const NR = arm64 ? { waitid: 95, openat2: 437, pidfd_getfd: 438 } : { waitid: 247, openat2: 437, pidfd_getfd: 438 };

export const errno = (): number => koffi.errno();

// waitid through syscall(2): glibc's waitid() passes NULL as the fifth (rusage) argument. A
// fixed-arity declaration is ABI-compatible for integer/pointer arguments and ~2x cheaper.
export const sysWaitid = libc.func('syscall', 'long', ['long', 'int', 'int', 'void *', 'int', 'void *']);

export const sysOpenat2 = libc.func('syscall', 'long', ['long', 'int', 'str', 'void *', 'size_t']);
export const sysPidfdGetfd = libc.func('syscall', 'long', ['long', 'int', 'int', 'unsigned int']);
export const open = libc.func('int open(const char *path, int flags, unsigned int mode)');
export const fstatfs = libc.func('int fstatfs(int fd, void *buf)');

export const pidfd_open = libc.func('int pidfd_open(int pid, unsigned int flags)');
export const pidfd_send_signal = libc.func('int pidfd_send_signal(int pidfd, int sig, void *info, unsigned int flags)');
export const ioctlPtr = libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']);
export const poll = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');

export const epoll_create1 = libc.func('int epoll_create1(int flags)');
export const epoll_ctl = libc.func('int epoll_ctl(int epfd, int op, int fd, void *event)');
export const epoll_wait = libc.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)');
export const eventfd = libc.func('int eventfd(unsigned int initval, int flags)');

export const close = libc.func('int close(int fd)');
/** Gives the malloc heap's free pages back to the kernel: glibc otherwise keeps them after a burst. */
export const malloc_trim = libc.func('int malloc_trim(size_t pad)');
/** glibc's malloc statistics, all arenas summed (size_t fields; uordblks: bytes in use). */
const Mallinfo2 = koffi.struct('mallinfo2', {
  arena: 'size_t',
  ordblks: 'size_t',
  smblks: 'size_t',
  hblks: 'size_t',
  hblkhd: 'size_t',
  usmblks: 'size_t',
  fsmblks: 'size_t',
  uordblks: 'size_t',
  fordblks: 'size_t',
  keepcost: 'size_t',
});
export const mallinfo2 = libc.func('mallinfo2', Mallinfo2, []) as () => { uordblks: number | bigint; hblkhd: number | bigint };
/** Advice on a range of this process's mappings (the address as a number: no pointer is made). */
export const madvise = libc.func('int madvise(uintptr_t addr, size_t len, int advice)');
export const memfd_create = libc.func('int memfd_create(const char *name, unsigned int flags)');
export const fcntl = libc.func('int fcntl(int fd, int cmd, ...)');
export const close_range = libc.func('int close_range(unsigned int first, unsigned int last, int flags)');
export const pipe2 = libc.func('int pipe2(_Out_ int *fds, int flags)');
export const read = libc.func('long read(int fd, void *buf, size_t n)');
export const write = libc.func('long write(int fd, const void *buf, size_t n)');

export const sigemptyset = libc.func('int sigemptyset(void *set)');
export const sigfillset = libc.func('int sigfillset(void *set)');

// posix_spawn returns the error number instead of setting errno.
export const posix_spawn = libc.func('int posix_spawn(_Out_ int *pid, const char *path, void *fa, void *attr, const char **argv, const char **envp)');
export const fa_init = libc.func('int posix_spawn_file_actions_init(void *fa)');
export const fa_destroy = libc.func('int posix_spawn_file_actions_destroy(void *fa)');
export const fa_adddup2 = libc.func('int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)');
export const fa_addopen = libc.func('int posix_spawn_file_actions_addopen(void *fa, int fd, const char *path, int oflag, unsigned int mode)');
export const fa_addchdir_np = libc.func('int posix_spawn_file_actions_addchdir_np(void *fa, const char *path)');
export const attr_init = libc.func('int posix_spawnattr_init(void *attr)');
export const attr_setflags = libc.func('int posix_spawnattr_setflags(void *attr, short flags)');
export const attr_setpgroup = libc.func('int posix_spawnattr_setpgroup(void *attr, int pgroup)');
export const attr_setsigmask = libc.func('int posix_spawnattr_setsigmask(void *attr, const void *set)');
export const attr_setsigdefault = libc.func('int posix_spawnattr_setsigdefault(void *attr, const void *set)');

function optional(proto: string): NativeFunction | null {
  try {
    return libc.func(proto);
  } catch {
    return null;
  }
}

/** glibc >= 2.39: spawn and get a pidfd in one call; null on older glibc (2.36 here). */
export const pidfd_spawn = optional('int pidfd_spawn(_Out_ int *pidfd, const char *path, void *fa, void *attr, const char **argv, const char **envp)');
export const pidfd_getpid = optional('int pidfd_getpid(int pidfd)');
/** glibc >= 2.34: the child closes every fd from `from` up before exec. */
export const fa_addclosefrom_np = optional('int posix_spawn_file_actions_addclosefrom_np(void *fa, int from)');

/** A libuv poll handle on the main loop (koffi marks this API as subject to change: pinned). */
export type PollHandle = ReturnType<typeof koffi.node.poll>;
export const watchReadable = (fd: number, onReadable: () => void): PollHandle =>
  koffi.node.poll(fd, { readable: true, writable: false, disconnect: false }, onReadable);

export const errnoNumbers = koffi.os.errno as Readonly<Record<string, number>>;

// The first name wins, so EAGAIN is reported rather than its alias EWOULDBLOCK.
export const errnoNames: ReadonlyMap<number, string> = (() => {
  const names = new Map<number, string>();
  for (const [name, n] of Object.entries(errnoNumbers)) if (!names.has(n)) names.set(n, name);
  return names;
})();

export const kill = libc.func('int kill(int pid, int sig)');

export const posix_openpt = libc.func('int posix_openpt(int flags)');
export const grantpt = libc.func('int grantpt(int fd)');
export const unlockpt = libc.func('int unlockpt(int fd)');
// Returns the error number instead of setting errno.
export const ptsname_r = libc.func('int ptsname_r(int fd, _Out_ char *buf, size_t len)');
export const isatty = libc.func('int isatty(int fd)');

export const getpagesize = libc.func('int getpagesize(void)');

export const inotify_init1 = libc.func('int inotify_init1(int flags)');
export const inotify_add_watch = libc.func('int inotify_add_watch(int fd, const char *path, uint32_t mask)');

/** The agent's memory reclaim (src/native/mrelease.c, built by make into dist/lib). */
export const loadReclaim = (path: string) => koffi.load(path).func('int pidfd_agent_mrelease(int pidfd, int timeoutMs, _Out_ int *attempts)');

/** The agent's spawn shim (src/native/pidfd-spawn.c, built by make into dist/lib). */
export const loadSpawnShim = (path: string): NativeFunction =>
  koffi
    .load(path)
    .func('int pidfd_agent_spawn(const char *path, const char **argv, const char **envp, const char *cwd, int in, int out, int err, int newSession, int cgroupProcs, _Out_ int *pid, _Out_ int *step)');

/** The agent's spawner threads (src/native/pidfd-spawn.c, in the spawn shim's library). */
export const loadSpawner = (path: string) => {
  const lib = koffi.load(path);
  return { start: lib.func('int pidfd_spawner_start(int threads)'), maxRequest: lib.func('int pidfd_spawner_max_request(void)') };
};
export const send = libc.func('long send(int fd, const void *buf, size_t n, int flags)');
export const recv = libc.func('long recv(int fd, void *buf, size_t n, int flags)');

/** The handover's descriptor passing (src/native/fdpass.c, built by make into dist/lib). */
export const loadFdPassing = (path: string) => {
  const lib = koffi.load(path);
  return {
    maxFds: lib.func('int fdpass_max_fds(void)'),
    listen: lib.func('int fdpass_listen(const char *path, int backlog, int type, int mode, long long gid)'),
    accept: lib.func('int fdpass_accept(int listener, _Out_ int *cred)'),
    connect: lib.func('int fdpass_connect(const char *path, _Out_ int *cred, int timeoutMs)'),
    send: lib.func('long fdpass_send(int fd, const void *data, size_t len, const void *fds, int nfds, int timeoutMs)'),
    recv: lib.func('long fdpass_recv(int fd, void *data, size_t cap, void *fds, int maxfds, _Out_ int *nfds, int timeoutMs)'),
  };
};

// NSS lookups (blocking, like every NSS client; they honour nsswitch.conf, unlike parsing /etc).
export const PasswdStruct = koffi.struct('passwd', {
  pw_name: 'char *', pw_passwd: 'char *', pw_uid: 'uint32_t', pw_gid: 'uint32_t',
  pw_gecos: 'char *', pw_dir: 'char *', pw_shell: 'char *',
});
export const GroupStruct = koffi.struct('group', { gr_name: 'char *', gr_passwd: 'char *', gr_gid: 'uint32_t', gr_mem: 'void *' });
export const getpwnam = libc.func('passwd *getpwnam(const char *name)');
export const getpwuid = libc.func('passwd *getpwuid(uint32_t uid)');
export const getgrnam = libc.func('group *getgrnam(const char *name)');
export const getgrgid = libc.func('group *getgrgid(uint32_t gid)');
export const getgrouplist = libc.func('int getgrouplist(const char *user, uint32_t group, _Out_ uint32_t *groups, _Inout_ int *ngroups)');
export const decodeStruct = (ptr: unknown, type: ReturnType<typeof koffi.struct>): unknown => koffi.decode(ptr, type);
