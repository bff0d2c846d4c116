// process_mrelease(2) (Linux 5.15): frees a killed process's memory at once, as Android's LMKD
// does after pidfd_send_signal(SIGKILL), instead of when its exit gets to it. The retries (EINVAL
// while it is not yet dying, EAGAIN, EINTR) live in src/native/mrelease.c, run on a threadpool
// thread: freeing a gigabyte takes tens of milliseconds the event loop must not wait for.
import * as libc from './libc.js';
import { KernelError } from './errors.js';
import { borrowPidfd, type PidRef } from './pid-ref.js';

let native: ReturnType<typeof libc.loadReclaim> | null = null;

/** Loads the library once (the composition root knows where make put it). */
export function useReclaim(path: string): void {
  native ??= libc.loadReclaim(path);
}

export interface Reclaimed {
  /** process_mrelease calls made (1 unless the process was not yet dying). */
  readonly attempts: number;
}

/**
 * Releases the memory of a process already sent SIGKILL; resolves once it is freed (by this call,
 * or by its exit when that came first: ESRCH). Rejects with the last errno after timeoutMs. The
 * call works on its own duplicate of the pidfd, so the owner may close its reference meanwhile.
 */
export function releaseMemory(ref: PidRef, timeoutMs: number): Promise<Reclaimed> {
  if (native === null) return Promise.reject(new Error('reclaim is not loaded (useReclaim)'));
  const own = ref.dup();
  const attempts = [0];
  return new Promise((resolve, reject) => {
    try {
      native!.async(borrowPidfd(own), timeoutMs, attempts, (err: unknown, result: number) => {
        own.close();
        if (err) reject(err);
        else if (result !== 0) reject(new KernelError('process_mrelease', result));
        else resolve({ attempts: attempts[0]! });
      });
    } catch (e) {
      own.close(); // the call never started: its callback will not close the duplicate
      reject(e);
    }
  });
}
