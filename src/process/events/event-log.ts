import type { ExitInfo, ProcessRecord, ProcessView, State } from '../lifecycle/record.js';
import type { OutputSlice } from '../stdio/captured-output.js';

export type EventType = 'spawned' | 'adopted' | 'exited' | 'released' | 'output';

/** A lifecycle event. The record's own fields are immutable; state and exit are as of the event. */
export interface ProcessEvent {
  readonly sequence: number;
  readonly type: EventType;
  readonly time: number;
  /** The record's view, not the record: a released process is not kept alive by its events. */
  readonly record: ProcessView;
  readonly state: State;
  readonly exit: ExitInfo | undefined;
  /** For 'output' events: captured bytes, read from the process's ring when the event is sent. */
  readonly output?: OutputSlice;
}

const stateAfter: Record<Exclude<EventType, 'output'>, State> = {
  spawned: 'running',
  adopted: 'running',
  exited: 'exited',
  released: 'released',
};

/**
 * Where numbering starts, for a log that continues an earlier agent's (the persisted store):
 * sequences up to `after` may have been used already and are never held here.
 */
export interface SequenceOrigin {
  readonly after: number;
  /**
   * Called before each sequence is used; cheap unless it must persist a new reservation. False
   * when the number cannot be made safe (the store cannot be written): it must not be used, or a
   * restarted agent could hand it out again.
   */
  reserve(sequence: number): boolean;
}

/** A lifecycle event could not be numbered: its transition must have reserved it (ProcessStore.commit). */
export class SequenceUnavailable extends Error {}

/**
 * The agent's event history: strictly increasing sequence numbers without gaps, the newest
 * `capacity` events kept in a ring for replay. Subscribers are told (once per microtask) that
 * events were appended and read them by sequence, so a slow reader costs no memory: it only
 * falls out of the ring.
 */
export class EventLog {
  private readonly ring: (ProcessEvent | undefined)[];
  private last = 0;
  /** Sequences up to here are not held (used by an earlier agent, or never replayable here). */
  private floor: number;
  private readonly listeners = new Set<() => void>();
  private notifyScheduled = false;

  constructor(
    readonly capacity: number,
    private readonly clock: () => number = Date.now,
    private readonly origin: SequenceOrigin = { after: 0, reserve: () => true },
  ) {
    this.ring = new Array(capacity);
    this.last = origin.after;
    this.floor = origin.after;
  }

  /**
   * Continues the history of the agent that handed over: `history` are its newest events, in
   * order, ending at `last`. Only before the first append.
   */
  seed(last: number, history: readonly ProcessEvent[]): void {
    if (this.last !== this.floor) throw new Error('EventLog.seed after append');
    const kept = history.slice(-this.capacity);
    this.last = last;
    this.floor = last - kept.length;
    kept.forEach((event, i) => {
      if (event.sequence !== this.floor + 1 + i) throw new Error(`EventLog.seed: sequence ${event.sequence} out of order`);
      this.ring[event.sequence % this.capacity] = event;
    });
  }

  /** Every event still held, oldest first. */
  *held(): IterableIterator<ProcessEvent> {
    for (let s = this.firstSequence; s <= this.last; s++) yield this.ring[s % this.capacity]!;
  }

  /** Sequence of the newest event; 0 before the first. */
  get lastSequence(): number {
    return this.last;
  }

  /** Sequence of the oldest event still held. */
  get firstSequence(): number {
    return Math.max(this.floor + 1, this.last - this.capacity + 1);
  }

  /**
   * A lifecycle event's number was reserved by the store commit of its transition, so it never
   * fails; an output event that cannot be numbered is dropped (watchers see a gap in offsets, as
   * for output the ring overwrote).
   */
  append(type: Exclude<EventType, 'output'>, record: ProcessRecord): ProcessEvent;
  append(type: 'output', record: ProcessRecord, output: OutputSlice): ProcessEvent | undefined;
  append(type: EventType, record: ProcessRecord, output?: OutputSlice): ProcessEvent | undefined {
    if (!this.origin.reserve(this.last + 1)) {
      if (type === 'output') return undefined;
      throw new SequenceUnavailable(`event ${this.last + 1} (${type}) was not reserved in the store`);
    }
    const event: ProcessEvent = {
      sequence: ++this.last,
      type,
      time: this.clock(),
      record: record.view,
      state: type === 'output' ? record.state : stateAfter[type],
      exit: record.exit,
      output,
    };
    this.ring[event.sequence % this.capacity] = event;
    this.scheduleNotify();
    return event;
  }

  /** The event with this sequence, or undefined when it is not held (too old, or not yet). */
  get(sequence: number): ProcessEvent | undefined {
    if (sequence < this.firstSequence || sequence > this.last) return undefined;
    return this.ring[sequence % this.capacity];
  }

  /** True when every event after `sequence` is still held. */
  canReplayAfter(sequence: number): boolean {
    return sequence >= this.firstSequence - 1 && sequence <= this.last;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }

  private scheduleNotify(): void {
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      for (const listener of this.listeners) listener();
    });
  }
}
