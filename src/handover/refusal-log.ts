// A lingering agent that cannot watch its successor by pidfd (one in another PID namespace: a
// DaemonSet without hostPID) asks handover.sock who serves every 5 s for as long as it lingers, and
// the serving agent refuses each of those empty connections: one line each filled an operator's
// log with the same line every 5 s, forever. A refusal is logged when it is the first of its kind
// for quietMs; more of that kind meanwhile are counted, and the count is one line when quietMs is
// up (`repeated`), so a steady poller makes one line each quietMs and nothing is lost.
import type { Logger } from '../log.js';

export const REFUSALS_QUIET_MS = 5 * 60_000;
/** Kinds counted at once; a flood of distinct ones (only the agent's own uid can connect) is logged as it comes past this. */
const MAX_KINDS = 32;

interface Kind {
  /** The latest reason of this kind, as said. */
  why: string;
  repeated: number;
  readonly since: number;
  readonly timer: NodeJS.Timeout;
}

export class RefusalLog {
  private readonly kinds = new Map<string, Kind>();
  private closed = false;

  constructor(
    private readonly log: Logger,
    private readonly quietMs = REFUSALS_QUIET_MS,
  ) {}

  refused(why: string): void {
    // "protocol 3 is not 4" and "protocol 2 is not 4" are one kind: the same successor, retrying.
    const key = why.replace(/\d+/g, '#');
    const kind = this.kinds.get(key);
    if (kind !== undefined) {
      kind.repeated++;
      kind.why = why;
      return;
    }
    this.log('handover_refused', { why });
    // Closed: the few requests still being read then are logged each, with no timer left behind.
    if (!this.closed && this.kinds.size < MAX_KINDS) this.quiet(key, why);
  }

  /** Writes the counts not written yet (the agent stops, or hands over). */
  close(): void {
    this.closed = true;
    for (const key of [...this.kinds.keys()]) this.flush(key, false);
  }

  private quiet(key: string, why: string): void {
    const timer = setTimeout(() => this.flush(key, true), this.quietMs).unref();
    this.kinds.set(key, { why, repeated: 0, since: performance.now(), timer });
  }

  /** A quiet period without a refusal of the kind ends it: the next one is logged as a first. */
  private flush(key: string, goOn: boolean): void {
    const kind = this.kinds.get(key);
    if (kind === undefined) return;
    clearTimeout(kind.timer);
    this.kinds.delete(key);
    if (kind.repeated === 0) return;
    this.log('handover_refused', { why: kind.why, repeated: kind.repeated, ms: Math.round(performance.now() - kind.since), note: 'refused this many more times in these ms, not logged one by one' });
    if (goOn) this.quiet(key, kind.why);
  }
}
