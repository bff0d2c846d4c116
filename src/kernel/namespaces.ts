// The root directory of a process's mount namespace, held as a descriptor, for resolving paths as
// a child that joins that process's namespaces (setns by pidfd, done by the exec helper) will.
import { closeFd, type Fd } from './fd.js';
import { O_DIRECTORY, O_PATH } from './files.js';
import { check, O_CLOEXEC } from './fd.js';
import * as libc from './libc.js';
import type { PidRef } from './pid-ref.js';

/**
 * An O_PATH descriptor of the process's root directory (/proc/PID/root), checked against its
 * pidfd: the process still lives after the open, so the PID named it and no recycled one. ENOENT
 * or ESRCH: it exited; EACCES/EPERM: its root is not ours to see.
 */
export function openRootOf(ref: PidRef): Fd {
  const root = check(`open /proc/${ref.pid}/root`, libc.open(`/proc/${ref.pid}/root`, O_PATH | O_DIRECTORY | O_CLOEXEC, 0)) as Fd;
  try {
    ref.signal(0);
    return root;
  } catch (e) {
    closeFd(root);
    throw e;
  }
}
