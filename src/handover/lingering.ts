// --after-handover linger: the old agent serves nothing, but it is still the parent of the
// processes it spawned. Reaping them as they exit makes each exit readable to the successor
// (PIDFD_INFO_EXIT, on its HUP) at once rather than when this agent exits, and leaves no zombies.
// And it is still their way back: should the successor go and no agent serve the state dir, this
// agent takes the processes back from the state dir in its own process (main runs a plain start
// with it), so that nothing it started gets parent_death_signal and no restart backoff is waited
// out. A restarted container would instead have had to take them over from whoever served by then,
// a newer agent included.
import type { PidRef } from '../kernel/pid-ref.js';
import type { Logger } from '../log.js';
import { stampNow } from '../process/lifecycle/clock.js';
import type { ExitInfo, ProcessSpec } from '../process/lifecycle/record.js';
import { EpollReaper } from '../reaper/reaper.js';
import { storeLockHolder } from '../store/store-lock.js';
import { connectServing } from './incoming.js';
import { SuccessorWatch } from './successor.js';

/** Another agent serves the state dir (or has its store open), or it could not be told: linger on. */
export class StateDirTaken extends Error {}

/** A child of this process, as the old table knew it: whose it is, and its cgroup. */
export interface LingeringChild {
  readonly ref: PidRef;
  readonly spec: ProcessSpec;
  readonly ownedCgroup: string | undefined;
}

/** An exit reaped while lingering: the agent serving again records it as it was, not as lost. */
export type ReapedExitInfo = Pick<ExitInfo, 'termination' | 'rusage' | 'exitedAt' | 'exitedStamp'>;

/** What ending the lingering hands to the agent that serves again. */
export interface Ended<Kept> {
  readonly kept: Kept;
  /**
   * The children not reaped yet (duplicates, owned): those the new table does not take back
   * (released, their rows gone) are still this process's to reap, or they would stay zombies.
   */
  readonly children: LingeringChild[];
  /** By pidfs inode. */
  readonly exits: ReadonlyMap<bigint, ReapedExitInfo>;
}

/** What a lingering agent holds; `Kept` is what the agent that serves again takes on (its probe). */
export class Lingering<Kept> {
  private reaper: EpollReaper | null = null;
  /** Duplicates of the children not reaped yet, the reaper's to close (or end's to hand on). */
  private reaping = new Map<PidRef, LingeringChild & { readonly inode: bigint }>();
  /** Bounded by the children at the handover. */
  private exits = new Map<bigint, ReapedExitInfo>();
  private successor: PidRef | null;
  private watch: SuccessorWatch | null = null;
  private ended = false;

  /**
   * children: their refs borrowed (each is watched through a duplicate). successor: the pidfd of
   * the agent that took over, owned from here, or null when none could be opened. letGo closes
   * what the old table still holds once the processes are taken back; kept goes to the agent that
   * serves then. Both are dropped at end: this object may outlive the old table (a settled
   * promise keeps it), which must not keep that table, its event ring and its rings.
   */
  constructor(
    private readonly stateDir: string,
    children: Iterable<LingeringChild>,
    successor: PidRef | null,
    private readonly log: Logger,
    private kept: Kept | undefined,
    private letGo: () => void,
  ) {
    this.successor = successor;
    // Whatever fails here (out of descriptors) leaves zombies at worst: the watch for the
    // successor, and with it the way back, must be set up all the same.
    try {
      this.reaper = new EpollReaper(
        (exits) => {
          const exitedAt = Date.now();
          const exitedStamp = stampNow();
          for (const exit of exits) {
            const child = this.reaping.get(exit.ref);
            this.reaping.delete(exit.ref);
            exit.ref.close();
            if (child !== undefined) this.exits.set(child.inode, { termination: exit.termination, rusage: exit.rusage, exitedAt, exitedStamp });
          }
        },
        (e) => log('reaper_error', { error: String(e) }),
      );
      for (const ref of children) this.reap(ref);
    } catch (e) {
      log('reaper_error', { error: String(e) });
    }
  }

  /** Ended: the agent serving again has the store, and this holds nothing any more. */
  get over(): boolean {
    return this.ended;
  }

  /** Children still reaped here. */
  get watched(): number {
    return this.reaper?.watched ?? 0;
  }

  private reap(child: LingeringChild): void {
    const dup = child.ref.dup();
    try {
      const inode = dup.inode;
      this.reaper!.watch(dup, 'child');
      this.reaping.set(dup, { ...child, ref: dup, inode });
    } catch (e) {
      dup.close();
      throw e;
    }
  }

  /**
   * Resolves once the successor has exited and no agent has served the state dir (answered on
   * handover.sock or held the store) for a while (successor_gone). The first watch follows the
   * successor; one after a start found the state dir served looks who serves it.
   */
  successorGone(): Promise<void> {
    this.watch?.close();
    const successor = this.successor;
    this.successor = null;
    return new Promise((resolve) => (this.watch = new SuccessorWatch(this.stateDir, successor, this.log, resolve)));
  }

  /**
   * Right before this agent opens the store to serve again: throws StateDirTaken when an agent
   * answers on handover.sock or holds the store (it took the state dir since the watch looked).
   */
  checkFree(): void {
    let why: string | undefined;
    try {
      const answer = connectServing(this.stateDir);
      if (typeof answer !== 'string') {
        const { pid } = answer.peer;
        answer.close(); // no request: the agent there serves on
        why = `the agent with pid ${pid} answers on handover.sock`;
      } else {
        const holder = storeLockHolder(this.stateDir);
        if (holder !== null) why = `the agent with pid ${holder.pid} has the store open`;
      }
    } catch (e) {
      why = `cannot tell who serves the state dir: ${String(e)}`;
    }
    if (why !== undefined) throw new StateDirTaken(why);
  }

  /**
   * The store is this agent's again: stop reaping here and watching, close the old table's
   * references, and hand on what was kept, the children not reaped yet (for the new table to
   * reap) and the exits reaped meanwhile (by pidfs inode).
   */
  end(): Ended<Kept> {
    if (this.ended) throw new Error('the lingering already ended');
    this.ended = true;
    this.watch?.close();
    this.watch = null;
    this.successor?.close();
    this.successor = null;
    // Closed first: a closed epoll instance unwatches every reference in it.
    this.reaper?.close();
    this.reaper = null;
    const children = [...this.reaping.values()].map(({ ref, spec, ownedCgroup }) => ({ ref, spec, ownedCgroup }));
    const ended = { kept: this.kept as Kept, children, exits: this.exits };
    this.reaping = new Map();
    this.exits = new Map();
    this.letGo();
    this.letGo = () => {};
    this.kept = undefined;
    return ended;
  }
}
