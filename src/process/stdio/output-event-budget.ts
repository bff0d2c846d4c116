// How many output events one owner's processes may add to the event log. A tenant whose many
// chatty processes each published every 25 ms (3,200 events a second from 45 of them) turned the
// whole ring over in 20 s. The ring now gives up the events of the owner holding the most, so
// other owners keep their history; the budget still keeps such an owner from turning its own
// share over in seconds (its own watchers' cursors: CURSOR_EXPIRED) and from costing every
// watcher the work of thousands of events a second. Past the budget a stream's output gathers in
// its ring for longer and is published as fewer, larger events; streams waiting for their
// owner's budget queue for it behind one timer per owner, in the order they asked.
import type { OutputSlice } from './captured-output.js';

/** Output events per second per owner, and as many at once. */
export const OUTPUT_EVENTS_PER_SECOND = 200;
/** Owners tracked before the idle ones (nothing queued) are forgotten: they are a full budget again. */
const MAX_OWNERS = 65_536;

/** Where a stream's output events go, and its owner's share of the event log. */
export interface OutputPublisher {
  publish(slice: OutputSlice): void;
  /**
   * True with one event's budget taken: publish now. False: `admitted` is queued and called once
   * the owner's budget has an event for it (taken for it).
   */
  admit(admitted: () => void): boolean;
  /** Takes `admitted` out of the queue (the stream was flushed or dropped meanwhile). */
  withdraw(admitted: () => void): void;
  /** Charges events published beyond the one admitted (a flush of several, an exit's last). */
  spend(events: number): void;
}

interface Owner {
  tokens: number;
  at: number;
  readonly queue: Set<() => void>;
  timer: NodeJS.Timeout | null;
}

export class OutputEventBudget {
  private readonly owners = new Map<string, Owner>();

  constructor(
    private readonly perSecond = OUTPUT_EVENTS_PER_SECOND,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  publisher(owner: string, publish: (slice: OutputSlice) => void): OutputPublisher {
    return {
      publish,
      admit: (admitted) => this.admit(owner, admitted),
      withdraw: (admitted) => this.withdraw(owner, admitted),
      spend: (events) => this.spend(owner, events),
    };
  }

  private admit(name: string, admitted: () => void): boolean {
    const owner = this.refilled(name);
    if (owner.queue.size === 0 && owner.tokens >= 1) {
      owner.tokens -= 1;
      return true;
    }
    owner.queue.add(admitted);
    this.schedule(name, owner);
    return false;
  }

  private withdraw(name: string, admitted: () => void): void {
    this.owners.get(name)?.queue.delete(admitted);
  }

  private spend(name: string, events: number): void {
    if (events > 0) this.refilled(name).tokens -= events;
  }

  private refilled(name: string): Owner {
    const now = this.now();
    let owner = this.owners.get(name);
    if (owner === undefined) {
      if (this.owners.size >= MAX_OWNERS) for (const [n, o] of this.owners) if (o.queue.size === 0 && o.timer === null) this.owners.delete(n);
      this.owners.set(name, (owner = { tokens: this.perSecond, at: now, queue: new Set(), timer: null }));
    }
    owner.tokens = Math.min(this.perSecond, owner.tokens + ((now - owner.at) * this.perSecond) / 1000);
    owner.at = now;
    return owner;
  }

  private schedule(name: string, owner: Owner): void {
    if (owner.timer !== null) return;
    const wait = Math.max(1, Math.ceil(((1 - owner.tokens) * 1000) / this.perSecond));
    owner.timer = setTimeout(() => this.serve(name, owner), wait).unref();
  }

  private serve(name: string, owner: Owner): void {
    owner.timer = null;
    this.refilled(name);
    for (const admitted of owner.queue) {
      if (owner.tokens < 1) break;
      owner.tokens -= 1;
      owner.queue.delete(admitted);
      admitted();
    }
    if (owner.queue.size > 0) this.schedule(name, owner);
    // An owner whose budget is whole and who waits for nothing is the same as one never seen.
    else if (owner.tokens >= this.perSecond) this.owners.delete(name);
  }
}
