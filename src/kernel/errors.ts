import { errnoNames, errnoNumbers } from './libc.js';

const pick = <K extends string>(...names: K[]): Readonly<Record<K, number>> =>
  Object.fromEntries(names.map((n) => [n, errnoNumbers[n]])) as Record<K, number>;

export const Errno = pick(
  'EPERM', 'ENOENT', 'ESRCH', 'EINTR', 'E2BIG', 'ENOEXEC', 'EBADF', 'ECHILD', 'EAGAIN', 'ENOMEM',
  'EACCES', 'ENOTDIR', 'EINVAL', 'ENFILE', 'EMFILE', 'ENOTTY', 'ETXTBSY', 'ENAMETOOLONG', 'ELOOP',
  'EIO', 'ETIMEDOUT', 'EEXIST',
);

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

/** A failed system call: the one error type kernel/ throws. */
export class KernelError extends Error {
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly errno: number,
  ) {
    const code = errnoName(errno);
    super(`${syscall}: ${code}`);
    this.name = 'KernelError';
    this.code = code;
  }
}

export const isKernelError = (e: unknown, errno?: number): e is KernelError =>
  e instanceof KernelError && (errno === undefined || e.errno === errno);
