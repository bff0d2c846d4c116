// Each owner's share of the event ring, so that a full ring gives up an event of the owner holding
// the most (as retention takes exits, table.ts): one tenant's flood turns over its own history,
// not another's. And, per owner, the newest of its events the ring gave up: a watcher that sees
// only that owner's events can resume from any cursor at or above it.

/**
 * Where every sequence up to a mark was given up (or never held): what a handover passes on so
 * that its successor decides expired cursors as this agent would.
 */
export interface EvictionMarks {
  /** Sequences up to here are not held for anyone (an earlier agent's, or cut at a seed). */
  readonly floor: number;
  /** [owner, newest sequence of its events given up]. */
  readonly owners: readonly (readonly [string, number])[];
  /** For every owner not listed: at least as new as any of its events given up. */
  readonly others: number;
}

export interface Share {
  readonly owner: string;
  /** Events of this owner held. */
  count: number;
  /** Ring slots of its oldest and newest held events (-1: none); each slot links to the owner's next. */
  oldest: number;
  newest: number;
  /** The newest sequence of this owner's events given up; 0 for none. */
  evictedUpTo: number;
  /** Neighbours among the shares holding as many events, in the order they got there. */
  prev: Share | null;
  next: Share | null;
  /** False once forgotten: a subject that kept it looks its owner up again. */
  tracked: boolean;
  /** Whose share it is (a record's events could go to another log: a test's, a bench's). */
  readonly home: OwnerShares;
}

export class OwnerShares {
  private readonly shares = new Map<string, Share>();
  /**
   * Shares by how many events they hold, each count's a list in the order they got there: counts
   * move by one, so the fullest is found at once (no Set: this runs on every append).
   */
  private readonly first: (Share | null)[] = [null];
  /** By ring slot: the slot of the same owner's next event (its FIFO, threaded through the ring). */
  private readonly nextOfOwner: Int32Array;
  /** The share that just gave up its own oldest event for the one it is adding: its count stays. */
  private swapping: Share | null = null;
  private readonly last: (Share | null)[] = [null];
  private most = 0;
  /** Above every sequence given up, whoever's. */
  private allUpTo = 0;
  /** For owners no longer tracked (nothing held): above every sequence of theirs given up. */
  private othersUpTo = 0;

  /**
   * For a ring of `slots` slots; `maxOwners` owners with nothing held are remembered at most (past
   * that only `others` is).
   */
  constructor(
    slots: number,
    private readonly maxOwners: number,
  ) {
    this.nextOfOwner = new Int32Array(slots);
  }

  /** The share of `owner`, tracked from now on if it was not. */
  of(owner: string): Share {
    let share = this.shares.get(owner);
    if (share === undefined) {
      if (this.shares.size >= this.maxOwners) this.forgetEmpty();
      share = { owner, count: 0, oldest: -1, newest: -1, evictedUpTo: this.othersUpTo, prev: null, next: null, tracked: true, home: this };
      this.shares.set(owner, share);
    }
    return share;
  }

  add(share: Share, slot: number): void {
    this.thread(share, slot);
    if (this.swapping === share) this.swapping = null;
    else this.move(share, share.count + 1);
  }

  /**
   * Takes the oldest event of the owner holding the most: its slot. Of owners holding as many,
   * `appending` (whose event takes the place: a flooding owner's steady state, which then moves
   * no count at all), else the one that got there first.
   */
  takeFromFullest(appending: Share, sequences: Float64Array): number {
    const self = appending.tracked && appending.count === this.most;
    const share = self ? appending : this.first[this.most]!;
    const slot = share.oldest;
    share.oldest = slot === share.newest ? (share.newest = -1) : this.nextOfOwner[slot]!;
    const sequence = sequences[slot]!;
    share.evictedUpTo = sequence;
    if (sequence > this.allUpTo) this.allUpTo = sequence;
    if (self) this.swapping = share;
    else this.move(share, share.count - 1);
    return slot;
  }

  /** The newest sequence given up of the events visible to a watcher of `owner` (of anyone's when undefined). */
  evictedUpTo(owner: string | undefined): number {
    if (owner === undefined) return this.allUpTo;
    return this.shares.get(owner)?.evictedUpTo ?? this.othersUpTo;
  }

  /** The ring moves its events: every owner's list starts again, re-threaded (`thread`) oldest first. */
  unthread(): void {
    for (const share of this.shares.values()) share.oldest = share.newest = -1;
  }

  /** The event in `slot` is the share's newest. */
  thread(share: Share, slot: number): void {
    if (share.newest < 0) share.oldest = slot;
    else this.nextOfOwner[share.newest] = slot;
    share.newest = slot;
  }

  marks(floor: number): EvictionMarks {
    const owners: [string, number][] = [];
    for (const s of this.shares.values()) if (s.evictedUpTo > this.othersUpTo) owners.push([s.owner, s.evictedUpTo]);
    return { floor, owners, others: this.othersUpTo };
  }

  /** Taking over: the predecessor's marks, before the first event is added. */
  restore(marks: EvictionMarks): void {
    this.othersUpTo = this.allUpTo = marks.others;
    for (const [owner, upTo] of marks.owners) {
      this.of(owner).evictedUpTo = upTo;
      if (upTo > this.allUpTo) this.allUpTo = upTo;
    }
  }

  private move(share: Share, count: number): void {
    if (share.count > 0) this.unlink(share);
    share.count = count;
    if (count > 0) this.link(share);
    if (count > this.most) this.most = count;
    while (this.most > 0 && this.first[this.most] === null) this.most--;
  }

  private link(share: Share): void {
    const c = share.count;
    if (c === this.first.length) {
      this.first.push(null);
      this.last.push(null);
    }
    const tail = this.last[c]!;
    share.prev = tail;
    share.next = null;
    if (tail === null) this.first[c] = share;
    else tail.next = share;
    this.last[c] = share;
  }

  private unlink(share: Share): void {
    const c = share.count;
    if (share.prev === null) this.first[c] = share.next;
    else share.prev.next = share.next;
    if (share.next === null) this.last[c] = share.prev;
    else share.next.prev = share.prev;
    share.prev = share.next = null;
  }

  /** Owners holding nothing are folded into `others` (which can only make a cursor expire sooner). */
  private forgetEmpty(): void {
    for (const [owner, share] of this.shares) {
      if (share.count > 0) continue;
      if (share.evictedUpTo > this.othersUpTo) this.othersUpTo = share.evictedUpTo;
      share.tracked = false;
      this.shares.delete(owner);
    }
  }
}
