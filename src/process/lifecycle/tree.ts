// The whole tree of a process spawned into a cgroup of its own (Cgroup.create): whatever it
// started, however (setsid, double fork), stays in that cgroup, so the cgroup is the tree.
// SIGKILL goes through cgroup.kill (5.14), which also catches processes forked during the kill;
// any other signal goes to each member of cgroup.procs through a pidfd opened and verified for it;
// the end is seen in cgroup.events (`populated 0`) through inotify.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileWatch } from '../../kernel/inotify.js';
import { PidRef } from '../../kernel/pid-ref.js';
import { isKernelError, Errno } from '../../kernel/errors.js';
import { AgentError, fromKernel, processExited } from '../errors.js';
import type { ProcessRecord } from './record.js';

/** Members signalled one by one in one call at most: a cgroup is bounded by its pids.max, the agent's descriptors by this. */
export const MAX_TREE_MEMBERS = 4096;

/** The cgroup directory that holds the record's tree; FAILED_PRECONDITION when it has none. */
export function treeOf(record: ProcessRecord): string {
  const dir = record.ownedCgroup;
  if (dir === undefined) {
    throw new AgentError('FailedPrecondition', `${record.handle} has no cgroup of its own, so its tree cannot be told apart: spawn it with cgroup {create: true} (pidfdctl spawn --cgroup new)`, {
      reason: 'NO_OWN_CGROUP',
      handle: record.handle,
    });
  }
  return dir;
}

const missing = (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENODEV';

/** Whether any process is left in the tree (a removed cgroup holds none). */
export function populated(dir: string): boolean {
  try {
    return /^populated 1$/m.test(readFileSync(join(dir, 'cgroup.events'), 'latin1'));
  } catch (e) {
    if (missing(e)) return false;
    throw fromKernel(e, { what: `cgroup.events of ${dir}`, path: dir });
  }
}

function members(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'latin1').split('\n').filter(Boolean).map(Number);
  } catch (e) {
    if (missing(e)) return [];
    throw fromKernel(e, { what: `cgroup.procs of ${dir}`, path: dir });
  }
}

/** SIGKILL to every process in the tree, including those it forks meanwhile. */
export function killTree(record: ProcessRecord, dir: string): void {
  try {
    writeFileSync(join(dir, 'cgroup.kill'), '1');
  } catch (e) {
    if (missing(e)) return;
    throw fromKernel(e, { what: `cgroup.kill of ${dir}`, handle: record.handle, path: dir });
  }
}

/**
 * `signal` to each member of the tree, through its own pidfd. A number read from cgroup.procs is
 * only a number: the pidfd opened for it counts once cgroup.procs, read again after the open,
 * still lists it and the pidfd's process is still not reaped (so the listed number was its own).
 * Returns how many were signalled; processes forked meanwhile are not among them (cgroup.kill
 * catches those).
 */
export function signalTree(record: ProcessRecord, dir: string, signal: number): number {
  const opened: PidRef[] = [];
  try {
    for (const pid of members(dir).slice(0, MAX_TREE_MEMBERS)) {
      try {
        opened.push(PidRef.open(pid));
      } catch (e) {
        if (!isKernelError(e, Errno.ESRCH)) throw e;
      }
    }
    const now = new Set(members(dir));
    let sent = 0;
    for (const ref of opened) {
      if (!now.has(ref.pid) || ref.poll().reaped) continue;
      try {
        ref.signal(signal);
        sent++;
      } catch (e) {
        if (!isKernelError(e, Errno.ESRCH)) throw e;
      }
    }
    return sent;
  } catch (e) {
    throw fromKernel(e, { what: `signal ${signal} to the tree of ${record.handle}`, handle: record.handle, path: dir });
  } finally {
    for (const ref of opened) ref.close();
  }
}

/** A tree that has already ended is refused like an exited process: nothing is sent. */
export function liveTree(record: ProcessRecord): string {
  const dir = treeOf(record);
  if (!populated(dir)) throw processExited(record.handle);
  return dir;
}

/**
 * A stop once waited out its whole grace in a full test run (tree-stop's SIGTERM case), and the
 * cause was not found: reading cgroup.events this often as well bounds what a missed inotify event
 * could cost.
 */
const RECHECK_MS = 250;

/**
 * Resolves with true once cgroup.events says `populated 0`, false after timeoutMs (undefined: no
 * limit); rejects when aborted.
 */
export function untilEmpty(dir: string, abort: AbortSignal, timeoutMs?: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    let watch: FileWatch | undefined;
    let timer: NodeJS.Timeout | undefined;
    let recheck: NodeJS.Timeout | undefined;
    const finish = (settle: () => void) => {
      watch?.close();
      if (timer) clearTimeout(timer);
      if (recheck) clearInterval(recheck);
      abort.removeEventListener('abort', onAbort);
      settle();
    };
    const onAbort = () => finish(() => reject(new AgentError('DeadlineExceeded', 'the wait for the tree was cancelled', { reason: 'CANCELLED' })));
    const check = () => {
      try {
        if (!populated(dir)) finish(() => resolve(true));
      } catch (e) {
        finish(() => reject(e));
      }
    };
    if (abort.aborted) return onAbort();
    try {
      watch = new FileWatch(join(dir, 'cgroup.events'), check);
    } catch (e) {
      if (isKernelError(e, Errno.ENOENT)) return resolve(true);
      return reject(fromKernel(e, { what: `inotify on ${dir}/cgroup.events`, path: dir }));
    }
    abort.addEventListener('abort', onAbort);
    if (timeoutMs !== undefined) timer = setTimeout(() => finish(() => resolve(false)), timeoutMs);
    recheck = setInterval(check, RECHECK_MS);
    // Read after the watch is in place: a change before it would otherwise be missed.
    check();
  });
}
