// The unix socket's place on disk. Who may connect is decided by the file system: the socket is
// 0660 and its directory 0750, both of the socket group, the directory owned by the agent so
// nobody else can swap what is in it. Nothing here follows a symlink or removes what is not a
// stale socket: a privileged agent that chmods or unlinks a path a racer prepared is the attack.
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, lstatSync, mkdirSync, openSync, unlinkSync, type Stats } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { lookupGroup } from '../kernel/nss.js';

export const SOCKET_MODE = 0o660;
export const SOCKET_DIR_MODE = 0o750;

/** A group name (resolved through NSS) or a gid; undefined: the agent's own group. */
export function socketGid(group: string | undefined): number {
  if (group === undefined) return process.getegid!();
  // (gid_t)-1 would mean "leave the group as it is" to chown.
  if (/^\d+$/.test(group) && Number(group) < 0xffffffff) return Number(group);
  const gid = lookupGroup(group);
  if (gid === undefined) throw new Error(`--socket-group: no group named ${JSON.stringify(group)}`);
  return gid;
}

/**
 * Makes the socket's directory the agent's (0750, group gid), then frees the path if a stale
 * socket holds it. Refuses a live socket, anything that is not a socket, a directory that is a
 * symlink, and shared directories (sticky or world-writable, or top-level like /run or /tmp),
 * whose mode is not ours to change.
 */
export async function prepareSocket(path: string, gid: number): Promise<void> {
  secureDirectory(dirname(path), gid);
  const found = lstatOrNull(path);
  if (found === null) return;
  if (!found.isSocket()) throw new Error(`${path}: is ${kindOf(found)}, not a socket; refusing to remove it (remove it yourself if it is not needed)`);
  if (await answers(path)) throw new Error(`${path}: another process is serving on this socket`);
  unlinkSync(path);
}

function secureDirectory(dir: string, gid: number): void {
  if (dirname(dir) === dir || dirname(dirname(dir)) === dirname(dir)) throw new Error(`${dir}: a top-level directory; the socket needs a directory of its own (e.g. /run/pidfd-agent/agent.sock), made ${octal(SOCKET_DIR_MODE)}`);
  mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`${dir}: ${code === 'ELOOP' || code === 'ENOTDIR' ? 'not a directory (a symlink is not followed)' : code}; the socket needs a directory of its own`);
  }
  try {
    const mode = fstatSync(fd).mode;
    if ((mode & 0o1002) !== 0) throw new Error(`${dir}: a shared directory (mode ${octal(mode & 0o7777)}); the socket needs a directory of its own, made ${octal(SOCKET_DIR_MODE)}`);
    try {
      fchownSync(fd, process.geteuid!(), gid);
      fchmodSync(fd, SOCKET_DIR_MODE);
    } catch (e) {
      throw new Error(`${dir}: cannot make it ${octal(SOCKET_DIR_MODE)} of group ${gid}: ${(e as NodeJS.ErrnoException).code}`);
    }
  } finally {
    closeSync(fd);
  }
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

const kindOf = (s: Stats): string =>
  s.isSymbolicLink() ? 'a symlink' : s.isDirectory() ? 'a directory' : s.isFile() ? 'a regular file' : 'a special file';

const octal = (mode: number): string => `0${mode.toString(8)}`;

/** Whether some process accepts connections on the socket at path. */
const answers = (path: string): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
