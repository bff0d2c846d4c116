import { fstatSync } from 'node:fs';
import { closeFd, O_RDONLY, reopenFd, type Fd } from '../../kernel/fd.js';
import type { PidRef } from '../../kernel/pid-ref.js';
import { AgentError } from '../errors.js';
import type { EventLog } from '../events/event-log.js';
import type { OutputTarget } from '../options.js';
import { ownerOf, type ProcessRecord } from '../lifecycle/record.js';
import type { CaptureState, CapturedOutput, OutputSlice, StreamName } from './captured-output.js';
import { CaptureFiles, MARK_STEP_BYTES, type CaptureMeta } from './capture-files.js';
import { CaptureMarks, resumeMarks, type MarkWriter } from './capture-marks.js';
import type { HandleId } from '../lifecycle/handle.js';
import type { CaptureMark } from '../process-store.js';
import { OutputEventBudget, type OutputPublisher } from './output-event-budget.js';
import { ProcessStdio, type StdioState } from './process-pipes.js';

/** Ring size per captured stream when neither the request nor --capture-bytes says otherwise. */
export const DEFAULT_CAPTURE_BYTES = 1024 * 1024;
/** The largest ring a request (or --capture-bytes) may ask for. */
export const MAX_CAPTURE_BYTES = 64 * 1024 * 1024;

export interface StdioOptions {
  readonly stdout: OutputTarget;
  readonly stderr: OutputTarget;
  readonly outputEvents?: boolean;
  readonly stdin?: 'pipe';
}

/** Default --capture-total: the rings of running and retained processes together. */
export const DEFAULT_CAPTURE_TOTAL_BYTES = 4 * 1024 ** 3;

export interface StdioStats {
  /** Processes whose pipes the agent holds (released ones until their pipes are drained). */
  readonly processes: number;
  readonly openPipes: number;
  /** Memory held by output rings. */
  readonly ringBytes: number;
  /** What the rings of running and retained processes may grow to (bounded by --capture-total). */
  readonly committedBytes: number;
  /** Bytes written to stdin pipes that the children have not read yet. */
  readonly pendingStdin: number;
}

/**
 * The pipes of every spawned process, by record. A record's pipes stay reachable until its
 * handle is released (or expires); after that they are only drained until end-of-file.
 */
/** Whose a ring is, for quotas and the fair order. */
const ringOwner = (io: ProcessStdio): string => ownerOf(io.record);

export class StdioTable {
  private readonly live = new Map<ProcessRecord, ProcessStdio>();
  private readonly draining = new Set<ProcessStdio>();
  /** Exited processes whose captured output is still kept, oldest exit first. */
  private readonly retained = new Set<ProcessStdio>();
  /** Ring capacity charged against totalBytes: live rings not dropped, and spawns in flight. */
  private committed = 0;
  private readonly charged = new Map<ProcessStdio, number>();
  /** What each owner's rings are charged, running and retained (max_capture_bytes). */
  private readonly byOwner = new Map<string, number>();
  private readonly outputEvents = new OutputEventBudget();
  /**
   * Captured streams of spawns not yet in the store: their marks go into the commit of the start
   * (startMarks), their files are written once it is in (recorded), so a start the store refuses
   * never touches the state dir, which may be the file system that stalled the store.
   */
  private readonly unwritten = new Map<ProcessRecord, { readonly io: ProcessStdio; readonly meta: CaptureMeta }>();
  /** Records with files in the capture dir (written here, or found there after a restart). */
  private readonly filed = new WeakSet<ProcessRecord>();
  /** Records whose streams are only drained (offsets uncertain): no ring of theirs is saved. */
  private readonly drained = new WeakSet<ProcessRecord>();
  /** Keeps each captured stream's mark in the store (and its file), ahead of its output. */
  private readonly marks: CaptureMarks | null;
  /** The marks the store held for each restored handle, until readopt or continue reads them. */
  private readonly storedMarks = new Map<HandleId, readonly CaptureMark[]>();

  constructor(
    private readonly events: EventLog,
    readonly defaultRingBytes = DEFAULT_CAPTURE_BYTES,
    /** All rings of exited processes together stay within this (running ones are bounded each). */
    private readonly retainedBytes = 256 * 1024 * 1024,
    /** The capacity of every ring of running and retained processes together (--capture-total). */
    private readonly totalBytes = DEFAULT_CAPTURE_TOTAL_BYTES,
    /** Where a later agent finds what it needs to go on reading (the state dir), if anywhere. */
    private readonly files: CaptureFiles | null = null,
    /** Writes marks to the state store (with files only). */
    writeMarks?: MarkWriter,
  ) {
    this.marks = files === null || writeMarks === undefined ? null : new CaptureMarks(files, writeMarks);
  }

  /** The request's rings, sized (the request's ring_bytes, else --capture-bytes). */
  resolve<T extends StdioOptions>(options: T): T {
    const sized = (t: OutputTarget): OutputTarget => (t.kind === 'capture' ? { kind: 'capture', ringBytes: t.ringBytes ?? this.defaultRingBytes } : t);
    return { ...options, stdout: sized(options.stdout), stderr: sized(options.stderr) };
  }

  /**
   * Charges a spawn's rings (resolved) against the owner's max_capture_bytes and --capture-total
   * before it starts. Retained rings make room, running ones never: for the quota the owner's own,
   * oldest exit first; for the total, the fair order of dropOrder. Nothing is dropped for a spawn
   * that would be refused anyway: RESOURCE_EXHAUSTED (POLICY_QUOTA, CAPTURE_TOTAL_EXCEEDED) when
   * running rings alone leave no room. Returns the bytes to pass to attach, or to unreserve.
   */
  reserve(options: StdioOptions & { readonly owner?: string; readonly captureQuota?: number }): number {
    const bytes = [options.stdout, options.stderr].reduce((n, t) => n + (t.kind === 'capture' ? (t.ringBytes ?? this.defaultRingBytes) : 0), 0);
    if (bytes === 0) return 0;
    const owner = options.owner ?? '';
    const quota = options.captureQuota;
    const chargeOf = (io: ProcessStdio) => this.charged.get(io) ?? 0;
    // The sums over retained rings are taken only when a limit is in reach: most spawns are far from both.
    const overQuota = quota !== undefined && (this.byOwner.get(owner) ?? 0) + bytes > quota;
    const own = overQuota ? [...this.retained].filter((io) => ringOwner(io) === owner) : [];
    if (overQuota) {
      const ownRunning = (this.byOwner.get(owner) ?? 0) - own.reduce((n, io) => n + chargeOf(io), 0);
      if (ownRunning + bytes > quota) {
        throw new AgentError('ResourceExhausted', `max_capture_bytes: capturing needs ${bytes} bytes of ring, and your running processes hold ${ownRunning} of your ${quota} (policy)`, {
          reason: 'POLICY_QUOTA',
          field: 'max_capture_bytes',
        });
      }
    }
    const overTotal = this.committed + bytes > this.totalBytes;
    if (overTotal && this.committed - [...this.retained].reduce((n, io) => n + chargeOf(io), 0) + bytes > this.totalBytes) {
      // What the others hold is theirs to know: the caller learns only that there is no room.
      throw new AgentError('ResourceExhausted', `capturing needs ${bytes} bytes of ring and --capture-total has no room for them now`, { reason: 'CAPTURE_TOTAL_EXCEEDED', field: 'ring_bytes' });
    }
    for (const io of own) {
      if ((this.byOwner.get(owner) ?? 0) + bytes <= quota!) break;
      this.dropRetained(io);
    }
    if (this.committed + bytes > this.totalBytes) {
      const drops = this.dropOrder(chargeOf);
      for (let io = drops(); io !== undefined && this.committed + bytes > this.totalBytes; io = drops()) this.dropRetained(io);
    }
    this.committed += bytes;
    this.charge(owner, bytes);
    return bytes;
  }

  /** Gives back what reserve() charged `owner` for a spawn that did not start. */
  unreserve(bytes: number, owner: string | undefined): void {
    this.committed -= bytes;
    this.discharge(owner ?? '', bytes);
  }

  private charge(owner: string, bytes: number): void {
    this.byOwner.set(owner, (this.byOwner.get(owner) ?? 0) + bytes);
  }

  private discharge(owner: string, bytes: number): void {
    if (bytes === 0) return;
    const left = (this.byOwner.get(owner) ?? 0) - bytes;
    if (left > 0) this.byOwner.set(owner, left);
    else this.byOwner.delete(owner);
  }

  /** Where a process's output events go, within its owner's share of the event log. */
  private publisher(record: ProcessRecord): OutputPublisher {
    return this.outputEvents.publisher(ownerOf(record), (slice: OutputSlice) => void this.events.append('output', record, slice));
  }

  /** Takes ownership of the agent's pipe ends of a just-spawned process; `reserved` is what reserve() charged. */
  attach(record: ProcessRecord, pipes: readonly [Fd | null, Fd | null, Fd | null], options: StdioOptions, reserved = 0): void {
    if (pipes.every((fd) => fd === null)) return this.unreserve(reserved, record.spec.owner);
    const ring = (t: OutputTarget) => (t.kind === 'capture' ? (t.ringBytes ?? this.defaultRingBytes) : 1);
    const publish = options.outputEvents ? this.publisher(record) : null;
    const io = new ProcessStdio(record, pipes, [ring(options.stdout), ring(options.stderr)], publish, (closed) => this.closed(closed));
    this.live.set(record, io);
    this.charged.set(io, reserved);
    if (this.files === null || (io.stdout === null && io.stderr === null)) return;
    const streams: CaptureMeta['streams'] = {};
    for (const [out, fd] of [[io.stdout, pipes[1]], [io.stderr, pipes[2]]] as const) {
      if (out !== null && fd !== null) streams[out.stream] = { ino: fstatSync(fd).ino, capacity: out.ring.capacity, mark: MARK_STEP_BYTES };
    }
    this.unwritten.set(record, { io, meta: { outputEvents: publish !== null, stdinPiped: options.stdin === 'pipe', streams } });
  }

  /** The marks a start's commit writes: a start the store takes has them. */
  startMarks(record: ProcessRecord): CaptureMark[] {
    const pending = this.unwritten.get(record);
    return pending === undefined || this.marks === null ? [] : this.marks.startRows(pending.meta);
  }

  /** The start is in the store, with its marks: the file is written, and the marks kept ahead of the output. */
  recorded(record: ProcessRecord): void {
    const pending = this.unwritten.get(record);
    if (pending === undefined) return;
    this.unwritten.delete(record);
    this.filed.add(record);
    this.marks?.started(record.handle, pending.io, pending.meta);
  }

  /** A restored record's marks as the store kept them (none from an agent before it kept them). */
  restoredMarks(handle: HandleId, marks: readonly CaptureMark[] | undefined): void {
    if (marks !== undefined && marks.length > 0) this.storedMarks.set(handle, marks);
  }

  /** The marks to go on from for a restored record: the store's and the file's (capture-marks.ts). */
  private resumeMarks(handle: HandleId): ReturnType<typeof resumeMarks> {
    const stored = this.storedMarks.get(handle);
    this.storedMarks.delete(handle);
    return this.files === null ? undefined : resumeMarks(stored, this.files.readMeta(handle));
  }

  /** Continues a predecessor's pipes and captured output for a restored record (handover, restart). */
  continue(record: ProcessRecord, state: StdioState): void {
    const marks = this.resumeMarks(record.handle);
    // Streams already found uncertain stay drained, whatever ring came with them.
    this.continueWith(record, state, marks, marks?.uncertain === 'unknown' ? 'recorded' : undefined);
  }

  /** `drain`: offsets uncertain, the streams are only drained ('record': the store is yet to say so). */
  private continueWith(record: ProcessRecord, state: StdioState, marks: ReturnType<typeof resumeMarks>, drain?: 'record' | 'recorded'): void {
    const publish = state.outputEvents ? this.publisher(record) : null;
    const io = new ProcessStdio(record, [null, null, null], [1, 1], publish, (closed) => this.closed(closed), state);
    if (drain !== undefined) io.dropOutput();
    this.live.set(record, io);
    const bytes = io.isDropped ? 0 : io.capacity;
    this.charged.set(io, bytes);
    this.committed += bytes;
    this.charge(ringOwner(io), bytes);
    if (record.state !== 'running') this.retained.add(io);
    if (marks === undefined) return;
    this.filed.add(record);
    if (drain !== undefined) {
      this.drained.add(record);
      this.marks?.drained(record.handle, marks.meta, drain === 'record');
    } else {
      // The ring's exact end came with it, so even marks that may be stale are kept ahead of it.
      this.marks?.resumed(record.handle, io, marks);
    }
  }

  /**
   * After a restart (no handover): the captured streams of a restored record as the previous
   * agent left them in the state dir, and the pipes of a running one taken back from the process.
   * Where the marks can't be trusted and no saved ring gives the exact end, the pipes are taken
   * back all the same and drained, every byte read as lost: nothing is served at an offset that
   * may have been handed out already, and the child never blocks on a full pipe.
   */
  readopt(record: ProcessRecord): void {
    const marks = this.resumeMarks(record.handle);
    if (marks === undefined) return;
    const { meta } = marks;
    const names = (['stdout', 'stderr'] as const).filter((name) => meta.streams[name] !== undefined);
    const saved = new Map(names.map((name) => [name, this.files!.takeRing(record.handle, name)]));
    const drain = marks.uncertain === 'unknown' ? 'recorded' : !marks.certain && names.some((name) => saved.get(name) === undefined) ? 'record' : undefined;
    const stream = (name: StreamName, target: 1 | 2): CaptureState | null => {
      const m = meta.streams[name];
      if (m === undefined) return null;
      const pipe = record.state === 'running' && record.ref !== null ? takePipe(record.ref, target, m.ino) : null;
      const ring = drain === undefined ? saved.get(name) : undefined;
      return { ...(ring ?? { stream: name, capacity: m.capacity, end: m.mark, held: [], dropped: drain !== undefined, published: m.mark }), pipe };
    };
    this.continueWith(record, {
      stdin: null,
      stdinClosed: meta.stdinPiped ? 'AGENT_RESTARTED' : undefined,
      outputEvents: meta.outputEvents,
      stdout: stream('stdout', 1),
      stderr: stream('stderr', 2),
    }, marks, drain);
  }

  /** After a restart: the files of handles no longer in the table go; the marks restored are written. */
  sweepFiles(known: (handle: string) => boolean): void {
    this.storedMarks.clear();
    this.marks?.flush();
    this.files?.sweep(known);
  }

  /** After a handover: saved ring files are stale (the snapshot carried the rings); the marks taken over are written. */
  discardSavedRings(): void {
    this.storedMarks.clear();
    this.marks?.flush();
    this.files?.removeRings();
  }

  /**
   * A stop without successor: every ring is saved for the next agent (the pipes stay with the
   * processes, which go on writing into them), then our pipe ends are closed.
   */
  saveRings(): void {
    if (this.files === null) return;
    for (const io of this.live.values()) io.detach();
    for (const [record, io] of this.live) {
      // A drained stream's end counts on from a mark that may be stale: never an exact end.
      if (this.drained.has(record)) continue;
      const { stdout, stderr } = io.state();
      for (const c of [stdout, stderr]) {
        if (c === null) continue;
        const { pipe: _pipe, ...ring } = c;
        this.files.saveRing(record.handle, ring);
      }
    }
    this.closeDetached();
  }

  /**
   * Handover: every pipe stops being read or written here and is kept for the successor;
   * output already read is in the rings and published. Pipes of released processes that are
   * only being drained are not handed on. Streams without a capture file are flagged in the store
   * first (capture-marks.ts handingOver): if it can't take that, the handover doesn't happen.
   */
  quiesce(): void {
    for (const io of this.live.values()) io.detach();
    if (this.marks?.handingOver() === false) {
      throw new AgentError('Unavailable', 'the state store could not record which captured streams have no capture file (an older successor would read them on past their marks)', { reason: 'STORE_WRITE_FAILED' });
    }
  }

  resume(): void {
    this.marks?.handoverAbandoned();
    for (const io of this.live.values()) io.reattach();
  }

  /** After quiesce: each handle's pipes and captured output. */
  handoverState(): Map<ProcessRecord, StdioState> {
    return new Map([...this.live].map(([record, io]) => [record, io.state()]));
  }

  /** The handover happened: the successor holds its own copies of the pipes. */
  closeDetached(): void {
    for (const io of this.live.values()) io.closeDetached();
  }

  /**
   * After closeDetached: the successor holds its copies of the rings too, and nothing here is
   * read or saved any more, so they go rather than stay for as long as the agent lingers.
   * (Released processes' pipes still being drained are not the successor's: they drain on.)
   */
  dropHandedOver(): void {
    this.live.clear();
    this.retained.clear();
    this.charged.clear();
    this.byOwner.clear();
    this.unwritten.clear();
    this.marks?.clear();
    this.committed = 0;
  }

  /** The process's pipes; one without any refuses every operation with FAILED_PRECONDITION. */
  of(record: ProcessRecord): ProcessStdio {
    return this.live.get(record) ?? new ProcessStdio(record, [null, null, null], [1, 1], null, () => {});
  }

  output(record: ProcessRecord, stream: StreamName): { io: ProcessStdio; output: CapturedOutput } {
    const io = this.of(record);
    return { io, output: io.output(stream) };
  }

  exited(record: ProcessRecord): void {
    const io = this.live.get(record);
    if (io === undefined) return;
    io.markExited();
    this.retained.add(io);
  }

  /**
   * Keeps the output of exited processes within the retained budget by dropping the rings of the
   * oldest exits (their readers then see the bytes as lost). Run periodically: it sums the rings.
   */
  enforceRetention(): void {
    let total = 0;
    for (const io of this.retained) {
      if (io.isReleased) this.retained.delete(io);
      else total += io.ringBytes;
    }
    if (total <= this.retainedBytes) return;
    const drops = this.dropOrder((io) => io.ringBytes);
    for (let io = drops(); io !== undefined && total > this.retainedBytes; io = drops()) {
      total -= io.ringBytes;
      this.dropRetained(io);
    }
  }

  /**
   * Retained rings in the order they go: the oldest exit of whichever owner holds the most retained
   * bytes at that moment (as `size` counts a ring: what it holds for --capture-retained, what it is
   * charged for --capture-total), so one caller's output can push out another's only while it
   * holds more.
   */
  private dropOrder(size: (io: ProcessStdio) => number): () => ProcessStdio | undefined {
    const owners = new Map<string, { bytes: number; rings: ProcessStdio[]; next: number }>();
    for (const io of this.retained) {
      if (io.isReleased) continue;
      const owner = ringOwner(io);
      let held = owners.get(owner);
      if (held === undefined) owners.set(owner, (held = { bytes: 0, rings: [], next: 0 }));
      held.bytes += size(io);
      held.rings.push(io);
    }
    return () => {
      let top: { bytes: number; rings: ProcessStdio[]; next: number } | undefined;
      for (const held of owners.values()) if (held.next < held.rings.length && (top === undefined || held.bytes > top.bytes)) top = held;
      if (top === undefined) return undefined;
      const io = top.rings[top.next++]!;
      top.bytes -= size(io);
      return io;
    };
  }

  private dropRetained(io: ProcessStdio): void {
    io.dropOutput();
    this.retained.delete(io);
    this.uncharge(io);
  }

  private uncharge(io: ProcessStdio): void {
    const bytes = this.charged.get(io) ?? 0;
    this.committed -= bytes;
    this.discharge(ringOwner(io), bytes);
    this.charged.delete(io);
  }

  released(record: ProcessRecord): void {
    const io = this.live.get(record);
    if (io === undefined) return;
    this.live.delete(record);
    this.retained.delete(io);
    this.uncharge(io);
    // Only a record with files touches the capture dir (a refused start, say, has none).
    this.unwritten.delete(record);
    this.marks?.forget(record.handle);
    if (this.filed.has(record)) this.files?.remove(record.handle);
    io.release();
    if (io.openPipes > 0) this.draining.add(io);
  }

  stats(): StdioStats {
    let openPipes = 0;
    let ringBytes = 0;
    let pendingStdin = 0;
    for (const io of [...this.live.values(), ...this.draining]) {
      openPipes += io.openPipes;
      ringBytes += io.ringBytes;
      pendingStdin += io.pendingStdin;
    }
    return { processes: this.live.size + this.draining.size, openPipes, ringBytes, committedBytes: this.committed, pendingStdin };
  }

  private closed(io: ProcessStdio): void {
    if (io.isReleased && io.openPipes === 0) this.draining.delete(io);
  }
}

/**
 * A reader of the process's output pipe on its fd `target`, taken from the process (pidfd_getfd,
 * then reopened read-only: a duplicate of the child's read-write end would be a writer, and
 * end-of-file would never come); null when it no longer holds that pipe there.
 */
function takePipe(ref: PidRef, target: number, ino: number): Fd | null {
  let dup: Fd;
  try {
    dup = ref.getFd(target);
  } catch {
    return null;
  }
  try {
    return fstatSync(dup).ino === ino ? reopenFd(dup, O_RDONLY) : null;
  } catch {
    return null;
  } finally {
    closeFd(dup);
  }
}
