// The state store on a thread of its own (store-thread.ts), behind the same synchronous
// ProcessStore: the manager still commits, then changes its table, then tells. A commit's writes
// are posted to the thread as the values the store binds (row-writes.ts), and the event loop
// waits for the reply with Atomics.wait, bounded by --store-timeout. A file system that stalls
// (fsfreeze, a hung mount) then stalls that thread, in uninterruptible sleep, never the event
// loop: past the bound the commit fails (StoreWriteFailed, as on a full disk), and every later
// one fails at once, without waiting, until the thread is back. A commit that landed after its
// caller was told it failed is written back by the thread before it serves anything else
// (SqliteStore.undoLast): what a later agent reads is what callers were told.
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { builtFile } from '../built-files.js';
import type { SequenceOrigin } from '../process/events/event-log.js';
import { StoreWriteFailed, type ProcessStore, type SavedProcess, type SavedReleased, type SpawnIntent, type StoreWrites } from '../process/process-store.js';
import type { Tombstone } from '../process/lifecycle/tombstones.js';
import type { Recovery } from './recover.js';
import { StoreDamaged, StoreError, StoreInUse, type StoreErrorSink } from './sqlite-store.js';
import { rowEncoder, type Rows } from './row-writes.js';
import { ABANDONED, BUSY, CLOSING, CONTROL_WORDS, DONE, GONE, IDLE, POSTED, RECOVERED, STATE, type Late, type Opened, type Reply, type Request, type ThreadData } from './store-protocol.js';

/** What the agent hears of the thread's stalls (health, logs, the exits held back), and of its end. */
export interface StallWatch {
  /** `what` ran past the bound: from now on every commit fails at once. */
  stalled(what: string, timeoutMs: number): void;
  /**
   * The thread is back, `ms` after the stalled request was posted. `landed`: it was a commit,
   * written after all, and `undone`: then written back as it was.
   */
  recovered(info: { readonly what: string; readonly ms: number; readonly landed: boolean; readonly undone: boolean }): void;
  /** The thread ended on its own (not closed): nothing more can be recorded (see ThreadedStore.exit). */
  ended?(exit: ThreadExit): void;
}

/** How the store's thread ended when nobody closed it. */
export interface ThreadExit {
  /** The worker's exit code (1 for an uncaught error or an out-of-memory end). */
  readonly code: number;
  /** The error that ended it, if one did (the worker's error event). */
  readonly error?: string;
}

export interface ThreadedStoreOptions {
  readonly stateDir: string;
  readonly bootId: string;
  /** --recover: a damaged store is moved aside (recover.ts). */
  readonly recover: boolean;
  /** How long the event loop waits for a write (--store-timeout). */
  readonly timeoutMs: number;
  readonly onError: StoreErrorSink;
  readonly watch: StallWatch;
}

/** A commit refused because the thread is still in a write that ran past its bound. */
export class StoreStalled extends StoreError {
  override name = 'StoreStalled';
}

type State = 'idle' | 'stalled' | 'closed' | 'ended';

export class ThreadedStore implements ProcessStore {
  private readonly words: Int32Array;
  private state: State = 'idle';
  private lastId = 0;
  /** The request the thread is stuck in, and when it was posted (performance.now()). */
  private stuck: { readonly what: string; readonly since: number } | undefined;
  private ceiling: number;
  private readonly origin: SequenceOrigin;
  /** What the store held when it opened, until restore has read it. */
  private saved: SavedProcess[];
  private pendingIntents: SpawnIntent[];
  private pendingTombstones: Tombstone[];
  private pendingReleased: SavedReleased[];
  private readonly threadEnded: Promise<void>;
  private exited: ThreadExit | undefined;
  private error: string | undefined;

  /** Opens STATE_DIR/agent.db on a new thread; rejects as SqliteStore's constructor throws. */
  static async open(options: ThreadedStoreOptions): Promise<{ store: ThreadedStore; recovery: Recovery }> {
    const control = new SharedArrayBuffer(CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT);
    const { port1, port2 } = new MessageChannel();
    const data: ThreadData = { stateDir: options.stateDir, bootId: options.bootId, recover: options.recover, control, port: port2 };
    const worker = new Worker(builtFile('dist/src/store/store-thread.js'), { workerData: data, transferList: [port2] });
    let opened: Opened;
    try {
      opened = await new Promise<Opened>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new StoreError(`the state store's thread ended (status ${code}) before it opened the store`)));
      });
    } catch (e) {
      port1.close();
      await worker.terminate();
      throw e;
    } finally {
      worker.removeAllListeners();
    }
    if (!opened.ok) {
      port1.close();
      await worker.terminate();
      const { kind, message, file, reason } = opened.error;
      throw kind === 'damaged' ? new StoreDamaged(file!, reason!) : kind === 'in-use' ? new StoreInUse(message) : kind === 'store' ? new StoreError(message) : new Error(message);
    }
    return { store: new ThreadedStore(worker, port1, control, opened, options), recovery: opened.recovery };
  }

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    control: SharedArrayBuffer,
    opened: Extract<Opened, { ok: true }>,
    private readonly options: ThreadedStoreOptions,
  ) {
    this.words = new Int32Array(control);
    this.ceiling = opened.ceiling;
    this.saved = opened.saved;
    this.pendingIntents = opened.intents;
    this.pendingTombstones = opened.tombstones;
    this.pendingReleased = opened.released;
    this.origin = { after: opened.ceiling, reserve: (sequence) => sequence <= this.ceiling || this.reserve(sequence) };
    // The agent's loop is held open by what it serves, never by its store.
    worker.unref();
    worker.on('error', (e) => {
      this.error = String(e);
      options.onError("the state store's thread", e);
    });
    this.threadEnded = new Promise((resolve) =>
      worker.on('exit', (code) => {
        resolve();
        if (this.state === 'closed') return;
        this.state = 'ended';
        this.exited = { code, ...(this.error === undefined ? {} : { error: this.error }) };
        options.watch.ended?.(this.exited);
      }),
    );
  }

  get sequences(): SequenceOrigin {
    return this.origin;
  }

  commit(what: string, sequencesUpTo: number, writes: (w: StoreWrites) => void): void {
    const rows: Rows = [];
    writes(rowEncoder(rows));
    const reply = this.call({ op: 'commit', what, sequencesUpTo, rows }, what);
    if (typeof reply === 'object' && reply.ok) return;
    const cause = typeof reply === 'object' ? new StoreError(reply.error ?? 'unknown error') : this.refusal(reply);
    // The thread reported its own failures; the event loop reports those it decided itself.
    if (typeof reply !== 'object') this.options.onError(`record ${what}`, cause);
    throw new StoreWriteFailed(what, { cause });
  }

  stalled(): boolean {
    return this.state === 'stalled';
  }

  /** How the thread ended, once it has ended without a close (an error in it, an exit, out of memory). */
  get exit(): ThreadExit | undefined {
    return this.exited;
  }

  /**
   * False once the thread has ended: nothing more can be recorded (the agent stops, as for a lost
   * store). Only once its exit event has said how (exit): a thread found gone in a call is ended
   * at once, but told, with its cause, by that event a moment later.
   */
  inPlace(): boolean {
    if (this.exited !== undefined) return false;
    // A stalled thread cannot look: the stall is reported on its own.
    const reply = this.call({ op: 'inPlace' }, 'the store check');
    return typeof reply === 'object' ? reply.ok : true;
  }

  /** Read once, at start: what the thread read when it opened the store. */
  load(): SavedProcess[] {
    const saved = this.saved;
    this.saved = [];
    return saved;
  }

  intents(): SpawnIntent[] {
    const intents = this.pendingIntents;
    this.pendingIntents = [];
    return intents;
  }

  tombstones(): Tombstone[] {
    const tombstones = this.pendingTombstones;
    this.pendingTombstones = [];
    return tombstones;
  }

  runningReleased(): SavedReleased[] {
    const released = this.pendingReleased;
    this.pendingReleased = [];
    return released;
  }

  releaseMemory(): void {
    this.call({ op: 'releaseMemory' }, 'releasing memory');
  }

  /**
   * Closes the connection, which releases the lock (for a successor). A thread still stuck is
   * left to finish: it closes the store once it is back, and the agent's process cannot end
   * before then anyway (the kernel ends no process while one of its threads is in uninterruptible sleep).
   */
  close(): void {
    if (this.state === 'closed' || this.state === 'ended') return;
    Atomics.store(this.words, CLOSING, 1);
    // A stuck thread reads this once it is back, after writing back its late commit (its STATE
    // stays ABANDONED until then: a close must not look like an answer to the stuck request).
    if (this.state === 'idle') this.call({ op: 'close' }, 'closing the store');
    else this.send(++this.lastId, { op: 'close' });
    this.state = 'closed';
    this.port.close();
    // Held open until the thread has ended, so that ended() resolves rather than the loop running dry.
    this.worker.ref();
  }

  /**
   * Resolves once the thread has ended: at once after a close, or once a stuck thread is back
   * (and has written back its late commit), which its process could not outlast anyway.
   */
  ended(): Promise<void> {
    return this.threadEnded;
  }

  private reserve(sequence: number): boolean {
    try {
      this.commit('a block of event sequences', sequence, () => {});
      return true;
    } catch {
      return false;
    }
  }

  /** The request's reply; 'refused' when the thread cannot take it, 'timed-out' when it did not answer in time. */
  private call(request: Request, what: string): Reply | 'refused' | 'timed-out' {
    if (this.state !== 'idle') return 'refused';
    const id = this.post(request);
    const since = performance.now();
    // A wake-up is no answer by itself: the thread's notify for the previous request can come
    // late (it was descheduled between its answer and the notify), and wake this wait.
    for (let left = this.options.timeoutMs; left > 0 && Atomics.load(this.words, STATE) === BUSY && Atomics.load(this.words, GONE) === 0; left = since + this.options.timeoutMs - performance.now()) {
      Atomics.wait(this.words, STATE, BUSY, left);
    }
    // GONE read first: once it is set the thread moves STATE no more.
    if (Atomics.load(this.words, GONE) === 1 && Atomics.load(this.words, STATE) === BUSY) {
      // Ended without answering; its exit event (how it ended) comes once the loop runs.
      this.state = 'ended';
      return 'refused';
    }
    if (Atomics.compareExchange(this.words, STATE, BUSY, ABANDONED) === BUSY) {
      this.stall(what, since);
      return 'timed-out';
    }
    const message = receiveMessageOnPort(this.port)?.message as Reply | undefined;
    Atomics.store(this.words, STATE, IDLE);
    if (message === undefined || message.id !== id) throw new Error(`the state store's thread answered ${message?.id} to request ${id}`);
    this.ceiling = message.ceiling;
    for (const [w, e] of message.errors) this.options.onError(w, e);
    return message;
  }

  private post(request: Request): number {
    const id = ++this.lastId;
    Atomics.store(this.words, STATE, BUSY);
    this.send(id, request);
    return id;
  }

  private send(id: number, request: Request): void {
    this.port.postMessage({ id, ...request });
    Atomics.add(this.words, POSTED, 1);
    Atomics.notify(this.words, POSTED);
  }

  private stall(what: string, since: number): void {
    this.state = 'stalled';
    this.stuck = { what, since };
    this.options.watch.stalled(what, this.options.timeoutMs);
    // The thread's return is work still to come: it holds the loop open like any pending I/O.
    this.worker.ref();
    this.awaitRecovery();
  }

  private awaitRecovery(): void {
    const back = Atomics.waitAsync(this.words, STATE, ABANDONED);
    // Never synchronously: the caller is in the middle of its commit.
    if (back.async) void back.value.then(() => this.recover());
    else setImmediate(() => this.recover());
  }

  /** The thread is back from the stuck request: its reply and what became of it are read, then it serves again. */
  private recover(): void {
    if (this.state !== 'stalled') return;
    // Woken by a late notify of an earlier request: still stuck.
    if (Atomics.load(this.words, STATE) !== RECOVERED) return this.awaitRecovery();
    let late: Late | undefined;
    for (let m = receiveMessageOnPort(this.port); m !== undefined; m = receiveMessageOnPort(this.port)) {
      const message = m.message as Reply | Late;
      if ('late' in message) late = message;
    }
    Atomics.store(this.words, STATE, IDLE);
    this.state = 'idle';
    this.worker.unref();
    const stuck = this.stuck!;
    this.stuck = undefined;
    if (late !== undefined) {
      this.ceiling = late.ceiling;
      for (const [w, e] of late.errors) this.options.onError(w, e);
    }
    this.options.watch.recovered({ what: stuck.what, ms: Math.round(performance.now() - stuck.since), landed: late?.landed ?? false, undone: late?.undone ?? false });
  }

  /** Why a commit failed without a reply. */
  private refusal(reply: 'refused' | 'timed-out'): StoreError {
    if (reply === 'timed-out') return new StoreStalled(`the write did not finish within ${this.options.timeoutMs} ms (--store-timeout): the state dir's file system stalls`);
    if (this.state === 'stalled') {
      const { what, since } = this.stuck!;
      return new StoreStalled(`the store has been in a write (${what}) for ${Math.round(performance.now() - since)} ms: the state dir's file system stalls; nothing is recorded until it finishes`);
    }
    if (this.state === 'closed') return new StoreError('the state store is closed');
    const how = this.exited === undefined ? '' : ` (exit code ${this.exited.code}${this.exited.error === undefined ? '' : `: ${this.exited.error}`})`;
    return new StoreError(`the state store's thread has ended${how}: nothing more is recorded`);
  }
}
