// Same-run A/B of agent CPU per unary call (the RPC layer's lever): agents built from different
// trees (--agent DIR, repeatable) run interleaved round by round, each measured by its CPU time
// from /proc around a run of bare Gets of a running sleeper and of Spawn+Wait+Release cycles of
// /bin/true, 16 in flight. Prints each round and the medians; the first --agent is the reference.
// Usage: node --import tsx bench/rpc-ab.ts --agent /work/baseline --agent . [--rounds N] [--gets N] [--cycles N]
import os from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AgentClient } from '../clients/ts/src/index.js';
import { cpuSeconds, startAgent, type AgentProcess } from './agent-process.js';
import { median } from './stats.js';
import { BENCH_CLIENT } from './client-options.js';

const { values: opt } = parseArgs({
  options: {
    agent: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
    gets: { type: 'string', default: '20000' },
    cycles: { type: 'string', default: '3000' },
    release: { type: 'boolean', default: false },
  },
  strict: true,
});
const DIRS = (opt.agent ?? ['.']).map((d) => resolve(d));
const ROUNDS = Number(opt.rounds);
const GETS = Number(opt.gets);
const CYCLES = Number(opt.cycles);
const CONC = 16;

async function inFlight(n: number, one: () => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (next++ < n) await one();
  }));
  return (performance.now() - t0) / 1000;
}

interface Variant {
  readonly dir: string;
  readonly agent: AgentProcess;
  readonly client: AgentClient;
  readonly sleeper: string;
  readonly get: number[];
  readonly cycle: number[];
}

async function measure(v: Variant, n: number, one: () => Promise<unknown>): Promise<{ cpuUs: number; perS: number }> {
  const c0 = cpuSeconds(v.agent.pid);
  const wall = await inFlight(n, one);
  return { cpuUs: ((cpuSeconds(v.agent.pid) - c0) * 1e6) / n, perS: n / wall };
}

async function main(): Promise<void> {
  const variants: Variant[] = [];
  try {
    for (const dir of DIRS) {
      const agent = await startAgent({ repo: dir, maxProcesses: 4096, agentFlags: ['--retention-max', '1000'] });
      const client = new AgentClient(agent.address, undefined, undefined, BENCH_CLIENT);
      const { process: p } = await client.spawn({ argv: ['/bin/sleep', '100000'] });
      variants.push({ dir, agent, client, sleeper: p!.handle, get: [], cycle: [] });
    }
    const cycle = (c: AgentClient) => async () => {
      const { process: p } = await c.spawn({ argv: ['/bin/true'] });
      await c.wait({ handle: p!.handle });
      if (opt.release) await c.release({ handle: p!.handle });
    };
    for (const v of variants) {
      await inFlight(2000, () => v.client.get({ handle: v.sleeper }));
      await inFlight(300, cycle(v.client));
    }
    for (let round = 1; round <= ROUNDS; round++) {
      const order = round % 2 === 1 ? variants : [...variants].reverse();
      for (const v of order) {
        const g = await measure(v, GETS, () => v.client.get({ handle: v.sleeper }));
        const c = await measure(v, CYCLES, cycle(v.client));
        v.get.push(g.cpuUs);
        v.cycle.push(c.cpuUs);
        console.log(`round ${round} ${v.dir}: Get ${g.cpuUs.toFixed(1)} µs CPU (${g.perS.toFixed(0)}/s)  cycle ${c.cpuUs.toFixed(1)} µs CPU (${c.perS.toFixed(0)}/s)  load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
      }
    }
    const ref = variants[0]!;
    const results = join(dirname(fileURLToPath(import.meta.url)), 'results');
    mkdirSync(results, { recursive: true });
    const file = join(results, `rpc-ab-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    const summary = {
      cpu_model: os.cpus()[0]?.model ?? 'unknown',
      loadavg_at_end: os.loadavg(),
      rounds: ROUNDS,
      gets_per_round: GETS,
      cycles_per_round: CYCLES,
      release: opt.release,
      agents: variants.map((v) => ({ dir: v.dir, get_cpu_us: v.get, cycle_cpu_us: v.cycle, get_median: median(v.get), cycle_median: median(v.cycle) })),
    };
    writeFileSync(file, JSON.stringify(summary, null, 2) + '\n');
    console.log(`\n${os.cpus()[0]?.model}, ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ${ROUNDS} rounds, ${GETS} Gets + ${CYCLES} Spawn+Wait${opt.release ? '+Release' : ''} cycles each, c=${CONC}`);
    for (const v of variants) {
      const g = median(v.get);
      const c = median(v.cycle);
      const ratios = (a: number[], b: number[]) => median(a.map((x, i) => x / b[i]!)).toFixed(3);
      console.log(`${v.dir}: Get ${g.toFixed(1)} µs, cycle ${c.toFixed(1)} µs agent CPU (medians); per-round ratio vs ${ref.dir}: Get ×${ratios(v.get, ref.get)}, cycle ×${ratios(v.cycle, ref.cycle)}`);
    }
    console.log(`written to ${file}`);
  } finally {
    for (const v of variants) {
      v.client.close();
      await v.agent.stop();
    }
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
