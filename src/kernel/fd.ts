import { readdirSync } from 'node:fs';
import * as libc from './libc.js';
import { Errno, KernelError } from './errors.js';

/** An open file descriptor. Raw numbers never leave kernel/ and process/ untyped. */
export type Fd = number & { readonly __brand: 'fd' };
/** A pidfd: a stable reference to one process (or thread). */
export type Pidfd = Fd & { readonly __pidfd: true };

export const O_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;

/** Throws KernelError for a -1 result, reading errno right after the call. */
export function check(syscall: string, result: number): number {
  if (result < 0) throw new KernelError(syscall, libc.errno());
  return result;
}

/** Calls fn again while it fails with EINTR. */
export function retryEintr(syscall: string, fn: () => number): number {
  for (;;) {
    const r = fn();
    if (r >= 0) return r;
    const e = libc.errno();
    if (e !== Errno.EINTR) throw new KernelError(syscall, e);
  }
}

/**
 * Closes fd. Linux releases the descriptor even when close reports EINTR or EIO, so a close is
 * never retried (a retry could close a number another owner was just given).
 */
export function closeFd(fd: Fd): void {
  libc.close(fd);
}

const F_DUPFD_CLOEXEC = 1030;

/** A second descriptor (close-on-exec, numbered at least `lowest`) for the same open file: it has its own owner. */
export function dupFd<T extends Fd>(fd: T, lowest = 3): T {
  return check('fcntl(F_DUPFD_CLOEXEC)', libc.fcntl(fd, F_DUPFD_CLOEXEC, 'int', lowest)) as T;
}

const MFD_CLOEXEC = 1;
const MFD_ALLOW_SEALING = 2;
const MFD_NOEXEC_SEAL = 8; // 6.3; older kernels refuse the flag with EINVAL
const F_ADD_SEALS = 1033;
const F_SEAL_ALL = 0x1 | 0x2 | 0x4 | 0x8; // SEAL, SHRINK, GROW, WRITE

/**
 * A close-on-exec memfd holding `data`, sealed against any change: whoever reads it (another
 * process, after exec) sees exactly these bytes.
 */
export function sealedMemfd(name: string, data: Buffer): Fd {
  let fd = libc.memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
  if (fd < 0 && libc.errno() === Errno.EINVAL) fd = libc.memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  const memfd = check('memfd_create', fd) as Fd;
  try {
    for (let off = 0; off < data.length; ) {
      off += retryEintr('write', () => Number(libc.write(memfd, data.subarray(off), data.length - off)));
    }
    check('fcntl(F_ADD_SEALS)', libc.fcntl(memfd, F_ADD_SEALS, 'int', F_SEAL_ALL));
    return memfd;
  } catch (e) {
    closeFd(memfd);
    throw e;
  }
}

/** A close-on-exec pipe: [read end, write end]. */
export function pipe(): [Fd, Fd] {
  const fds = new Int32Array(2);
  check('pipe2', libc.pipe2(fds, O_CLOEXEC));
  return [fds[0] as Fd, fds[1] as Fd];
}

const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;

/**
 * Asks for a pipe buffer of `bytes` (rounded up to a power-of-two number of pages by the kernel);
 * returns the size it has, which stays the old one when the kernel refuses (above
 * /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE, or over the user's pipe pages).
 */
export function setPipeSize(fd: Fd, bytes: number): number {
  const got = libc.fcntl(fd, F_SETPIPE_SZ, 'int', bytes);
  return got >= 0 ? got : libc.fcntl(fd, F_GETPIPE_SZ);
}

/**
 * A new open file description (close-on-exec) of what fd refers to, with `flags` (O_RDONLY,
 * O_RDWR...): through /proc/self/fd, which for a pipe opens it anew as a FIFO is opened.
 */
export function reopenFd(fd: Fd, flags: number): Fd {
  return check('open', libc.open(`/proc/self/fd/${fd}`, flags | O_CLOEXEC, 0)) as Fd;
}

export const O_RDONLY = 0;
export const O_RDWR = 2;

export function eventfd(initial = 0): Fd {
  return check('eventfd', libc.eventfd(initial, O_CLOEXEC | O_NONBLOCK)) as Fd;
}

export const POLLIN = 0x1;
export const POLLHUP = 0x10;
/** The peer closed or shut down its sending side (a stream or seqpacket socket). */
export const POLLRDHUP = 0x2000;

/**
 * poll(2) on one descriptor: its revents, 0 once timeoutMs passed (0: just look, -1: no limit).
 * An EINTR restarts the wait with the full timeout: a signal only makes it longer.
 */
export function pollOne(fd: Fd, events: number, timeoutMs: number): number {
  pollBuf.writeInt32LE(fd, 0);
  pollBuf.writeInt32LE(events, 4); // revents = 0
  retryEintr('poll', () => libc.poll(pollBuf, 1, timeoutMs));
  return pollBuf.readUInt16LE(6);
}

// Shared: poll is synchronous on the main thread, so no two calls overlap.
const pollBuf = Buffer.alloc(8);

/** The number of open descriptors of this process (including the one used to list them). */
export const openFdCount = (): number => readdirSync('/proc/self/fd').length;
