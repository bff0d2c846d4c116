// What the clients' defaults of session 19 cost the agent per Spawn+Wait cycle (c=16): a request_id
// on every spawn (a durable record of the intent before the exec, settled with the start), and the
// store on a thread of its own (--store-timeout). One agent of each store, each driven by two
// clients (with and without ids), the four variants interleaved in turns within every round.
//
//   node --import tsx bench/request-id.ts [--rounds 6] [--cycles 3000] [--chunk 500]
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { AgentClient } from '../clients/ts/src/index.js';
import { cpuSeconds, startAgent, type AgentProcess } from './agent-process.js';
import { BENCH_CLIENT } from './client-options.js';
import { interleavedRound, warmUpTogether } from './cycles.js';
import { median, round } from './stats.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    cycles: { type: 'string', default: '3000' },
    chunk: { type: 'string', default: '500' },
  },
});

interface Variant {
  readonly name: string;
  readonly agent: AgentProcess;
  readonly client: AgentClient;
}

const stores = [
  { name: 'event loop', flags: [] },
  { name: 'thread', flags: ['--store-timeout', '5s'] },
];
const agents = await Promise.all(stores.map((s) => startAgent({ repo: process.cwd(), maxProcesses: 65536, agentFlags: s.flags })));
const variants: Variant[] = stores.flatMap((s, i) => [
  { name: `${s.name}, no id`, agent: agents[i]!, client: new AgentClient(agents[i]!.address, undefined, undefined, BENCH_CLIENT) },
  { name: `${s.name}, request id`, agent: agents[i]!, client: new AgentClient(agents[i]!.address, undefined, undefined, { ...BENCH_CLIENT, autoRequestId: true }) },
]);
const perCycle = variants.map(() => [] as number[]);
const rates = variants.map(() => [] as number[]);
try {
  await warmUpTogether(variants.map((v) => v.client), 3000);
  const cycles = Number(values.cycles);
  for (let r = 1; r <= Number(values.rounds); r++) {
    const out = await interleavedRound(variants, cycles, Number(values.chunk), r, (v) => {
      const before = cpuSeconds(v.agent.pid);
      return () => cpuSeconds(v.agent.pid) - before;
    });
    out.forEach((o, i) => {
      perCycle[i]!.push((o.measured * 1e6) / cycles);
      rates[i]!.push(cycles / o.wall);
    });
    console.log(`round ${r}: ${variants.map((v, i) => `${v.name} ${round(perCycle[i]!.at(-1)!, 0)} µs`).join(', ')}`);
  }
} finally {
  for (const v of variants) v.client.close();
  await Promise.all(agents.map((a) => a.stop()));
}

// Each variant against the first (event loop, no id), per round, then the median over rounds.
const ratio = (series: number[][], i: number) => median(series[i]!.map((v, r) => v / series[0]![r]!));
console.log(`\n${cpus()[0]?.model ?? 'cpu?'}, ${cpus().length} CPUs; agent CPU per Spawn+Wait cycle at c=16, medians of ${values.rounds} rounds`);
console.log('variant                      µs/cycle   ×      cycles/s   ×');
variants.forEach((v, i) =>
  console.log(`${v.name.padEnd(28)} ${String(round(median(perCycle[i]!), 0)).padStart(8)}   ${round(ratio(perCycle, i), 3).toFixed(3)}  ${String(round(median(rates[i]!), 0)).padStart(8)}   ${round(ratio(rates, i), 3).toFixed(3)}`),
);
