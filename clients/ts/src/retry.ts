// Which failed calls are safe to send again, and how the client retries them: bounded in attempts
// and in time, with jittered exponential backoff, never past the call's deadline.
//
// UNAVAILABLE alone says nothing about what ran. With reason HANDOVER the agent refused the call
// at its gate, so nothing of it ran (except for a Stop or WriteStdin already in flight, which the
// handover ends after it acted). With no reason the transport failed: the request may have been
// carried out and only the reply lost, so only a call that changes nothing, or one the agent
// recognises by its request_id, may be sent again.
import { status } from '@grpc/grpc-js';
import { AgentCallError } from './errors.js';

export interface RetryPolicy {
  /** Attempts in all, the first included (1: no retry). */
  readonly attempts: number;
  /** The backoff before the first retry; each next one doubles up to `maxBackoffMs`, each is jittered down by up to half. */
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  /** No retry starts later than this after the first failure. */
  readonly windowMs: number;
}

/**
 * About 3 s of backoff over 6 attempts: an agent restart or handover on the node takes 0.1-1 s, a
 * container restart a few seconds; an agent down for longer is the caller's to handle.
 */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, initialBackoffMs: 100, maxBackoffMs: 2000, windowMs: 10_000 };

const READS = new Set(['Get', 'List', 'ListThreads']);
const KEYED = new Set(['Spawn', 'SpawnBatch', 'Adopt']);
// A Wait whose reply was lost may have released a release_on_exit process's handle, and its exit
// with it: resent, it would get UNKNOWN_HANDLE in place of the exit.
const REFUSABLE = new Set(['Wait', 'Signal', 'Release', 'CloseStdin', 'ResizeTerminal']);

/**
 * Whether sending the failed call again can neither do twice what it did once nor be answered
 * for what another call did. True only for UNAVAILABLE: reads (Get, List, ListThreads) always; Spawn, SpawnBatch and
 * Adopt when every request carried a request_id (the agent replays, or answers OUTCOME_UNKNOWN or REQUEST_RELEASED,
 * never starts twice) or the agent refused them (HANDOVER); Wait, Signal, Release, CloseStdin and
 * ResizeTerminal only when refused. Never Stop or WriteStdin, nor a stream (resume those by offset
 * or cursor instead).
 */
export function isRetryable(error: unknown): boolean {
  if (!(error instanceof AgentCallError) || error.code !== status.UNAVAILABLE) return false;
  const refused = error.reason === 'HANDOVER';
  const transport = error.reason === '';
  if (READS.has(error.method)) return refused || transport;
  if (KEYED.has(error.method)) return refused || (transport && keyed(error));
  if (REFUSABLE.has(error.method)) return refused;
  return false;
}

function keyed(error: AgentCallError): boolean {
  const ids = error.requestIds ?? (error.requestId === undefined ? [] : [error.requestId]);
  return ids.length > 0 && ids.every((id) => id !== '');
}

/**
 * Runs `attempt` until it succeeds, fails with what isRetryable refuses, or the policy or the
 * deadline runs out; then the last error is thrown. So it is as soon as any of `stops` aborts (the
 * caller's signal, the client closing), also during a backoff.
 */
export async function withRetry<T>(policy: RetryPolicy, deadline: Date | undefined, stops: readonly (AbortSignal | undefined)[], attempt: () => Promise<T>, stopped?: (e: unknown) => void): Promise<T> {
  let firstFailure: number | undefined;
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      if (!isRetryable(e)) throw e;
      const now = Date.now();
      firstFailure ??= now;
      const delay = backoffMs(policy, n);
      const late = now + delay - firstFailure > policy.windowMs || (deadline !== undefined && now + delay >= deadline.getTime());
      if (n >= policy.attempts || late) throw e;
      // Ended by a stop, not by the policy: `stopped` tells which failure it ended on.
      if (stops.some((s) => s?.aborted) || !(await sleep(delay, stops))) {
        stopped?.(e);
        throw e;
      }
    }
  }
}

/** The backoff after attempt n: initial × 2^(n-1), at most max, times a random factor in [0.5, 1). */
export function backoffMs(policy: RetryPolicy, n: number): number {
  const full = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (n - 1));
  return full * (0.5 + Math.random() / 2);
}

/** Resolves true after ms, or false as soon as one of `stops` aborts. */
function sleep(ms: number, stops: readonly (AbortSignal | undefined)[]): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (slept: boolean) => {
      clearTimeout(timer);
      for (const s of stops) s?.removeEventListener('abort', onAbort);
      resolve(slept);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    for (const s of stops) s?.addEventListener('abort', onAbort, { once: true });
  });
}
