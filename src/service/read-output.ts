import type { ServerWritableStream } from '@grpc/grpc-js';
import { AgentError, unknownHandle } from '../process/errors.js';
import { READER_STALL_MS, type CapturedOutput, type OutputHold } from '../process/stdio/captured-output.js';
import type { ProcessStdio } from '../process/stdio/process-pipes.js';
import type { ReadOutputRequest, ReadOutputResponse } from '../api.js';

/** Bytes per response at most. */
export const READ_CHUNK_BYTES = 256 * 1024;
/** Responses a stream may have written but not yet flushed to the transport. */
export const READ_WRITE_BUDGET = 4;

type Call = ServerWritableStream<ReadOutputRequest, ReadOutputResponse>;

export interface ReaderStats {
  /** Next offset the reader will be sent. */
  readonly cursor: number;
  readonly inflight: number;
  readonly inflightBytes: number;
}

/**
 * One ReadOutput stream: a cursor into the process's output ring, advanced as fast as the
 * transport takes responses. It holds no copy of the output beyond READ_WRITE_BUDGET responses,
 * so a reader that stalls costs at most READ_WRITE_BUDGET * READ_CHUNK_BYTES. While it keeps
 * taking responses the pipe waits for it (see process/stdio/process-pipes.ts); once it stalls the ring moves
 * on and the reader is told how much it lost when it resumes.
 */
class OutputReader implements OutputHold {
  private inflight = 0;
  private inflightBytes = 0;
  private lastProgress = Date.now();
  private done = false;
  private unsubscribe: () => void = () => {};
  private unhold: () => void = () => {};

  constructor(
    private readonly call: Call,
    private readonly io: ProcessStdio,
    private readonly output: CapturedOutput,
    private cursor: number,
    private readonly follow: boolean,
    private readonly onEnd: (error?: AgentError) => void,
    private readonly revoked: () => AgentError | undefined,
  ) {}

  get stats(): ReaderStats {
    return { cursor: this.cursor, inflight: this.inflight, inflightBytes: this.inflightBytes };
  }

  get position(): number {
    return this.cursor;
  }

  /** Its transport took nothing for READER_STALL_MS while responses were waiting. */
  get stalled(): boolean {
    return this.inflight > 0 && Date.now() - this.lastProgress > READER_STALL_MS;
  }

  start(): void {
    this.unsubscribe = this.output.subscribe(() => this.pump());
    this.unhold = this.output.hold(this);
    // Writes of a cancelled call never complete: stop counting on them.
    this.call.on('cancelled', () => this.finish());
    this.call.on('error', () => this.finish());
    this.pump();
  }

  private pump(): void {
    if (this.done) return;
    if (this.io.isReleased) return this.finish(unknownHandle(this.io.handle));
    // A policy reload reaches an open stream before its next response.
    const revoked = this.revoked();
    if (revoked !== undefined) return this.finish(revoked);
    while (this.inflight < READ_WRITE_BUDGET) {
      const { offset, data, lost } = this.output.ring.read(this.cursor, READ_CHUNK_BYTES);
      const caughtUp = offset + data.length === this.output.ring.end;
      const eof = caughtUp && this.io.finished(this.output);
      if (data.length === 0 && !eof) break;
      this.cursor = offset + data.length;
      this.send({ offset, data, lostBytes: lost, eof });
      if (eof) return this.end();
    }
    if (this.inflight === 0 && !this.follow) this.end();
  }

  private send(res: ReadOutputResponse): void {
    const bytes = res.data.length;
    if (this.inflight === 0) this.lastProgress = Date.now();
    this.inflight++;
    this.inflightBytes += bytes;
    this.call.write(res, () => {
      this.lastProgress = Date.now();
      this.inflight--;
      this.inflightBytes -= bytes;
      this.pump();
      this.output.regulate();
    });
  }

  private end(): void {
    if (this.done) return;
    this.finish();
    this.call.end();
  }

  /** Ends the stream with error (the agent is stopping). */
  abort(error: AgentError): void {
    this.finish(error);
  }

  private finish(error?: AgentError): void {
    if (this.done) return;
    this.done = true;
    this.unsubscribe();
    this.unhold();
    this.onEnd(error);
  }
}

/** The open ReadOutput streams, bounded in number. */
export class OutputReaders {
  private readonly readers = new Set<OutputReader>();

  constructor(private readonly maxReaders: number) {}

  /**
   * `revoked`: whether the policy in force still lets the caller read this output (undefined), else
   * why not. `ended` runs once the stream has ended, however (not when open throws).
   */
  open(call: Call, io: ProcessStdio, output: CapturedOutput, offset: number, follow: boolean, onError: (e: AgentError) => void, revoked: () => AgentError | undefined = () => undefined, ended: () => void = () => {}): void {
    if (this.readers.size >= this.maxReaders) {
      throw new AgentError('ResourceExhausted', `at most ${this.maxReaders} ReadOutput streams`, { reason: 'MAX_READERS' });
    }
    if (offset > output.ring.end) {
      throw new AgentError('OutOfRange', `offset ${offset} is past the ${output.ring.end} bytes ${output.stream} has produced`, { reason: 'OFFSET_AHEAD', field: 'offset', handle: io.handle });
    }
    const reader: OutputReader = new OutputReader(call, io, output, offset, follow, (error) => {
      this.readers.delete(reader);
      ended();
      if (error) onError(error);
    }, revoked);
    this.readers.add(reader);
    reader.start();
  }

  stats(): ReaderStats[] {
    return [...this.readers].map((r) => r.stats);
  }

  /** Ends every stream with error. */
  endAll(error: AgentError): void {
    for (const reader of [...this.readers]) reader.abort(error);
  }
}
