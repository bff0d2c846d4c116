// Request bytes the agent holds before a call can be decided. grpc-js reads a request whole before
// any handler, and so before authorization, sees it: for the unary and server-streaming calls of
// this API, up to the end of the client's side of the stream (a client can send a whole message and
// then another, and not end). Any connected peer, one with no rule included, could open streams
// that each send 4 MiB and never end, until the agent was OOM-killed. The bytes of requests not yet
// ended are counted per connection and in all; a stream that takes either past its budget is reset
// (ENHANCE_YOUR_CALM: the client sees RESOURCE_EXHAUSTED), and so is one whose request has not
// ended within stallMs of the stream's start.
import http2, { type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { Logger } from '../log.js';
import { LogLimiter } from './log-limiter.js';

export interface InboundLimits {
  /** Per connection: a few whole messages (a SpawnBatch is up to one). */
  readonly perConnection: number;
  /** All connections together. */
  readonly total: number;
  /** How long a request has to arrive whole (the agent's --handshake-timeout). */
  readonly stallMs: number;
}

const MiB = 1024 * 1024;

/** A connection's request bytes pending, kept on its session: read and written for every chunk. */
const HELD = Symbol('pidfd-agent.inbound-bytes');
type Counted = Http2Session & { [HELD]?: number };
export const INBOUND_BYTES = { perConnection: 64 * MiB, total: 256 * MiB } as const;

interface Pending {
  readonly since: number;
  bytes: number;
}

export class InboundBudget {
  private total = 0;
  /** Streams whose request side is still open, with what they have received. */
  private readonly pending = new Map<ServerHttp2Stream, Pending>();
  private sweeper: NodeJS.Timeout | null = null;
  private readonly limiter: LogLimiter;

  constructor(
    log: Logger,
    private readonly limits: InboundLimits,
  ) {
    this.limiter = new LogLimiter(log);
  }

  close(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    this.limiter.close();
  }

  /** Counts a stream's request bytes until its client ends its side (server-streams.ts calls it for every stream). */
  track(stream: ServerHttp2Stream): void {
    const session = stream.session;
    if (session === undefined) return;
    const entry: Pending = { since: performance.now(), bytes: 0 };
    let ended = false;
    const onData = (chunk: Buffer) => {
      if (ended) return;
      if (entry.bytes === 0) this.pending.set(stream, entry);
      entry.bytes += chunk.length;
      this.total += chunk.length;
      const onSession = ((session as Counted)[HELD] ?? 0) + chunk.length;
      (session as Counted)[HELD] = onSession;
      if (onSession > this.limits.perConnection) this.refuse(stream, `more than ${this.limits.perConnection} request bytes pending on one connection`);
      else if (this.total > this.limits.total) this.refuse(stream, `more than ${this.limits.total} request bytes pending in all`);
      else this.sweeper ??= setInterval(() => this.sweep(), 1000).unref();
    };
    // Plain listeners, not once(): a stream is gone after its close, and these run on every call.
    const done = () => {
      if (ended) return;
      ended = true;
      if (entry.bytes === 0) return;
      this.pending.delete(stream);
      this.total -= entry.bytes;
      (session as Counted)[HELD] = ((session as Counted)[HELD] ?? 0) - entry.bytes;
    };
    stream.on('data', onData);
    stream.on('end', done);
    stream.on('close', done);
  }

  private refuse(stream: ServerHttp2Stream, reason: string): void {
    this.limiter.event('request_refused', { peer: stream.session?.socket?.remoteAddress ?? 'unknown', reason });
    stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private sweep(): void {
    // Stopped here, when a sweep finds nothing, not each time the last pending request ends: a
    // timer made and cleared per call costs more than the call's own bookkeeping.
    if (this.pending.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
      return;
    }
    const now = performance.now();
    for (const [stream, entry] of this.pending) {
      if (now - entry.since > this.limits.stallMs) this.refuse(stream, `request not complete within ${this.limits.stallMs} ms`);
    }
  }
}
