import type { ExitInfo, ProcessRecord, ProcessSpec, ProcessView, State } from '../lifecycle/record.js';
import type { HandleId } from '../lifecycle/handle.js';
import type { OutputSlice } from '../stdio/captured-output.js';
import { ownerOf } from '../lifecycle/record.js';
import { OwnerShares, type EvictionMarks, type Share } from './owner-shares.js';

export type { EvictionMarks } from './owner-shares.js';

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
  /** Its owner's share of the ring, kept to spare a lookup per event. */
  share: Share | undefined;

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
 * The agent's event history: strictly increasing sequence numbers without gaps, at most
 * `capacity` events kept for replay, each already encoded for the API. Subscribers are told (once
 * per microtask) that events were appended and read them by sequence, so a slow reader costs no
 * memory: it only falls behind what is held.
 *
 * Sequences are global, the ring is shared fairly: when it is full, the oldest event of the
 * owner holding the most goes (OwnerShares), so a cursor expires for a watcher only when an event
 * it would see went: one owner's events for a tenant, anyone's for an admin.
 *
 * The ring is columns indexed by slot, not an object per event: an event costs its type, state,
 * time and sequence, and references to what its process's events share (subject, exit field).
 * Events sit in sequence order from `head`, wrapping, in twice `capacity` slots; one taken from
 * the middle leaves a hole until the holes fill the room, when the held events close up (each
 * move paid for by the capacity appends since the last: appending stays O(1) amortized). With
 * one owner, events only ever go from the head and nothing moves.
 */
export class EventLog {
  private readonly subjects: (EventSubject | undefined)[];
  /** Process.exit of each event (shared by a process's events), undefined before the exit. */
  private readonly exits: (string | undefined)[];
  /** Type index | state index << 3. */
  private readonly kinds: Uint8Array;
  private readonly times: Float64Array;
  private readonly sequences: Float64Array;
  private readonly room: number;
  /** The oldest held event's slot (a hole never stays at the head); `span` slots from it hold events or holes. */
  private head = 0;
  private span = 0;
  private count = 0;
  private readonly shares: OwnerShares;
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
    this.room = 2 * capacity;
    // Grown as slots are first written (always the next one), not allocated whole: an agent that
    // holds few events keeps small arrays. The typed columns' pages are only touched when used.
    this.subjects = [];
    this.exits = [];
    this.kinds = new Uint8Array(this.room);
    this.times = new Float64Array(this.room);
    this.sequences = new Float64Array(this.room);
    this.shares = new OwnerShares(this.room, 2 * capacity);
    this.last = origin.after;
    this.floor = origin.after;
  }

  /**
   * Continues the history of the agent that handed over: `history` are the events it held, in
   * order, the newest being `last` or older; `marks` are where it had given events up (an older
   * agent sends none: its history is every event after last − history.length). Only before the
   * first append.
   */
  seed(last: number, history: readonly ProcessEvent[], marks?: EvictionMarks): void {
    if (this.last !== this.floor || this.count > 0) throw new Error('EventLog.seed after append');
    const kept = history.slice(-this.capacity);
    const cut = history.length > kept.length ? history[history.length - kept.length - 1]!.sequence : 0;
    this.last = last;
    if (marks === undefined) this.floor = last - kept.length;
    else {
      this.floor = Math.max(marks.floor, cut);
      this.shares.restore(marks);
    }
    const subjects = new Map<ProcessView, EventSubject>();
    const exits = new Map<ExitInfo, string>();
    let previous = this.floor;
    kept.forEach((event, i) => {
      const inOrder = marks === undefined ? event.sequence === this.floor + 1 + i : event.sequence > previous && event.sequence <= last;
      if (!inOrder) throw new Error(`EventLog.seed: sequence ${event.sequence} out of order`);
      previous = event.sequence;
      let subject = subjects.get(event.record);
      if (!subject) subjects.set(event.record, (subject = new EventSubject(event.record.handle, event.record.spec, event.record)));
      if (event.state === 'released') subject.compact(this.encoding);
      let exit = event.exit && exits.get(event.exit);
      if (event.exit && exit === undefined) exits.set(event.exit, (exit = latin1(this.encoding.exitField(event.exit))));
      this.put(event.sequence, event.type, event.time, event.state, subject, exit, event.output);
    });
  }

  /** Where this log gave events up, for a successor's seed. */
  evictionMarks(): EvictionMarks {
    return this.shares.marks(this.floor);
  }

  /** Every event still held, oldest first. */
  *held(): IterableIterator<HeldEvent> {
    const views = new Map<EventSubject, ProcessView>();
    const exits = new Map<string, ExitInfo>();
    for (let slot = this.count > 0 ? this.head : -1; slot >= 0; slot = this.nextSlot(slot)) {
      const s = this.sequences[slot]!;
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

  /** Sequence of the oldest event still held (the next one's while none is). */
  get firstSequence(): number {
    return this.count > 0 ? this.sequences[this.head]! : this.last + 1;
  }

  /**
   * The oldest cursor a watcher that sees `owner`'s events (everyone's when undefined) can resume
   * from: every event it would see after it is still held.
   */
  replayableFrom(owner?: string): number {
    return Math.max(this.floor, this.shares.evictedUpTo(owner));
  }

  /** True when every event after `sequence` that a watcher of `owner` (of everyone: undefined) would see is still held. */
  canReplayAfter(sequence: number, owner?: string): boolean {
    return sequence >= this.replayableFrom(owner) && sequence <= this.last;
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
    const share = this.shareOf(subject);
    if (this.count === this.capacity) this.evict(share);
    this.put(sequence, type, this.clock(), type === 'output' ? record.state : stateAfter[type], subject, exit && subject.exitField, output, share);
    if (type === 'released') subject.compact(this.encoding);
    this.scheduleNotify();
    return sequence;
  }

  /** The ring slot of the event with this sequence, or -1 when it is not held (given up, or not yet). */
  slotOf(sequence: number): number {
    const slot = this.after(sequence - 1);
    return slot >= 0 && this.sequences[slot] === sequence ? slot : -1;
  }

  /**
   * The slot of the oldest held event after `sequence`, or -1 when none is. Slots are valid
   * until the next append: a reader walks them (nextSlot) in one go.
   */
  after(sequence: number): number {
    if (this.count === 0 || sequence >= this.last) return -1;
    // Holes keep their sequence, so the slots from head stay sorted by it.
    let lo = 0;
    let hi = this.span;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sequences[(this.head + mid) % this.room]! > sequence) hi = mid;
      else lo = mid + 1;
    }
    if (lo === this.span) return -1;
    const slot = (this.head + lo) % this.room;
    return this.subjects[slot] === undefined ? this.nextSlot(slot) : slot;
  }

  /** The slot of the next held event after the one in `slot`, or -1 after the newest. */
  nextSlot(slot: number): number {
    const tail = (this.head + this.span) % this.room;
    for (let s = slot + 1 === this.room ? 0 : slot + 1; s !== tail; s = s + 1 === this.room ? 0 : s + 1) {
      if (this.subjects[s] !== undefined) return s;
    }
    return -1;
  }

  sequenceAt(slot: number): number {
    return this.sequences[slot]!;
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

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }

  private put(sequence: number, type: EventType, time: number, state: State, subject: EventSubject, exit: string | undefined, output: OutputSlice | undefined, share = this.shareOf(subject)): void {
    if (this.span === this.room) this.closeUp();
    let slot = this.head + this.span;
    if (slot >= this.room) slot -= this.room;
    this.span++;
    this.count++;
    this.subjects[slot] = subject;
    this.exits[slot] = exit;
    this.kinds[slot] = TYPES.indexOf(type) | (STATES.indexOf(state) << 3);
    this.times[slot] = time;
    this.sequences[slot] = sequence;
    if (output !== undefined) this.outputs.set(sequence, output);
    this.shares.add(share, slot);
  }

  private shareOf(subject: EventSubject): Share {
    let share = subject.share;
    if (share === undefined || !share.tracked || share.home !== this.shares) subject.share = share = this.shares.of(ownerOf(subject));
    return share;
  }

  /** The ring is full: the oldest event of the owner holding the most goes. */
  private evict(appending: Share): void {
    const slot = this.shares.takeFromFullest(appending, this.sequences);
    if (this.outputs.size > 0) this.outputs.delete(this.sequences[slot]!);
    this.subjects[slot] = undefined;
    this.exits[slot] = undefined;
    this.count--;
    while (this.span > 0 && this.subjects[this.head] === undefined) {
      this.head = this.head + 1 === this.room ? 0 : this.head + 1;
      this.span--;
    }
  }

  /** Holes fill the room: the held events move down over them, in order. */
  private closeUp(): void {
    let to = this.head;
    for (let i = 0, from = this.head; i < this.span; i++, from = from + 1 === this.room ? 0 : from + 1) {
      const subject = this.subjects[from];
      if (subject === undefined) continue;
      if (from !== to) {
        this.subjects[to] = subject;
        this.exits[to] = this.exits[from];
        this.kinds[to] = this.kinds[from]!;
        this.times[to] = this.times[from]!;
        this.sequences[to] = this.sequences[from]!;
        this.subjects[from] = undefined;
        this.exits[from] = undefined;
      }
      to = to + 1 === this.room ? 0 : to + 1;
    }
    this.span = this.count;
    this.shares.unthread();
    for (let slot = this.count > 0 ? this.head : -1; slot >= 0; slot = this.nextSlot(slot)) this.shares.thread(this.shareOf(this.subjects[slot]!), slot);
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
