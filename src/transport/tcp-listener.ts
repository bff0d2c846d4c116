// TCP listeners, bounded for clients that never authenticate: at most maxConnections sockets at a
// time (more are closed as they are accepted, by net.Server itself, before they cost more than
// the moment's fd), each with handshakeTimeoutMs to complete a verified TLS handshake and then as
// long again to start HTTP/2; refusals are logged, at most LOG_LINES_PER_SECOND a second.
import net from 'node:net';
import { ServerCredentials, type Server } from '@grpc/grpc-js';
import { injectWhenStarted, type GrpcListener, type Injector } from './listeners.js';
import type { InboundBudget } from './inbound-budget.js';
import { setCaller, type OutboundBudget } from './outbound-budget.js';
import { watchServerStreams } from './server-streams.js';
import type { IdentityConnections } from './identity-connections.js';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { LogLimiter } from './log-limiter.js';
import type { Logger } from '../log.js';
import type { TlsFileProvider } from './tls-credentials.js';
import { addressOf, TlsHandshakes } from './tls-handshake.js';

export interface TcpOptions {
  /** TLS, client certificates required; without it plaintext (loopback only, checked by config). */
  readonly tls?: TlsFileProvider;
  readonly maxConnections: number;
  readonly handshakeTimeoutMs: number;
  /** What counts the request bytes held before calls are decided, across listeners. */
  readonly inbound?: InboundBudget;
  /** What counts the response bytes peers have not taken yet, across listeners. */
  readonly outbound?: OutboundBudget;
  /** Connections per caller (TLS: per certificate identity), across listeners. */
  readonly perIdentity?: IdentityConnections;
  /** Whose a verified certificate is, as authorization will name it (undefined: refused there too). */
  readonly certificateOwner?: (cert: PeerCertificate) => string | undefined;
}

/** ip:port (port 0 picks one). */
export async function listenTcp(server: Server, hostPort: string, log: Logger, options: TcpOptions): Promise<GrpcListener> {
  const m = /^(.*):(\d+)$/.exec(hostPort);
  if (!m) throw new Error(`not HOST:PORT: ${hostPort}`);
  const host = m[1]!.replace(/^\[(.*)\]$/, '$1');
  const listener = new TcpGrpcListener(server, log, options);
  await listener.listen(host, Number(m[2]), m[1]!);
  return listener;
}

class TcpGrpcListener implements GrpcListener {
  private readonly injector: Injector;
  private readonly tcp: net.Server;
  private readonly limiter: LogLimiter;
  private readonly handshakes: TlsHandshakes | null;
  /** Accepted, handshake under way (by peer address: how a TLSSocket finds its connection). */
  private readonly handshaking = new Map<string, net.Socket>();
  /** Past any handshake, HTTP/2 not started yet: the only owner of these sockets until injected. */
  private readonly waiting = new Set<net.Socket>();
  private host = '';

  constructor(
    server: Server,
    log: Logger,
    private readonly options: TcpOptions,
  ) {
    this.limiter = new LogLimiter(log);
    // TLS, if any, is done by the time grpc-js gets a socket.
    this.injector = server.createConnectionInjector(ServerCredentials.createInsecure());
    watchServerStreams(server, options);
    this.handshakes = options.tls === undefined ? null : new TlsHandshakes(options.tls, options.handshakeTimeoutMs, (s) => this.awaitSession(s), (peer, reason) => this.limiter.event('tls_handshake_failed', { peer, reason }), (peer, reason) => this.limiter.event('tls_connection_revoked', { peer, reason }));
    this.tcp = net.createServer((socket) => this.accepted(socket));
    this.tcp.maxConnections = options.maxConnections;
    this.tcp.on('drop', (d?: { remoteAddress?: string; remotePort?: number; remoteFamily?: string }) =>
      this.limiter.event('tcp_connection_refused', { peer: addressOf(d ?? {}) ?? 'unknown', reason: `${options.maxConnections} connections open (--max-connections)` }),
    );
  }

  async listen(host: string, port: number, shown: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen({ host, port }, () => {
        this.tcp.off('error', reject);
        resolve();
      });
    });
    this.host = shown;
  }

  get address(): string {
    return `${this.host}:${(this.tcp.address() as net.AddressInfo).port}`;
  }

  close(): void {
    this.tcp.close();
    this.handshakes?.close();
    this.limiter.close();
  }

  drain(graceMs: number): void {
    this.injector.drain(graceMs);
    // Nothing was promised to a connection that has no session yet.
    for (const s of [...this.handshaking.values(), ...this.waiting]) s.destroy();
  }

  private accepted(socket: net.Socket): void {
    if (this.handshakes === null) return this.awaitSession(socket);
    const peer = addressOf(socket);
    if (peer === undefined) return void socket.destroy(); // reset before we saw it
    this.handshaking.set(peer, socket);
    socket.once('close', () => this.handshaking.get(peer) === socket && this.handshaking.delete(peer));
    this.handshakes.start(socket);
  }

  /** socket: TCP (plaintext) or a verified TLSSocket; injected once it has started HTTP/2. */
  private awaitSession(socket: net.Socket): void {
    const peer = addressOf(socket) ?? 'unknown';
    this.handshaking.delete(peer);
    // Plaintext (loopback only) says nothing of whose a connection is: its callers share one answer budget.
    setCaller(socket, 'tcp:plaintext');
    if (this.handshakes !== null) {
      // Verified by now: the certificate says whose the connection is.
      const cert = (socket as TLSSocket).getPeerCertificate();
      const who = this.options.certificateOwner?.(cert) ?? `fingerprint:${cert.fingerprint256}`;
      setCaller(socket, `tls:${who}`);
      if (!this.holdsSlot(socket, peer, who)) return void socket.destroy();
    }
    injectWhenStarted(socket, peer, { injector: this.injector, waiting: this.waiting, limiter: this.limiter, timeoutMs: this.options.handshakeTimeoutMs, idleEvent: 'tcp_connection_idle' });
  }

  /** Whether `who` may have one more connection (--max-connections-per-identity); logs when not. */
  private holdsSlot(socket: net.Socket, peer: string, who: string): boolean {
    if (this.options.perIdentity === undefined) return true;
    const release = this.options.perIdentity.take(`tls:${who}`);
    if (release === undefined) {
      this.limiter.event('tcp_connection_refused', { peer, identity: who, reason: `${who} holds ${this.options.perIdentity.perIdentity} connections (--max-connections-per-identity)` });
      return false;
    }
    socket.once('close', release);
    return true;
  }
}
