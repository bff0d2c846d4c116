// The key every agent on a state dir signs its List page tokens with (service/list-pages.ts), so
// that a successor, or the agent after a restart, tells a token an earlier one issued
// (PAGE_TOKEN_EXPIRED: list again) from one no agent issued (INVALID_PAGE_TOKEN). It only signs:
// what a token resumes from is sealed under each incarnation's own key, which is never written.
// It decides between two refusals and nothing else, so a key that cannot be had costs only that
// distinction (the caller signs with a key of its run alone), never the agent's start.
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, linkSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const PAGE_TOKEN_KEY_FILE = 'page-token.key';
const KEY_BYTES = 32;

/** Why the state dir's key could not be had. */
export class PageTokenKeyUnusable extends Error {}

/**
 * The state dir's key, made on first use. Written whole to a file of this process's (a random
 * name: in containers every agent is pid 1), then linked into place: of two agents starting at
 * once (a handover), the second links after the first and reads the first's. A key file cut short
 * (a crash before fsync) is replaced by a rename. Throws PageTokenKeyUnusable.
 */
export function pageTokenKey(stateDir: string): Buffer {
  const path = join(stateDir, PAGE_TOKEN_KEY_FILE);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      const key = readKey(path);
      if (key === 'absent' || key === 'short') {
        writeKey(stateDir, path, key === 'short');
        continue;
      }
      return key;
    }
  } catch (e) {
    throw new PageTokenKeyUnusable(`${path}: ${(e as Error).message}`);
  }
  throw new PageTokenKeyUnusable(`${path}: no key of ${KEY_BYTES} bytes could be kept there`);
}

function writeKey(stateDir: string, path: string, replace: boolean): void {
  const own = `${path}.${randomBytes(8).toString('hex')}`;
  const fd = openSync(own, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, randomBytes(KEY_BYTES));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    if (replace) renameSync(own, path);
    else linkSync(own, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    rmSync(own, { force: true });
  }
  const dir = openSync(stateDir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** The key, or what is wrong with the file; a link, a FIFO or a device is an error, not read. */
function readKey(path: string): Buffer | 'absent' | 'short' {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw e;
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new Error('not a regular file');
    // Left readable by an older agent or a hand: the state dir's files are 0600 (config/state-dir).
    if ((stat.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
    const key = Buffer.alloc(KEY_BYTES + 1);
    const n = readSync(fd, key, 0, key.length, 0);
    return n === KEY_BYTES ? key.subarray(0, KEY_BYTES) : 'short';
  } finally {
    closeSync(fd);
  }
}
