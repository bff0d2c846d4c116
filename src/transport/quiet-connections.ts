// The probe socket's few slots go to whoever needs one now. Refusing a newcomer at the cap, as
// the callers' sockets do, let eight peers that connect and then say nothing (or start HTTP/2 and
// never call) refuse every liveness probe, and the kubelet restart a healthy agent; a peer that
// reconnects whenever it is closed refills its slot before any deadline helps. Here, at the cap, a
// newcomer takes the slot of the connection that has gone longest without starting a call. A
// probe starts its call within milliseconds of connecting and is done soon after, so the grace
// (quiet at least this long) keeps a real probe's connection from being taken by the next newcomer.
import type net from 'node:net';
import type { ServerHttp2Stream } from 'node:http2';

/** Set on a tracked socket: reachable from its HTTP/2 streams through session.socket (a proxy of it). */
const ENTRY = Symbol('quiet-connections.entry');

interface Entry {
  /** When it was accepted or last started a call. */
  since: number;
  readonly peer: string;
  readonly evict: () => void;
}

export class QuietConnections {
  private readonly entries = new Set<Entry>();

  constructor(readonly graceMs: number) {}

  /** evict releases the connection's slot and closes it; it is called at most once. */
  add(socket: net.Socket, peer: string, evict: () => void): void {
    const entry: Entry = { since: performance.now(), peer, evict };
    Object.defineProperty(socket, ENTRY, { value: entry });
    this.entries.add(entry);
    socket.once('close', () => this.entries.delete(entry));
  }

  /** A call started on the stream's connection. */
  callStarted(stream: ServerHttp2Stream): void {
    let entry: Entry | undefined;
    try {
      entry = (stream.session?.socket as unknown as Record<symbol, Entry | undefined> | undefined)?.[ENTRY];
    } catch {
      // ERR_HTTP2_SOCKET_UNBOUND: the session is already gone, and its slot with it.
    }
    if (entry !== undefined) entry.since = performance.now();
  }

  /** Closes the connection quiet longest, if it has been quiet graceMs: what it was, or undefined. */
  evictQuietest(): { readonly peer: string; readonly quietMs: number } | undefined {
    let quietest: Entry | undefined;
    for (const e of this.entries) if (quietest === undefined || e.since < quietest.since) quietest = e;
    // The monotonic clock: a step of the wall clock must neither shield a connection nor expose one.
    const quietMs = quietest === undefined ? 0 : performance.now() - quietest.since;
    if (quietest === undefined || quietMs < this.graceMs) return undefined;
    this.entries.delete(quietest);
    quietest.evict();
    return { peer: quietest.peer, quietMs };
  }
}
