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

/** A second descriptor (close-on-exec) for the same open file: it has its own owner. */
export function dupFd<T extends Fd>(fd: T): T {
  return check('fcntl(F_DUPFD_CLOEXEC)', libc.fcntl(fd, F_DUPFD_CLOEXEC, 'int', 3)) as T;
}

/** A close-on-exec pipe: [read end, write end]. */
export function pipe(): [Fd, Fd] {
  const fds = new Int32Array(2);
  check('pipe2', libc.pipe2(fds, O_CLOEXEC));
  return [fds[0] as Fd, fds[1] as Fd];
}

export function eventfd(initial = 0): Fd {
  return check('eventfd', libc.eventfd(initial, O_CLOEXEC | O_NONBLOCK)) as Fd;
}

export const POLLIN = 0x1;
export const POLLHUP = 0x10;

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
