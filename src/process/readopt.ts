// Re-adoption after an agent restart: a saved RUNNING record names a pid, and a pid is only a
// number. It is the saved process only if a pidfd opened on it now has the saved pidfs inode
// (unique per process within one boot, Linux 6.9+) in the saved boot.
import { isKernelError } from '../kernel/errors.js';
import { closeFd, type Pidfd } from '../kernel/fd.js';
import { PIDFD_INFO_PID, pidfdGetInfo, pidfdOpen, pidfsInode } from '../kernel/pidfd.js';
import type { Parentage } from '../reaper/reaper.js';

export interface SavedIdentity {
  readonly pid: number;
  readonly pidfsInode: bigint;
  readonly bootId: string;
}

export type Reopened =
  | { readonly found: true; readonly pidfd: Pidfd; readonly parentage: Parentage }
  /** Gone (reaped while no agent watched), another process holds the pid now, or another boot. */
  | { readonly found: false; readonly why: 'rebooted' | 'gone' | 'pid-reused' };

/**
 * Opens the saved process again, or says why it cannot be it. Only kernel errors that mean "no
 * such process" count as gone; anything else (EMFILE...) is thrown, so the caller can refuse to
 * start rather than declare a live process lost.
 */
export function reopen(saved: SavedIdentity, bootId: string): Reopened {
  if (saved.bootId !== bootId) return { found: false, why: 'rebooted' };
  let pidfd: Pidfd;
  try {
    pidfd = pidfdOpen(saved.pid);
  } catch (e) {
    // ENOENT (EINVAL before 6.15): the number is now a thread of another process.
    if (isKernelError(e) && ['ESRCH', 'ENOENT', 'EINVAL'].includes(e.code)) return { found: false, why: 'gone' };
    throw e;
  }
  try {
    if (pidfsInode(pidfd) !== saved.pidfsInode) {
      closeFd(pidfd);
      return { found: false, why: 'pid-reused' };
    }
  } catch (e) {
    closeFd(pidfd);
    throw e;
  }
  // Our own child only if this agent is the same process that started it; otherwise its parent
  // is now a subreaper or init, and its exit comes from PIDFD_INFO_EXIT after their reap.
  return { found: true, pidfd, parentage: parentOf(pidfd) === process.pid ? 'child' : 'foreign' };
}

/** undefined once reaped (ESRCH, since the inode matched): its exit is then read the foreign way. */
function parentOf(pidfd: Pidfd): number | undefined {
  try {
    return pidfdGetInfo(pidfd, PIDFD_INFO_PID).ppid;
  } catch {
    return undefined;
  }
}

/**
 * A pidfd handed over by the previous agent on this node: it is the saved process if its inode
 * matches (the handover pairs pidfds with handles; this catches a mismatched pairing). The process
 * is not ours to reap: its parent is, or was, the previous agent.
 */
export function verifyHanded(saved: SavedIdentity, pidfd: Pidfd): Reopened {
  try {
    if (pidfsInode(pidfd) === saved.pidfsInode) return { found: true, pidfd, parentage: 'foreign' };
  } catch {
    // fstat of a pidfd does not fail; if it did, the pidfd proves nothing
  }
  closeFd(pidfd);
  return { found: false, why: 'pid-reused' };
}
