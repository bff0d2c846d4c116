// Whether another process holds a record lock on part of a file, asked without taking one:
// fcntl(F_OFD_GETLK) (3.15). It reports traditional POSIX locks (SQLite's) as well as OFD ones.
import * as libc from './libc.js';
import { check, closeFd, O_CLOEXEC, O_RDONLY, type Fd } from './fd.js';
import { Errno, isKernelError } from './errors.js';

const F_OFD_GETLK = 36;
const F_WRLCK = 1;
const F_UNLCK = 2;
// struct flock on x86_64 and arm64: short l_type, short l_whence, (pad), off_t l_start,
// off_t l_len, pid_t l_pid, (pad).
const FLOCK_SIZE = 32;

/** Who holds a lock: pid as this PID namespace sees it; 0 outside it; -1 for an OFD lock. */
export interface LockHolder {
  readonly pid: number;
}

/**
 * A lock (read or write) that some open file other than this call's holds on bytes
 * [start, start + len) of path, or null when there is none or no such file.
 *
 * The file is opened and closed for the question: never ask about a file this process locks with
 * POSIX locks, since closing any descriptor of it drops them all. Errors: EACCES, EMFILE/ENFILE.
 */
export function lockHolder(path: string, start: number, len: number): LockHolder | null {
  let fd: Fd;
  try {
    fd = check('open', libc.open(path, O_RDONLY | O_CLOEXEC, 0)) as Fd;
  } catch (e) {
    if (isKernelError(e, Errno.ENOENT)) return null;
    throw e;
  }
  try {
    // Asking about a write lock finds any lock in the range: every lock conflicts with one.
    const flock = Buffer.alloc(FLOCK_SIZE);
    flock.writeInt16LE(F_WRLCK, 0);
    flock.writeBigInt64LE(BigInt(start), 8);
    flock.writeBigInt64LE(BigInt(len), 16);
    // l_pid must be 0 going in (EINVAL otherwise).
    check('fcntl(F_OFD_GETLK)', libc.fcntl(fd, F_OFD_GETLK, 'void *', flock));
    if (flock.readInt16LE(0) === F_UNLCK) return null;
    return { pid: flock.readInt32LE(24) };
  } finally {
    closeFd(fd);
  }
}
