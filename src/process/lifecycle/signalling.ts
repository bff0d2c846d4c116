// Signals and thread lists, always through the record's pidfd. A process that has exited is
// refused (FAILED_PRECONDITION, nothing sent) rather than signalled as a zombie: that tells the
// caller the truth, and the exit found on the way is collected before the reply.
import { PIDFD_INFO_PID } from '../../kernel/pidfd.js';
import { PidRef } from '../../kernel/pid-ref.js';
import { Errno, isKernelError } from '../../kernel/errors.js';
import { AgentError, fromKernel, notFound, processExited } from '../errors.js';
import type { SignalTarget } from '../options.js';
import { readThreadIds } from './proc-fs.js';
import type { ProcessRecord } from './record.js';

// The signal vocabulary of the API (names and numbers), for service/ to validate and report with.
export { parseSignal, signalName } from '../../kernel/signals.js';

/** Collects (records) the exit of a process found exited. */
export type Collect = (ref: PidRef) => void;

/** The record's reference, borrowed, while the process runs. */
export function liveRef(record: ProcessRecord, collect: Collect): PidRef {
  const ref = record.ref;
  if (record.state !== 'running' || ref === null) throw processExited(record.handle);
  if (ref.poll().exited) {
    collect(ref);
    throw processExited(record.handle);
  }
  return ref;
}

export function sendSignal(record: ProcessRecord, signal: number, target: Exclude<SignalTarget, { kind: 'tree' }>, collect: Collect): void {
  const ref = liveRef(record, collect);
  try {
    if (target.kind === 'thread') signalThread(record, ref, target.tid, signal);
    else ref.signal(signal, target.kind === 'process-group' ? 'process-group' : 'default');
  } catch (e) {
    // PIDFD_SIGNAL_PROCESS_GROUP reaches the group whose ID is the process's PID: a live process
    // that moved to another group (possible without a session of its own) left that one empty.
    if (target.kind === 'process-group' && isKernelError(e, Errno.ESRCH) && !ref.poll().exited) {
      throw new AgentError('FailedPrecondition', `process ${record.handle} no longer leads its process group (it moved to another): nothing was sent`, { reason: 'NOT_GROUP_LEADER', handle: record.handle });
    }
    throw fromKernel(e, { what: `signal ${signal} to ${record.handle}`, handle: record.handle });
  }
}

/** Thread IDs, leader first. /proc is read by number: the list is ours only if the process still
 * held the number (was not reaped) after the read. */
export function threadIds(record: ProcessRecord, collect: Collect): number[] {
  const ref = liveRef(record, collect);
  const tids = readThreadIds(record.identity.pid);
  if (ref.poll().reaped || tids.length === 0) throw processExited(record.handle);
  return tids;
}

/**
 * A tid is only a number: it counts if the thread's own pidfd (PIDFD_THREAD, 6.9+) shows it in
 * our process's thread group while our process still holds its pid.
 */
export function signalThread(record: ProcessRecord, ref: PidRef, tid: number, signal: number): void {
  let thread: PidRef;
  try {
    thread = PidRef.openThread(tid);
  } catch (e) {
    throw fromKernel(e, { what: `thread ${tid}`, field: 'tid' });
  }
  try {
    const { tgid } = thread.info(PIDFD_INFO_PID);
    if (tgid !== record.identity.pid || ref.poll().reaped) {
      throw notFound(`${tid} is not a thread of ${record.handle}`, { reason: 'NOT_A_THREAD', field: 'tid', handle: record.handle });
    }
    thread.signal(signal); // a PIDFD_THREAD pidfd addresses that one thread
  } finally {
    thread.close();
  }
}
