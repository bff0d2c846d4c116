// The agent accepts its gRPC connections itself and hands them to grpc-js through its connection
// injector. On the unix socket that gives each connection's peer credentials (SO_PEERCRED, taken
// by the kernel at connect) as the calls' peer, `unix:uid=U,gid=G,pid=P`: the process owner. And it
// gives shutdown a handle on every session: grpc-js 1.14's forceShutdown destroys sessions only
// when channelz is on, which costs on every call, so an open stream (a health Watch, say) would
// otherwise hold a stopping agent, or a handover, forever.
import net from 'node:net';
import { ServerCredentials, type Server } from '@grpc/grpc-js';
import { KernelError } from '../kernel/errors.js';
import { closeFd } from '../kernel/fd.js';
import { UnixListener, type PeerCred } from '../kernel/fd-passing.js';
import { watchReadable, type PollHandle } from '../kernel/libc.js';
import type { Logger } from '../log.js';
import { awaitPreface } from './http2-preface.js';
import type { InboundBudget } from './inbound-budget.js';
import { setCaller, type OutboundBudget } from './outbound-budget.js';
import { watchServerStreams } from './server-streams.js';
import type { IdentityConnections } from './identity-connections.js';
import { LogLimiter } from './log-limiter.js';
import { QuietConnections } from './quiet-connections.js';
import { SOCKET_MODE } from './unix-socket.js';

export const peerOf = (p: PeerCred): string => `unix:uid=${p.uid},gid=${p.gid},pid=${p.pid}`;

/** After a failed accept (EMFILE...) the listener rests this long instead of spinning. */
const ACCEPT_BACKOFF_MS = 100;

export interface GrpcListener {
  /** As clients address it (with the real port when 0 was asked for). */
  readonly address: string;
  /** Stops accepting (a unix socket's path is removed). */
  close(): void;
  /** Ends its connections: GOAWAY now, destroyed after graceMs. */
  drain(graceMs: number): void;
}

export type Injector = ReturnType<Server['createConnectionInjector']>;

/** What bounds a listener's connections: how many at once, and how long one has to start HTTP/2. */
export interface ConnectionBounds {
  readonly maxConnections: number;
  /** What sets maxConnections, for the refusal's log line (default --max-connections). */
  readonly maxConnectionsFrom?: string;
  readonly handshakeTimeoutMs: number;
  /** What counts the request bytes held before calls are decided, across listeners. */
  readonly inbound?: InboundBudget;
  /** What counts the response bytes peers have not taken yet, across listeners. */
  readonly outbound?: OutboundBudget;
  /** Connections per caller, across listeners. */
  readonly perIdentity?: IdentityConnections;
  /**
   * At the cap, a newcomer takes the slot of the connection longest without starting a call, if it
   * has been so this long (see quiet-connections.ts); undefined: the newcomer is refused.
   */
  readonly evictQuietAfterMs?: number;
}

/**
 * Hands a socket to grpc-js once it has started HTTP/2 within timeoutMs; else closes it, logging
 * `idleEvent`. Until then `waiting` is the socket's only owner (a drain closes what it holds).
 */
export function injectWhenStarted(socket: net.Socket, peer: string, o: { readonly injector: Injector; readonly waiting: Set<net.Socket>; readonly limiter: LogLimiter; readonly timeoutMs: number; readonly idleEvent: string }): void {
  // Errors before the session exists (a reset) would be unhandled; after, node:http2 reports them.
  socket.on('error', () => {});
  o.waiting.add(socket);
  awaitPreface(socket, o.timeoutMs, (outcome) => {
    o.waiting.delete(socket);
    if (outcome === 'started') return inject(o.injector, socket, (e, f) => o.limiter.event(e, f));
    if (outcome === 'timeout') o.limiter.event(o.idleEvent, { peer, reason: `no HTTP/2 within ${o.timeoutMs} ms` });
    socket.destroy();
  });
}

export function inject(injector: Injector, socket: net.Socket, log: Logger): void {
  try {
    injector.injectConnection(socket);
  } catch (e) {
    socket.destroy();
    log('accept_error', { error: String(e) });
  }
}

/**
 * Anyone in the socket's group can connect, so the unix socket is bounded as TCP is: at most
 * maxConnections at a time (more are closed as they are accepted) and handshakeTimeoutMs to start
 * HTTP/2; otherwise connections that never speak would hold every fd the agent has.
 */
class UnixGrpcListener implements GrpcListener {
  private readonly listener: UnixListener;
  private readonly poll: PollHandle;
  private readonly injector: Injector;
  private readonly limiter: LogLimiter;
  /** Accepted, HTTP/2 not started yet: the only owner of these sockets until injected. */
  private readonly waiting = new Set<net.Socket>();
  private readonly quiet: QuietConnections | undefined;
  private open = 0;
  private closed = false;

  constructor(
    server: Server,
    private readonly path: string,
    gid: number,
    private readonly bounds: ConnectionBounds,
    log: Logger,
  ) {
    this.limiter = new LogLimiter(log);
    this.listener = new UnixListener(path, 'stream', 511, { mode: SOCKET_MODE, gid });
    this.injector = server.createConnectionInjector(ServerCredentials.createInsecure());
    this.quiet = bounds.evictQuietAfterMs === undefined ? undefined : new QuietConnections(bounds.evictQuietAfterMs);
    const quiet = this.quiet;
    watchServerStreams(server, bounds, quiet === undefined ? undefined : (stream) => quiet.callStarted(stream));
    this.poll = watchReadable(this.listener.fd, () => this.acceptAll());
  }

  get address(): string {
    return `unix://${this.path}`;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll.close();
    this.listener.close();
    this.limiter.close();
  }

  drain(graceMs: number): void {
    this.injector.drain(graceMs);
    for (const s of this.waiting) s.destroy();
  }

  private acceptAll(): void {
    for (;;) {
      let accepted;
      try {
        accepted = this.listener.accept();
      } catch (e) {
        this.limiter.event('accept_error', { path: this.path, error: String(e) });
        this.poll.stop();
        setTimeout(() => this.closed || this.poll.start({ readable: true, writable: false, disconnect: false }, () => this.acceptAll()), ACCEPT_BACKOFF_MS).unref();
        return;
      }
      if (accepted === null) return;
      if (this.open >= this.bounds.maxConnections && !this.evictQuiet(peerOf(accepted.peer))) {
        closeFd(accepted.fd);
        this.limiter.event('unix_connection_refused', { peer: peerOf(accepted.peer), reason: `${this.bounds.maxConnections} connections open (${this.bounds.maxConnectionsFrom ?? '--max-connections'})` });
        continue;
      }
      const release = this.bounds.perIdentity === undefined ? () => {} : this.bounds.perIdentity.take(`unix:uid=${accepted.peer.uid}`);
      if (release === undefined) {
        closeFd(accepted.fd);
        this.limiter.event('unix_connection_refused', { peer: peerOf(accepted.peer), reason: `uid ${accepted.peer.uid} holds ${this.bounds.perIdentity!.perIdentity} connections (--max-connections-per-identity)` });
        continue;
      }
      let socket: net.Socket;
      try {
        socket = new net.Socket({ fd: accepted.fd, readable: true, writable: true });
      } catch (e) {
        closeFd(accepted.fd);
        release();
        this.limiter.event('accept_error', { path: this.path, error: String(e) });
        continue;
      }
      // Once: at its close, or earlier when its slot is given to a newcomer.
      let counted = true;
      const uncount = () => {
        if (!counted) return;
        counted = false;
        this.open--;
        release();
      };
      this.open++;
      socket.once('close', uncount);
      const peer = peerOf(accepted.peer);
      this.quiet?.add(socket, peer, () => {
        uncount();
        socket.destroy();
      });
      // grpc-js reports a call's peer from its session socket's remoteAddress.
      Object.defineProperty(socket, 'remoteAddress', { value: peer });
      setCaller(socket, `unix:uid=${accepted.peer.uid}`);
      injectWhenStarted(socket, peer, { injector: this.injector, waiting: this.waiting, limiter: this.limiter, timeoutMs: this.bounds.handshakeTimeoutMs, idleEvent: 'unix_connection_idle' });
    }
  }

  /** Whether a quiet connection gave its slot up for one from `to`. */
  private evictQuiet(to: string): boolean {
    const evicted = this.quiet?.evictQuietest();
    if (evicted === undefined) return false;
    this.limiter.event('unix_connection_evicted', { peer: evicted.peer, reason: `no call for ${Math.round(evicted.quietMs)} ms, and ${to} needs its slot (${this.bounds.maxConnectionsFrom ?? '--max-connections'})` });
    return true;
  }
}

/** path must be free (see prepareSocket); the socket is 0660, of group gid, before it listens. */
export function listenUnix(server: Server, path: string, gid: number, bounds: ConnectionBounds, log: Logger): GrpcListener {
  try {
    return new UnixGrpcListener(server, path, gid, bounds, log);
  } catch (e) {
    // A startup error is one line: `bind: EADDRINUSE` alone would not say which socket.
    throw e instanceof KernelError ? new Error(`${path}: ${e.message}`, { cause: e }) : e;
  }
}
