// Same-run A/B of agents built from different checkouts (issue 17: "halve the agent CPU per
// cycle, shown by a same-run A/B against today's agent"). Each round starts every agent in turn
// (order rotated per round) on the same machine, drives it from one client process and reads its
// CPU from /proc: Spawn+Wait and Spawn+Watch cycles and bare Gets at c=16, and the start of 1,000
// sleepers.
//
//   node --import tsx bench/ab.ts --agent DIR [--agent DIR ...] [--rounds 5] [--n 4000] [--summary]
//
// The first --agent is the reference ("before"); ratios are per round against it, then the median.
// `make bench-ab` builds the reference from git (BENCH_BASE, a commit) and runs this against the
// working tree. --summary adds the before/after keys to bench/results/summary.json.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { DriverCommand } from './agent-driver.js';
import { cpuSeconds, startAgent, type AgentProcess } from './agent-process.js';
import { AgentDriver } from './driver-ipc.js';
import { median, round } from './stats.js';

const BENCH = new URL('.', import.meta.url).pathname;
const { values: opt } = parseArgs({
  options: {
    agent: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
    n: { type: 'string', default: '4000' },
    summary: { type: 'boolean', default: false },
  },
  strict: true,
});
const agents = (opt.agent ?? []).map((d) => resolve(d));
if (agents.length < 1) throw new Error('usage: bench/ab.ts --agent DIR [--agent DIR ...]');
for (const dir of agents) if (!existsSync(join(dir, 'dist/src/main.js'))) throw new Error(`${dir}: no dist/src/main.js (make build there first)`);
const ROUNDS = Math.max(1, Number(opt.rounds));
const N = Math.max(16, Number(opt.n));

const log = (msg: string) => process.stderr.write(`[ab ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

type Case = 'wait' | 'watch' | 'get' | 'start1000';
interface Measure {
  readonly round: number;
  readonly agent: string;
  readonly case: Case;
  readonly n: number;
  readonly wall_s: number;
  readonly agent_cpu_s: number;
}

const driver = new AgentDriver();
const measures: Measure[] = [];

async function measure(agent: AgentProcess, round: number, dir: string, c: Case, cmd: DriverCommand, n: number): Promise<void> {
  const cpu0 = cpuSeconds(agent.pid);
  const run = await driver.run(cmd);
  const m = { round, agent: dir, case: c, n, wall_s: run.wall_s, agent_cpu_s: cpuSeconds(agent.pid) - cpu0 };
  measures.push(m);
  log(`  ${c}: ${Math.round(n / m.wall_s)}/s, agent CPU ${((m.agent_cpu_s * 1000) / n).toFixed(3)} ms per op`);
}

async function oneAgent(round: number, dir: string): Promise<void> {
  log(`round ${round}: ${dir} (load ${os.loadavg()[0]!.toFixed(2)})`);
  const agent = await startAgent({ repo: dir, maxProcesses: 4000 });
  try {
    await driver.send({ op: 'init', address: agent.address });
    await driver.warmUp();
    await measure(agent, round, dir, 'wait', { op: 'tput', conc: 16, n: N, via: 'wait' }, N);
    await measure(agent, round, dir, 'watch', { op: 'tput', conc: 16, n: N, via: 'watch' }, N);
    await measure(agent, round, dir, 'get', { op: 'get', conc: 16, n: N }, N);
    await measure(agent, round, dir, 'start1000', { op: 'hold', count: 1000, conc: 16 }, 1000);
    await driver.run({ op: 'unhold', conc: 16 });
    await driver.send({ op: 'detach' });
  } finally {
    await agent.stop();
  }
}

const cpuMs = (m: Measure | undefined) => (m ? (m.agent_cpu_s * 1000) / m.n : Number.NaN);
const pick = (round: number, dir: string, c: Case) => measures.find((m) => m.round === round && m.agent === dir && m.case === c);

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const started = new Date();
  for (let r = 1; r <= ROUNDS; r++) {
    const order = agents.map((_, i) => agents[(i + r) % agents.length]!);
    for (const dir of order) await oneAgent(r, dir);
  }
  await driver.send({ op: 'close' }).catch(() => undefined);
  const ref = agents[0]!;
  const rows = agents.map((dir) => {
    const med = (c: Case, f: (m: Measure | undefined) => number) => median(Array.from({ length: ROUNDS }, (_, i) => f(pick(i + 1, dir, c))));
    const vsRef = (c: Case) => median(Array.from({ length: ROUNDS }, (_, i) => cpuMs(pick(i + 1, dir, c)) / cpuMs(pick(i + 1, ref, c))));
    return {
      agent: dir,
      wait_cpu_ms: round(med('wait', cpuMs), 4),
      watch_cpu_ms: round(med('watch', cpuMs), 4),
      get_cpu_ms: round(med('get', cpuMs), 4),
      wait_cps: round(med('wait', (m) => (m ? m.n / m.wall_s : NaN)), 0),
      watch_cps: round(med('watch', (m) => (m ? m.n / m.wall_s : NaN)), 0),
      start_1000_s: round(med('start1000', (m) => m?.wall_s ?? NaN), 3),
      wait_cpu_vs_ref: round(vsRef('wait'), 3),
      watch_cpu_vs_ref: round(vsRef('watch'), 3),
      get_cpu_vs_ref: round(vsRef('get'), 3),
      watch_cycle_vs_get: round(median(Array.from({ length: ROUNDS }, (_, i) => cpuMs(pick(i + 1, dir, 'watch')) / cpuMs(pick(i + 1, dir, 'get')))), 3),
    };
  });
  const cpuModel = os.cpus()[0]?.model ?? '?';
  const result = { date: started.toISOString(), cpu_model: cpuModel, rounds: ROUNDS, n: N, load_start: load0, load_end: os.loadavg(), rows, measures };
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `ab-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 1) + '\n');

  const L = [`A/B, ${ROUNDS} rounds of ${N} cycles per case, ${os.cpus().length} × ${cpuModel}, load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; medians over rounds, ratios per round against the first agent:`, ''];
  L.push('| agent | CPU ms / Spawn+Wait c=16 | ×ref | CPU ms / Spawn+Watch | ×ref | CPU ms / Get | ×ref | Watch cycle ÷ Get | Wait cycles/s | Watch cycles/s | start 1,000 s |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) L.push(`| ${r.agent} | ${r.wait_cpu_ms} | ${r.wait_cpu_vs_ref} | ${r.watch_cpu_ms} | ${r.watch_cpu_vs_ref} | ${r.get_cpu_ms} | ${r.get_cpu_vs_ref} | ${r.watch_cycle_vs_get} | ${r.wait_cps} | ${r.watch_cps} | ${r.start_1000_s} |`);
  process.stdout.write(L.join('\n') + '\n');
  log(`wrote ${file}`);

  if (opt.summary && rows.length >= 2) {
    const summaryFile = join(BENCH, 'results', 'summary.json');
    const summary = existsSync(summaryFile) ? (JSON.parse(readFileSync(summaryFile, 'utf8')) as Record<string, unknown>) : {};
    const before = rows[0]!;
    const after = rows[rows.length - 1]!;
    Object.assign(summary, {
      ab_file: `results/${file.slice(file.lastIndexOf('/') + 1)}`,
      agent_cpu_ms_per_cycle_c16_before: before.wait_cpu_ms,
      agent_cpu_ms_per_cycle_c16_after: after.wait_cpu_ms,
      agent_cpu_c16_after_vs_before: after.wait_cpu_vs_ref,
    });
    writeFileSync(summaryFile, JSON.stringify(summary, null, 2) + '\n');
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
