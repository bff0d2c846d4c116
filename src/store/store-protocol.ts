// What the event loop and the store's thread (store-thread.ts) say to each other: the requests
// (a commit's writes as row-writes.ts encodes them) and replies, and the words of the shared
// control block through which the event loop waits, with a bound, for each reply.
import type { MessagePort } from 'node:worker_threads';
import type { SavedProcess, SavedReleased, SpawnIntent } from '../process/process-store.js';
import type { Tombstone } from '../process/lifecycle/tombstones.js';
import type { Recovery } from './recover.js';
import type { Rows } from './row-writes.js';

export type Request =
  | { readonly op: 'commit'; readonly what: string; readonly sequencesUpTo: number; readonly rows: Rows }
  | { readonly op: 'inPlace' }
  | { readonly op: 'releaseMemory' }
  | { readonly op: 'close' };

/** A reply; `errors` are what the store reported to its error sink meanwhile ([what, error]). */
export interface Reply {
  readonly id: number;
  readonly ok: boolean;
  /** A commit's failure, as its cause said it. */
  readonly error?: string;
  /** The highest sequence reserved durably, after the request. */
  readonly ceiling: number;
  readonly errors: readonly (readonly [string, string])[];
}

/** What became of a request the event loop stopped waiting for, once the thread is back. */
export interface Late {
  readonly id: number;
  readonly late: true;
  /** It was a commit, and it was written after all. */
  readonly landed: boolean;
  /** ... and was then written back as it was before (SqliteStore.undoLast). */
  readonly undone: boolean;
  readonly ceiling: number;
  readonly errors: readonly (readonly [string, string])[];
}

export interface ThreadData {
  readonly stateDir: string;
  readonly bootId: string;
  readonly recover: boolean;
  readonly control: SharedArrayBuffer;
  readonly port: MessagePort;
}

/** The thread's first message (on parentPort): the store opened and what it holds, or why not. */
export type Opened =
  | { readonly ok: true; readonly recovery: Recovery; readonly saved: SavedProcess[]; readonly intents: SpawnIntent[]; readonly tombstones: Tombstone[]; readonly released: SavedReleased[]; readonly ceiling: number }
  | { readonly ok: false; readonly error: OpenError };

/** A failed open, rebuilt as its class on the event loop's side (StoreError, StoreDamaged). */
export interface OpenError {
  readonly kind: 'damaged' | 'in-use' | 'store' | 'other';
  readonly message: string;
  readonly file?: string;
  readonly reason?: string;
}

// Words of the control block (Int32Array over a SharedArrayBuffer).
/** Where the request in flight is; only the event loop moves it out of DONE and RECOVERED. */
export const STATE = 0;
/** Counts requests posted: the thread sleeps on it. */
export const POSTED = 1;
/** Set once the store is closing: a thread trying to undo a late commit gives up. */
export const CLOSING = 2;
/**
 * Set by the thread as it ends (an uncaught error in it, process.exit): the event loop waiting for
 * a reply that will never come wakes now, not at the bound, where it would take it for a stall.
 */
export const GONE = 3;
export const CONTROL_WORDS = 4;

export const IDLE = 0;
/** Posted, the event loop waiting for it. */
export const BUSY = 1;
/** Replied. */
export const DONE = 2;
/** The event loop stopped waiting (past its bound); the thread is still in it. */
export const ABANDONED = 3;
/** The thread is back from an abandoned request (its Late message posted). */
export const RECOVERED = 4;
