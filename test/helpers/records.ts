// Records for the fast tests of the event log and the process table: each holds a real pidfd.
import type { ExecutionContext } from 'ava';
import { PidRef } from '../../src/kernel/pid-ref.js';
import { newHandleId } from '../../src/process/lifecycle/handle.js';
import { ProcessRecord } from '../../src/process/lifecycle/record.js';

/** Lets queued microtasks (the event log's notifications) run. */
export const flush = () => new Promise((r) => setImmediate(r));

/** A record holding a real pidfd (of this process) that it closes itself on markExited. */
export function record(t: ExecutionContext, requestId?: string, owner?: string): ProcessRecord {
  const ref = PidRef.open(process.pid);
  const r = new ProcessRecord(newHandleId(), { pid: process.pid, pidfsInode: ref.inode }, { argv: ['x'], labels: {}, adopted: false, requestId, ...(owner === undefined ? {} : { owner }) }, 0, ref);
  t.teardown(() => r.closePidfd());
  return r;
}

export const exited = (r: ProcessRecord, exitedAt: number) => r.markExited({ termination: { exitCode: 0 }, reason: 'exited', exitedAt });
