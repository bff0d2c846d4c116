// Same-run A/B of the state store alone (issue 17: the store's share of agent CPU per cycle): the
// SqliteStore of each checkout's build, driven in this process with the agent's write pattern at
// c=16 (per group commit: the starts of one turn and the exits of the processes the turn before
// started; the table grows as exited records are retained), timed by this process's CPU. Rounds
// interleave the checkouts; ratios are per round against the first. `--agent DIR::threaded` drives
// DIR's ThreadedStore instead (the store on its own thread, as the agent runs it since session 19):
// the CPU then counts both threads, and "wall" shows what the event loop waits per cycle.
//
//   node --import tsx bench/store-ab.ts --agent DIR [--agent DIR[::threaded] ...] [--rounds 7] [--cycles 8000] [--per-commit 8] [--retain 4000]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { median } from './stats.js';

const { values: opt } = parseArgs({
  options: {
    agent: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '7' },
    cycles: { type: 'string', default: '8000' },
    'per-commit': { type: 'string', default: '8' },
    retain: { type: 'string', default: '4000' },
  },
  strict: true,
});
const agents = opt.agent ?? [];
const ROUNDS = Number(opt.rounds);
const CYCLES = Number(opt.cycles);
const K = Number(opt['per-commit']);
/** Exited records kept before the oldest is released with each new exit (the retention cap). */
const RETAIN = Number(opt.retain);

interface Store {
  commit(what: string, upTo: number, writes: (w: any) => void): void;
  close(): void;
  ended?(): Promise<void>;
}

interface Build {
  open(dir: string, onError: (w: string, e: unknown) => void): Promise<Store>;
  ProcessRecord: new (handle: string, identity: object, spec: object, startedAt: number, ref: null) => { handle: string; exitFor(e: object): object };
  newHandleId: () => string;
}

const BOOT_ID = 'a2f0c0de-0b1d-4c7e-9d5a-3f1e2b7c9a10';

async function load(variant: string): Promise<Build> {
  const [given, how] = variant.split('::');
  const dir = resolve(given!);
  const record = await import(join(dir, 'dist/src/process/lifecycle/record.js'));
  const handle = await import(join(dir, 'dist/src/process/lifecycle/handle.js'));
  let open: Build['open'];
  if (how === 'threaded') {
    const { ThreadedStore } = await import(join(dir, 'dist/src/store/threaded-store.js'));
    const watch = { stalled: () => undefined, recovered: () => undefined };
    open = async (stateDir, onError) => (await ThreadedStore.open({ stateDir, bootId: BOOT_ID, recover: false, timeoutMs: 60_000, onError, watch })).store;
  } else {
    const { SqliteStore } = await import(join(dir, 'dist/src/store/sqlite-store.js'));
    open = async (stateDir, onError) => new SqliteStore(stateDir, BOOT_ID, onError);
  }
  return { open, ProcessRecord: record.ProcessRecord, newHandleId: handle.newHandleId };
}

const RUSAGE = { userMicros: 310, systemMicros: 1200, maxRssKib: 1400, minorFaults: 80, majorFaults: 0, voluntaryContextSwitches: 2, involuntaryContextSwitches: 1 };

/** CPU µs per cycle (a start, its exit, and past the cap a release), and wall µs per cycle. */
async function run(b: Build): Promise<{ cpu: number; wall: number }> {
  const tmp = mkdtempSync(join(os.tmpdir(), 'pidfd-agent-store-ab-'));
  const store = await b.open(join(tmp, 'state'), (what, e) => {
    throw new Error(`${what}: ${String(e)}`);
  });
  const exited: string[] = [];
  let previous: { handle: string; exitFor(e: object): object }[] = [];
  let pid = 1000;
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  for (let c = 0; c < CYCLES; c += K) {
    const now = Date.now();
    const starts = Array.from({ length: K }, () => new b.ProcessRecord(b.newHandleId(), { pid: ++pid, pidfsInode: BigInt(pid) * 7n }, { argv: ['/bin/true'], labels: {}, adopted: false, owner: 'unix:uid=0,gid=0,pid=1' }, now, null));
    const exits = previous.map((r) => [r.handle, r.exitFor({ termination: { code: 0 }, exitedAt: now, rusage: RUSAGE })] as const);
    const releases = exited.length + exits.length > RETAIN ? exited.splice(0, exited.length + exits.length - RETAIN) : [];
    store.commit('bench', 0, (w) => {
      for (const r of starts) w.started(r);
      for (const [h, e] of exits) w.exited(h, e);
      for (const h of releases) w.released(h);
    });
    for (const [h] of exits) exited.push(h);
    previous = starts;
  }
  const cpu = process.cpuUsage(cpu0);
  const wall = ((performance.now() - wall0) * 1000) / CYCLES;
  store.close();
  await store.ended?.();
  rmSync(tmp, { recursive: true, force: true });
  return { cpu: (cpu.user + cpu.system) / CYCLES, wall };
}

const builds = new Map<string, Build>();
for (const dir of agents) builds.set(dir, await load(dir));
const load0 = os.loadavg();
const results = new Map<string, number[]>(agents.map((d) => [d, []]));
const walls = new Map<string, number[]>(agents.map((d) => [d, []]));
for (const dir of agents) await run(builds.get(dir)!); // warm-up: JIT, page cache
for (let r = 1; r <= ROUNDS; r++) {
  const order = agents.map((_, i) => agents[(i + r) % agents.length]!);
  const line: string[] = [];
  for (const dir of order) {
    const { cpu: us, wall } = await run(builds.get(dir)!);
    results.get(dir)!.push(us);
    walls.get(dir)!.push(wall);
    line.push(`${dir} ${us.toFixed(1)} µs (wall ${wall.toFixed(1)})`);
  }
  process.stderr.write(`round ${r} (load ${os.loadavg()[0]!.toFixed(2)}): ${line.join(', ')}\n`);
}
const ref = results.get(agents[0]!)!;
console.log(`store A/B, ${ROUNDS} rounds × ${CYCLES} cycles, ${K} starts per commit, ${RETAIN} exited retained; ${os.cpus().length} × ${os.cpus()[0]?.model}; load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
for (const dir of agents) {
  const mine = results.get(dir)!;
  const wall = walls.get(dir)!;
  console.log(`${dir}: CPU µs per cycle ${mine.map((x) => x.toFixed(1)).join(' ')}; median ${median(mine).toFixed(1)}; ×ref median ${median(mine.map((x, i) => x / ref[i]!)).toFixed(3)}; wall µs per cycle median ${median(wall).toFixed(1)}`);
}
