import { AgentError, unknownHandle } from '../errors.js';
import type { HandleId } from './handle.js';
import type { ProcessRecord } from './record.js';

type Settle = (record: ProcessRecord) => void;

/** Pending Wait calls per handle, settled when the record leaves RUNNING. */
export class Waiters {
  private readonly byHandle = new Map<HandleId, Set<Settle>>();

  wait(record: ProcessRecord, timeoutMs: number | undefined, abort: AbortSignal): Promise<ProcessRecord> {
    const cancelled = () => new AgentError('DeadlineExceeded', 'wait was cancelled', { reason: 'CANCELLED', handle: record.handle });
    return new Promise((resolve, reject) => {
      // An abort that came first fires no listener: the wait (and the Wait or Stop slot it holds)
      // would last until the exit. A Stop that reclaims memory first can get here so.
      if (abort.aborted) return reject(cancelled());
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        abort.removeEventListener('abort', onAbort);
        const set = this.byHandle.get(record.handle);
        set?.delete(settle);
        if (set?.size === 0) this.byHandle.delete(record.handle);
      };
      const settle: Settle = (r) => {
        cleanup();
        if (r.state === 'released') reject(unknownHandle(r.handle));
        else resolve(r);
      };
      const onAbort = () => {
        cleanup();
        reject(cancelled());
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          cleanup();
          reject(new AgentError('DeadlineExceeded', `process ${record.handle} still running after ${timeoutMs} ms`, { reason: 'TIMEOUT', handle: record.handle }));
        }, timeoutMs);
      }
      abort.addEventListener('abort', onAbort);
      let set = this.byHandle.get(record.handle);
      if (!set) this.byHandle.set(record.handle, (set = new Set()));
      set.add(settle);
    });
  }

  settle(record: ProcessRecord): void {
    const set = this.byHandle.get(record.handle);
    if (!set) return;
    for (const settle of [...set]) settle(record);
  }
}
