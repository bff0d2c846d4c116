// Ages and deadlines on a clock that does not step. The wall clock does (NTP correcting a node that
// booted with a wrong RTC, a VM resumed, `date -s`): measured on it, a step of two hours forgot the
// spawns whose outcome was unknown (a retry ran the command again), expired every retained exit at
// once, and made a restarted agent fire one-hour deadlines at its start. CLOCK_MONOTONIC (what
// process.hrtime reads) is the same for every process of one boot in one time namespace (agents
// run in the node's), so an agent after a restart or a handover goes on from its predecessor's
// stamps (it stops during a suspend: a suspension is not counted); a stamp carries its boot id, and one from
// another boot (a process that outlived nothing) is measured by the wall clock as before.
// Reported times (started_at, exited_at) stay the wall clock's: the stamps only measure.
import { readBootId } from './proc-fs.js';

export interface Stamp {
  readonly boot: string;
  /** CLOCK_MONOTONIC in milliseconds. */
  readonly ms: number;
}

/** A moment as the wall clock showed it, and as a stamp. */
export interface Instant {
  readonly wall: number;
  readonly stamp: Stamp;
}

let bootId: string | undefined;

export function stampNow(): Stamp {
  return { boot: (bootId ??= readBootId()), ms: Number(process.hrtime.bigint() / 1_000_000n) };
}

export const instantNow = (wall = Date.now()): Instant => ({ wall, stamp: stampNow() });

/** Milliseconds since a moment the wall clock showed as `wall` and, if it was stamped, as `stamp`. */
export function elapsedSince(wall: number, stamp: Stamp | undefined, now: Instant): number {
  return stamp !== undefined && stamp.boot === now.stamp.boot ? now.stamp.ms - stamp.ms : now.wall - wall;
}
