// Response bytes the agent holds for peers that do not take them. HTTP/2 sends a stream's DATA only
// as far as the peer's flow-control window reaches, and grpc-js writes a unary response whole
// whatever that window says, so what a peer does not read stays in the agent's memory until the
// stream ends. A caller that sends List or Get calls and never reads (its own processes can make
// each answer 4 MiB) held 850 MiB of the agent with 200 calls on one connection, and one caller
// may open 64 connections of 1,024 calls each. (Watch and ReadOutput wait for 'drain': they hold
// one response a stream.) The bytes written and not yet passed to the socket are counted per
// connection and in all; a connection that takes either past its budget is closed
// (ENHANCE_YOUR_CALM), the one holding the most when it is the total.
import http2, { type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { Logger } from '../log.js';
import { LogLimiter } from './log-limiter.js';

export interface OutboundLimits {
  /** Per connection: a few whole responses (a List page or a Get may be 4 MiB). */
  readonly perConnection: number;
  /** All connections together. */
  readonly total: number;
}

const MiB = 1024 * 1024;
export const OUTBOUND_BYTES: OutboundLimits = { perConnection: 64 * MiB, total: 256 * MiB };

type Write = ServerHttp2Stream['write'];
type Callback = (error?: Error | null) => void;

export class OutboundBudget {
  private total = 0;
  /** Sessions with bytes written and not yet flushed, with how many. */
  private readonly held = new Map<Http2Session, number>();
  private readonly limiter: LogLimiter;

  constructor(
    log: Logger,
    private readonly limits: OutboundLimits = OUTBOUND_BYTES,
  ) {
    this.limiter = new LogLimiter(log);
  }

  close(): void {
    this.limiter.close();
  }

  /** Counts what is written to the stream until node:http2 has passed it on (or the stream is gone). */
  track(stream: ServerHttp2Stream): void {
    const session = stream.session;
    if (session === undefined) return;
    const write = stream.write as (chunk: unknown, encoding?: unknown, cb?: unknown) => boolean;
    let pending = 0;
    let closed = false;
    const settle = (bytes: number) => {
      if (closed) return;
      pending -= bytes;
      this.add(session, -bytes);
    };
    stream.write = function (this: ServerHttp2Stream, chunk: unknown, encoding?: unknown, cb?: unknown) {
      const callback = (typeof encoding === 'function' ? encoding : cb) as Callback | undefined;
      const bytes = Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? chunk.byteLength : typeof chunk === 'string' ? Buffer.byteLength(chunk) : 0;
      const done: Callback = (error) => {
        settle(bytes);
        callback?.(error);
      };
      pending += bytes;
      budget.add(session, bytes);
      const ok = typeof encoding === 'function' ? write.call(this, chunk, done) : write.call(this, chunk, encoding, done);
      budget.check(session);
      return ok;
    } as Write;
    const budget = this;
    // A destroyed stream's writes may never be called back: its bytes go with it.
    stream.on('close', () => {
      if (closed) return;
      this.add(session, -pending);
      closed = true;
    });
  }

  private add(session: Http2Session, bytes: number): void {
    this.total += bytes;
    const now = (this.held.get(session) ?? 0) + bytes;
    if (now > 0) this.held.set(session, now);
    else this.held.delete(session);
  }

  private check(session: Http2Session): void {
    if (session.destroyed) return;
    if ((this.held.get(session) ?? 0) > this.limits.perConnection) return this.refuse(session, `more than ${this.limits.perConnection} response bytes not taken on one connection`);
    if (this.total <= this.limits.total) return;
    let most: Http2Session = session;
    for (const [s, n] of this.held) if (n > (this.held.get(most) ?? 0)) most = s;
    this.refuse(most, `more than ${this.limits.total} response bytes not taken in all; this connection held the most`);
  }

  private refuse(session: Http2Session, reason: string): void {
    let peer = 'unknown';
    try {
      peer = session.socket?.remoteAddress ?? peer;
    } catch {
      // ERR_HTTP2_SOCKET_UNBOUND: already going.
    }
    this.limiter.event('connection_refused', { peer, reason });
    // Its streams close with it, and give their bytes back (the 'close' above).
    this.held.delete(session);
    session.destroy(undefined, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }
}
