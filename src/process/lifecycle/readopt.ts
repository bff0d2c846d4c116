// Re-adoption after an agent restart: a saved RUNNING record names a pid, and a pid is only a
// number. It is the saved process only if a pidfd opened on it now has the saved pidfs inode
// (unique per process within one boot, Linux 6.9+) in the saved boot.
import { isKernelError } from '../../kernel/errors.js';
import { PIDFD_INFO_PID } from '../../kernel/pidfd.js';
import { PidRef } from '../../kernel/pid-ref.js';
import type { Parentage } from '../reaping.js';

export interface SavedIdentity {
  readonly pid: number;
  readonly pidfsInode: bigint;
  readonly bootId: string;
}

export type Reopened =
  /** ref: the caller's to take(). */
  | { readonly found: true; readonly ref: PidRef; readonly parentage: Parentage }
  /** Gone (reaped while no agent watched), another process holds the pid now, or another boot. */
  | { readonly found: false; readonly why: 'rebooted' | 'gone' | 'pid-reused' };

/**
 * Opens the saved process again, or says why it cannot be it. Only kernel errors that mean "no
 * such process" count as gone; anything else (EMFILE...) is thrown, so the caller can refuse to
 * start rather than declare a live process lost.
 */
export function reopen(saved: SavedIdentity, bootId: string): Reopened {
  if (saved.bootId !== bootId) return { found: false, why: 'rebooted' };
  let ref: PidRef;
  try {
    ref = PidRef.open(saved.pid);
  } catch (e) {
    // ENOENT (EINVAL before 6.15): the number is now a thread of another process.
    if (isKernelError(e) && ['ESRCH', 'ENOENT', 'EINVAL'].includes(e.code)) return { found: false, why: 'gone' };
    throw e;
  }
  let inode: bigint;
  try {
    inode = ref.inode;
  } catch (e) {
    ref.close();
    throw e;
  }
  if (inode !== saved.pidfsInode) {
    ref.close();
    return { found: false, why: 'pid-reused' };
  }
  // Our own child only if this agent is the same process that started it; otherwise its parent
  // is now a subreaper or init, and its exit comes from PIDFD_INFO_EXIT after their reap.
  return { found: true, ref, parentage: parentOf(ref) === process.pid ? 'child' : 'foreign' };
}

/** undefined once reaped (ESRCH, since the inode matched): its exit is then read the foreign way. */
function parentOf(ref: PidRef): number | undefined {
  try {
    return ref.info(PIDFD_INFO_PID).ppid;
  } catch {
    return undefined;
  }
}

/**
 * A pidfd handed over by the previous agent on this node: it is the saved process if its inode
 * matches (the handover pairs pidfds with handles; this catches a mismatched pairing). The process
 * is not ours to reap: its parent is, or was, the previous agent.
 */
export function verifyHanded(saved: SavedIdentity, ref: PidRef): Reopened {
  if (ref.inode === saved.pidfsInode) return { found: true, ref, parentage: 'foreign' };
  ref.close();
  return { found: false, why: 'pid-reused' };
}
