// Kill and reclaim, as Android's LMKD does: SIGKILL through the pidfd, then process_mrelease on
// the same pidfd, so the memory is free when the call returns rather than when the exit gets to it.
import { releaseMemory } from '../../kernel/reclaim.js';
import { Signal } from '../../kernel/signals.js';
import { fromKernel } from '../errors.js';
import { liveRef, type Collect } from './signalling.js';
import type { ProcessRecord } from './record.js';

/** How long process_mrelease is retried while the killed process is not yet dying. */
export const RECLAIM_TIMEOUT_MS = 5_000;

/**
 * SIGKILL, then the memory released. The SIGKILL is sent before this returns; the promise
 * resolves with the milliseconds from the SIGKILL to the memory freed (by process_mrelease, or by
 * the exit when that came first) and rejects (the SIGKILL still sent) if it could not be released.
 */
export function killAndReclaim(record: ProcessRecord, collect: Collect): Promise<number> {
  const ref = liveRef(record, collect);
  const started = performance.now();
  try {
    ref.signal(Signal.SIGKILL);
  } catch (e) {
    throw fromKernel(e, { what: `SIGKILL to ${record.handle}`, handle: record.handle });
  }
  return releaseMemory(ref, RECLAIM_TIMEOUT_MS).then(
    () => performance.now() - started,
    (e: unknown) => {
      throw fromKernel(e, { what: `SIGKILL sent to ${record.handle}, but process_mrelease`, handle: record.handle });
    },
  );
}
