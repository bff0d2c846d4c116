// Same-run A/B of issue 17's memory keys, as bench/run.ts measures them (scalePhase): a fresh agent,
// the driver's 1,000 warm-up Spawn+Wait cycles at c=8, 500 ms, VmRSS (`rss_idle_mib`); then
// 1,000 and 10,000 sleepers held (`rss_10k_mib`, `per_handle_kib`). It also reads VmRSS right after
// start-up and, at 0 and at 10,000 held, after a longer idle (what a quiet agent gives back), and
// /proc/PID/smaps_rollup's anonymous and file-backed parts.
//
//   node --import tsx bench/mem-ab.ts --agent DIR [--agent 'DIR node:--flag env:NAME=value' ...]
//                                     [--rounds 3] [--held 10000] [--idle-s 8]
//                                     [--mode round [--scale 1] [--probe] [--snapshot]]
//
// --mode round is a full round of bench/run.ts's scalePhase as the 17:41 run did it, read at rest
// (12 s quiet, --rest-s) where it matters: 1,000 warm-up cycles, rest; 10,000 sleepers held, rest;
// the throughput and signal cases with 10,000 held, 9,000 released, the same cases with 1,000
// held, all released, rest (`end_rest`: the idle agent after a round, 90-95 MiB in that run),
// and another rest. --scale multiplies the case counts. --probe preloads bench/mem-probe.mjs
// into each agent and asks it at the idle and end rests for V8's heap spaces and glibc's malloc
// statistics (--snapshot: and a heap snapshot, last), and keeps /proc/PID/smaps by mapping; all under
// bench/results/mem-probe-*/.
//
// An --agent is a checkout with a built dist/, optionally followed by node flags (node:--flag),
// environment variables (env:NAME=value) and agent flags (arg:--flag=value) for that agent, so one checkout can be compared with itself under a flag. Runs are
// interleaved (order rotated per round). Writes bench/results/mem-ab-*.json.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpuSeconds, rssKib, startAgent } from './agent-process.js';
import { AgentDriver } from './driver-ipc.js';
import { median, round } from './stats.js';

const BENCH = new URL('.', import.meta.url).pathname;
const { values: opt } = parseArgs({
  options: {
    agent: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '3' },
    held: { type: 'string', default: '10000' },
    'idle-s': { type: 'string', default: '8' },
    mode: { type: 'string', default: 'burst' },
    'rest-s': { type: 'string', default: '12' },
    scale: { type: 'string', default: '1' },
    probe: { type: 'boolean', default: false },
    snapshot: { type: 'boolean', default: false },
  },
  strict: true,
});

interface Variant {
  readonly label: string;
  readonly dir: string;
  readonly nodeFlags: string[];
  readonly env: Record<string, string>;
  readonly agentFlags: string[];
}

const variants: Variant[] = (opt.agent ?? []).map((spec) => {
  const [dir, ...rest] = spec.trim().split(/\s+/);
  const nodeFlags = rest.filter((x) => x.startsWith('node:')).map((x) => x.slice(5));
  const env = Object.fromEntries(rest.filter((x) => x.startsWith('env:')).map((x) => x.slice(4).split('=', 2) as [string, string]));
  const agentFlags = rest.filter((x) => x.startsWith('arg:')).flatMap((x) => x.slice(4).split('=', 2));
  return { label: spec.trim(), dir: resolve(dir!), nodeFlags, env, agentFlags };
});
if (variants.length < 1) throw new Error('usage: bench/mem-ab.ts --agent DIR [--agent DIR ...]');
const ROUNDS = Math.max(1, Number(opt.rounds));
const HELD = Math.max(1000, Number(opt.held));
const IDLE_MS = Number(opt['idle-s']) * 1000;
const REST_MS = Number(opt['rest-s']) * 1000;
const SCALE = Number(opt.scale);
const ROUND_MODE = opt.mode === 'round';
if (!ROUND_MODE && opt.mode !== 'burst') throw new Error('--mode burst|round');
const PROBE_DIR = opt.probe ? join(BENCH, 'results', `mem-probe-${new Date().toISOString().replace(/[:.]/g, '-')}`) : undefined;

const log = (msg: string) => process.stderr.write(`[mem-ab ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const mib = (kib: number) => round(kib / 1024, 1);

/** Anonymous and file-backed resident KiB (smaps_rollup). */
function rollup(pid: number): { anon: number; file: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN);
  return { anon: kb('Anonymous'), file: kb('Rss') - kb('Anonymous') };
}

interface Sample {
  readonly round: number;
  readonly label: string;
  readonly fresh: number;
  readonly idle: number;
  readonly idle_anon: number;
  readonly idle_file: number;
  readonly quiet: number;
  readonly held1k: number;
  readonly held: number;
  readonly held_anon: number;
  readonly held_file: number;
  readonly held_quiet: number;
  readonly per_handle_kib: number;
  readonly per_handle_quiet_kib: number;
  /** Agent CPU ms per start of the 1,000 sleepers started right after the idle spell. */
  readonly start_after_idle_cpu_ms: number;
}

const driver = new AgentDriver();
const samples: Sample[] = [];

async function one(roundNo: number, v: Variant): Promise<void> {
  const agent = await startAgent({ repo: v.dir, maxProcesses: 2 * HELD + 1000, nodeFlags: v.nodeFlags, env: { ...process.env, ...v.env }, agentFlags: v.agentFlags });
  try {
    await driver.send({ op: 'init', address: agent.address });
    await sleep(500);
    const fresh = rssKib(agent.pid);
    await driver.run({ op: 'tput', conc: 8, n: 1000, via: 'wait' });
    await sleep(500);
    const idle = rssKib(agent.pid);
    const r = rollup(agent.pid);
    await sleep(IDLE_MS);
    const quiet = rssKib(agent.pid);
    // The first work after the idle spell (where a reducer's unmapped pages come back): its CPU.
    const cpu0 = cpuSeconds(agent.pid);
    await driver.run({ op: 'hold', count: 1000, conc: 16 });
    const cpu1k = cpuSeconds(agent.pid) - cpu0;
    await sleep(500);
    const held1k = rssKib(agent.pid);
    await driver.run({ op: 'hold', count: HELD - 1000, conc: 16 });
    await sleep(500);
    const held = rssKib(agent.pid);
    const h = rollup(agent.pid);
    await sleep(IDLE_MS);
    const heldQuiet = rssKib(agent.pid);
    const s: Sample = {
      round: roundNo,
      label: v.label,
      fresh: mib(fresh),
      idle: mib(idle),
      idle_anon: mib(r.anon),
      idle_file: mib(r.file),
      quiet: mib(quiet),
      held1k: mib(held1k),
      held: mib(held),
      held_anon: mib(h.anon),
      held_file: mib(h.file),
      held_quiet: mib(heldQuiet),
      per_handle_kib: round((held - idle) / HELD, 3),
      per_handle_quiet_kib: round((heldQuiet - quiet) / HELD, 3),
      start_after_idle_cpu_ms: round(cpu1k, 4), // seconds per 1,000 = ms per start
    };
    samples.push(s);
    log(`  ${v.label}: fresh ${s.fresh}, idle ${s.idle} (anon ${s.idle_anon}, file ${s.idle_file}), after ${IDLE_MS / 1000} s ${s.quiet}, 1k ${s.held1k}, ${HELD} ${s.held} MiB (anon ${s.held_anon}, file ${s.held_file}), quiet ${s.held_quiet}; ${s.per_handle_kib} KiB/handle, quiet ${s.per_handle_quiet_kib}; CPU of 1,000 starts after the idle ${s.start_after_idle_cpu_ms} ms per start`);
    await driver.run({ op: 'unhold', conc: 32 });
    await driver.send({ op: 'detach' });
  } finally {
    await agent.stop();
  }
  await sleep(1500);
}

/** Resident and anonymous KiB of each mapping name (a path, [heap], [stack], or '' for anonymous). */
function smapsByName(pid: number): Record<string, { rss: number; anon: number; n: number }> {
  const out: Record<string, { rss: number; anon: number; n: number }> = {};
  let name = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      name = head[1]!;
      const e = (out[name] ??= { rss: 0, anon: 0, n: 0 });
      e.n++;
      continue;
    }
    const m = /^(Rss|Anonymous):\s+(\d+) kB$/.exec(line);
    if (m) out[name]![m[1] === 'Rss' ? 'rss' : 'anon'] += Number(m[2]);
  }
  return out;
}

/** Asks the agent's preloaded mem-probe for its numbers; waits for them. */
async function probe(pid: number, tag: string, v: Variant, roundNo: number, snapshot = false): Promise<unknown> {
  if (!PROBE_DIR) return undefined;
  if (snapshot) writeFileSync(join(PROBE_DIR, `snapshot-${pid}`), '');
  const before = new Set(readdirSync(PROBE_DIR));
  writeFileSync(join(PROBE_DIR, `r${roundNo}-${tag}-${pid}.smaps.json`), JSON.stringify({ label: v.label, rss_kib: rssKib(pid), by_name: smapsByName(pid) }, null, 1));
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 60_000;
  for (;;) {
    const done = readdirSync(PROBE_DIR).find((f) => f.startsWith(`probe-${pid}-`) && f.endsWith('.done') && !before.has(f));
    if (done) {
      const base = done.slice(0, -'.done'.length);
      for (const ext of ['.json', '.malloc.xml', '.heapsnapshot']) {
        try {
          renameSync(join(PROBE_DIR, base + ext), join(PROBE_DIR, `r${roundNo}-${tag}-${pid}${ext}`));
        } catch {}
      }
      rmSync(join(PROBE_DIR, `snapshot-${pid}`), { force: true });
      rmSync(join(PROBE_DIR, done));
      return JSON.parse(readFileSync(join(PROBE_DIR, `r${roundNo}-${tag}-${pid}.json`), 'utf8'));
    }
    if (Date.now() > deadline) throw new Error('mem-probe did not answer');
    await sleep(100);
  }
}

interface RoundSample {
  readonly round: number;
  readonly label: string;
  readonly idle_rest: number;
  readonly held_rest: number;
  readonly end_busy: number;
  readonly end_rest: number;
  readonly end_anon: number;
  readonly end_file: number;
  readonly end_rest2: number;
  readonly cpu_s: number;
}
const roundSamples: RoundSample[] = [];

const scaled = (n: number) => Math.max(16, Math.round(n * SCALE));

/** bench/run.ts's atScale: what the round does with `managed` sleepers held. */
async function atScale(): Promise<void> {
  for (const conc of [1, 16] as const) {
    const n = scaled(conc === 1 ? 1000 : 2000);
    await driver.run({ op: 'tput', conc, n, via: 'wait' });
    await driver.run({ op: 'tput', conc, n, via: 'watch' });
  }
  for (const conc of [1, 16] as const) await driver.run({ op: 'sig', conc, n: scaled(conc === 1 ? 100 : 160), settleMs: 20 });
}

async function fullRound(roundNo: number, v: Variant): Promise<void> {
  const flags = PROBE_DIR ? [...v.nodeFlags, `--import=${join(BENCH, 'mem-probe.mjs')}`] : v.nodeFlags;
  const env = { ...process.env, ...v.env, ...(PROBE_DIR ? { MEM_PROBE_DIR: PROBE_DIR } : {}) };
  const agent = await startAgent({ repo: v.dir, maxProcesses: 2 * HELD + 1000, nodeFlags: flags, env, agentFlags: v.agentFlags });
  try {
    const cpu0 = cpuSeconds(agent.pid);
    await driver.send({ op: 'init', address: agent.address });
    await driver.run({ op: 'tput', conc: 8, n: 1000, via: 'wait' });
    await sleep(REST_MS);
    const idleRest = rssKib(agent.pid);
    await probe(agent.pid, 'idle', v, roundNo);
    await driver.run({ op: 'hold', count: 1000, conc: 16 });
    await driver.run({ op: 'hold', count: HELD - 1000, conc: 16 });
    await sleep(REST_MS);
    const heldRest = rssKib(agent.pid);
    await atScale();
    await driver.run({ op: 'unhold', count: HELD - 1000, conc: 16 });
    await atScale();
    await driver.run({ op: 'unhold', conc: 16 });
    const cpu = cpuSeconds(agent.pid) - cpu0;
    await sleep(500);
    const endBusy = rssKib(agent.pid);
    await sleep(REST_MS - 500);
    const endRest = rssKib(agent.pid);
    const r = rollup(agent.pid);
    await probe(agent.pid, 'end', v, roundNo);
    await sleep(REST_MS);
    const endRest2 = rssKib(agent.pid);
    // Last: a heap snapshot grows the heap it describes.
    if (opt.snapshot) await probe(agent.pid, 'snapshot', v, roundNo, true);
    const s: RoundSample = { round: roundNo, label: v.label, idle_rest: mib(idleRest), held_rest: mib(heldRest), end_busy: mib(endBusy), end_rest: mib(endRest), end_anon: mib(r.anon), end_file: mib(r.file), end_rest2: mib(endRest2), cpu_s: round(cpu, 2) };
    roundSamples.push(s);
    log(`  ${v.label}: idle at rest ${s.idle_rest}, ${HELD} held at rest ${s.held_rest}; after the round 0.5 s ${s.end_busy}, at rest ${s.end_rest} (anon ${s.end_anon}, file ${s.end_file}), ${(2 * REST_MS) / 1000} s ${s.end_rest2} MiB; agent CPU ${s.cpu_s} s`);
    await driver.send({ op: 'detach' });
  } finally {
    await agent.stop();
  }
  await sleep(1500);
}

async function mainRound(): Promise<void> {
  const load0 = os.loadavg();
  const started = new Date();
  if (PROBE_DIR) mkdirSync(PROBE_DIR, { recursive: true });
  for (let r = 1; r <= ROUNDS; r++) {
    log(`round ${r} (load ${os.loadavg()[0]!.toFixed(2)})`);
    for (let i = 0; i < variants.length; i++) await fullRound(r, variants[(i + r) % variants.length]!);
  }
  await driver.send({ op: 'close' }).catch(() => undefined);
  const keys = ['idle_rest', 'held_rest', 'end_busy', 'end_rest', 'end_anon', 'end_file', 'end_rest2', 'cpu_s'] as const;
  const rows = variants.map((v) => {
    const mine = roundSamples.filter((s) => s.label === v.label);
    return { label: v.label, ...Object.fromEntries(keys.map((k) => [k, round(median(mine.map((s) => s[k])), 3)])) } as Record<string, string | number>;
  });
  const cpuModel = os.cpus()[0]?.model ?? '?';
  const result = { date: started.toISOString(), mode: 'round', cpu_model: cpuModel, rounds: ROUNDS, held: HELD, rest_s: REST_MS / 1000, scale: SCALE, probe_dir: PROBE_DIR, load_start: load0, load_end: os.loadavg(), rows, samples: roundSamples };
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `mem-ab-round-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 1) + '\n');
  const L = [`memory A/B after a full round, ${ROUNDS} rounds, ${os.cpus().length} × ${cpuModel}, load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; medians (MiB):`, ''];
  L.push(`| agent | idle at rest | ${HELD} held at rest | end 0.5 s | end at rest | anon | file | end ${(2 * REST_MS) / 1000} s | agent CPU s |`);
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) L.push(`| ${r.label} | ${keys.map((k) => r[k]).join(' | ')} |`);
  process.stdout.write(L.join('\n') + '\n');
  log(`wrote ${file}`);
}

async function main(): Promise<void> {
  if (ROUND_MODE) return mainRound();
  const load0 = os.loadavg();
  const started = new Date();
  for (let r = 1; r <= ROUNDS; r++) {
    log(`round ${r} (load ${os.loadavg()[0]!.toFixed(2)})`);
    for (let i = 0; i < variants.length; i++) await one(r, variants[(i + r) % variants.length]!);
  }
  await driver.send({ op: 'close' }).catch(() => undefined);
  const keys = ['fresh', 'idle', 'idle_anon', 'idle_file', 'quiet', 'held1k', 'held', 'held_anon', 'held_file', 'held_quiet', 'per_handle_kib', 'per_handle_quiet_kib', 'start_after_idle_cpu_ms'] as const;
  const rows = variants.map((v) => {
    const mine = samples.filter((s) => s.label === v.label);
    return { label: v.label, ...Object.fromEntries(keys.map((k) => [k, round(median(mine.map((s) => s[k])), 3)])) } as Record<string, string | number>;
  });
  const cpuModel = os.cpus()[0]?.model ?? '?';
  const result = { date: started.toISOString(), cpu_model: cpuModel, rounds: ROUNDS, held: HELD, idle_s: IDLE_MS / 1000, load_start: load0, load_end: os.loadavg(), rows, samples };
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `mem-ab-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 1) + '\n');
  const L = [`memory A/B, ${ROUNDS} rounds, ${os.cpus().length} × ${cpuModel}, load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; medians (MiB; per handle KiB):`, ''];
  L.push(`| agent | fresh | idle 0.5 s (rss_idle_mib) | anon | file | idle ${IDLE_MS / 1000} s | 1,000 held | ${HELD} held 0.5 s (rss_10k_mib) | anon | file | ${HELD} held ${IDLE_MS / 1000} s | KiB/handle (0.5 s) | KiB/handle (${IDLE_MS / 1000} s) | CPU ms per start after the idle |`);
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) L.push(`| ${r.label} | ${keys.map((k) => r[k]).join(' | ')} |`);
  process.stdout.write(L.join('\n') + '\n');
  log(`wrote ${file}`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
