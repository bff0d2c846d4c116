// Same-run A/B of issue 17's memory keys, as bench/run.ts measures them (scalePhase): a fresh agent,
// the driver's 1,000 warm-up Spawn+Wait cycles at c=8, 500 ms, VmRSS (`rss_idle_mib`); then
// 1,000 and 10,000 sleepers held (`rss_10k_mib`, `per_handle_kib`). It also reads VmRSS right after
// start-up and, at 0 and at 10,000 held, after a longer idle (what a quiet agent gives back), and
// /proc/PID/smaps_rollup's anonymous and file-backed parts.
//
//   node --import tsx bench/mem-ab.ts --agent DIR [--agent 'DIR node:--flag env:NAME=value' ...]
//                                     [--rounds 3] [--held 10000] [--idle-s 8]
//
// An --agent is a checkout with a built dist/, optionally followed by node flags and environment
// variables for that agent, so one checkout can be compared with itself under a flag. Runs are
// interleaved (order rotated per round). Writes bench/results/mem-ab-*.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
  },
  strict: true,
});

interface Variant {
  readonly label: string;
  readonly dir: string;
  readonly nodeFlags: string[];
  readonly env: Record<string, string>;
}

const variants: Variant[] = (opt.agent ?? []).map((spec) => {
  const [dir, ...rest] = spec.trim().split(/\s+/);
  const nodeFlags = rest.filter((x) => x.startsWith('node:')).map((x) => x.slice(5));
  const env = Object.fromEntries(rest.filter((x) => x.startsWith('env:')).map((x) => x.slice(4).split('=', 2) as [string, string]));
  return { label: spec.trim(), dir: resolve(dir!), nodeFlags, env };
});
if (variants.length < 1) throw new Error('usage: bench/mem-ab.ts --agent DIR [--agent DIR ...]');
const ROUNDS = Math.max(1, Number(opt.rounds));
const HELD = Math.max(1000, Number(opt.held));
const IDLE_MS = Number(opt['idle-s']) * 1000;

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
  const agent = await startAgent({ repo: v.dir, maxProcesses: 2 * HELD + 1000, nodeFlags: v.nodeFlags, env: { ...process.env, ...v.env } });
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

async function main(): Promise<void> {
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
