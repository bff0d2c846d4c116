// Signals and thread lists, always through the record's pidfd. A process that has exited is
// refused (FAILED_PRECONDITION, nothing sent) rather than signalled as a zombie: that tells the
// caller the truth, and the exit found on the way is collected before the reply.
import type { Pidfd } from '../kernel/fd.js';
import { pidfdPoll, pidfdSendSignal } from '../kernel/pidfd.js';
import { fromKernel, processExited } from './errors.js';
import type { SignalTarget } from './options.js';
import { readThreadIds } from './proc-fs.js';
import type { ProcessRecord } from './record.js';
import { signalThread } from './spawn-inputs.js';

/** Collects (records) the exit of a process found exited. */
export type Collect = (pidfd: Pidfd) => void;

export function livePidfd(record: ProcessRecord, collect: Collect): Pidfd {
  const pidfd = record.pidfd;
  if (record.state !== 'running' || pidfd === null) throw processExited(record.handle);
  if (pidfdPoll(pidfd).exited) {
    collect(pidfd);
    throw processExited(record.handle);
  }
  return pidfd;
}

export function sendSignal(record: ProcessRecord, signal: number, target: SignalTarget, collect: Collect): void {
  const pidfd = livePidfd(record, collect);
  try {
    if (target.kind === 'thread') signalThread(record, pidfd, target.tid, signal);
    else pidfdSendSignal(pidfd, signal, target.kind === 'process-group' ? 'process-group' : 'default');
  } catch (e) {
    throw fromKernel(e, { what: `signal ${signal} to ${record.handle}`, handle: record.handle });
  }
}

/** Thread IDs, leader first. /proc is read by number: the list is ours only if the process still
 * held the number (was not reaped) after the read. */
export function threadIds(record: ProcessRecord, collect: Collect): number[] {
  const pidfd = livePidfd(record, collect);
  const tids = readThreadIds(record.identity.pid);
  if (pidfdPoll(pidfd).reaped || tids.length === 0) throw processExited(record.handle);
  return tids;
}
