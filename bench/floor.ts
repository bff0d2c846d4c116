// The floors of issue 17's CPU and latency goals, measured: the C loop, a floor agent
// (floor-server.mjs: the agent's API on the same grpc-js with nothing but the kernel work, through
// the agent's own spawner threads and pidfd reaper) and the agent, in the same run, interleaved
// round by round (order rotated), each server started fresh and driven by the bench's own client
// process (agent-driver.ts) exactly as bench/run.ts drives the agent for the goal keys:
// Spawn+Wait and Spawn+Watch at c=16 (cycles/s, server CPU per cycle from /proc/PID/stat, split by
// thread), bare Gets at c=16, Signal TERM → EXITED at c=1 and a Get after the same settle, and the
// start of 1,000 sleepers (16 in flight) against `spawnloop start 1000`.
//
//   node --import tsx bench/floor.ts [--agent DIR] [--base DIR] [--rounds 4] [--n 3000] [--tries 150] [--settle 20]
//
// --base DIR adds an older agent to every round (issue 17's 58e6ba0: "halve it" is against it).
// Prints each round and a table C | floor | agent with the ratio agent ÷ floor (medians of
// per-round values), and writes results/floor-*.json. With --profile instead: floor and agent each
// run --n Spawn+Wait cycles, Spawn+Watch cycles and bare Gets at c=16 under --cpu-prof, and the
// main thread's self time within each run (profile-rooms.ts: grpc-js, node:http2, protobuf, GC,
// kernel/, ours by room of src/) is printed per operation beside each thread's CPU from /proc
// (results/floor-profile-*.json).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { DriverCommand, DriverRun } from './agent-driver.js';
import { cpuSeconds, startAgent, threadCpuMs, type AgentProcess } from './agent-process.js';
import { AgentDriver } from './driver-ipc.js';
import { selfByBucket, type CpuProfile } from './profile-rooms.js';
import { latencyStats, median, nowNs, round, type RawRun } from './stats.js';

const BENCH = new URL('.', import.meta.url).pathname;
const C_LOOP = join(BENCH, 'c/spawnloop');
const FLOOR = join(BENCH, 'floor-server.mjs');
const { values: opt } = parseArgs({
  options: {
    agent: { type: 'string', default: resolve(BENCH, '..') },
    rounds: { type: 'string', default: '4' },
    n: { type: 'string', default: '3000' },
    tries: { type: 'string', default: '150' },
    settle: { type: 'string', default: '20' },
    /** An older agent run beside them each round (e.g. the issue's 58e6ba0): what "halve it" asks against the floor. */
    base: { type: 'string' },
    /** Instead: --n Spawn+Wait, Spawn+Watch and Gets at c=16 per server under --cpu-prof, self time by room. */
    profile: { type: 'boolean', default: false },
    /** Adds the floor server's goal keys and the agent's ratio to them to results/summary.json (make bench). */
    summary: { type: 'boolean', default: false },
  },
  strict: true,
});
const AGENT = resolve(opt.agent);
if (!existsSync(join(AGENT, 'dist/src/main.js'))) throw new Error(`${AGENT}: no dist/src/main.js (make build there first)`);
if (!existsSync(C_LOOP)) throw new Error(`${C_LOOP}: missing (gcc -O2 -o bench/c/spawnloop bench/c/spawnloop.c)`);
const BASE = opt.base === undefined ? undefined : resolve(opt.base);
if (BASE !== undefined && !existsSync(join(BASE, 'dist/src/main.js'))) throw new Error(`${BASE}: no dist/src/main.js`);
const ROUNDS = Math.max(1, Number(opt.rounds));
const N = Math.max(16, Number(opt.n));
const TRIES = Math.max(10, Number(opt.tries));
const SETTLE = Number(opt.settle);

const log = (msg: string) => process.stderr.write(`[floor ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

type Server = 'floor' | 'agent' | 'base';
type Peer = 'c' | Server;

/** One round's figures of one peer (C has no CPU or Get figures). */
interface Row {
  round: number;
  peer: Peer;
  load1: number;
  wait_cps: number;
  watch_cps?: number;
  /** Server CPU ms per cycle / per Get, from /proc/PID/stat. */
  wait_cpu_ms?: number;
  watch_cpu_ms?: number;
  get_cpu_ms?: number;
  /** Server CPU ms per Spawn+Wait cycle by thread (main, pidfd-spawner, V8/libuv helpers). */
  wait_threads_ms?: Record<string, number>;
  /** The client process's CPU per Spawn+Wait cycle. */
  client_wait_cpu_ms?: number;
  client_watch_cpu_ms?: number;
  /** The C loop's CPU per cycle with its children's (exec, exit): what each cycle costs the machine at least. */
  c_cpu_ms?: number;
  sig_p50_ms: number;
  rtt_p50_ms?: number;
  start_1000_s: number;
}

const rows: Row[] = [];
const TICK_MS = 1000 / 100;

function cLoop(args: string[]): Promise<RawRun> {
  return new Promise((res, rej) =>
    execFile(C_LOOP, args, { maxBuffer: 64 << 20 }, (e, stdout) => {
      if (e) return rej(e);
      res(JSON.parse(stdout.trim().split('\n').pop()!) as RawRun);
    }),
  );
}

const p50 = (lat: readonly number[]) => latencyStats(lat).p50_ms;

/** CPU ms of this process's reaped children (cutime + cstime): the C loop with its own children. */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'latin1');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[16 - 3]) + Number(rest[17 - 3])) * TICK_MS;
}

async function cRound(r: number): Promise<void> {
  const cpu0 = childrenCpuMs();
  const tput = await cLoop(['tput', '16', String(N)]);
  const cpuMs = (childrenCpuMs() - cpu0) / N;
  const sig = await cLoop(['sig', '1', String(TRIES), String(SETTLE)]);
  const start = await cLoop(['start', '1000']);
  const row: Row = { round: r, peer: 'c', load1: os.loadavg()[0]!, wait_cps: tput.lat_ns.length / tput.wall_s, c_cpu_ms: cpuMs, sig_p50_ms: p50(sig.lat_ns), start_1000_s: start.wall_s };
  rows.push(row);
  log(`  c: ${Math.round(row.wait_cps)}/s, ${cpuMs.toFixed(3)} ms CPU per cycle (loop + children), signal→exit p50 ${row.sig_p50_ms.toFixed(3)} ms, start 1000 ${row.start_1000_s.toFixed(3)} s`);
}

async function serverRound(r: number, peer: Server, driver: AgentDriver): Promise<void> {
  const agent: AgentProcess = await startAgent(
    peer === 'floor' ? { repo: AGENT, maxProcesses: 4000, entry: FLOOR, agentFlags: ['--repo', AGENT] } : { repo: peer === 'base' ? BASE! : AGENT, maxProcesses: 4000 },
  );
  try {
    await driver.send({ op: 'init', address: agent.address });
    await driver.warmUp();
    const timed = async (cmd: DriverCommand): Promise<{ run: DriverRun; cpuMs: number }> => {
      const cpu0 = cpuSeconds(agent.pid);
      const run = await driver.run(cmd);
      return { run, cpuMs: (cpuSeconds(agent.pid) - cpu0) * 1000 };
    };
    const t0 = threadCpuMs(agent.pid);
    const wait = await timed({ op: 'tput', conc: 16, n: N, via: 'wait' });
    const t1 = threadCpuMs(agent.pid);
    const watch = await timed({ op: 'tput', conc: 16, n: N, via: 'watch' });
    const get = await timed({ op: 'get', conc: 16, n: N });
    const sig = await driver.run({ op: 'sig', conc: 1, n: TRIES, settleMs: SETTLE });
    const rtt = await driver.run({ op: 'rtt', n: TRIES, settleMs: SETTLE });
    const start = await driver.run({ op: 'hold', count: 1000, conc: 16 });
    await driver.run({ op: 'unhold', conc: 16 });
    await driver.send({ op: 'detach' });
    const threads: Record<string, number> = {};
    for (const [k, v] of t1) {
      const d = (v - (t0.get(k) ?? 0)) / N;
      if (d > 0) threads[k] = round(d, 4);
    }
    const row: Row = {
      round: r,
      peer,
      load1: os.loadavg()[0]!,
      wait_cps: N / wait.run.wall_s,
      watch_cps: N / watch.run.wall_s,
      wait_cpu_ms: wait.cpuMs / N,
      watch_cpu_ms: watch.cpuMs / N,
      get_cpu_ms: get.cpuMs / N,
      wait_threads_ms: threads,
      client_wait_cpu_ms: (wait.run.client_cpu_s * 1000) / N,
      client_watch_cpu_ms: (watch.run.client_cpu_s * 1000) / N,
      sig_p50_ms: p50(sig.lat_ns),
      rtt_p50_ms: p50(rtt.lat_ns),
      start_1000_s: start.wall_s,
    };
    rows.push(row);
    const bad = wait.run.bad + watch.run.bad + sig.bad;
    log(
      `  ${peer}: wait ${Math.round(row.wait_cps)}/s ${row.wait_cpu_ms!.toFixed(3)} ms CPU ${JSON.stringify(threads)}, watch ${Math.round(row.watch_cps!)}/s ${row.watch_cpu_ms!.toFixed(3)} ms, get ${row.get_cpu_ms!.toFixed(3)} ms, ` +
        `signal→EXITED p50 ${row.sig_p50_ms.toFixed(3)} ms, Get p50 ${row.rtt_p50_ms!.toFixed(3)} ms, start 1000 ${row.start_1000_s.toFixed(3)} s${bad ? `, BAD ${bad}` : ''}`,
    );
  } finally {
    await agent.stop();
  }
}

/** Issue 17's goal keys for one server in one round, each against that round's C loop. */
function keys(s: Row, c: Row): Record<string, number> {
  return {
    throughput_ratio_c16: s.wait_cps / c.wait_cps,
    throughput_ratio_c16_watch: s.watch_cps! / c.wait_cps,
    agent_cpu_ms_per_cycle_c16: s.wait_cpu_ms!,
    agent_cpu_watch_cycle_vs_get: s.watch_cpu_ms! / s.get_cpu_ms!,
    signal_exit_p50_vs_floor: s.sig_p50_ms / (s.rtt_p50_ms! + c.sig_p50_ms),
    start_1000_vs_c: s.start_1000_s / c.start_1000_s,
  };
}

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const started = new Date();
  const driver = new AgentDriver();
  try {
    for (let r = 1; r <= ROUNDS; r++) {
      const peers: Peer[] = BASE ? ['c', 'floor', 'agent', 'base'] : ['c', 'floor', 'agent'];
      const order = peers.map((_, i) => peers[(i + r - 1) % peers.length]!);
      log(`round ${r} (load ${os.loadavg()[0]!.toFixed(2)}): ${order.join(', ')}`);
      for (const p of order) await (p === 'c' ? cRound(r) : serverRound(r, p, driver));
    }
  } finally {
    await driver.send({ op: 'close' }).catch(() => undefined);
  }
  const load1 = os.loadavg();
  const cpuModel = os.cpus()[0]?.model ?? '?';
  const one = (r: number, p: Peer) => rows.find((x) => x.round === r && x.peer === p)!;
  const rounds = Array.from({ length: ROUNDS }, (_, i) => i + 1);
  const med = (p: Peer, f: (x: Row) => number | undefined) => median(rounds.map((r) => f(one(r, p)) ?? NaN));
  const perRoundKeys = rounds.map((r) => ({ round: r, floor: keys(one(r, 'floor'), one(r, 'c')), agent: keys(one(r, 'agent'), one(r, 'c')), base: BASE ? keys(one(r, 'base'), one(r, 'c')) : undefined }));
  const keyNames = Object.keys(perRoundKeys[0]!.floor);
  const keyMed = (p: Server, k: string) => median(perRoundKeys.map((x) => x[p]?.[k] ?? NaN));
  const ratio = (a: Server, b: Server, f: (x: Row) => number | undefined) => median(rounds.map((r) => (f(one(r, a)) ?? NaN) / (f(one(r, b)) ?? NaN)));
  const threadNames = [...new Set(rows.flatMap((x) => Object.keys(x.wait_threads_ms ?? {})))];

  const L = [
    `Floors, ${ROUNDS} rounds (C, floor, agent${BASE ? ', base' : ''} rotated), ${N} cycles per throughput case, ${TRIES} signals (settle ${SETTLE} ms); ${os.cpus().length} × ${cpuModel}; load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${load1.map((l) => l.toFixed(2)).join(' ')}; agent ${AGENT}${BASE ? `, base ${BASE}` : ''}. Medians of per-round values (ratios per round, then the median):`,
    '',
    `| measure | C | floor server | agent |${BASE ? ' base |' : ''} agent ÷ floor |${BASE ? ' floor ÷ base | agent ÷ base |' : ''}`,
    `|---|---:|---:|---:|${BASE ? '---:|' : ''}---:|${BASE ? '---:|---:|' : ''}`,
  ];
  const line = (name: string, f: (x: Row) => number | undefined, digits = 3, withC = true) =>
    L.push(
      `| ${name} | ${withC ? round(med('c', f), digits) : ''} | ${round(med('floor', f), digits)} | ${round(med('agent', f), digits)} |${BASE ? ` ${round(med('base', f), digits)} |` : ''} ${round(ratio('agent', 'floor', f), 3)} |` +
        (BASE ? ` ${round(ratio('floor', 'base', f), 3)} | ${round(ratio('agent', 'base', f), 3)} |` : ''),
    );
  line('Spawn+Wait c=16 cycles/s (C: spawnloop tput 16)', (x) => x.wait_cps, 0);
  L.push(`| C loop CPU ms / cycle, its children's included | ${round(med('c', (x) => x.c_cpu_ms), 4)} | | | | |${BASE ? ' | |' : ''}`);
  line('Spawn+Watch c=16 cycles/s', (x) => x.watch_cps, 0, false);
  line('server CPU ms / Spawn+Wait cycle', (x) => x.wait_cpu_ms, 4, false);
  for (const t of threadNames) line(`  of which thread ${t}`, (x) => x.wait_threads_ms?.[t] ?? 0, 4, false);
  line('server CPU ms / Spawn+Watch cycle', (x) => x.watch_cpu_ms, 4, false);
  line('server CPU ms / bare Get (c=16)', (x) => x.get_cpu_ms, 4, false);
  line('client CPU ms / Spawn+Wait cycle', (x) => x.client_wait_cpu_ms, 4, false);
  line('client CPU ms / Spawn+Watch cycle', (x) => x.client_watch_cpu_ms, 4, false);
  line('Signal→EXITED p50 ms (C: signal→exit)', (x) => x.sig_p50_ms, 3);
  line('Get after the same settle p50 ms', (x) => x.rtt_p50_ms, 3, false);
  line('start 1,000 sleepers s', (x) => x.start_1000_s, 3);
  L.push('', `| goal key (per round against that round's C, median) | floor server | agent |${BASE ? ' base |' : ''} agent ÷ floor |`, `|---|---:|---:|${BASE ? '---:|' : ''}---:|`);
  for (const k of keyNames) L.push(`| \`${k}\` | ${round(keyMed('floor', k))} | ${round(keyMed('agent', k))} |${BASE ? ` ${round(keyMed('base', k))} |` : ''} ${round(median(perRoundKeys.map((x) => x.agent[k]! / x.floor[k]!)))} |`);
  L.push('', 'Each round:', '', '| round | peer | load | Wait/s | Watch/s | CPU ms/Wait | CPU ms/Watch | CPU ms/Get | client ms/Wait | sig p50 | Get p50 | start 1,000 s |', '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const x of rows) {
    const f = (v: number | undefined, d = 3) => (v === undefined ? '' : String(round(v, d)));
    L.push(`| ${x.round} | ${x.peer} | ${x.load1.toFixed(2)} | ${Math.round(x.wait_cps)} | ${f(x.watch_cps, 0)} | ${f(x.wait_cpu_ms, 4)} | ${f(x.watch_cpu_ms, 4)} | ${f(x.get_cpu_ms, 4)} | ${f(x.client_wait_cpu_ms, 4)} | ${f(x.sig_p50_ms)} | ${f(x.rtt_p50_ms)} | ${f(x.start_1000_s)} |`);
  }
  process.stdout.write(L.join('\n') + '\n');
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `floor-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  const summary = Object.fromEntries(keyNames.map((k) => [k, { floor: round(keyMed('floor', k)), agent: round(keyMed('agent', k)), ...(BASE ? { base: round(keyMed('base', k)) } : {}) }]));
  writeFileSync(file, JSON.stringify({ date: started.toISOString(), cpu_model: cpuModel, agent: AGENT, base: BASE, rounds: ROUNDS, n: N, tries: TRIES, settle_ms: SETTLE, load_start: load0, load_end: load1, summary, per_round_keys: perRoundKeys, rows }, null, 1) + '\n');
  log(`wrote ${file}`);
  if (opt.summary) {
    // What limits each goal, beside the goal keys: the same key for a server that does only the
    // kernel work on the same stack, and the agent's ratio to it, from this one run.
    const summaryFile = join(BENCH, 'results', 'summary.json');
    const all = existsSync(summaryFile) ? (JSON.parse(readFileSync(summaryFile, 'utf8')) as Record<string, unknown>) : {};
    const floor: Record<string, unknown> = { floor_file: `results/${file.slice(file.lastIndexOf('/') + 1)}` };
    for (const k of keyNames) {
      floor[`floor_${k}`] = round(keyMed('floor', k));
      floor[`agent_vs_floor_${k}`] = round(median(perRoundKeys.map((x) => x.agent[k]! / x.floor[k]!)));
    }
    if (BASE) floor['floor_cpu_ms_per_cycle_c16_vs_base'] = round(ratio('floor', 'base', (x) => x.wait_cpu_ms), 3);
    Object.assign(all, floor);
    writeFileSync(summaryFile, JSON.stringify(all, null, 2) + '\n');
    log(`added the floor keys to ${summaryFile}`);
  }
}

type ProfiledCase = 'wait' | 'watch' | 'get';
const PROFILED: readonly { readonly c: ProfiledCase; readonly title: string; readonly cmd: DriverCommand }[] = [
  { c: 'wait', title: 'Spawn+Wait cycle', cmd: { op: 'tput', conc: 16, n: N, via: 'wait' } },
  { c: 'watch', title: 'Spawn+Watch cycle', cmd: { op: 'tput', conc: 16, n: N, via: 'watch' } },
  { c: 'get', title: 'bare Get', cmd: { op: 'get', conc: 16, n: N } },
];

interface Profiled {
  /** Main thread self time, sampled µs per operation by bucket. */
  readonly buckets: Record<string, number>;
  /** CPU ms per operation by thread, from /proc. */
  readonly threads: Record<string, number>;
  readonly cpu_ms: number;
  readonly ops_per_s: number;
  /** The run's start and end on the profile's clock (µs, CLOCK_MONOTONIC). */
  readonly window: [number, number];
}

/** Each case's run at c=16 on a server under --cpu-prof: its self time by bucket within the run, per operation. */
async function profileOne(peer: Server, driver: AgentDriver): Promise<Record<ProfiledCase, Profiled>> {
  const dir = join(BENCH, 'profiles', `floor-${peer}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const nodeFlags = ['--cpu-prof', '--cpu-prof-dir', dir];
  const agent = await startAgent(peer === 'floor' ? { repo: AGENT, maxProcesses: 4000, nodeFlags, entry: FLOOR, agentFlags: ['--repo', AGENT] } : { repo: peer === 'base' ? BASE! : AGENT, maxProcesses: 4000, nodeFlags });
  const runs: { c: ProfiledCase; window: [number, number]; threads: Record<string, number>; cpu_ms: number; ops_per_s: number }[] = [];
  try {
    await driver.send({ op: 'init', address: agent.address });
    await driver.warmUp();
    for (const { c, cmd } of PROFILED) {
      const t0 = threadCpuMs(agent.pid);
      const cpu0 = cpuSeconds(agent.pid);
      const from = nowNs() / 1000;
      const run = await driver.run(cmd);
      const to = nowNs() / 1000;
      const cpu_ms = ((cpuSeconds(agent.pid) - cpu0) * 1000) / N;
      const threads: Record<string, number> = {};
      for (const [k, v] of threadCpuMs(agent.pid)) if (v - (t0.get(k) ?? 0) > 0) threads[k] = round((v - (t0.get(k) ?? 0)) / N, 4);
      runs.push({ c, window: [from, to], threads, cpu_ms, ops_per_s: N / run.wall_s });
      log(`  ${peer} ${c}: ${Math.round(N / run.wall_s)}/s, ${cpu_ms.toFixed(3)} ms CPU per op ${JSON.stringify(threads)}`);
    }
    await driver.send({ op: 'detach' });
  } finally {
    await agent.stop();
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${dir}`);
  log(`  ${peer}: profile ${join(dir, file)}`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  const out = {} as Record<ProfiledCase, Profiled>;
  for (const { c, window, threads, cpu_ms, ops_per_s } of runs) {
    const buckets: Record<string, number> = {};
    for (const [k, ms] of selfByBucket(profile, window[0], window[1])) buckets[k] = round((ms * 1000) / N, 2);
    out[c] = { buckets, threads, cpu_ms, ops_per_s, window };
  }
  return out;
}

async function profileMain(): Promise<void> {
  const load0 = os.loadavg();
  const started = new Date();
  const driver = new AgentDriver();
  const result: Partial<Record<Server, Record<ProfiledCase, Profiled>>> = {};
  try {
    for (const peer of ['floor', 'agent'] as const) result[peer] = await profileOne(peer, driver);
  } finally {
    await driver.send({ op: 'close' }).catch(() => undefined);
  }
  const cpuModel = os.cpus()[0]?.model ?? '?';
  const L = [
    `${N} operations per case at c=16 under --cpu-prof (floor, then agent); ${os.cpus().length} × ${cpuModel}; load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}. Main thread self time within each run (natives charged to their caller): sampled µs per operation (wall time the thread was not idle, preemption included), its share, and that share of the main thread's CPU from /proc.`,
  ];
  const sum = (b: Record<string, number>) => Object.values(b).reduce((x, y) => x + y, 0);
  const cpuOf = (r: Profiled, k: string) => ((r.buckets[k] ?? 0) / sum(r.buckets)) * (r.threads.main ?? 0) * 1000;
  const share = (r: Profiled, k: string) => `${round((100 * (r.buckets[k] ?? 0)) / sum(r.buckets), 1)} %`;
  for (const { c, title } of PROFILED) {
    const floor = result.floor![c];
    const agent = result.agent![c];
    L.push('', `**${title}**`, '', '| bucket | floor sampled µs | share | ≈ CPU µs | agent sampled µs | share | ≈ CPU µs | agent − floor, CPU µs |', '|---|---:|---:|---:|---:|---:|---:|---:|');
    const names = [...new Set([...Object.keys(agent.buckets), ...Object.keys(floor.buckets)])].sort((a, b) => (agent.buckets[b] ?? 0) - (agent.buckets[a] ?? 0));
    for (const k of names) L.push(`| ${k} | ${round(floor.buckets[k] ?? 0, 1)} | ${share(floor, k)} | ${round(cpuOf(floor, k), 1)} | ${round(agent.buckets[k] ?? 0, 1)} | ${share(agent, k)} | ${round(cpuOf(agent, k), 1)} | ${round(cpuOf(agent, k) - cpuOf(floor, k), 1)} |`);
    L.push(`| **main thread** | ${round(sum(floor.buckets), 1)} | 100 % | ${round((floor.threads.main ?? 0) * 1000, 1)} | ${round(sum(agent.buckets), 1)} | 100 % | ${round((agent.threads.main ?? 0) * 1000, 1)} | ${round(((agent.threads.main ?? 0) - (floor.threads.main ?? 0)) * 1000, 1)} |`);
    L.push('', '| thread (from /proc, µs per operation) | floor | agent |', '|---|---:|---:|');
    for (const t of new Set([...Object.keys(floor.threads), ...Object.keys(agent.threads)])) L.push(`| ${t} | ${round((floor.threads[t] ?? 0) * 1000, 1)} | ${round((agent.threads[t] ?? 0) * 1000, 1)} |`);
    L.push(`| **process (utime+stime)** | ${round(floor.cpu_ms * 1000, 1)} | ${round(agent.cpu_ms * 1000, 1)} |`, `| operations/s (profiled) | ${Math.round(floor.ops_per_s)} | ${Math.round(agent.ops_per_s)} |`);
  }
  process.stdout.write(L.join('\n') + '\n');
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `floor-profile-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ date: started.toISOString(), cpu_model: cpuModel, agent: AGENT, n: N, load_start: load0, load_end: os.loadavg(), result }, null, 1) + '\n');
  log(`wrote ${file}`);
}

(opt.profile ? profileMain() : main()).then(
  () => process.exit(0),
  (e: unknown) => {
    log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
