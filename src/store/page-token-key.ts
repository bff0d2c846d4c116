// The key every agent on a state dir signs its List page tokens with (service/list-pages.ts), so
// that a successor, or the agent after a restart, tells a token an earlier one issued
// (PAGE_TOKEN_EXPIRED: list again) from one no agent issued (INVALID_PAGE_TOKEN). It only signs:
// what a token resumes from is sealed under each incarnation's own key, which is never written.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const PAGE_TOKEN_KEY_FILE = 'page-token.key';
const KEY_BYTES = 32;

/**
 * The state dir's key, made on first use. Written whole to a file of this process's, then linked
 * into place: of two agents starting at once (a handover), the second links after the first and
 * reads the first's; a key file cut short (a crash before fsync) is replaced.
 */
export function pageTokenKey(stateDir: string): Buffer {
  const path = join(stateDir, PAGE_TOKEN_KEY_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    const key = readKey(path);
    if (key !== undefined) return key;
    if (attempt > 0) rmSync(path, { force: true });
    const own = `${path}.${process.pid}`;
    const fd = openSync(own, 'w', 0o600);
    try {
      writeSync(fd, randomBytes(KEY_BYTES));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(own, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      unlinkSync(own);
    }
  }
  throw new Error(`${path}: no key of ${KEY_BYTES} bytes could be kept there`);
}

function readKey(path: string): Buffer | undefined {
  try {
    const key = readFileSync(path);
    return key.length === KEY_BYTES ? key : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
