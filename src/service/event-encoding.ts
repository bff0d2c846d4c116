// Events as the API's bytes, encoded once when the event is appended and sent as they are to
// every watcher (WatchResponse is `repeated Event events = 1`: a response is its events' bytes,
// each behind a tag and a length). Protobuf fields may come in any order, so an Event is built
// from pieces: its head (sequence, type, time, the Process tag and length, the state), the
// process's fields that never change, its exit field, and for output events the chunk read when
// the event is sent.
import type { ServiceDefinition } from '@grpc/grpc-js';
import { Exit, ExitReason, Process, State, type Rusage } from '../api.js';
import type { EventEncoding } from '../process/events/event-log.js';
import type { HandleId } from '../process/lifecycle/handle.js';
import type { ExitInfo, ProcessView, Rusage as KernelRusage } from '../process/lifecycle/record.js';
import type { Duration } from '../api.js';
import { eventTypes, states, toExit, toProcess } from './convert.js';

/** Protobuf wire types. */
const VARINT = 0;
const LEN = 2;
const tag = (field: number, wireType: number) => (field << 3) | wireType;

/** A non-negative integer up to 2^53 as a varint. */
export function writeVarint(into: Uint8Array, at: number, value: number): number {
  while (value >= 0x80) {
    into[at++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  into[at++] = value;
  return at;
}

export function varintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    n++;
  }
  return n;
}

const EVENT_SEQUENCE = tag(1, VARINT);
const EVENT_TYPE = tag(2, VARINT);
const EVENT_TIME = tag(3, LEN);
const EVENT_PROCESS = tag(4, LEN);
const PROCESS_STATE = tag(3, VARINT);
const PROCESS_EXIT = tag(7, LEN);
const TIMESTAMP_SECONDS = tag(1, VARINT);
const TIMESTAMP_NANOS = tag(2, VARINT);
/** WatchResponse.events. */
export const RESPONSE_EVENT = tag(1, LEN);
/** Event.output. */
export const EVENT_OUTPUT = tag(5, LEN);

const fromMicros = (d: Duration | undefined): number => (d === undefined ? 0 : d.seconds * 1e6 + Math.round(d.nanos / 1000));

function fromRusage(r: Rusage): KernelRusage {
  return {
    userMicros: fromMicros(r.userCpu),
    systemMicros: fromMicros(r.systemCpu),
    maxRssKib: r.maxRssKib,
    minorFaults: r.minorFaults,
    majorFaults: r.majorFaults,
    voluntaryContextSwitches: r.voluntaryContextSwitches,
    involuntaryContextSwitches: r.involuntaryContextSwitches,
  };
}

/** The exit toExit encoded, back in the domain's shape (for a handover). */
function fromExit(e: Exit): ExitInfo {
  const termination = e.statusLost ? undefined : e.signal !== undefined ? { signal: e.signal, coreDumped: e.coreDumped } : { exitCode: e.code ?? 0 };
  return {
    termination,
    reason: e.reason === ExitReason.EXIT_REASON_TIMEOUT ? 'timeout' : 'exited',
    ...(e.rusage ? { rusage: fromRusage(e.rusage) } : {}),
    exitedAt: e.exitedAt?.getTime() ?? 0,
    ...(e.statusLost ? { statusLost: true } : {}),
    ...(e.reclaimTime ? { reclaimMs: fromMicros(e.reclaimTime) / 1000 } : {}),
  };
}

export const eventEncoding: EventEncoding = {
  // State (and exit, usage) left at their defaults are not encoded: they come per event.
  process: (view) => Process.encode({ ...toProcess(view, 'running', undefined), state: State.STATE_UNSPECIFIED }).finish(),
  // A Process with nothing but its exit is exactly the exit field: its tag, length and Exit.
  exitField: (exit) => {
    const body = Exit.encode(toExit(exit)).finish();
    const field = new Uint8Array(1 + varintLength(body.length) + body.length);
    field[0] = PROCESS_EXIT;
    field.set(body, writeVarint(field, 1, body.length));
    return field;
  },
  writeHead(into, at, sequence, type, time, state, processBytes) {
    into[at++] = EVENT_SEQUENCE;
    at = writeVarint(into, at, sequence);
    into[at++] = EVENT_TYPE;
    at = writeVarint(into, at, eventTypes[type]);
    const seconds = Math.floor(time / 1000);
    const nanos = Math.round((time - seconds * 1000) * 1e6);
    into[at++] = EVENT_TIME;
    into[at++] = (seconds === 0 ? 0 : 1 + varintLength(seconds)) + (nanos === 0 ? 0 : 1 + varintLength(nanos));
    if (seconds !== 0) {
      into[at++] = TIMESTAMP_SECONDS;
      at = writeVarint(into, at, seconds);
    }
    if (nanos !== 0) {
      into[at++] = TIMESTAMP_NANOS;
      at = writeVarint(into, at, nanos);
    }
    const stateValue = states[state];
    into[at++] = EVENT_PROCESS;
    at = writeVarint(into, at, 1 + varintLength(stateValue) + processBytes);
    into[at++] = PROCESS_STATE;
    return writeVarint(into, at, stateValue);
  },
  headLength(sequence, type, time, state, processBytes) {
    const seconds = Math.floor(time / 1000);
    const nanos = Math.round((time - seconds * 1000) * 1e6);
    const timestamp = (seconds === 0 ? 0 : 1 + varintLength(seconds)) + (nanos === 0 ? 0 : 1 + varintLength(nanos));
    const process = 1 + varintLength(states[state]) + processBytes;
    return 1 + varintLength(sequence) + 1 + varintLength(eventTypes[type]) + 2 + timestamp + 1 + varintLength(process) + 1 + varintLength(states[state]);
  },
  decodeProcess(bytes): ProcessView {
    const p = Process.decode(bytes);
    return {
      handle: p.handle as HandleId,
      identity: { pid: p.pid, pidfsInode: BigInt(p.pidfsInode) },
      spec: { argv: p.argv, labels: p.labels, adopted: p.adopted, owner: p.owner === '' ? undefined : p.owner },
      startedAt: p.startedAt?.getTime() ?? 0,
    };
  },
  decodeExitField: (bytes) => fromExit(Process.decode(bytes).exit!),
};

/**
 * Watch's responses are written as the bytes the watch stream assembled (a Buffer); usage
 * samples, not in the log, still as messages.
 */
export function encodedWatchResponses<T extends ServiceDefinition>(definition: T): T {
  const watch = definition['watch']!;
  const serialize = watch.responseSerialize;
  return { ...definition, watch: { ...watch, responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)) } };
}
