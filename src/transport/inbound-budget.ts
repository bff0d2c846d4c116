// Request bytes the agent holds before a call can be decided. grpc-js reads a request message whole
// (up to MAX_GRPC_MESSAGE_BYTES) before any handler, and so before authorization, sees it: any
// connected peer, one with no rule included, could open streams that each announce 4 MiB, send all
// but a byte and never finish, until the agent was OOM-killed. The bytes of request messages still
// arriving are counted per connection and in all; a stream that takes either past its budget is
// reset (ENHANCE_YOUR_CALM: the client sees RESOURCE_EXHAUSTED), and so is one whose message is not
// whole within stallMs of the stream's start. A whole message counts no more: it is decided at once.
import http2, { type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
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
export const INBOUND_BYTES = { perConnection: 64 * MiB, total: 256 * MiB } as const;

interface Pending {
  readonly session: Http2Session;
  readonly since: number;
  bytes: number;
  /** Of those, what the budgets count (all but the chunk that completed the message). */
  counted: number;
  /** The gRPC message header (flag, length) as far as it has come. */
  head: Buffer;
}

/** A gRPC message's header: a compression flag and a 4-byte length. */
const GRPC_HEADER = 5;

export class InboundBudget {
  private total = 0;
  private readonly bySession = new WeakMap<Http2Session, number>();
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

  /** Bytes held now on streams whose request has not ended. */
  get held(): number {
    return this.total;
  }

  /**
   * Counts the streams of the HTTP/2 server grpc-js made for the injector just created: grpc-js
   * keeps its servers in a private map, the only way to its streams before a handler runs.
   */
  watchNewestInjector(server: Server): void {
    const servers = (server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> }).http2Servers;
    const newest = servers === undefined ? undefined : [...servers.keys()].at(-1);
    if (newest === undefined) throw new Error('grpc-js keeps no http2Servers: the inbound budget cannot see its streams');
    newest.on('stream', (stream: ServerHttp2Stream) => this.track(stream));
  }

  close(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    this.limiter.close();
  }

  private track(stream: ServerHttp2Stream): void {
    const session = stream.session;
    if (session === undefined) return;
    const entry: Pending = { session, since: performance.now(), bytes: 0, counted: 0, head: Buffer.alloc(0) };
    const onData = (chunk: Buffer) => {
      if (entry.head.length < GRPC_HEADER) {
        entry.head = entry.head.length === 0 && chunk.length >= GRPC_HEADER ? chunk.subarray(0, GRPC_HEADER) : Buffer.concat([entry.head, chunk.subarray(0, GRPC_HEADER - entry.head.length)]);
      }
      entry.bytes += chunk.length;
      // A whole message is grpc-js's to decode and the handler's to decide, at once: what is
      // bounded is the message still arriving, which nothing else bounds.
      if (entry.head.length === GRPC_HEADER && entry.bytes >= GRPC_HEADER + entry.head.readUInt32BE(1)) return done();
      if (entry.counted === 0) this.pending.set(stream, entry);
      entry.counted += chunk.length;
      this.total += chunk.length;
      const onSession = (this.bySession.get(session) ?? 0) + chunk.length;
      this.bySession.set(session, onSession);
      if (onSession > this.limits.perConnection) this.refuse(stream, `more than ${this.limits.perConnection} request bytes pending on one connection`);
      else if (this.total > this.limits.total) this.refuse(stream, `more than ${this.limits.total} request bytes pending in all`);
      else this.sweeper ??= setInterval(() => this.sweep(), 1000).unref();
    };
    const done = () => {
      stream.off('data', onData);
      if (entry.counted === 0) return;
      this.pending.delete(stream);
      this.total -= entry.counted;
      const left = (this.bySession.get(session) ?? 0) - entry.counted;
      if (left > 0) this.bySession.set(session, left);
      else this.bySession.delete(session);
      entry.bytes = 0;
      entry.counted = 0;
      if (this.pending.size === 0 && this.sweeper !== null) {
        clearInterval(this.sweeper);
        this.sweeper = null;
      }
    };
    stream.on('data', onData);
    stream.once('end', done);
    stream.once('close', done);
  }

  private refuse(stream: ServerHttp2Stream, reason: string): void {
    this.limiter.event('request_refused', { peer: stream.session?.socket?.remoteAddress ?? 'unknown', reason });
    stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private sweep(): void {
    const now = performance.now();
    for (const [stream, entry] of this.pending) {
      if (now - entry.since > this.limits.stallMs) this.refuse(stream, `request not complete within ${this.limits.stallMs} ms`);
    }
  }
}
