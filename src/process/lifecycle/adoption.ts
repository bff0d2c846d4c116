// Adopt: a PID becomes a pidfd only with the identity the caller expects. /proc is read by number,
// so what it says counts only if the pidfd shows the process was not reaped after the read: then
// the number still belonged to the process we hold.
import { PidRef } from '../../kernel/pid-ref.js';
import { AgentError, fromKernel, notFound } from '../errors.js';
import type { AdoptOptions } from '../options.js';
import { readCmdline, readStartTime, readTaskFlags } from './proc-fs.js';
import type { ProcessRecord } from './record.js';

export interface Opened {
  /** The caller's to take() from here on. */
  readonly ref: PidRef;
  /** Empty when the process is already gone (its /proc entry may have been another's). */
  readonly argv: readonly string[];
}

const PF_KTHREAD = 0x0020_0000;

/**
 * PID 1 and kernel threads are never managed: a client's Signal or Stop must not be able to take
 * the node down. Called with the pidfd already open, so the number cannot be recycled into one of
 * them unnoticed: if the /proc read below was another process's, ours had been reaped before it,
 * and a handle to a process that is gone can harm nobody.
 */
function checkAdoptable(pid: number): void {
  const flags = readTaskFlags(pid);
  const kernelThread = flags !== undefined && (flags & PF_KTHREAD) !== 0;
  if (pid === 1 || kernelThread) {
    throw new AgentError('PermissionDenied', `process ${pid} is ${pid === 1 ? 'PID 1' : 'a kernel thread'}: never adoptable`, { reason: 'NOT_ADOPTABLE', field: 'pid' });
  }
}

/** NOT_FOUND when there is no such process or it is not the expected one; ALREADY_EXISTS when managed. */
export function openForAdoption(options: AdoptOptions, managed: (inode: bigint) => ProcessRecord | undefined): Opened {
  let ref: PidRef;
  try {
    ref = PidRef.open(options.pid);
  } catch (e) {
    throw fromKernel(e, { what: `pidfd_open(${options.pid})`, field: 'pid' });
  }
  try {
    checkAdoptable(options.pid);
    const inode = ref.inode;
    const existing = managed(inode);
    if (existing) {
      throw new AgentError('AlreadyExists', `process ${options.pid} is already managed as ${existing.handle}`, { reason: 'ALREADY_MANAGED', handle: existing.handle });
    }
    const startTime = readStartTime(options.pid);
    const argv = readCmdline(options.pid);
    const alive = !ref.poll().reaped;
    const mismatch =
      (options.expectedPidfsInode !== undefined && options.expectedPidfsInode !== inode) ||
      (options.expectedStartTime !== undefined && (!alive || startTime !== options.expectedStartTime));
    if (mismatch) throw notFound(`process ${options.pid} is not the expected one (identity mismatch)`, { reason: 'IDENTITY_MISMATCH', field: 'pid' });
    return { ref, argv: alive ? argv : [] };
  } catch (e) {
    ref.close();
    throw fromKernel(e, { what: `adopt ${options.pid}`, field: 'pid' });
  }
}
