// Who is calling, decided once per call from what the transport proved (the kernel's SO_PEERCRED
// or a verified client certificate), never from anything in the request.
import type { AuthContext } from '@grpc/grpc-js/build/src/auth-context.js';
import { groupName, lookupUser, userGroups } from '../kernel/nss.js';
import { ttlCache } from './ttl-cache.js';

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
}

/** What a gRPC server call tells about its transport. */
export interface CallTransport {
  getPeer(): string;
  getAuthContext(): AuthContext | null;
}

const UNIX_PEER = /^unix:uid=(\d+),gid=(\d+),pid=(\d+)$/;

export const ANONYMOUS = 'anonymous';

export function callerOf(call: CallTransport): Caller {
  const peer = call.getPeer();
  const unix = UNIX_PEER.exec(peer);
  if (unix) {
    const uid = Number(unix[1]);
    return { identity: unixIdentity(uid), aliases: unixGroups(uid, Number(unix[2])), peer, transport: 'unix', uid };
  }
  const cert = call.getAuthContext()?.sslPeerCertificate;
  if (cert !== undefined) return { identity: unambiguous(certificateIdentity(cert)), aliases: [], peer, transport: 'tls' };
  return { identity: ANONYMOUS, aliases: [], peer, transport: 'tcp' };
}

/** The URI SAN, else the first DNS SAN, else the CN (Node's subjectaltname: `URI:a, DNS:b`). */
export function certificateIdentity(cert: { subjectaltname?: string; subject?: { CN?: string | string[] } }): string {
  const names = (cert.subjectaltname ?? '').split(', ').filter((n) => n !== '');
  const uri = names.find((n) => n.startsWith('URI:'));
  if (uri !== undefined) return uri.slice('URI:'.length);
  const dns = names.find((n) => n.startsWith('DNS:'));
  if (dns !== undefined) return dns.slice('DNS:'.length);
  const cn = cert.subject?.CN;
  return Array.isArray(cn) ? (cn[0] ?? '') : (cn ?? '');
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
