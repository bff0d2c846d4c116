// TLS for the TCP listeners, terminated here rather than inside grpc-js: its secure server hides
// the handshake, so it could neither be given a deadline shorter than node's 120 s nor report why
// one failed. A tls.Server that never listens does the handshakes of the connections it is handed
// (node:tls's own verification: client certificate required, chained to the client CA, valid now;
// ALPN h2); what it makes are TLSSockets that are `authorized`, which grpc-js, injected into an
// insecure HTTP/2 server, still reads the caller's certificate from.
import { constants, X509Certificate } from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';
import { pemCertificates, type TlsFileProvider } from './tls-credentials.js';

/** Why a handshake failed: node:tls's verification code for a refused certificate, else the error's code. */
export type HandshakeFailure = (peer: string, reason: string) => void;

/** `ip:port`, `[v6]:port`: what grpc-js reports as a TCP call's peer. */
export const addressOf = (s: { remoteAddress?: string; remotePort?: number; remoteFamily?: string }): string | undefined =>
  s.remoteAddress === undefined ? undefined : s.remoteFamily === 'IPv6' ? `[${s.remoteAddress}]:${s.remotePort}` : `${s.remoteAddress}:${s.remotePort}`;

/**
 * A TLSSocket whose certificate was refused has already been destroyed (its address gone) when
 * node:tls reports it; the accepted socket it wrapped, its `_parent`, read its address at accept.
 */
const peerOf = (s: tls.TLSSocket): string => addressOf(s) ?? addressOf((s as unknown as { _parent?: net.Socket })._parent ?? {}) ?? 'unknown';

/**
 * grpc-js asks a connection for its peer certificate on every call (getAuthContext), and node:tls
 * builds it anew each time (subject, issuer, SANs, three fingerprints): ~45 µs a call, more than
 * the rest of a Spawn's authorization. With renegotiation refused, the certificate verified at the
 * handshake is the connection's for its life, so it is read once. A client asking to renegotiate
 * (TLS 1.2) is disconnected: it could present another certificate.
 */
function settlePeerCertificate(socket: tls.TLSSocket): void {
  socket.disableRenegotiation();
  const read = socket.getPeerCertificate.bind(socket);
  // One object now answers every call: no consumer may change it under the others.
  const certificate = Object.freeze(read());
  socket.getPeerCertificate = ((detailed?: boolean) => (detailed === true ? read(true) : certificate)) as tls.TLSSocket['getPeerCertificate'];
}

/** Whether a CA of `cas` issued (and signed) the peer's certificate or one in the chain it sent. */
function trustedBy(socket: tls.TLSSocket, cas: readonly X509Certificate[]): boolean {
  const seen = new Set<string>();
  for (let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true); c?.raw !== undefined && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256);
    const x = new X509Certificate(c.raw);
    if (cas.some((ca) => ca.fingerprint256 === x.fingerprint256 || (x.checkIssued(ca) && x.verify(ca.publicKey)))) return true;
  }
  return false;
}

export class TlsHandshakes {
  private readonly engine: tls.Server;
  private readonly unsubscribe: () => void;
  /** Verified and handed on, until they close: a new client CA bundle is checked against them. */
  private readonly established = new Set<tls.TLSSocket>();
  private ca: Buffer;

  /**
   * onSecure gets each verified TLSSocket that negotiated h2; it owns it from then on. onRevoked:
   * a connection closed because a new client CA bundle no longer trusts its certificate.
   */
  constructor(provider: TlsFileProvider, timeoutMs: number, onSecure: (socket: tls.TLSSocket) => void, onFailed: HandshakeFailure, onRevoked: HandshakeFailure) {
    // No session tickets (and node keeps no server session cache): every connection is a full
    // handshake that verifies the client's certificate as it is now, never a resumption of one
    // verified earlier. gRPC connections live long, so this costs one handshake per connection.
    const context = (files: tls.SecureContextOptions): tls.SecureContextOptions => ({ ...files, secureOptions: constants.SSL_OP_NO_TICKET });
    this.engine = tls.createServer({ ...context(provider.options), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'], handshakeTimeout: timeoutMs });
    // Replaces the context of the next handshakes. A connection open already was verified against
    // the old client CA: one whose certificate the new bundle no longer trusts is closed, so that
    // taking a CA out of the bundle revokes its clients now, not when they reconnect.
    this.ca = provider.options.ca;
    this.unsubscribe = provider.subscribe((options) => {
      this.engine.setSecureContext(context(options));
      if (options.ca.equals(this.ca)) return;
      this.ca = options.ca;
      const cas = pemCertificates(options.ca);
      for (const socket of this.established) {
        if (trustedBy(socket, cas)) continue;
        onRevoked(peerOf(socket), 'the client CA bundle no longer trusts its certificate');
        socket.destroy();
      }
    });
    this.engine.on('secureConnection', (socket: tls.TLSSocket) => {
      // A client that offers no ALPN at all gets through node:tls; grpc-js would wait on it.
      if (socket.alpnProtocol !== 'h2') {
        onFailed(peerOf(socket), 'no ALPN h2');
        socket.destroy();
        return;
      }
      settlePeerCertificate(socket);
      this.established.add(socket);
      socket.once('close', () => this.established.delete(socket));
      onSecure(socket);
    });
    this.engine.on('tlsClientError', (e: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      // A refused certificate arrives as the hang-up that followed it; its verification code says why.
      const refused = socket.authorizationError as unknown as string | null | undefined;
      onFailed(peerOf(socket), refused ?? e.code ?? e.message);
      // node:tls leaves a timed-out handshake's socket open.
      socket.destroy();
    });
  }

  /** Takes the accepted socket: it is closed when the handshake fails or its deadline passes. */
  start(socket: net.Socket): void {
    // Read now, while the socket has its address: peerOf needs it after a refusal.
    void socket.remoteAddress;
    this.engine.emit('connection', socket);
  }

  close(): void {
    this.unsubscribe();
  }
}
