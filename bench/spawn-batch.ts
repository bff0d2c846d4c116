// Issue 17, API savings: what SpawnBatch and release_on_exit save against unary calls, same run.
//
//   start: time and agent CPU to start 1,000 sleepers: unary Spawn with 16 in flight (this agent
//          and the baseline's), and SpawnBatch in batches of 16, 64 and 256 (one batch in flight,
//          or --batch-inflight N);
//   cycle: agent CPU per /bin/true cycle, 16 in flight: Spawn+Wait+Release (this agent and the
//          baseline's) against Spawn(release_on_exit)+Wait (this agent).
//
//   node --import tsx bench/spawn-batch.ts [--rounds 3] [--sleepers 1000] [--cycles 2000]
//        [--batch 16,64,256] [--batch-inflight 1] [--baseline DIR (make: the agent bench-ab built)] [--quick]
//
// Every mode runs on a fresh agent (fresh state dir, SQLite store as on a node) after the same
// warm-up; the modes are interleaved within each round and the order rotates between rounds.
// Writes bench/results/spawn-batch-*.json and prints a table (medians, and every round).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient } from '../clients/ts/src/index.js';
import { cpuSeconds, startAgent, type AgentProcess } from './agent-process.js';
import { BENCH_CLIENT } from './client-options.js';

const REPO = new URL('../', import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    sleepers: { type: 'string', default: '1000' },
    cycles: { type: 'string', default: '2000' },
    batch: { type: 'string', default: '16,64,256' },
    'batch-inflight': { type: 'string', default: '1' },
    baseline: { type: 'string', default: '' },
    quick: { type: 'boolean', default: false },
  },
});
const rounds = values.quick ? 1 : Number(values.rounds);
const sleepers = values.quick ? 200 : Number(values.sleepers);
const cycles = values.quick ? 300 : Number(values.cycles);
const batchSizes = values.batch.split(',').map(Number);
const batchInflight = Number(values['batch-inflight']);
const baseline = values.baseline !== '' && existsSync(join(values.baseline, 'dist/src/main.js')) ? values.baseline : undefined;
const CONC = 16;
const SLEEPER = ['/bin/sleep', '100000'];
const WARMUP = 300;

interface Mode {
  readonly name: string;
  readonly repo: string;
  readonly kind: 'start' | 'cycle';
  readonly run: (client: AgentClient) => Promise<string[]>;
}

/** Runs fn `n` times with `conc` in flight. */
async function window(n: number, conc: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(conc, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

const unaryStart = async (client: AgentClient): Promise<string[]> => {
  const handles: string[] = [];
  await window(sleepers, CONC, async () => {
    const { process: p } = await client.spawn({ argv: SLEEPER, labels: { bench: 'start' } });
    handles.push(p!.handle);
  });
  return handles;
};

const batchStart = (size: number) => async (client: AgentClient): Promise<string[]> => {
  const handles: string[] = [];
  const batches = Math.ceil(sleepers / size);
  await window(batches, batchInflight, async (b) => {
    const n = Math.min(size, sleepers - b * size);
    const { results } = await client.spawnBatch({ requests: Array.from({ length: n }, () => ({ argv: SLEEPER, labels: { bench: 'start' } })) });
    for (const r of results) {
      if (!r.spawned) throw new Error(`batch item failed: ${r.error?.message}`);
      handles.push(r.spawned.process!.handle);
    }
  });
  return handles;
};

const cycle = (releaseOnExit: boolean) => async (client: AgentClient): Promise<string[]> => {
  await window(cycles, CONC, async () => {
    const { process: p } = await client.spawn({ argv: ['/bin/true'], ...(releaseOnExit && { releaseOnExit: true }) });
    await client.wait({ handle: p!.handle });
    if (!releaseOnExit) await client.release({ handle: p!.handle });
  });
  return [];
};

const modes: Mode[] = [
  ...(baseline ? [{ name: 'baseline unary c=16', repo: baseline, kind: 'start' as const, run: unaryStart }] : []),
  { name: 'unary c=16', repo: REPO, kind: 'start', run: unaryStart },
  ...batchSizes.map((size): Mode => ({ name: `batch ${size}`, repo: REPO, kind: 'start', run: batchStart(size) })),
  ...(baseline ? [{ name: 'baseline spawn+wait+release', repo: baseline, kind: 'cycle' as const, run: cycle(false) }] : []),
  { name: 'spawn+wait+release', repo: REPO, kind: 'cycle', run: cycle(false) },
  { name: 'spawn(release_on_exit)+wait', repo: REPO, kind: 'cycle', run: cycle(true) },
];

interface Sample {
  readonly mode: string;
  readonly round: number;
  readonly wallMs: number;
  readonly agentCpuMs: number;
  readonly clientCpuMs: number;
}

async function ready(client: AgentClient): Promise<void> {
  // The socket file exists a moment before the agent listens on it.
  for (let i = 0; ; i++) {
    try {
      await client.list({});
      return;
    } catch (e) {
      if (i > 100) throw e;
      await sleep(50);
    }
  }
}

async function measure(mode: Mode, round: number): Promise<Sample> {
  const agent: AgentProcess = await startAgent({ repo: mode.repo, maxProcesses: 65536 });
  const client = new AgentClient(agent.address, undefined, undefined, BENCH_CLIENT);
  try {
    await ready(client);
    // The same warm-up for every mode: JIT and pools as after a while in service.
    await window(WARMUP, CONC, async () => {
      const { process: p } = await client.spawn({ argv: ['/bin/true'] });
      await client.wait({ handle: p!.handle });
      await client.release({ handle: p!.handle });
    });
    const cpu0 = cpuSeconds(agent.pid);
    const client0 = process.cpuUsage();
    const t0 = performance.now();
    const handles = await mode.run(client);
    const wallMs = performance.now() - t0;
    const agentCpuMs = (cpuSeconds(agent.pid) - cpu0) * 1000;
    const c = process.cpuUsage(client0);
    // Not measured: the sleepers go before the agent does.
    await window(handles.length, 64, async (i) => {
      await client.signal({ handle: handles[i]!, signal: 'KILL' });
    });
    return { mode: mode.name, round, wallMs, agentCpuMs, clientCpuMs: (c.user + c.system) / 1000 };
  } finally {
    client.close();
    await agent.stop();
  }
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const cpuModel = cpus()[0]?.model ?? 'unknown';
  const loads: number[][] = [];
  const samples: Sample[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = modes.map((_, i) => modes[(i + round) % modes.length]!);
    for (const mode of order) {
      loads.push(loadavg());
      const s = await measure(mode, round);
      samples.push(s);
      console.error(`round ${round + 1}/${rounds} ${mode.name}: ${s.wallMs.toFixed(0)} ms, agent CPU ${s.agentCpuMs.toFixed(0)} ms`);
    }
  }
  const per = (mode: Mode) => samples.filter((s) => s.mode === mode.name);
  const unit = (mode: Mode) => (mode.kind === 'start' ? sleepers : cycles);
  const rows = modes.map((mode) => {
    const ss = per(mode);
    return {
      mode: mode.name,
      kind: mode.kind,
      n: unit(mode),
      wall_ms_median: median(ss.map((s) => s.wallMs)),
      agent_cpu_ms_median: median(ss.map((s) => s.agentCpuMs)),
      agent_cpu_ms_per_op_median: median(ss.map((s) => s.agentCpuMs / unit(mode))),
      client_cpu_ms_median: median(ss.map((s) => s.clientCpuMs)),
      rounds: ss.map((s) => ({ wall_ms: Math.round(s.wallMs), agent_cpu_ms: Math.round(s.agentCpuMs), client_cpu_ms: Math.round(s.clientCpuMs) })),
    };
  });
  const out = { when: new Date().toISOString(), cpu_model: cpuModel, loadavg: loads, sleepers, cycles, batch_inflight: batchInflight, baseline: baseline ?? null, rows };
  const dir = join(REPO, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `spawn-batch-${out.when.replaceAll(':', '-').replaceAll('.', '-')}.json`);
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');

  const ref = (kind: string) => rows.find((r) => r.mode === (kind === 'start' ? 'unary c=16' : 'spawn+wait+release'))!;
  console.log(`CPU: ${cpuModel}; load average at each run: ${loads.map((l) => l[0]!.toFixed(2)).join(' ')}`);
  console.log(`${sleepers} sleepers started; ${cycles} cycles; ${rounds} rounds; batches ${batchInflight} in flight\n`);
  console.log('| mode | wall ms (median) | × this agent\'s unary | agent CPU ms (median) | agent CPU ms per op | × unary | client CPU ms | rounds (wall / agent CPU ms) |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const base = ref(r.kind);
    console.log(
      `| ${r.mode} | ${r.wall_ms_median.toFixed(0)} | ${(r.wall_ms_median / base.wall_ms_median).toFixed(2)} | ${r.agent_cpu_ms_median.toFixed(0)} | ${r.agent_cpu_ms_per_op_median.toFixed(3)} | ${(r.agent_cpu_ms_median / base.agent_cpu_ms_median).toFixed(2)} | ${r.client_cpu_ms_median.toFixed(0)} | ${r.rounds.map((x) => `${x.wall_ms}/${x.agent_cpu_ms}`).join(', ')} |`,
    );
  }
  console.log(`\nwritten to ${file}`);
}

await main();
