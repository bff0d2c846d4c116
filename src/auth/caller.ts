// Who is calling, decided once per call from what the transport proved (the kernel's SO_PEERCRED
// or a verified client certificate), never from anything in the request.
import type { AuthContext } from '@grpc/grpc-js/build/src/auth-context.js';
import { groupName, lookupUser, userGroups } from '../kernel/nss.js';
import { ttlCache } from './ttl-cache.js';
import { AgentError } from '../process/errors.js';

export type Transport = 'unix' | 'tls' | 'tcp';

export interface Caller {
  /**
   * What rules match and what a process's `owner` is: a certificate's URI SAN (SPIFFE ID), else
   * its first DNS SAN, else its CN; `unix:uid=U` on the unix socket; `anonymous` on plaintext
   * loopback TCP, which proves nothing about who connected.
   */
  readonly identity: string;
  /** Further names a rule may match: `unix:group=NAME` for each group of a unix caller. */
  readonly aliases: readonly string[];
  /** The transport's peer, for the audit: `unix:uid=U,gid=G,pid=P` or `ADDRESS:PORT`. */
  readonly peer: string;
  readonly transport: Transport;
  /** A unix caller's uid. */
  readonly uid?: number;
  /** A TLS caller's certificate's notAfter (ms since the epoch): a stream that outlives it ends. */
  readonly validUntil?: number;
}

/** What a gRPC server call tells about its transport. */
export interface CallTransport {
  getPeer(): string;
  getAuthContext(): AuthContext | null;
}

const UNIX_PEER = /^unix:uid=(\d+),gid=(\d+),pid=(\d+)$/;
/** What grpc-js answers for the peer of a call whose stream has lost its session. */
const GONE = 'unknown';

export const ANONYMOUS = 'anonymous';

/** How the agent's --tcp addresses are served: with TLS (a client certificate each) or plaintext on loopback. */
export interface Transports {
  readonly tcpTls: boolean;
}

const unauthenticated = (reason: string, message: string) => new AgentError('Unauthenticated', message, { reason });

/**
 * The caller, from what its connection proved. What the transport cannot tell is refused, never
 * taken for the anonymous caller: a stream reset before its call is decided has lost its
 * connection (grpc-js answers `unknown` and no certificate), and on a TLS port every caller has one.
 */
export function callerOf(call: CallTransport, transports: Transports, now: number = Date.now()): Caller {
  const peer = call.getPeer();
  const unix = UNIX_PEER.exec(peer);
  if (unix) {
    const uid = Number(unix[1]);
    return { identity: unixIdentity(uid), aliases: unixGroups(uid, Number(unix[2])), peer, transport: 'unix', uid };
  }
  // Any other peer is a TCP address (grpc-js writes IPv6 ones without brackets: `::1:50051`).
  if (peer === GONE || peer === '') throw unauthenticated('CALLER_UNKNOWN', 'the connection of this call is gone; its caller is unknown');
  const cert = call.getAuthContext()?.sslPeerCertificate;
  if (cert !== undefined) return { ...certificateCaller(cert, now), aliases: [], peer, transport: 'tls' };
  if (transports.tcpTls) throw unauthenticated('CALLER_UNKNOWN', 'no verified client certificate on this connection');
  return { identity: ANONYMOUS, aliases: [], peer, transport: 'tcp' };
}

interface PeerCertificate {
  readonly subjectaltname?: string;
  readonly subject?: { CN?: string | string[] };
  readonly valid_from?: string;
  readonly valid_to?: string;
}

/**
 * A verified certificate's identity, or UNAUTHENTICATED: outside its validity now (a connection
 * outlives the certificate it was opened with), more than one URI SAN (an X.509-SVID has exactly
 * one, and order must not pick the rule), or a DNS SAN or CN that reads as a URI (it would pass
 * for the SPIFFE ID it spells).
 */
function certificateCaller(cert: PeerCertificate, now: number): { identity: string; validUntil: number } {
  const notAfter = Date.parse(cert.valid_to ?? '');
  const notBefore = Date.parse(cert.valid_from ?? '');
  if (!(now <= notAfter)) throw unauthenticated('CERTIFICATE_EXPIRED', `the client certificate expired at ${cert.valid_to ?? '(unknown)'}`);
  if (!(now >= notBefore)) throw unauthenticated('CERTIFICATE_NOT_YET_VALID', `the client certificate is valid from ${cert.valid_from ?? '(unknown)'}`);
  const identity = certificateIdentity(cert);
  if (identity === undefined) throw unauthenticated('CERTIFICATE_IDENTITY', 'the client certificate names more than one URI SAN, or a DNS SAN or CN with a ":" in it');
  return { identity: unambiguous(identity), validUntil: notAfter };
}

/**
 * The URI SAN (exactly one), else the first DNS SAN, else the CN (Node's subjectaltname: `URI:a,
 * DNS:b`); undefined when the certificate is ambiguous: several URI SANs, or a DNS name or CN with
 * a ':' (no DNS name has one, and only a URI SAN may spell a URI).
 */
export function certificateIdentity(cert: { subjectaltname?: string; subject?: { CN?: string | string[] } }): string | undefined {
  const names = (cert.subjectaltname ?? '').split(', ').filter((n) => n !== '');
  const uris = names.filter((n) => n.startsWith('URI:'));
  if (uris.length > 1) return undefined;
  if (uris.length === 1) return uris[0]!.slice('URI:'.length);
  const dns = names.find((n) => n.startsWith('DNS:'));
  const cn = cert.subject?.CN;
  const name = dns !== undefined ? dns.slice('DNS:'.length) : Array.isArray(cn) ? (cn[0] ?? '') : (cn ?? '');
  return name.includes(':') ? undefined : name;
}

/** A certificate can say anything a CA signed: it never passes for a unix caller or the anonymous one. */
const unambiguous = (identity: string): string => (identity.startsWith('unix:') || identity === ANONYMOUS || identity === '' ? `tls:${identity}` : identity);

/**
 * One string per uid: the identity becomes the owner of every process the caller starts, kept by
 * its record and its events (a copy per call was 30,000 strings after a bench round).
 */
const unixIdentities = new Map<number, string>();
function unixIdentity(uid: number): string {
  let identity = unixIdentities.get(uid);
  if (identity === undefined) {
    if (unixIdentities.size > 4096) unixIdentities.clear();
    unixIdentities.set(uid, (identity = `unix:uid=${uid}`));
  }
  return identity;
}

const groupCache = ttlCache<string, readonly string[]>(10_000, 4096);

/**
 * `unix:group=NAME` for the caller's primary gid and the groups NSS lists for its user: the
 * groups the user would log in with, resolved now (cached briefly), not the connecting process's.
 */
function unixGroups(uid: number, gid: number): readonly string[] {
  return groupCache(`${uid}:${gid}`, () => {
    const user = lookupUser(uid);
    const gids = new Set([gid, ...(user === undefined ? [] : userGroups(user.name, user.gid))]);
    return [...gids].flatMap((g) => {
      const name = groupName(g);
      return name === undefined ? [`unix:gid=${g}`] : [`unix:group=${name}`, `unix:gid=${g}`];
    });
  });
}
