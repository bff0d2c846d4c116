import type { Fd } from '../../kernel/fd.js';
import type { EventLog } from '../events/event-log.js';
import type { OutputTarget } from '../options.js';
import type { ProcessRecord } from '../lifecycle/record.js';
import type { CapturedOutput, OutputSlice, StreamName } from './captured-output.js';
import { ProcessStdio, type StdioState } from './process-pipes.js';

/** Ring size per captured stream when neither the request nor --capture-bytes says otherwise. */
export const DEFAULT_CAPTURE_BYTES = 1024 * 1024;
/** The largest ring a request (or --capture-bytes) may ask for. */
export const MAX_CAPTURE_BYTES = 64 * 1024 * 1024;

export interface StdioOptions {
  readonly stdout: OutputTarget;
  readonly stderr: OutputTarget;
  readonly outputEvents?: boolean;
}

export interface StdioStats {
  /** Processes whose pipes the agent holds (released ones until their pipes are drained). */
  readonly processes: number;
  readonly openPipes: number;
  /** Memory held by output rings. */
  readonly ringBytes: number;
  /** Bytes written to stdin pipes that the children have not read yet. */
  readonly pendingStdin: number;
}

/**
 * The pipes of every spawned process, by record. A record's pipes stay reachable until its
 * handle is released (or expires); after that they are only drained until end-of-file.
 */
export class StdioTable {
  private readonly live = new Map<ProcessRecord, ProcessStdio>();
  private readonly draining = new Set<ProcessStdio>();
  /** Exited processes whose captured output is still kept, oldest exit first. */
  private readonly retained = new Set<ProcessStdio>();

  constructor(
    private readonly events: EventLog,
    readonly defaultRingBytes = DEFAULT_CAPTURE_BYTES,
    /** All rings of exited processes together stay within this (running ones are bounded each). */
    private readonly retainedBytes = 256 * 1024 * 1024,
  ) {}

  /** Takes ownership of the agent's pipe ends of a just-spawned process. */
  attach(record: ProcessRecord, pipes: readonly [Fd | null, Fd | null, Fd | null], options: StdioOptions): void {
    if (pipes.every((fd) => fd === null)) return;
    const ring = (t: OutputTarget) => (t.kind === 'capture' ? (t.ringBytes ?? this.defaultRingBytes) : 1);
    const publish = options.outputEvents ? (slice: OutputSlice) => void this.events.append('output', record, slice) : null;
    const io = new ProcessStdio(record, pipes, [ring(options.stdout), ring(options.stderr)], publish, (closed) => this.closed(closed));
    this.live.set(record, io);
  }

  /** Continues a predecessor's pipes and captured output for a restored record (handover). */
  continue(record: ProcessRecord, state: StdioState): void {
    const publish = state.outputEvents ? (slice: OutputSlice) => void this.events.append('output', record, slice) : null;
    const io = new ProcessStdio(record, [null, null, null], [1, 1], publish, (closed) => this.closed(closed), state);
    this.live.set(record, io);
    if (record.state !== 'running') this.retained.add(io);
  }

  /**
   * Handover: every pipe stops being read or written here and is kept for the successor;
   * output already read is in the rings and published. Pipes of released processes that are
   * only being drained are not handed on.
   */
  quiesce(): void {
    for (const io of this.live.values()) io.detach();
  }

  resume(): void {
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
    for (const io of this.retained) {
      if (total <= this.retainedBytes) break;
      total -= io.ringBytes;
      io.dropOutput();
      this.retained.delete(io);
    }
  }

  released(record: ProcessRecord): void {
    const io = this.live.get(record);
    if (io === undefined) return;
    this.live.delete(record);
    this.retained.delete(io);
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
    return { processes: this.live.size + this.draining.size, openPipes, ringBytes, pendingStdin };
  }

  private closed(io: ProcessStdio): void {
    if (io.isReleased && io.openPipes === 0) this.draining.delete(io);
  }
}
