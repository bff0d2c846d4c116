// --after-handover linger keeps the old agent alive, serving nothing, until SIGTERM. Should its
// successor go away (a rollback deletes the new pod after it confirmed; it stops in order; it
// crashes) nobody would manage the processes, and the old agent, alive to its liveness probe,
// would never be replaced. So it watches the successor, by the pidfd opened while the handover
// connection proved who that was, and once it has exited and nobody serves the state dir, the
// lingering agent is told so: it then takes every process back from the state dir, in its own
// process (lingering.ts, main).
//
// "Nobody serves" is nobody answering on handover.sock and nobody holding the store's lock: an
// agent starting on the state dir (the successor's restarted container, say) has the store open
// long before it listens, and the processes are its to take back then, not this agent's.
import { ExitWatch } from '../kernel/exit-watch.js';
import type { PidRef } from '../kernel/pid-ref.js';
import type { Logger } from '../log.js';
import { storeLockHolder } from '../store/store-lock.js';
import { connectServing } from './incoming.js';

/**
 * How long nobody may answer on handover.sock, after the successor exited, before it counts as
 * gone. A successor that handed over in turn (with --after-handover exit) exits as soon as its own
 * successor has the snapshot, and that one listens only once it has opened the store and restored
 * the table (207 ms for 10,000 processes, README "Upgrades: handover").
 */
const ABSENT_MS = 5000;
/** How often to look again while nobody answers (or an agent holding the store has yet to). */
const RECHECK_MS = 250;
/** How often to look while an agent answers whose process cannot be watched (another PID namespace). */
const POLL_MS = 5000;

export class SuccessorWatch {
  private exit: ExitWatch | null = null;
  private timer: NodeJS.Timeout | null = null;
  private absentSince: number | undefined;
  /** The pid of the agent last seen holding the store without answering (logged once per holder). */
  private starting: number | undefined;
  private closed = false;

  /**
   * successor: the pidfd of the agent that took over (the watch owns it from here), or null when
   * none could be opened or it is not known; then handover.sock is asked instead. onGone runs at
   * most once. Begun once the handover connection has closed: the time nobody answers counts from
   * when the successor may open the store, not from before it was told so.
   */
  constructor(
    private readonly stateDir: string,
    successor: PidRef | null,
    private readonly log: Logger,
    private readonly onGone: () => void,
  ) {
    if (successor === null) this.look();
    else this.follow(successor);
  }

  close(): void {
    this.closed = true;
    this.exit?.close();
    this.exit = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private follow(ref: PidRef): void {
    try {
      this.exit = new ExitWatch(ref, () => {
        const pid = this.exit?.pid;
        this.exit = null;
        this.log('successor_exited', { pid, note: 'looking for an agent serving the state dir' });
        this.look();
      });
    } catch (e) {
      // No poll handle (libuv refused the descriptor): ExitWatch has closed what it took; close
      // the reference if it never got that far, and look again later rather than not at all.
      ref.close();
      this.log('housekeeping_failed', { task: 'successor', error: String(e) });
      this.later(POLL_MS);
    }
  }

  /**
   * Who serves the state dir now. Its successor in turn, if the successor handed over: then that
   * one is watched, since this agent is still the parent of the processes it started and, should
   * every later agent be gone, the one to bring them back. Nobody for ABSENT_MS: gone.
   */
  private look(): void {
    this.timer = null;
    if (this.closed) return;
    let answer;
    try {
      answer = connectServing(this.stateDir);
    } catch (e) {
      // Out of descriptors, a full backlog: no answer either way.
      this.log('housekeeping_failed', { task: 'successor', error: String(e) });
      this.later(POLL_MS);
      return;
    }
    if (typeof answer === 'string') {
      const store = this.store();
      if (store !== 'free') {
        // Not knowing (out of descriptors, say) is not "gone" either: lingering on is the lesser harm.
        this.absentSince = undefined;
        this.later(store === 'held' ? RECHECK_MS : POLL_MS);
        return;
      }
      const now = performance.now();
      this.absentSince ??= now;
      if (now - this.absentSince < ABSENT_MS) {
        this.later(RECHECK_MS);
        return;
      }
      this.closed = true;
      this.log('successor_gone', {
        stateDir: this.stateDir,
        why: answer,
        note: 'no agent serves the state dir any more: this agent takes the processes back from it in its own process (a plain start there, which takes nothing over from a serving agent)',
      });
      this.onGone();
      return;
    }
    this.absentSince = undefined;
    this.starting = undefined;
    let next: PidRef | null;
    try {
      // Without a request: the agent there refuses the empty connection and serves on.
      next = answer.peerProcess();
    } catch (e) {
      this.log('housekeeping_failed', { task: 'successor', error: String(e) });
      next = null;
    } finally {
      answer.close();
    }
    if (next === null) {
      this.later(POLL_MS);
      return;
    }
    this.log('successor_watched', { pid: next.pid, note: 'an agent serves the state dir: lingering on while it does' });
    this.follow(next);
  }

  /**
   * Whether an agent has the store open ('held': it is starting, or stopping, and serves the state
   * dir as far as this watch is concerned), nobody has ('free'), or it could not be told.
   */
  private store(): 'held' | 'free' | 'unknown' {
    let holder;
    try {
      holder = storeLockHolder(this.stateDir);
    } catch (e) {
      this.log('housekeeping_failed', { task: 'successor', error: String(e) });
      return 'unknown';
    }
    if (holder === null) {
      this.starting = undefined;
      return 'free';
    }
    if (this.starting !== holder.pid) {
      this.starting = holder.pid;
      this.log('successor_starting', { pid: holder.pid, note: 'an agent has the store open but does not answer yet: lingering on' });
    }
    return 'held';
  }

  private later(ms: number): void {
    this.timer = setTimeout(() => this.look(), ms);
    this.timer.unref();
  }
}
