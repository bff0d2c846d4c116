// The event ring's two costs: an append (on the path of every spawn, exit, release and output
// event) and a Watch replay (every held event after a cursor, filtered and encoded as
// WatchStream.nextResponse does, without the transport). The per-owner ring of this checkout
// against the single ring of a baseline commit, loaded side by side, rounds interleaved.
//
//   flock /work/bench.lock node --import tsx bench/event-ring.ts [--base 75a9d60] [--ring 65536] [--rounds 5]
//
// Appends are timed with the ring full (the steady state, after twice the ring), for one owner, for one owner flooding
// next to a trickling one (99:1: events leave from the middle, the holes close up), and for 64
// owners in turn. Replays walk the whole ring from its oldest cursor: an admin's (every event
// sent) and a tenant's that holds 1% of the ring (every event looked at, 1% sent). Times are the
// process's CPU time.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { EventLog } from '../src/process/events/event-log.js';
import { eventEncoding } from '../src/service/event-encoding.js';
import { ProcessRecord } from '../src/process/lifecycle/record.js';
import { newHandleId } from '../src/process/lifecycle/handle.js';

const REPO = new URL('../', import.meta.url).pathname;
const { values } = parseArgs({ options: { base: { type: 'string', default: '75a9d60' }, ring: { type: 'string', default: '65536' }, rounds: { type: 'string', default: '5' } } });
const RING = Number(values.ring);
const APPENDS = 1_000_000;

/** What both versions offer: the new one walks held events by slot, the old one by sequence. */
interface Log {
  readonly lastSequence: number;
  append(type: 'spawned', record: ProcessRecord): number;
  subjectAt(slot: number): { spec: { owner?: string } };
  encodedLength(slot: number): number;
  writeEncoded(slot: number, into: Buffer, at: number): number;
}
interface Version {
  readonly name: string;
  make(): Log;
  walk(log: Log, after: number, visit: (slot: number) => void): void;
}

const dir = mkdtempSync(join(tmpdir(), 'event-ring-bench-'));
const basePath = join(dir, 'event-log.ts');
// Its imports are types only: the copy runs on its own.
writeFileSync(basePath, execFileSync('git', ['-C', REPO, 'show', `${values.base}:src/process/events/event-log.ts`]));
const Base = ((await import(basePath)) as { EventLog: new (...args: unknown[]) => Log & { firstSequence: number; slotOf(s: number): number } }).EventLog;

const versions: Version[] = [
  {
    name: `base ${values.base}`,
    make: () => new Base(RING, eventEncoding),
    walk: (log, after, visit) => {
      const old = log as InstanceType<typeof Base>;
      for (let s = after + 1; s <= old.lastSequence; s++) visit(old.slotOf(s));
    },
  },
  {
    name: 'per-owner',
    make: () => new EventLog(RING, eventEncoding),
    walk: (log, after, visit) => {
      const l = log as unknown as EventLog;
      for (let slot = l.after(after); slot >= 0; slot = l.nextSlot(slot)) visit(slot);
    },
  },
];

const records = (owner: string, n: number) =>
  Array.from({ length: n }, (_, i) => new ProcessRecord(newHandleId(), { pid: 1000 + i, pidfsInode: BigInt(i + 1) }, { argv: ['/bin/true', String(i)], labels: { app: 'bench' }, adopted: false, owner }, Date.now(), null));

/**
 * The record of the i-th event for each pattern, over records of their own: a record keeps the
 * subject the first log made for it, and one version's must not reach the other's log.
 */
function patterns(): Record<string, (i: number) => ProcessRecord> {
  const flood = records('unix:uid=1001', 256);
  const trickle = records('unix:uid=1002', 16);
  const many = Array.from({ length: 64 }, (_, o) => records(`unix:uid=${2000 + o}`, 4)).flat();
  return {
    'one owner': (i) => flood[i % flood.length]!,
    'flood 99 : trickle 1': (i) => (i % 100 === 0 ? trickle[(i / 100) % trickle.length]! : flood[i % flood.length]!),
    '64 owners in turn': (i) => many[i % many.length]!,
  };
}

function timeAppends(version: Version, pattern: (i: number) => ProcessRecord): number {
  const log = version.make();
  // Twice the ring first: every slot the per-owner ring has has been written once.
  for (let i = 0; i < 2 * RING; i++) log.append('spawned', pattern(i));
  const started = cpuMicros();
  for (let i = 2 * RING; i < 2 * RING + APPENDS; i++) log.append('spawned', pattern(i));
  return ((cpuMicros() - started) * 1000) / APPENDS;
}

/** ms to walk and encode what a watcher from the oldest cursor is sent: `owner`'s events, or all. */
function timeReplay(version: Version, owner: string | undefined): { ms: number; sent: number } {
  const log = version.make();
  const pattern = patterns()['flood 99 : trickle 1']!;
  for (let i = 0; i < 2 * RING; i++) log.append('spawned', pattern(i));
  // The oldest cursor this watcher may resume from, in either version.
  const after = log instanceof EventLog ? log.replayableFrom(owner) : (log as InstanceType<typeof Base>).firstSequence - 1;
  const scratch = Buffer.allocUnsafe(64 * 1024);
  let sent = 0;
  const started = cpuMicros();
  version.walk(log, after, (slot) => {
    if (owner !== undefined && log.subjectAt(slot).spec.owner !== owner) return;
    log.writeEncoded(slot, scratch, 0);
    sent += log.encodedLength(slot);
  });
  return { ms: (cpuMicros() - started) / 1000, sent };
}

/** CPU time of this process, not the wall clock: the machine is shared, a trial preempted is not slower. */
const cpuMicros = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const results: Record<string, Record<string, number[]>> = {};
const add = (row: string, version: string, x: number) => ((results[row] ??= {})[version] ??= []).push(x);
for (let round = 0; round < Number(values.rounds); round++) {
  for (const version of round % 2 === 0 ? versions : [...versions].reverse()) {
    for (const [name, pattern] of Object.entries(patterns())) add(`append, ${name} (ns)`, version.name, timeAppends(version, pattern));
    for (const [name, owner] of [['admin', undefined], ['tenant with 1%', 'unix:uid=1002']] as const) {
      const { ms, sent } = timeReplay(version, owner);
      add(`replay of the ring, ${name} (ms)`, version.name, ms);
      add(`replay of the ring, ${name}: bytes sent`, version.name, sent);
    }
  }
}
rmSync(dir, { recursive: true, force: true });
console.log(`ring ${RING}, ${APPENDS} appends per trial, median of ${values.rounds} rounds; ${execFileSync('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo"]).toString().trim()}`);
console.log(`| | ${versions.map((v) => v.name).join(' | ')} |`);
console.log(`|---|${versions.map(() => '---:').join('|')}|`);
for (const [row, by] of Object.entries(results)) console.log(`| ${row} | ${versions.map((v) => median(by[v.name]!).toFixed(row.includes('bytes') ? 0 : 2)).join(' | ')} |`);
