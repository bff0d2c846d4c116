// What an agent hands its successor, besides the store they share: the pidfds of the running
// processes, their pipes and captured output, and the event history with its sequence, so the
// successor goes on exactly where this agent stopped. Encoded as
// [u32 json length][json][bytes of the captured output], plus descriptors referred to by index.
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
}

export interface Encoded {
  readonly data: Buffer;
  /** Still owned by the sender (the references borrowed): passing them duplicates them. */
  readonly fds: readonly (Fd | PidRef)[];
}

/** The sending side, after the manager was quiesced (nothing changes while this runs). */
export function encodeSnapshot(manager: ProcessManager, bootId: string): Encoded {
  const fds: (Fd | PidRef)[] = [];
  const blobs: Buffer[] = [];
  let blobBytes = 0;
  const fd = (f: Fd | PidRef | null): number | null => (f === null ? null : fds.push(f) - 1);
  const blob = (b: Buffer): [number, number] => {
    blobs.push(b);
    blobBytes += b.length;
    return [blobBytes - b.length, b.length];
  };
  const capture = (c: CaptureState | null): WireCapture | null => c && { ...c, held: blob(c.held), pipe: fd(c.pipe) };

  const pidfds = [...manager.held()].map(({ record, ref }) => [record.handle, fd(ref)!] as const);
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
  const snapshot: WireSnapshot = { protocol: HANDOVER_PROTOCOL, bootId, lastSequence: manager.lastSequence, pidfds, stdio, events, olderEvents, eventMarks, released: [...released.values()] };
  const json = Buffer.from(JSON.stringify(snapshot));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(json.length);
  return { data: Buffer.concat([head, json, ...blobs]), fds };
}

export class SnapshotError extends Error {}

/** A received snapshot: owns its descriptors until `apply` hands each to its new owner. */
export class Snapshot {
  private readonly wire: WireSnapshot;
  private readonly blob: Buffer;
  private readonly unclaimed: Set<number>;

  constructor(
    data: Buffer,
    private readonly fds: readonly Fd[],
  ) {
    this.unclaimed = new Set(fds.keys());
    try {
      const length = data.readUInt32LE(0);
      this.wire = JSON.parse(data.subarray(4, 4 + length).toString()) as WireSnapshot;
      this.blob = data.subarray(4 + length);
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
      if (!(at >= 0 && length >= 0 && at + length <= this.blob.length && length <= c.capacity)) throw new SnapshotError(`captured bytes ${at}+${length} are outside the data`);
    };
    for (const [, i] of w.pidfds) fd(i);
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
    const [at, length] = c.held;
    return { ...c, held: Buffer.from(this.blob.subarray(at, at + length)), pipe: this.claim(c.pipe) };
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
    out.ring.continueAt(Number.MAX_SAFE_INTEGER, Buffer.alloc(0));
    out.ring.drop();
    cache.set(stream, out);
  }
  return out;
}
