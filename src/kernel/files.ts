// Opening files where the path must not lead somewhere else: openat2 (Linux 5.6) resolving only
// beneath a directory fd, with no symlinks and no other mount; and the filesystem type of an fd.
import * as libc from './libc.js';
import { check, closeFd, retryEintr, O_CLOEXEC, type Fd } from './fd.js';

export const O_WRONLY = 0o1;
export const O_DIRECTORY = 0o200000;
export const O_PATH = 0o10000000;

const RESOLVE_NO_XDEV = 0x01;
const RESOLVE_NO_MAGICLINKS = 0x02;
const RESOLVE_NO_SYMLINKS = 0x04;
const RESOLVE_BENEATH = 0x08;
const RESOLVE_IN_ROOT = 0x10;
const OPEN_HOW_SIZE = 24;

/**
 * openat2(dir, path) that stays beneath dir on dir's mount and follows no symlink anywhere on the
 * way. Errors: EXDEV (would leave dir or its mount), ELOOP (a symlink), ENOENT, ENOTDIR, EACCES,
 * EAGAIN (a concurrent rename; retried by the caller if it wants).
 */
export function openBeneath(dir: Fd, path: string, flags: number): Fd {
  const how = Buffer.alloc(OPEN_HOW_SIZE);
  how.writeBigUInt64LE(BigInt(flags | O_CLOEXEC), 0);
  how.writeBigUInt64LE(BigInt(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV), 16);
  return retryEintr('openat2', () => Number(libc.sysOpenat2(libc.NR.openat2, dir, path, how, OPEN_HOW_SIZE))) as Fd;
}

/**
 * openat2(root, path) with root as "/" for the whole walk (RESOLVE_IN_ROOT): absolute paths, ".."
 * and absolute symlinks stay inside it, and mounts are those of root's mount namespace. For paths
 * of another mount namespace (a node's), given a descriptor of its root directory.
 */
export function openInRoot(root: Fd, path: string, flags: number, mode = 0): Fd {
  const how = Buffer.alloc(OPEN_HOW_SIZE);
  how.writeBigUInt64LE(BigInt(flags | O_CLOEXEC), 0);
  how.writeBigUInt64LE(BigInt(mode), 8);
  how.writeBigUInt64LE(BigInt(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), 16);
  return retryEintr('openat2', () => Number(libc.sysOpenat2(libc.NR.openat2, root, path, how, OPEN_HOW_SIZE))) as Fd;
}

/** Bytes per page: the unit of RSS in /proc/PID/stat (4 KiB on x86_64; 4, 16 or 64 KiB on arm64). */
export const PAGE_SIZE: number = libc.getpagesize();

/** An O_PATH descriptor of a directory (close-on-exec), to resolve names beneath it. */
export function openDirectoryPath(path: string): Fd {
  return check('open', libc.open(path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0)) as Fd;
}

export const CGROUP2_SUPER_MAGIC = 0x63677270;
// struct statfs: f_type is the first word (long) on x86_64 and arm64; the whole struct is 120 bytes.
const STATFS_SIZE = 120;

/** f_type of the filesystem fd is on (statfs(2) magic numbers). */
export function fsType(fd: Fd): number {
  const buf = Buffer.alloc(STATFS_SIZE);
  check('fstatfs', libc.fstatfs(fd, buf));
  return Number(buf.readBigUInt64LE(0) & 0xffffffffn);
}

/** f_type of the filesystem at path. */
export function fsTypeAt(path: string): number {
  const fd = openDirectoryPath(path);
  try {
    return fsType(fd);
  } finally {
    closeFd(fd);
  }
}
