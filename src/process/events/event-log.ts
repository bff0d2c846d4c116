import type { ExitInfo, ProcessRecord, ProcessSpec, ProcessView, State } from '../lifecycle/record.js';
import type { HandleId } from '../lifecycle/handle.js';
import type { OutputSlice } from '../stdio/captured-output.js';

export type EventType = 'spawned' | 'adopted' | 'exited' | 'released' | 'output';

/**
 * A lifecycle event in the domain's shape: what a handover sends and seeds the successor's log
 * with. The log itself keeps events encoded (EventSubject, EventEncoding).
 */
export interface ProcessEvent {
  readonly sequence: number;
  readonly type: EventType;
  readonly time: number;
  readonly record: ProcessView;
  readonly state: State;
  readonly exit: ExitInfo | undefined;
  /** For 'output' events: captured bytes, read from the process's ring when the event is sent. */
  readonly output?: OutputSlice;
}

/**
 * What the ring keeps of a process, shared by all its events: what a watcher's filter and the
 * policy read, and the process encoded once, when first sent or at the latest when it is
 * released. From then on nothing else of the process (no view, argv array, exit object) stays
 * alive for its events.
 */
export class EventSubject {
  #view: ProcessView | undefined;
  #process: string | undefined;
  /** The exit the record had at its last event, and its encoding: a process's events share it. */
  exitOf: ExitInfo | undefined;
  exitField: string | undefined;

  constructor(
    readonly handle: HandleId,
    /** The view's own spec while the process is held; only what filters read once it is released. */
    public spec: Pick<ProcessSpec, 'owner' | 'labels'>,
    view: ProcessView,
  ) {
    this.#view = view;
  }

  /** The API Process fields that never change (all but state, exit and usage), as latin1 bytes. */
  process(encoding: EventEncoding): string {
    return (this.#process ??= latin1(encoding.process(this.#view!)));
  }

  /** The process is released: encode what its events need and let go of the rest. */
  compact(encoding: EventEncoding): void {
    if (this.#view === undefined) return;
    this.process(encoding);
    const { owner, labels } = this.spec;
    this.spec = { owner, labels };
    this.#view = undefined;
    this.exitOf = undefined;
  }
}

/**
 * The API encoding of events (service/event-encoding.ts): the log keeps events as bytes every
 * watcher sends as they are, and decodes them only for a handover.
 */
export interface EventEncoding {
  /** The fields of Process that never change, encoded. */
  process(view: ProcessView): Uint8Array;
  /** Process.exit as a whole field (tag and length included). */
  exitField(exit: ExitInfo): Uint8Array;
  /**
   * Writes the start of an Event at `at`: everything before the Process bytes that never change,
   * whose length (with the exit field) is `processBytes`. Returns the end.
   */
  writeHead(into: Uint8Array, at: number, sequence: number, type: EventType, time: number, state: State, processBytes: number): number;
  /** The bytes writeHead writes. */
  headLength(sequence: number, type: EventType, time: number, state: State, processBytes: number): number;
  decodeProcess(bytes: Uint8Array): ProcessView;
  decodeExitField(bytes: Uint8Array): ExitInfo;
}

/** An event as a handover reads it back from the ring: decoded on demand. */
export interface HeldEvent {
  readonly sequence: number;
  readonly type: EventType;
  readonly time: number;
  readonly handle: HandleId;
  readonly state: State;
  readonly exit: ExitInfo | undefined;
  readonly output?: OutputSlice;
  view(): ProcessView;
}


const TYPES: readonly EventType[] = ['spawned', 'adopted', 'exited', 'released', 'output'];
const STATES: readonly State[] = ['running', 'exited', 'released'];

const stateAfter: Record<Exclude<EventType, 'output'>, State> = {
  spawned: 'running',
  adopted: 'running',
  exited: 'exited',
  released: 'released',
};

const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
const bytesOf = (s: string): Buffer => Buffer.from(s, 'latin1');

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
 * `capacity` events kept in a ring for replay, each already encoded for the API. Subscribers are
 * told (once per microtask) that events were appended and read them by sequence, so a slow reader
 * costs no memory: it only falls out of the ring.
 *
 * The ring is columns indexed by slot (sequence % capacity), not an object per event: an event
 * costs its type, state and time, and references to what its process's events share (subject,
 * exit field).
 */
export class EventLog {
  private readonly subjects: (EventSubject | undefined)[];
  /** Process.exit of each event (shared by a process's events), undefined before the exit. */
  private readonly exits: (string | undefined)[];
  /** Type index | state index << 3. */
  private readonly kinds: Uint8Array;
  private readonly times: Float64Array;
  /** Output events by sequence: few, and their bytes are read when sent. */
  private readonly outputs = new Map<number, OutputSlice>();
  private last = 0;
  /** Sequences up to here are not held (used by an earlier agent, or never replayable here). */
  private floor: number;
  private readonly listeners = new Set<() => void>();
  private notifyScheduled = false;

  constructor(
    readonly capacity: number,
    private readonly encoding: EventEncoding,
    private readonly clock: () => number = Date.now,
    private readonly origin: SequenceOrigin = { after: 0, reserve: () => true },
  ) {
    this.subjects = new Array(capacity);
    this.exits = new Array(capacity);
    this.kinds = new Uint8Array(capacity);
    this.times = new Float64Array(capacity);
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
    const subjects = new Map<ProcessView, EventSubject>();
    const exits = new Map<ExitInfo, string>();
    kept.forEach((event, i) => {
      if (event.sequence !== this.floor + 1 + i) throw new Error(`EventLog.seed: sequence ${event.sequence} out of order`);
      let subject = subjects.get(event.record);
      if (!subject) subjects.set(event.record, (subject = new EventSubject(event.record.handle, event.record.spec, event.record)));
      if (event.state === 'released') subject.compact(this.encoding);
      let exit = event.exit && exits.get(event.exit);
      if (event.exit && exit === undefined) exits.set(event.exit, (exit = latin1(this.encoding.exitField(event.exit))));
      this.put(event.sequence, event.type, event.time, event.state, subject, exit, event.output);
    });
  }

  /** Every event still held, oldest first. */
  *held(): IterableIterator<HeldEvent> {
    const views = new Map<EventSubject, ProcessView>();
    const exits = new Map<string, ExitInfo>();
    for (let s = this.firstSequence; s <= this.last; s++) {
      const slot = s % this.capacity;
      const subject = this.subjects[slot]!;
      const field = this.exits[slot];
      let exit = field === undefined ? undefined : exits.get(field);
      if (field !== undefined && exit === undefined) exits.set(field, (exit = this.encoding.decodeExitField(bytesOf(field))));
      const view = () => {
        let v = views.get(subject);
        if (!v) views.set(subject, (v = this.encoding.decodeProcess(bytesOf(subject.process(this.encoding)))));
        return v;
      };
      yield { sequence: s, type: this.typeAt(slot), time: this.times[slot]!, handle: subject.handle, state: STATES[this.kinds[slot]! >> 3]!, exit, output: this.outputs.get(s), view };
    }
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
   * for output the ring overwrote). Returns the event's sequence.
   */
  append(type: Exclude<EventType, 'output'>, record: ProcessRecord): number;
  append(type: 'output', record: ProcessRecord, output: OutputSlice): number | undefined;
  append(type: EventType, record: ProcessRecord, output?: OutputSlice): number | undefined {
    if (!this.origin.reserve(this.last + 1)) {
      if (type === 'output') return undefined;
      throw new SequenceUnavailable(`event ${this.last + 1} (${type}) was not reserved in the store`);
    }
    const view = record.view;
    const subject = (record.eventSubject ??= new EventSubject(view.handle, view.spec, view));
    const exit = record.exit;
    if (exit !== undefined && subject.exitOf !== exit) {
      subject.exitOf = exit;
      subject.exitField = latin1(this.encoding.exitField(exit));
    }
    const sequence = ++this.last;
    this.put(sequence, type, this.clock(), type === 'output' ? record.state : stateAfter[type], subject, exit && subject.exitField, output);
    if (type === 'released') subject.compact(this.encoding);
    this.scheduleNotify();
    return sequence;
  }

  /** The ring slot of the event with this sequence, or -1 when it is not held (too old, or not yet). */
  slotOf(sequence: number): number {
    if (sequence < this.firstSequence || sequence > this.last) return -1;
    return sequence % this.capacity;
  }

  subjectAt(slot: number): EventSubject {
    return this.subjects[slot]!;
  }

  typeAt(slot: number): EventType {
    return TYPES[this.kinds[slot]! & 7]!;
  }

  /** An output event's slice (its bytes are read when it is sent). */
  outputOf(sequence: number): OutputSlice | undefined {
    return this.outputs.get(sequence);
  }

  /** Bytes of the event's Event message, its output chunk excluded. */
  encodedLength(slot: number): number {
    const processBytes = this.processBytes(slot);
    return this.headLength(slot, processBytes) + processBytes;
  }

  /**
   * Writes the event's Event message (its output chunk excluded) at `at`; returns the end. Only
   * the head (sequence, type, time, state: a few varints) is written per watcher; the process and
   * its exit were encoded once.
   */
  writeEncoded(slot: number, into: Buffer, at: number): number {
    const subject = this.subjects[slot]!;
    const process = subject.process(this.encoding);
    const exit = this.exits[slot];
    const kind = this.kinds[slot]!;
    at = this.encoding.writeHead(into, at, this.sequenceAt(slot), TYPES[kind & 7]!, this.times[slot]!, STATES[kind >> 3]!, process.length + (exit?.length ?? 0));
    at += into.write(process, at, 'latin1');
    if (exit !== undefined) at += into.write(exit, at, 'latin1');
    return at;
  }

  private processBytes(slot: number): number {
    return this.subjects[slot]!.process(this.encoding).length + (this.exits[slot]?.length ?? 0);
  }

  private headLength(slot: number, processBytes: number): number {
    const kind = this.kinds[slot]!;
    return this.encoding.headLength(this.sequenceAt(slot), TYPES[kind & 7]!, this.times[slot]!, STATES[kind >> 3]!, processBytes);
  }

  /** The held event in this slot: the newest sequence with this remainder. */
  private sequenceAt(slot: number): number {
    const newest = this.last % this.capacity;
    return this.last - newest + slot - (slot > newest ? this.capacity : 0);
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

  private put(sequence: number, type: EventType, time: number, state: State, subject: EventSubject, exit: string | undefined, output: OutputSlice | undefined): void {
    const slot = sequence % this.capacity;
    if (this.subjects[slot] !== undefined) this.outputs.delete(sequence - this.capacity);
    this.subjects[slot] = subject;
    this.exits[slot] = exit;
    this.kinds[slot] = TYPES.indexOf(type) | (STATES.indexOf(state) << 3);
    this.times[slot] = time;
    if (output !== undefined) this.outputs.set(sequence, output);
  }

  /**
   * Tells subscribers now of what was appended, rather than in the microtask: for a caller in a
   * callback after which Node runs no microtasks until the loop's check phase (a koffi poll
   * handle's), whose watchers' writes would otherwise go out a turn of the loop later.
   */
  notifyNow(): void {
    if (!this.notifyScheduled) return;
    this.notifyScheduled = false;
    for (const listener of this.listeners) listener();
  }

  private scheduleNotify(): void {
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    queueMicrotask(() => this.notifyNow());
  }
}
