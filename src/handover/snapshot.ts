// What an agent hands its successor, besides the store they share: the pidfds of the running
// processes, their pipes and captured output, and the event history with its sequence, so the
// successor goes on exactly where this agent stopped. Encoded as
// [u32 json length][json][bytes of the captured output], plus descriptors referred to by index.
// Older agents send and expect the same bytes: how they are cut into pieces is this side's own.
import { closeFd, type Fd } from '../kernel/fd.js';
import { PidRef } from '../kernel/pid-ref.js';
import { CapturedOutput, type CaptureState, type StreamName } from '../process/stdio/captured-output.js';
import type { EventType, EvictionMarks, ProcessEvent } from '../process/events/event-log.js';
import type { HandleId } from '../process/lifecycle/handle.js';
import type { ProcessManager } from '../process/manager.js';
import { ProcessRecord, type ExitInfo, type State } from '../process/lifecycle/record.js';
import type { StdioState } from '../process/stdio/process-pipes.js';
import type { SavedProcess } from '../process/process-store.js';
import { ownerIdentity } from '../process/lifecycle/owner.js';

export const HANDOVER_PROTOCOL = 1;

interface WireEvent {
  readonly sequence: number;
  readonly type: EventType;
  readonly time: number;
  readonly handle: string;
  readonly state: State;
  readonly exit?: ExitInfo;
  readonly output?: { readonly stream: StreamName; readonly offset: number; readonly length: number };
}

/** A record that events still mention but the table no longer holds (released); JSON has no bigint. */
type WireRecord = Pick<SavedProcess, 'handle' | 'pid' | 'argv' | 'labels' | 'adopted' | 'owner' | 'startedAt'> & { readonly pidfsInode: string };

interface WireCapture extends Omit<CaptureState, 'held' | 'pipe'> {
  /** [offset, length] in the bytes after the JSON. */
  readonly held: readonly [number, number];
  readonly pipe: number | null;
}

interface WireStdio {
  readonly handle: string;
  readonly stdin: number | null;
  readonly stdinClosed?: string;
  readonly outputEvents: boolean;
  readonly stdout: WireCapture | null;
  readonly stderr: WireCapture | null;
}

interface WireSnapshot {
  readonly protocol: number;
  readonly bootId: string;
  readonly lastSequence: number;
  /** [handle, index of its pidfd]. */
  readonly pidfds: readonly (readonly [string, number])[];
  readonly stdio: readonly WireStdio[];
  /** The held events after the last one given up: every sequence up to lastSequence, as an agent before per-owner eviction expects. */
  readonly events: readonly WireEvent[];
  /** Held events older than those (other owners' kept while the fullest's went); absent from older agents. */
  readonly olderEvents?: readonly WireEvent[];
  /** Where events were given up, per owner; absent from older agents (their history is `events`). */
  readonly eventMarks?: EvictionMarks;
  readonly released: readonly WireRecord[];
  /**
   * [handle, index of its pidfd] of each process released while it ran and still running: the
   * successor pairs them with the store's rows of them (they count against their owners until
   * they exit). Absent from older agents; an older successor leaves the descriptors unclaimed.
   */
  readonly releasedPidfds?: readonly (readonly [string, number])[];
}

export interface Encoded {
  /** The snapshot's bytes are these pieces one after the other (the rings' bytes are not copied into one). */
  readonly data: readonly Uint8Array[];
  /** Still owned by the sender (the references borrowed): passing them duplicates them. */
  readonly fds: readonly (Fd | PidRef)[];
}

/** The sending side, after the manager was quiesced (nothing changes while this runs). */
export function encodeSnapshot(manager: ProcessManager, bootId: string): Encoded {
  const fds: (Fd | PidRef)[] = [];
  const blobs: Uint8Array[] = [];
  let blobBytes = 0;
  const fd = (f: Fd | PidRef | null): number | null => (f === null ? null : fds.push(f) - 1);
  const blob = (pieces: readonly Uint8Array[]): [number, number] => {
    const at = blobBytes;
    for (const b of pieces) {
      blobs.push(b);
      blobBytes += b.length;
    }
    return [at, blobBytes - at];
  };
  const capture = (c: CaptureState | null): WireCapture | null => c && { ...c, held: blob(c.held), pipe: fd(c.pipe) };

  const pidfds = [...manager.held()].map(({ record, ref }) => [record.handle, fd(ref)!] as const);
  const releasedPidfds = [...manager.releasedHeld()].map(({ record, ref }) => [record.handle, fd(ref)!] as const);
  const stdio = [...manager.handoverStdio()].map(([record, s]): WireStdio => ({
    handle: record.handle,
    stdin: fd(s.stdin),
    stdinClosed: s.stdinClosed,
    outputEvents: s.outputEvents,
    stdout: capture(s.stdout),
    stderr: capture(s.stderr),
  }));
  const released = new Map<string, WireRecord>();
  const eventMarks = manager.eventMarks();
  const tailAfter = manager.replayableFrom();
  const events: WireEvent[] = [];
  const olderEvents: WireEvent[] = [];
  for (const e of manager.heldEvents()) {
    // Only a released process's events need the process itself: the successor knows the rest.
    if (manager.find(e.handle) === undefined && !released.has(e.handle)) {
      const r = e.view();
      released.set(r.handle, { handle: r.handle, pid: r.identity.pid, pidfsInode: String(r.identity.pidfsInode), argv: r.spec.argv, labels: r.spec.labels, adopted: r.spec.adopted, owner: r.spec.owner, startedAt: r.startedAt });
    }
    const o = e.output;
    (e.sequence > tailAfter ? events : olderEvents).push({ sequence: e.sequence, type: e.type, time: e.time, handle: e.handle, state: e.state, exit: e.exit, output: o && { stream: o.stream, offset: o.offset, length: o.length } });
  }
  const snapshot: WireSnapshot = { protocol: HANDOVER_PROTOCOL, bootId, lastSequence: manager.lastSequence, pidfds, stdio, events, olderEvents, eventMarks, released: [...released.values()], releasedPidfds };
  const json = Buffer.from(JSON.stringify(snapshot));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(json.length);
  return { data: [head, json, ...blobs], fds };
}

export class SnapshotError extends Error {}

/**
 * Takes a snapshot's bytes as they arrive (`write`, from views it may not keep): the JSON first,
 * then each captured ring's bytes straight into a buffer of its own, which its ring on this side
 * then takes as it is. A snapshot of large rings is so copied once on arrival, not four times
 * (into a message, the whole, a ring's slice, the ring), each copy touching fresh memory while
 * no agent serves.
 */
export class SnapshotReader {
  private readonly head: Buffer[] = [];
  private headBytes = 0;
  /** 4 + the JSON's length, once known. */
  private headLength = -1;
  private wire: WireSnapshot | null = null;
  /** Bytes after the JSON received so far. */
  private blobBytes = 0;
  /** Each non-empty held range, by its start; `buf` receives its bytes. */
  private targets: { readonly at: number; readonly end: number; readonly buf: Buffer }[] = [];
  private readonly held = new Map<WireCapture, Buffer>();
  /** targets before this one are complete. */
  private next = 0;

  write(bytes: Uint8Array): void {
    let rest = bytes;
    if (this.wire === null) {
      rest = this.takeHead(bytes);
      if (this.wire === null) return;
    }
    const from = this.blobBytes;
    const to = from + rest.length;
    this.blobBytes = to;
    while (this.next < this.targets.length && this.targets[this.next]!.end <= from) this.next++;
    for (let k = this.next; k < this.targets.length && this.targets[k]!.at < to; k++) {
      const t = this.targets[k]!;
      const a = Math.max(from, t.at);
      const b = Math.min(to, t.end);
      if (a < b) t.buf.set(rest.subarray(a - from, b - from), a - t.at);
    }
  }

  /** The snapshot received (its data complete), owning `fds`; on a SnapshotError they are closed. */
  finish(fds: readonly Fd[]): Snapshot {
    if (this.wire === null) {
      for (const fd of fds) closeFd(fd);
      throw new SnapshotError(`malformed handover snapshot: ${this.headBytes} bytes, no complete header`);
    }
    return new Snapshot(this.wire, this.blobBytes, this.held, fds);
  }

  /** Collects the header; parses the JSON once it is all there. What follows it is returned. */
  private takeHead(bytes: Uint8Array): Uint8Array {
    const want = this.headLength < 0 ? 4 : this.headLength;
    const n = Math.min(bytes.length, want - this.headBytes);
    this.head.push(Buffer.from(bytes.subarray(0, n)));
    this.headBytes += n;
    if (this.headBytes < want) return bytes.subarray(n);
    const head = Buffer.concat(this.head);
    if (this.headLength < 0) {
      this.headLength = 4 + head.readUInt32LE(0);
      return this.takeHead(bytes.subarray(n));
    }
    this.head.length = 0;
    try {
      this.wire = JSON.parse(head.subarray(4).toString()) as WireSnapshot;
    } catch (e) {
      throw new SnapshotError(`malformed handover snapshot: ${String(e)}`);
    }
    this.place();
    return bytes.subarray(n);
  }

  /** A buffer for each capture's bytes (checked against the data's length by Snapshot). */
  private place(): void {
    for (const io of this.wire!.stdio ?? []) {
      for (const c of [io.stdout, io.stderr]) {
        const [at, length] = c?.held ?? [0, 0];
        if (!(c && Number.isSafeInteger(at) && Number.isSafeInteger(length) && at >= 0 && length > 0 && length <= c.capacity)) continue;
        // allocUnsafe: every byte is written before it is read (the length is checked at finish).
        const buf = Buffer.allocUnsafe(length);
        this.held.set(c, buf);
        this.targets.push({ at, end: at + length, buf });
      }
    }
    this.targets.sort((x, y) => x.at - y.at);
  }
}

/** A received snapshot: owns its descriptors until `apply` hands each to its new owner. */
export class Snapshot {
  private readonly unclaimed: Set<number>;

  constructor(
    private readonly wire: WireSnapshot,
    /** Bytes received after the JSON: every held range must lie within them. */
    private readonly blobBytes: number,
    /** Each capture's bytes (SnapshotReader), absent when it holds none. */
    private readonly held: ReadonlyMap<WireCapture, Buffer>,
    private readonly fds: readonly Fd[],
  ) {
    this.unclaimed = new Set(fds.keys());
    try {
      if (this.wire.protocol !== HANDOVER_PROTOCOL) throw new SnapshotError(`handover protocol ${this.wire.protocol}, expected ${HANDOVER_PROTOCOL}`);
      this.validate();
    } catch (e) {
      this.close();
      throw e instanceof SnapshotError ? e : new SnapshotError(`malformed handover snapshot: ${String(e)}`);
    }
  }

  get bootId(): string {
    return this.wire.bootId;
  }

  get lastSequence(): number {
    return this.wire.lastSequence;
  }

  /**
   * The process handed over for each running handle, the caller's to take(). A descriptor that
   * is no pidfd is closed and its handle left out: the store's pid is then checked the slow way.
   */
  pidfds(): Map<string, PidRef> {
    const refs = new Map<string, PidRef>();
    for (const [handle, i] of this.wire.pidfds) {
      try {
        refs.set(handle, PidRef.received(this.claim(i)!));
      } catch (e) {
        if (e instanceof SnapshotError) throw e;
      }
    }
    return refs;
  }

  /** The same for the processes released while they ran (restoreReleased), by handle. */
  releasedPidfds(): Map<string, PidRef> {
    const refs = new Map<string, PidRef>();
    for (const [handle, i] of this.wire.releasedPidfds ?? []) {
      try {
        refs.set(handle, PidRef.received(this.claim(i)!));
      } catch (e) {
        if (e instanceof SnapshotError) throw e;
      }
    }
    return refs;
  }

  /**
   * After the records were restored (the caller's manager knows every handle in the store):
   * pipes and captured output, then the event history, continue where the predecessor stopped.
   */
  apply(manager: ProcessManager): void {
    for (const s of this.wire.stdio) {
      const record = manager.find(s.handle);
      const state: StdioState = { stdin: this.claim(s.stdin), stdinClosed: s.stdinClosed, outputEvents: s.outputEvents, stdout: this.capture(s.stdout), stderr: this.capture(s.stderr) };
      if (record) manager.continueStdio(record, state);
      else for (const f of [state.stdin, state.stdout?.pipe, state.stderr?.pipe]) if (f != null) closeFd(f);
    }
    const stubs = new Map<string, ProcessRecord>(this.wire.released.map((r) => [r.handle, releasedRecord(r)]));
    const placeholder = new Map<StreamName, CapturedOutput>();
    const events = [...(this.wire.olderEvents ?? []), ...this.wire.events].map((e): ProcessEvent => {
      const record = manager.find(e.handle) ?? stubs.get(e.handle) ?? releasedRecord({ handle: e.handle as HandleId, pid: 0, pidfsInode: '0', argv: [], labels: {}, adopted: false, startedAt: e.time });
      let output;
      if (e.output) {
        const { stream } = e.output;
        const source = (record.state !== 'released' ? manager.stdioOf(record)[stream] : null) ?? placeholderFor(placeholder, stream);
        output = { ...e.output, source };
      }
      return { sequence: e.sequence, type: e.type, time: e.time, record: record.view, state: e.state, exit: e.exit, output };
    });
    manager.seedEvents(this.wire.lastSequence, events, this.wire.eventMarks);
  }

  /**
   * Everything `apply` relies on, checked before the successor confirms (after that the old agent
   * is gone): each descriptor referred to once, captured bytes inside the data, events in order.
   */
  private validate(): void {
    const w = this.wire;
    const seen = new Set<number>();
    const fd = (i: number | null) => {
      if (i === null) return;
      if (!Number.isInteger(i) || i < 0 || i >= this.fds.length || seen.has(i)) throw new SnapshotError(`descriptor index ${i} is invalid or used twice`);
      seen.add(i);
    };
    const capture = (c: WireCapture | null) => {
      if (c === null) return;
      fd(c.pipe);
      const [at, length] = c.held;
      if (!(Number.isSafeInteger(at) && Number.isSafeInteger(length) && at >= 0 && length >= 0 && at + length <= this.blobBytes && length <= c.capacity)) throw new SnapshotError(`captured bytes ${at}+${length} are outside the data`);
    };
    for (const [, i] of w.pidfds) fd(i);
    for (const [, i] of w.releasedPidfds ?? []) fd(i);
    for (const io of w.stdio) {
      fd(io.stdin);
      capture(io.stdout);
      capture(io.stderr);
    }
    w.events.forEach((e, k) => {
      if (e.sequence !== w.lastSequence - w.events.length + 1 + k) throw new SnapshotError(`event ${e.sequence} is out of order`);
    });
    let previous = w.eventMarks?.floor ?? 0;
    for (const e of w.olderEvents ?? []) {
      if (!(e.sequence > previous && e.sequence <= w.lastSequence - w.events.length)) throw new SnapshotError(`event ${e.sequence} is out of order`);
      previous = e.sequence;
    }
  }

  /** Closes every descriptor nobody claimed. */
  close(): void {
    for (const i of this.unclaimed) closeFd(this.fds[i]!);
    this.unclaimed.clear();
  }

  private claim(i: number | null): Fd | null {
    if (i === null) return null;
    if (!this.unclaimed.delete(i)) throw new SnapshotError(`descriptor ${i} is missing or claimed twice`);
    return this.fds[i]!;
  }

  private capture(c: WireCapture | null): CaptureState | null {
    if (c === null) return null;
    // The reader's buffer, now the ring's (each capture is applied once).
    return { ...c, held: [this.held.get(c) ?? Buffer.alloc(0)], pipe: this.claim(c.pipe) };
  }
}

function releasedRecord(r: WireRecord): ProcessRecord {
  const record = new ProcessRecord(r.handle, { pid: r.pid, pidfsInode: BigInt(r.pidfsInode) }, { argv: r.argv, labels: r.labels, adopted: r.adopted, owner: ownerIdentity(r.owner) }, r.startedAt, null);
  record.markReleased();
  return record;
}

/**
 * Output events of released processes: their bytes are gone, as they would be here. The ring
 * claims to have passed every offset, so each slice reads as empty at its end, as from a dropped
 * ring of the predecessor's.
 */
function placeholderFor(cache: Map<StreamName, CapturedOutput>, stream: StreamName): CapturedOutput {
  let out = cache.get(stream);
  if (!out) {
    out = new CapturedOutput(null, stream, 1, null, () => {});
    out.ring.continueAt(Number.MAX_SAFE_INTEGER, []);
    out.ring.drop();
    cache.set(stream, out);
  }
  return out;
}
