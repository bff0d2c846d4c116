// The agent's ends of a spawned process's pipes: captured stdout and stderr (captured-output.ts)
// and the stdin writer (stdin-pipe.ts). Each fd is handed to a libuv pipe handle (net.Socket: never
// fs streams, whose pending reads each hold a threadpool thread) that owns it from then on and
// closes it exactly once.
import type { Fd } from '../../kernel/fd.js';
import { CapturedOutput, type CaptureState, type StreamName } from './captured-output.js';
import type { OutputPublisher } from './output-event-budget.js';
import { AgentError, handoverInProgress, processExited } from '../errors.js';
import type { ProcessRecord } from '../lifecycle/record.js';
import { StdinPipe } from './stdin-pipe.js';

/** A WriteStdin may leave at most this many bytes queued for the child (one maximal message). */
export const STDIN_PENDING_BYTES = 4 * 1024 * 1024;

const failed = (message: string, reason: string, handle: string, field?: string) =>
  new AgentError('FailedPrecondition', message, { reason, handle, field });

/** What a successor needs to go on with a process's pipes (handover). */
export interface StdioState {
  readonly stdin: Fd | null;
  /** Why a piped stdin that is not handed on was closed. */
  readonly stdinClosed?: string;
  readonly outputEvents: boolean;
  readonly stdout: CaptureState | null;
  readonly stderr: CaptureState | null;
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
    private readonly publish: OutputPublisher | null,
    private readonly onClose: (io: ProcessStdio) => void,
    handed?: StdioState,
  ) {
    const closed = () => this.onClose(this);
    const [inFd, outFd, errFd] = handed ? [handed.stdin, null, null] : pipes;
    this.stdin = inFd !== null || handed?.stdinClosed !== undefined ? new StdinPipe(inFd, closed, handed?.stdinClosed) : null;
    const capture = (fd: Fd | null, stream: StreamName, bytes: number, state: CaptureState | null | undefined) =>
      state ? CapturedOutput.continuing(state, publish, closed) : fd === null ? null : new CapturedOutput(fd, stream, bytes, publish, closed);
    this.stdout = capture(outFd, 'stdout', ringBytes[0], handed?.stdout);
    this.stderr = capture(errFd, 'stderr', ringBytes[1], handed?.stderr);
    if (handed && record.state !== 'running') this.markExited();
  }

  /** Handover: stops using the pipes, keeping them for the successor (or for `reattach`). */
  detach(): void {
    this.stdin?.detach();
    this.stdout?.detach();
    this.stderr?.detach();
  }

  reattach(): void {
    this.stdin?.reattach();
    this.stdout?.reattach();
    this.stderr?.reattach();
  }

  /** After detach. */
  state(): StdioState {
    return {
      stdin: this.stdin?.detachedPipe ?? null,
      stdinClosed: this.stdin !== null && this.stdin.detachedPipe === null ? this.stdin.why : undefined,
      outputEvents: this.publish !== null,
      stdout: this.stdout?.state() ?? null,
      stderr: this.stderr?.state() ?? null,
    };
  }

  /** The successor has its own descriptors now. */
  closeDetached(): void {
    this.stdin?.closeDetached();
    this.stdout?.closeDetached();
    this.stderr?.closeDetached();
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

  /** What the rings may grow to (what --capture-total counts). */
  get capacity(): number {
    return (this.stdout?.ring.capacity ?? 0) + (this.stderr?.ring.capacity ?? 0);
  }

  /** The rings were freed by retention. */
  get isDropped(): boolean {
    return [this.stdout, this.stderr].every((o) => o === null || o.ring.isDropped);
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
    if (stdin.detachedPipe !== null) throw handoverInProgress();
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
      // Bytes still queued were dropped; some of data may already be in the pipe.
      if (stdin.detachedPipe !== null) throw handoverInProgress();
      throw failed(`stdin of ${this.handle} was closed before all was written (${stdin.why})`, stdin.why, this.handle, 'handle');
    }
  }

  /** Recorded, or not yet collected: a dying child's closed pipe fails writes before its exit is reaped. */
  private hasExited(): boolean {
    const ref = this.record.ref;
    return this.exited || ref === null || ref.poll().exited;
  }

  /** Idempotent: the child reads end-of-file after any queued bytes. */
  closeStdin(): void {
    this.stdinPipe().end();
  }

  /** Frees the captured output (retention): what was kept reads as lost from now on. */
  dropOutput(): void {
    for (const out of [this.stdout, this.stderr]) out?.ring.drop();
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
