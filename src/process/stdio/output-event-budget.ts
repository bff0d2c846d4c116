// How many output events one owner's processes may add to the event log. The log is one ring for
// every owner: a tenant whose many chatty processes each published every 25 ms (3,200 events a
// second from 45 of them) turned the ring over in 20 s, and every other tenant's Watch lost its
// resume point (CURSOR_EXPIRED). Past the budget a stream's output is coalesced for longer, not
// dropped: an event names a range of the ring, so one event covers what several would have.
import type { OutputSlice } from './captured-output.js';

/** Output events per second per owner, and as many at once. */
export const OUTPUT_EVENTS_PER_SECOND = 200;
/** Owners tracked at most (a bucket is dropped with the rest beyond: they refill anyway). */
const MAX_OWNERS = 65_536;

/** Where a stream's output events go, and when its owner may publish the next. */
export interface OutputPublisher {
  publish(slice: OutputSlice): void;
  /** 0 with a token taken, or the milliseconds until the owner's budget has one. */
  wait(): number;
}

export class OutputEventBudget {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond = OUTPUT_EVENTS_PER_SECOND,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  wait(owner: string): number {
    const now = this.now();
    let b = this.buckets.get(owner);
    if (b === undefined) {
      if (this.buckets.size >= MAX_OWNERS) this.buckets.clear();
      this.buckets.set(owner, (b = { tokens: this.perSecond, at: now }));
    }
    b.tokens = Math.min(this.perSecond, b.tokens + ((now - b.at) * this.perSecond) / 1000);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) * 1000) / this.perSecond);
  }
}
