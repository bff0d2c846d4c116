// The agent's ends of a spawned process's pipes. Each fd is handed to a libuv pipe handle
// (net.Socket: never fs streams, whose pending reads each hold a threadpool thread) that owns it
// from then on and closes it exactly once.
//
// Output goes into a bounded ring. A reader that keeps reading loses nothing: while it is more
// than a ring behind, the agent stops reading the pipe, so the child waits for it (as for a
// terminal). A reader whose transport takes nothing for READER_STALL_MS no longer counts, the
// agent reads on and the ring overwrites: no client can block a child for longer than that, and
// with nobody reading the pipe is always drained.
import net from 'node:net';
import { closeFd, type Fd } from '../kernel/fd.js';
import { pidfdPoll } from '../kernel/pidfd.js';
import { AgentError, processExited } from './errors.js';
import { OutputRing } from './output-ring.js';
import type { ProcessRecord } from './record.js';

export type StreamName = 'stdout' | 'stderr';

/** A WriteStdin may leave at most this many bytes queued for the child (one maximal message). */
export const STDIN_PENDING_BYTES = 4 * 1024 * 1024;
/** A reader that took nothing for this long stops holding the pipe back. */
export const READER_STALL_MS = 1000;
/** One read from a pipe brings at most this much (libuv's read buffer). */
const PIPE_READ_BYTES = 64 * 1024;
/** Output events carry at most this many bytes each... */
export const OUTPUT_EVENT_BYTES = 64 * 1024;
/** ...and are coalesced over this long, so chatty output does not flood the event log. */
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

const failed = (message: string, reason: string, handle: string, field?: string) =>
  new AgentError('FailedPrecondition', message, { reason, handle, field });

/** Takes ownership of fd: from here on the socket closes it. */
function openPipe(fd: Fd, direction: 'read' | 'write'): net.Socket {
  try {
    const socket = new net.Socket({ fd, readable: direction === 'read', writable: direction === 'write' });
    // A child's pipe must not keep the agent's event loop alive: the reaper decides that.
    socket.unref();
    return socket;
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

/** A reader of a ring: while it is not stalled, the pipe is not read past what it has not taken. */
export interface OutputHold {
  /** The next offset it will take. */
  readonly position: number;
  readonly stalled: boolean;
}

/** One output pipe read into a ring until end-of-file. */
export class CapturedOutput {
  readonly ring: OutputRing;
  private socket: net.Socket | null;
  private paused = false;
  private pauseTimer: NodeJS.Timeout | null = null;
  private readonly holds = new Set<OutputHold>();
  private readonly listeners = new Set<() => void>();
  /** End of the output already published as events. */
  private published = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    fd: Fd,
    readonly stream: StreamName,
    ringBytes: number,
    private publish: ((slice: OutputSlice) => void) | null,
    private readonly onClose: () => void,
  ) {
    this.ring = new OutputRing(ringBytes);
    const socket = openPipe(fd, 'read');
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // A read error (EIO) ends the stream like end-of-file; 'close' follows either way.
    socket.on('error', () => {});
    socket.on('close', () => this.onEof());
    this.socket = socket;
  }

  /** True until the pipe reached end-of-file (every writer closed it) and was closed. */
  get pipeOpen(): boolean {
    return this.socket !== null;
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
    const wait = this.mustWait();
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
    this.publish = null;
    this.clearTimer();
    this.notify();
    this.listeners.clear();
    this.holds.clear();
    this.regulate();
  }

  private onData(chunk: Buffer): void {
    this.ring.append(chunk);
    if (this.holds.size > 0) this.regulate();
    if (this.publish !== null) {
      if (this.ring.end - this.published >= OUTPUT_EVENT_BYTES) this.flush();
      else if (this.timer === null) this.timer = setTimeout(() => this.flush(), OUTPUT_EVENT_DELAY_MS).unref();
    }
    this.notify();
  }

  private onEof(): void {
    this.socket = null;
    if (this.pauseTimer !== null) clearTimeout(this.pauseTimer);
    this.flush();
    this.ring.seal();
    this.onClose();
    this.notify();
  }

  /** Publishes what is waiting for the coalescing delay now (before the exit event, say). */
  flush(): void {
    this.clearTimer();
    if (this.publish === null) return;
    // Bytes the ring overwrote before they were published are skipped: the next event's offset
    // shows the gap.
    this.published = Math.max(this.published, this.ring.start);
    while (this.published < this.ring.end) {
      const length = Math.min(OUTPUT_EVENT_BYTES, this.ring.end - this.published);
      this.publish({ stream: this.stream, offset: this.published, length, source: this });
      this.published += length;
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** The write end of the child's stdin: bounded pending bytes, EPIPE contained. */
class StdinPipe {
  private socket: net.Socket | null;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private pending = 0;
  private brokenBy: string | undefined;

  constructor(fd: Fd, private readonly onClose: () => void) {
    const socket = openPipe(fd, 'write');
    // EPIPE when the child closed its end (or died): without this handler it would crash the agent.
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.brokenBy ??= e.code;
      this.state = 'closed';
    });
    socket.on('close', () => {
      this.state = 'closed';
      this.socket = null;
      this.onClose();
    });
    this.socket = socket;
  }

  get pipeOpen(): boolean {
    return this.socket !== null;
  }

  get pendingBytes(): number {
    return this.pending;
  }

  get accepting(): boolean {
    return this.state === 'open';
  }

  get why(): string {
    return this.brokenBy ?? 'STDIN_CLOSED';
  }

  /** Resolves once the kernel took all of data; rejects with the socket error (EPIPE, ...). */
  write(data: Buffer): Promise<void> {
    this.pending += data.length;
    return new Promise((resolve, reject) => {
      this.socket!.write(data, (e) => {
        this.pending -= data.length;
        if (e) reject(e);
        else resolve();
      });
    });
  }

  /** Queued bytes are still delivered, then the child reads end-of-file. */
  end(): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    this.socket?.end();
  }

  /** Closes now; queued bytes are dropped (their writes fail). */
  destroy(): void {
    this.state = 'closed';
    this.socket?.destroy();
  }
}

/** The pipes of one spawned process: captured stdout/stderr and the stdin writer. */
export class ProcessStdio {
  readonly stdout: CapturedOutput | null;
  readonly stderr: CapturedOutput | null;
  private readonly stdin: StdinPipe | null;
  private exited = false;
  private released = false;

  constructor(
    readonly record: ProcessRecord,
    pipes: readonly [Fd | null, Fd | null, Fd | null],
    ringBytes: readonly [number, number],
    publish: ((slice: OutputSlice) => void) | null,
    private readonly onClose: (io: ProcessStdio) => void,
  ) {
    const closed = () => this.onClose(this);
    const [inFd, outFd, errFd] = pipes;
    this.stdin = inFd === null ? null : new StdinPipe(inFd, closed);
    this.stdout = outFd === null ? null : new CapturedOutput(outFd, 'stdout', ringBytes[0], publish, closed);
    this.stderr = errFd === null ? null : new CapturedOutput(errFd, 'stderr', ringBytes[1], publish, closed);
  }

  get handle(): string {
    return this.record.handle;
  }

  get isReleased(): boolean {
    return this.released;
  }

  /** Pipe fds the agent still holds for this process. */
  get openPipes(): number {
    return [this.stdin, this.stdout, this.stderr].filter((p) => p?.pipeOpen).length;
  }

  get ringBytes(): number {
    return (this.stdout?.ring.allocated ?? 0) + (this.stderr?.ring.allocated ?? 0);
  }

  get pendingStdin(): number {
    return this.stdin?.pendingBytes ?? 0;
  }

  /** The captured stream, or FAILED_PRECONDITION when it is not captured. */
  output(stream: StreamName): CapturedOutput {
    const out = stream === 'stdout' ? this.stdout : this.stderr;
    if (out === null) throw failed(`${stream} of ${this.handle} is not captured (spawn it with OUTPUT_MODE_CAPTURE)`, 'NOT_CAPTURED', this.handle, 'stream');
    return out;
  }

  /** No more output will come on out: the process exited and the pipe is drained. */
  finished(out: CapturedOutput): boolean {
    return this.exited && !out.pipeOpen;
  }

  async writeStdin(data: Buffer): Promise<number> {
    const stdin = this.stdinPipe();
    if (this.exited) throw processExited(this.handle);
    if (!stdin.accepting) throw failed(`stdin of ${this.handle} is closed`, stdin.why, this.handle, 'handle');
    if (stdin.pendingBytes + data.length > STDIN_PENDING_BYTES) {
      throw new AgentError('ResourceExhausted', `stdin of ${this.handle} has ${stdin.pendingBytes} bytes the process has not read yet; at most ${STDIN_PENDING_BYTES} may wait`, { reason: 'STDIN_BACKLOG', handle: this.handle });
    }
    if (data.length === 0) return 0;
    try {
      await stdin.write(data);
      return data.length;
    } catch {
      if (this.hasExited()) throw processExited(this.handle);
      throw failed(`stdin of ${this.handle} was closed before all was written (${stdin.why})`, stdin.why, this.handle, 'handle');
    }
  }

  /** Recorded, or not yet collected: a dying child's closed pipe fails writes before its exit is reaped. */
  private hasExited(): boolean {
    const pidfd = this.record.pidfd;
    return this.exited || pidfd === null || pidfdPoll(pidfd).exited;
  }

  /** Idempotent: the child reads end-of-file after any queued bytes. */
  closeStdin(): void {
    this.stdinPipe().end();
  }

  /** The exit was recorded: stdin is useless now; readers learn it once the pipes are drained. */
  markExited(): void {
    this.exited = true;
    this.stdin?.destroy();
    for (const out of [this.stdout, this.stderr]) {
      out?.flush();
      out?.notify();
    }
  }

  /** The handle is gone: rings are freed, readers ended; pipes are drained until end-of-file. */
  release(): void {
    this.released = true;
    this.stdin?.destroy();
    this.stdout?.drop();
    this.stderr?.drop();
  }

  private stdinPipe(): StdinPipe {
    if (this.stdin === null) throw failed(`stdin of ${this.handle} is not a pipe (spawn it with STDIN_MODE_PIPE)`, 'NOT_PIPED', this.handle, 'stdin');
    return this.stdin;
  }
}
