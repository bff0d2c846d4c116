// Response bytes the agent holds for peers that do not take them. HTTP/2 sends a stream's DATA only
// as far as the peer's flow-control window reaches, and grpc-js writes a unary response whole
// whatever that window says, so what a peer does not read stays in the agent's memory until the
// stream ends. A caller that sends List or Get calls and never reads (its own processes can make
// each answer 4 MiB) held 850 MiB of the agent with 200 calls on one connection, and one caller
// may open 64 connections of 1,024 calls each.
//
// The bytes written and not yet passed to the socket are counted per caller (the identity its
// connections are counted by for --max-connections-per-identity: `unix:uid=U`, `tls:<identity>`),
// across its connections: one caller can spread its answers over many. A response that would take
// its caller past perIdentity is not written: that call alone ends with RESOURCE_EXHAUSTED
// (ANSWERS_UNREAD), retryable, and the connection's other calls go on. (Closing the connection
// instead lost every call of a client that only fanned out: answers written in the same few ticks
// are all held until the socket takes them, however fast the peer reads.) Past `total` a response
// is refused only to the caller holding the most, so that one caller's answers never fail
// another's calls; the total is a soft bound: each caller stays under perIdentity.
import type { Http2Session, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { status } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { LogLimiter } from './log-limiter.js';

export interface OutboundLimits {
  /** Per caller, across its connections: many whole responses (a List page or a Get may be 4 MiB). */
  readonly perIdentity: number;
  /** All callers together: past it, only the caller holding the most is refused. */
  readonly total: number;
}

const MiB = 1024 * 1024;
export const OUTBOUND_BYTES: OutboundLimits = { perIdentity: 64 * MiB, total: 256 * MiB };

/** Whose a connection is, set on its socket by the listener that accepted it. */
const CALLER = Symbol('pidfd-agent.caller');
type Owned = { [CALLER]?: string };

/** Names the caller of the connection this socket carries (the key of its per-caller budget). */
export function setCaller(socket: object, who: string): void {
  (socket as Owned)[CALLER] = who;
}

/** A session's caller, read once from its socket (node:http2's socket proxy passes symbols through). */
const OWNER = Symbol('pidfd-agent.outbound-owner');
function callerOf(session: Http2Session): string {
  const s = session as Http2Session & Owned & { [OWNER]?: string };
  if (s[OWNER] !== undefined) return s[OWNER];
  let who = 'unknown';
  try {
    who = (session.socket as unknown as Owned)[CALLER] ?? who;
  } catch {
    // ERR_HTTP2_SOCKET_UNBOUND: already going.
  }
  return (s[OWNER] = who);
}

type Write = ServerHttp2Stream['write'];
type Callback = (error?: Error | null) => void;

export const ANSWERS_UNREAD = 'ANSWERS_UNREAD';

export class OutboundBudget {
  private total = 0;
  /** Callers with bytes written and not yet flushed, with how many. */
  private readonly held = new Map<string, number>();
  private readonly limiter: LogLimiter;

  /**
   * `details` encodes a refusal's grpc-status-details-bin (the service's one status table, passed
   * down: the transport sits below the service).
   */
  constructor(
    log: Logger,
    private readonly details: (refusal: { code: status; message: string; reason: string; metadata: Record<string, string> }) => Buffer,
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
    const who = callerOf(session);
    const write = stream.write as (chunk: unknown, encoding?: unknown, cb?: unknown) => boolean;
    let pending = 0;
    let closed = false;
    const budget = this;
    stream.write = function (this: ServerHttp2Stream, chunk: unknown, encoding?: unknown, cb?: unknown) {
      // After its close a stream's callbacks may never come: nothing to count (grpc-js checks first).
      if (closed) return write.call(this, chunk, encoding, cb);
      const callback = (typeof encoding === 'function' ? encoding : cb) as Callback | undefined;
      const bytes = Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? chunk.byteLength : typeof chunk === 'string' ? Buffer.byteLength(chunk) : 0;
      const over = budget.over(who, bytes);
      // Not called back: grpc-js would then send its own status. The stream ends with ours.
      if (over !== undefined) return budget.refuse(this, who, over);
      const done: Callback = (error) => {
        if (!closed) {
          pending -= bytes;
          budget.add(who, -bytes);
        }
        callback?.(error);
      };
      pending += bytes;
      budget.add(who, bytes);
      return typeof encoding === 'function' ? write.call(this, chunk, done) : write.call(this, chunk, encoding, done);
    } as Write;
    // A destroyed stream's writes may never be called back: its bytes go with it.
    stream.on('close', () => {
      if (closed) return;
      closed = true;
      this.add(who, -pending);
    });
  }

  private add(who: string, bytes: number): void {
    this.total += bytes;
    const now = (this.held.get(who) ?? 0) + bytes;
    if (now > 0) this.held.set(who, now);
    else this.held.delete(who);
  }

  /** Why `bytes` more for `who` are refused, or undefined. */
  private over(who: string, bytes: number): string | undefined {
    const mine = this.held.get(who) ?? 0;
    if (mine + bytes > this.limits.perIdentity) return `more than ${this.limits.perIdentity} bytes of answers not yet read by this caller, across its connections`;
    if (this.total + bytes <= this.limits.total) return undefined;
    for (const [other, n] of this.held) if (other !== who && n > mine) return undefined;
    return `more than ${this.limits.total} bytes of answers not yet read in all, and this caller holds the most`;
  }

  private refuse(stream: ServerHttp2Stream, who: string, reason: string): boolean {
    let peer = 'unknown';
    try {
      peer = stream.session?.socket?.remoteAddress ?? peer;
    } catch {
      // ERR_HTTP2_SOCKET_UNBOUND: already going.
    }
    this.limiter.event('answer_refused', { peer, identity: who, reason });
    if (stream.destroyed || stream.writableEnded) return false;
    const message = `${reason}: read the answers of earlier calls, then retry`;
    const trailers: OutgoingHttpHeaders = {
      'grpc-status': String(status.RESOURCE_EXHAUSTED),
      'grpc-message': encodeURI(message),
      'grpc-status-details-bin': this.details({ code: status.RESOURCE_EXHAUSTED, message, reason: ANSWERS_UNREAD, metadata: { limit: String(this.limits.perIdentity) } }).toString('base64'),
    };
    // grpc-js sent the response headers with waitForTrailers before its first write.
    stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    stream.end();
    return false;
  }
}
