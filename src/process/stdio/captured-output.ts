// One output pipe read into a bounded ring. A reader that keeps reading loses nothing: while it is
// more than a ring behind, the agent stops reading the pipe, so the child waits for it (as for a
// terminal). A reader whose transport takes nothing for READER_STALL_MS no longer counts, the agent
// reads on and the ring overwrites: no client can block a child for longer than that, and with
// nobody reading the pipe is always drained.
import type net from 'node:net';
import { closeFd, type Fd } from '../../kernel/fd.js';
import type { OutputPublisher } from './output-event-budget.js';
import { OutputRing } from './output-ring.js';
import { detachPipe, openPipe } from './pipe-end.js';

export type StreamName = 'stdout' | 'stderr';

/** A reader that took nothing for this long stops holding the pipe back. */
export const READER_STALL_MS = 1000;
/** One read from a pipe brings at most this much (libuv's read buffer). */
const PIPE_READ_BYTES = 64 * 1024;
/**
 * The next mark is persisted once the output comes this close to the last one, not when a read
 * crosses it: a store write that fails then stops the reading while what is already read (a read
 * in flight, one the paused socket buffered) still lies below the mark and can be taken in.
 */
export const MARK_SLACK_BYTES = 1024 * 1024;
/** Output events carry at most this many bytes each... */
export const OUTPUT_EVENT_BYTES = 64 * 1024;
/** ...and are coalesced over this long (longer past the owner's budget), so chatty output does not flood the event log. */
export const OUTPUT_EVENT_DELAY_MS = 25;

/** Captured output published as an event: a range of the stream, read from its ring when sent. */
export interface OutputSlice {
  readonly stream: StreamName;
  readonly offset: number;
  readonly length: number;
  readonly source: CapturedOutput;
}

/** The part of a slice the ring still holds (empty, at the slice's end, when none is). */
export function sliceBytes(slice: OutputSlice): { offset: number; data: Buffer } {
  const end = slice.offset + slice.length;
  const from = Math.min(Math.max(slice.offset, slice.source.ring.start), end);
  return { offset: from, data: slice.source.ring.read(from, end - from).data };
}

/** A reader of a ring: while it is not stalled, the pipe is not read past what it has not taken. */
export interface OutputHold {
  /** The next offset it will take. */
  readonly position: number;
  readonly stalled: boolean;
}

/** What a successor needs to go on capturing: the ring's bytes and the pipe. */
export interface CaptureState {
  readonly stream: StreamName;
  readonly capacity: number;
  readonly end: number;
  /**
   * The bytes held, oldest first, in pieces: views of the ring itself (valid until it changes)
   * when taken from one, so that a handover or a stop sends or saves its rings without a copy.
   */
  readonly held: readonly Uint8Array[];
  readonly dropped: boolean;
  readonly published: number;
  /** null once the pipe reached end-of-file. */
  readonly pipe: Fd | null;
}

/** One output pipe read into a ring until end-of-file. */
export class CapturedOutput {
  readonly ring: OutputRing;
  private socket: net.Socket | null = null;
  /** The pipe while no socket reads it (during a handover); owned here. */
  private detached: Fd | null = null;
  private paused = false;
  private pauseTimer: NodeJS.Timeout | null = null;
  private readonly holds = new Set<OutputHold>();
  private readonly listeners = new Set<() => void>();
  /** End of the output already published as events. */
  private published = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Waiting for the owner's output event budget: output only gathers meanwhile. */
  private throttled = false;
  /** A persisted bound above every offset handed out (capture-marks.ts); nearing it moves it first. */
  private mark = Infinity;
  /** The next mark, persisted above `end`; undefined when the store could not take it (then retried). */
  private persistMark: (end: number) => number | undefined = () => Infinity;
  /** The mark could not be persisted: the pipe is not read until it is (markPersisted). */
  private holding = false;
  /** Read past the mark while holding: taken in once the mark is persisted. */
  private readonly pending: Buffer[] = [];
  /** End-of-file came while bytes were pending: the stream ends once they are taken in. */
  private eofPending = false;

  /** `fd` null: the pipe had already reached end-of-file (restored from a handover). */
  constructor(
    private fd: Fd | null,
    readonly stream: StreamName,
    ringBytes: number,
    private publish: OutputPublisher | null,
    private readonly onClose: () => void,
  ) {
    this.ring = new OutputRing(ringBytes);
    if (fd !== null) this.read(fd);
  }

  /** Continues a predecessor's capture (handover): its bytes, then its pipe. */
  static continuing(state: CaptureState, publish: OutputPublisher | null, onClose: () => void): CapturedOutput {
    const out = new CapturedOutput(null, state.stream, state.capacity, publish, onClose);
    out.ring.continueAt(state.end, state.held);
    if (state.dropped) out.ring.drop();
    out.published = state.published;
    if (state.pipe !== null) out.read(state.pipe);
    else out.ring.seal();
    return out;
  }

  private read(fd: Fd): void {
    this.fd = fd;
    const socket = openPipe(fd, 'read');
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // A read error (EIO) ends the stream like end-of-file; 'close' follows either way.
    socket.on('error', () => {});
    socket.on('close', () => this.onEof());
    this.socket = socket;
    if (this.paused) socket.pause();
  }

  /**
   * Stops reading (handover): what the socket already read goes into the ring and is published,
   * the pipe itself is kept as a duplicate for the successor (or for `reattach`).
   */
  detach(): void {
    const socket = this.socket;
    if (socket === null || this.fd === null) return;
    while (socket.read() !== null); // chunks read before a pause arrive as 'data' now
    // The store is still this agent's: one more try, so that a hold hands on nothing pending.
    if (this.holding) this.advanceMark(this.readEnd);
    this.flush();
    this.detached = detachPipe(socket, this.fd);
    this.socket = null;
    this.fd = null;
    if (this.pauseTimer !== null) clearTimeout(this.pauseTimer);
    this.pauseTimer = null;
  }

  /** Reads the pipe again after a handover that did not happen. */
  reattach(): void {
    const fd = this.detached;
    if (fd === null) return;
    this.detached = null;
    this.read(fd);
    this.regulate();
  }

  /**
   * After detach: the state a successor continues from; the pipe is the successor's to close.
   * Bytes still pending at an unpersisted mark cannot be handed on (nobody may serve them before
   * a mark above them is stored): the successor's stream goes on past them, and a reader that
   * had not taken the ring's bytes yet reads them all as lost, never other bytes at their offsets.
   */
  state(): CaptureState {
    const pending = this.pendingBytes;
    return {
      stream: this.stream,
      capacity: this.ring.capacity,
      end: this.ring.end + pending,
      held: pending > 0 ? [] : this.ring.held(),
      dropped: this.ring.isDropped,
      published: this.published,
      pipe: this.detached,
    };
  }

  /** The handover is done: the duplicate goes (the successor received its own). */
  closeDetached(): void {
    if (this.detached !== null) closeFd(this.detached);
    this.detached = null;
  }

  /** True until the pipe reached end-of-file (every writer closed it) and was closed. */
  get pipeOpen(): boolean {
    return this.socket !== null || this.detached !== null || this.eofPending;
  }

  /** Read from the pipe, taken in or pending. */
  get readEnd(): number {
    return this.ring.end + this.pendingBytes;
  }

  private get pendingBytes(): number {
    return this.pending.reduce((n, b) => n + b.length, 0);
  }

  /** True while the agent is not reading the pipe because a reader is a ring behind. */
  get waitingForReader(): boolean {
    return this.paused;
  }

  /** Registers a reader the pipe waits for; returns its removal. */
  hold(reader: OutputHold): () => void {
    this.holds.add(reader);
    return () => {
      this.holds.delete(reader);
      this.regulate();
    };
  }

  /** Stops or resumes reading the pipe as readers fall a ring behind or catch up (or stall). */
  regulate(): void {
    if (this.socket === null) return;
    const wait = this.holding || this.mustWait();
    if (wait !== this.paused) {
      this.paused = wait;
      if (wait) this.socket.pause();
      else this.socket.resume();
    }
    if (this.paused && this.pauseTimer === null) {
      // Re-checked when no reader made progress for a while: a stalled one no longer counts.
      this.pauseTimer = setTimeout(() => {
        this.pauseTimer = null;
        this.regulate();
      }, READER_STALL_MS).unref();
    }
  }

  private mustWait(): boolean {
    // The next read must fit without overwriting what a live reader has not taken.
    const room = Math.max(0, this.ring.capacity - PIPE_READ_BYTES);
    for (const h of this.holds) if (!h.stalled && this.ring.end - h.position > room) return true;
    return false;
  }

  /** Called after new output, end-of-file, the exit and the release. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** After the release: nothing is kept or published any more, but the pipe is still drained. */
  drop(): void {
    this.ring.drop();
    if (this.throttled) this.publish?.withdraw(this.admitted);
    this.throttled = false;
    this.publish = null;
    this.clearTimer();
    this.notify();
    this.listeners.clear();
    this.holds.clear();
    // Nothing is served any more, so no mark is needed: what is pending is counted, and read on.
    this.persistMark = () => Infinity;
    this.markPersisted(Infinity);
    this.regulate();
  }

  /**
   * From here on, output past `mark` is only taken in once persist(end) has moved the mark beyond
   * it. A mark below what the ring already holds (an older agent handed out more since it was
   * stored) is moved at once.
   */
  trackMark(mark: number, persist: (end: number) => number | undefined): void {
    this.mark = mark;
    this.persistMark = persist;
    if (this.ring.end > mark) this.advanceMark(this.ring.end);
  }

  /** Persists a mark above `end`; if the store refuses, the pipe is held until markPersisted. */
  private advanceMark(end: number): void {
    const next = this.persistMark(end);
    if (next !== undefined) return this.markPersisted(next);
    if (this.holding) return;
    this.holding = true;
    this.regulate();
  }

  /** The store has `mark`: what waited for it is taken in, and the pipe is read again. */
  markPersisted(mark: number): void {
    this.mark = mark;
    this.holding = false;
    for (const chunk of this.pending.splice(0)) this.take(chunk);
    if (this.eofPending) {
      this.eofPending = false;
      this.ended();
    }
    this.regulate();
  }

  private onData(chunk: Buffer): void {
    const end = this.ring.end + chunk.length;
    if (!this.holding && end + MARK_SLACK_BYTES >= this.mark) this.advanceMark(end);
    this.take(chunk);
  }

  /** Into the ring as far as the persisted mark allows; the rest waits for the next mark. */
  private take(chunk: Buffer): void {
    if (this.pending.length > 0 || chunk.length > this.mark - this.ring.end) {
      const room = this.pending.length > 0 ? 0 : Math.max(0, this.mark - this.ring.end);
      if (room > 0) this.append(chunk.subarray(0, room));
      this.pending.push(chunk.subarray(room));
      return;
    }
    this.append(chunk);
  }

  private append(chunk: Buffer): void {
    this.ring.append(chunk);
    if (this.holds.size > 0) this.regulate();
    // A stream waiting for its owner's budget gathers: the budget calls it when its turn comes.
    if (this.publish !== null && !this.throttled) {
      if (this.ring.end - this.published >= OUTPUT_EVENT_BYTES) this.flushWithinBudget();
      else if (this.timer === null) this.timer = setTimeout(() => this.flushWithinBudget(), OUTPUT_EVENT_DELAY_MS).unref();
    }
    this.notify();
  }

  private onEof(): void {
    this.socket = null;
    if (this.pauseTimer !== null) clearTimeout(this.pauseTimer);
    if (this.pending.length > 0) this.eofPending = true;
    else this.ended();
  }

  private ended(): void {
    this.flush();
    this.ring.seal();
    this.onClose();
    this.notify();
  }

  /** Publishes what has gathered if the owner's budget allows, else once it does (admitted). */
  private flushWithinBudget(): void {
    this.clearTimer();
    if (this.publish === null || this.throttled) return;
    if (this.publish.admit(this.admitted)) this.publishPending(1);
    else this.throttled = true;
  }

  /** The owner's budget has an event for this stream, taken for it. */
  private readonly admitted = (): void => {
    this.throttled = false;
    this.publishPending(1);
  };

  /** Publishes what is waiting now, budget or not (before the exit event, at end-of-file, a handover). */
  flush(): void {
    this.clearTimer();
    if (this.publish === null) return;
    if (this.throttled) this.publish.withdraw(this.admitted);
    this.throttled = false;
    this.publishPending(0);
  }

  /** `paid`: events already taken from the owner's budget; the rest are charged to it. */
  private publishPending(paid: number): void {
    const publish = this.publish;
    if (publish === null) return;
    // Bytes the ring overwrote before they were published are skipped: the next event's offset
    // shows the gap.
    this.published = Math.max(this.published, this.ring.start);
    let events = 0;
    while (this.published < this.ring.end) {
      const length = Math.min(OUTPUT_EVENT_BYTES, this.ring.end - this.published);
      publish.publish({ stream: this.stream, offset: this.published, length, source: this });
      this.published += length;
      events++;
    }
    publish.spend(events - paid);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
