// Domain → API messages. The only place that knows both shapes.
import { signalName } from '../process/lifecycle/signalling.js';
import type { EventType as DomainEventType } from '../process/events/event-log.js';
import type { ExitInfo, ProcessRecord, ProcessView, Rusage as KernelRusage, State as DomainState } from '../process/lifecycle/record.js';
import type { Usage as DomainUsage } from '../process/lifecycle/usage.js';

/** A record as it is now (with its usage, when read). */
export const processOf = (record: ProcessRecord, usage?: DomainUsage): Process => toProcess(record.view, record.state, record.exit, usage);
import { sliceBytes, type OutputSlice } from '../process/stdio/captured-output.js';
import {
  EventType,
  ExitReason,
  OutputStream,
  State,
  type Event,
  type Exit,
  type OutputChunk,
  type Process,
  type Rusage,
  type Usage,
} from '../api.js';
import type { Duration } from '../api.js';

export const states: Record<DomainState, State> = {
  running: State.STATE_RUNNING,
  exited: State.STATE_EXITED,
  released: State.STATE_RELEASED,
};

export const eventTypes: Record<DomainEventType, EventType> = {
  spawned: EventType.EVENT_TYPE_SPAWNED,
  adopted: EventType.EVENT_TYPE_ADOPTED,
  exited: EventType.EVENT_TYPE_EXITED,
  released: EventType.EVENT_TYPE_RELEASED,
  output: EventType.EVENT_TYPE_OUTPUT,
};

export const stateFromApi = (s: State): DomainState | undefined =>
  (Object.keys(states) as DomainState[]).find((k) => states[k] === s);

/**
 * An exited record no longer changes (its exit is recorded once), so its message is made once and
 * shared by every reply that carries it (Wait, Get, its events); replies are only read, never changed.
 */
let exitedProcesses = new WeakMap<ExitInfo, Process>();

/**
 * Drops every shared exited message (an agent at rest): each retained exited record kept its
 * reply (~0.5 KiB with its Dates, Exit and Rusage) for as long as the record, an hour by default.
 * The next Get or Wait of it makes it again.
 */
export function forgetExitedReplies(): void {
  exitedProcesses = new WeakMap();
}

export function toProcess(record: ProcessView, state: DomainState, exit: ExitInfo | undefined, usage?: DomainUsage): Process {
  if (state !== 'exited' || exit === undefined || usage !== undefined) return newProcess(record, state, exit, usage);
  let p = exitedProcesses.get(exit);
  if (p === undefined || p.handle !== record.handle) exitedProcesses.set(exit, (p = newProcess(record, state, exit, undefined)));
  return p;
}

function newProcess(record: ProcessView, state: DomainState, exit: ExitInfo | undefined, usage?: DomainUsage): Process {
  return {
    handle: record.handle,
    pid: record.identity.pid,
    state: states[state],
    argv: record.spec.argv as string[],
    labels: record.spec.labels as Record<string, string>,
    startedAt: new Date(record.startedAt),
    exit: exit && toExit(exit),
    adopted: record.spec.adopted,
    pidfsInode: Number(record.identity.pidfsInode),
    owner: record.spec.owner ?? '',
    usage: usage && toUsage(usage),
  };
}

/** A usage sample for Watch: not in the event log, so sequence 0. */
export function toUsageEvent(record: ProcessRecord, usage: DomainUsage): Event {
  return { sequence: 0, type: EventType.EVENT_TYPE_USAGE, time: new Date(usage.sampledAt), process: toProcess(record, record.state, record.exit, usage), output: undefined };
}

function toUsage(u: DomainUsage): Usage {
  return { userCpu: micros(u.userMicros), systemCpu: micros(u.systemMicros), rssBytes: u.rssBytes, threads: u.threads, openFds: u.openFds, sampledAt: new Date(u.sampledAt) };
}

/** The bytes of the slice the ring still holds: a watcher that fell behind sees a gap in offsets. */
export function toOutputChunk(slice: OutputSlice): OutputChunk {
  const { offset, data } = sliceBytes(slice);
  return { stream: slice.stream === 'stdout' ? OutputStream.OUTPUT_STREAM_STDOUT : OutputStream.OUTPUT_STREAM_STDERR, offset, data };
}

export function toExit(exit: ExitInfo): Exit {
  const t = exit.termination;
  return {
    code: t?.exitCode,
    signal: t?.signal,
    signalName: t?.signal === undefined ? '' : signalName(t.signal),
    coreDumped: t?.signal !== undefined && t.coreDumped,
    exitedAt: new Date(exit.exitedAt),
    rusage: exit.rusage && toRusage(exit.rusage),
    reason: exit.reason === 'timeout' ? ExitReason.EXIT_REASON_TIMEOUT : ExitReason.EXIT_REASON_EXITED,
    statusLost: exit.statusLost === true,
    reclaimTime: exit.reclaimMs === undefined ? undefined : msDuration(exit.reclaimMs),
  };
}

const micros = (us: number): Duration => ({ seconds: Math.floor(us / 1e6), nanos: (us % 1e6) * 1000 });

/** Fractional milliseconds as a Duration (to the microsecond). */
export const msDuration = (ms: number): Duration => micros(Math.round(ms * 1000));

function toRusage(r: KernelRusage): Rusage {
  return {
    userCpu: micros(r.userMicros),
    systemCpu: micros(r.systemMicros),
    maxRssKib: r.maxRssKib,
    minorFaults: r.minorFaults,
    majorFaults: r.majorFaults,
    voluntaryContextSwitches: r.voluntaryContextSwitches,
    involuntaryContextSwitches: r.involuntaryContextSwitches,
  };
}
