// The running agent's side of a handover: it listens on STATE_DIR/handover.sock, and when its
// successor asks, stops taking requests, quiesces, sends its snapshot, and once the successor has
// it, stops serving and releases the store. Until then a failure resumes service as before.
import { chmodSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { FdListener, type FdSocket } from '../kernel/fd-passing.js';
import { watchReadable, type PollHandle } from '../kernel/libc.js';
import type { PidRef } from '../kernel/pid-ref.js';
import type { Logger } from '../log.js';
import { HANDOVER_PROTOCOL, type Encoded } from './snapshot.js';
import { STORE_SCHEMA } from '../store/sqlite-store.js';
import { RefusalLog, REFUSALS_QUIET_MS } from './refusal-log.js';
import { receiveTagged, sendSnapshot, sendTagged, Tag } from './wire.js';

export const HANDOVER_SOCKET = 'handover.sock';

/** The successor sends its request right after connecting. */
const REQUEST_TIMEOUT_MS = 1000;
/** Per message while sending; and for the successor to confirm it has everything. */
const SEND_TIMEOUT_MS = 10_000;
const CONFIRM_TIMEOUT_MS = 30_000;

/** What the agent does at each step; implemented by the composition root. */
export interface HandoverHost {
  /** Why this agent cannot hand over at all, if it cannot. */
  refusal(): string | undefined;
  /**
   * Stops taking requests and quiesces the table (nothing changes until resume or commit);
   * rejects if that takes too long (resume follows).
   */
  prepare(): Promise<void>;
  encode(): Encoded;
  /** The handover failed before the successor had everything: serve again as before. */
  resume(): void;
  /**
   * The successor has everything: end calls, stop serving, close the store. `successor` is its
   * process (a pidfd, the host's to close), null when none could be opened.
   */
  commit(successor: PidRef | null): Promise<void>;
}

export class HandoverListener {
  private readonly listener: FdListener;
  private readonly poll: PollHandle;
  private busy = false;
  private closed = false;
  private inFlight: Promise<void> | null = null;
  /** Connections whose request is still being read (REQUEST_TIMEOUT_MS at most). */
  private readonly reading = new Set<Promise<void>>();
  private readonly refusals: RefusalLog;

  /**
   * The path must be free: the caller holds the store lock, so a leftover socket is stale.
   * refusalsQuietMs: how long refusals of one kind are counted before the count is logged (tests).
   */
  constructor(
    stateDir: string,
    private readonly host: HandoverHost,
    private readonly log: Logger,
    private readonly onHandedOver: () => void,
    refusalsQuietMs = REFUSALS_QUIET_MS,
  ) {
    this.refusals = new RefusalLog(log, refusalsQuietMs);
    const path = join(stateDir, HANDOVER_SOCKET);
    try {
      unlinkSync(path);
    } catch {
      // not there: nothing to remove
    }
    this.listener = new FdListener(path);
    // Only the agent's own uid is served, but nobody else needs to reach it either.
    try {
      chmodSync(path, 0o600);
    } catch (e) {
      this.listener.close();
      throw e;
    }
    this.poll = watchReadable(this.listener.fd, () => this.onConnection());
    this.poll.unref();
  }

  /**
   * The handover under way, if one is: it settles once the handover has committed (the
   * successor serves) or failed (this agent serves again), within the timeouts above.
   */
  get pending(): Promise<void> | null {
    if (this.reading.size === 0) return this.inFlight;
    // A request still being read may be a successor's: its handover is waited for as well.
    return Promise.all(this.reading).then(() => this.inFlight ?? undefined);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll.close();
    this.listener.close();
    this.refusals.close();
  }

  private onConnection(): void {
    let socket: FdSocket | null;
    try {
      socket = this.listener.accept();
    } catch (e) {
      this.log('handover_error', { error: String(e) }); // EMFILE and the like: the peer retries or gives up
      return;
    }
    if (socket === null) return;
    if (this.closed || socket.peerUid !== process.geteuid!()) {
      this.refuse(socket, 'not allowed');
      return;
    }
    const reading = this.answer(socket).catch((e: unknown) => this.log('handover_error', { error: e instanceof Error ? (e.stack ?? e.message) : String(e) }));
    this.reading.add(reading);
    void reading.finally(() => this.reading.delete(reading));
  }

  /**
   * Busy only once a request has been read: a connection that sends none (a lingering agent, or a
   * start without --takeover, asking who serves) never refuses a successor connecting meanwhile.
   */
  private async answer(socket: FdSocket): Promise<void> {
    const why = await this.readRequest(socket).catch((e: unknown) => String(e));
    if (why !== undefined || this.busy) {
      this.refuse(socket, why ?? 'a handover is already in progress');
      return;
    }
    this.busy = true;
    this.inFlight = this.handOver(socket).then(
      () => undefined,
      (e: unknown) => this.log('handover_error', { error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
    ).finally(() => (this.inFlight = null));
  }

  private async handOver(socket: FdSocket): Promise<void> {
    const started = performance.now();
    this.log('handover_started', {});
    let sent: { fds: number; bytes: number };
    let snapshotOut = false;
    try {
      await this.host.prepare();
      const { data, fds } = this.host.encode();
      sendSnapshot(socket, data, fds, SEND_TIMEOUT_MS);
      snapshotOut = true;
      // The loop keeps answering (UNAVAILABLE) meanwhile.
      await socket.readable(CONFIRM_TIMEOUT_MS);
      receiveTagged(socket, [Tag.received], 0);
      sent = { fds: fds.length, bytes: data.reduce((sum, piece) => sum + piece.length, 0) };
    } catch (e) {
      this.log('handover_failed', { error: String(e), note: 'serving again' });
      // Said, not only closed: a successor that confirms late must not read the close as the
      // store's release. This agent serves on from the snapshot, and once it stops (a SIGTERM that
      // waited for this outcome) the store is free while the snapshot no longer says what it holds.
      if (snapshotOut) {
        try {
          sendTagged(socket, Tag.abandoned, undefined, 100);
        } catch {
          // gone: then it has nothing to take over with
        }
      }
      socket.close();
      this.host.resume();
      this.busy = false;
      return;
    }
    // The successor has everything: whatever fails from here, this agent must let go.
    let successor: PidRef | null = null;
    try {
      // While the connection is open, before R lets the successor close it: that proves the pid.
      successor = socket.peerProcess();
    } catch (e) {
      this.log('handover_error', { error: String(e), note: 'the successor cannot be watched' });
    }
    try {
      await this.host.commit(successor);
    } catch (e) {
      this.log('handover_error', { error: e instanceof Error ? (e.stack ?? e.message) : String(e), note: 'handed over anyway' });
    } finally {
      this.close();
      try {
        sendTagged(socket, Tag.released);
      } catch {
        // the successor goes on when it sees the connection close, too
      }
      socket.close();
      this.log('handed_over', { ...sent, ms: Math.round(performance.now() - started) });
      this.onHandedOver();
    }
  }

  /** undefined for a request to serve, else why not. */
  private async readRequest(socket: FdSocket): Promise<string | undefined> {
    if (!(await socket.readable(REQUEST_TIMEOUT_MS))) return 'no request';
    const { body } = receiveTagged(socket, [Tag.request], 0);
    const request = (body ?? {}) as { protocol?: unknown; storeSchema?: unknown };
    if (request.protocol !== HANDOVER_PROTOCOL) return `protocol ${String(request.protocol)} is not ${HANDOVER_PROTOCOL}`;
    // An older agent (a rollback) could not open the store this one wrote: it must not take over.
    if (typeof request.storeSchema !== 'number' || request.storeSchema < STORE_SCHEMA) {
      return `the successor knows store schema ${String(request.storeSchema)}, this store has ${STORE_SCHEMA}`;
    }
    return this.host.refusal();
  }

  private refuse(socket: FdSocket, why: string): void {
    try {
      sendTagged(socket, Tag.refused, why, 100);
    } catch {
      // it may be gone already
    }
    socket.close();
    this.refusals.refused(why);
  }
}
