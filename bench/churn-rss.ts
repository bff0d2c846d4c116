// Issue 11 item 5: the agent's memory after churn. Spawn /bin/true, Wait, Release, 16 in flight,
// 20,000 times; the agent's VmRSS after a warm-up, after the churn, and once everything is released
// and the agent has been idle a while (V8 gives memory back after its allocation rate drops).
//
//   node --import tsx bench/churn-rss.ts [--cycles 20000] [--warmup 2000] [--idle-s 20] [--agent DIR]...
//                                        [--node-flag=--max-semi-space-size=1] [--agent-flag=--event-ring=1024]
//
// Each --agent is a checkout with a built dist/ (default: this one); with several, the runs are
// interleaved (A B A B...) for --rounds rounds. Writes bench/results/churn-rss-*.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient } from '../clients/ts/src/index.js';
import { rssKib, fdCount, startAgent } from './agent-process.js';
import { BENCH_CLIENT } from './client-options.js';

const REPO = new URL('../', import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '2000' },
    'idle-s': { type: 'string', default: '20' },
    rounds: { type: 'string', default: '1' },
    agent: { type: 'string', multiple: true },
    'node-flag': { type: 'string', multiple: true },
    'agent-flag': { type: 'string', multiple: true },
  },
});
const cycles = Number(values.cycles);
const warmup = Number(values.warmup);
const idleMs = Number(values['idle-s']) * 1000;
const agents = values.agent ?? [REPO];

async function churn(client: AgentClient, n: number, conc = 16): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < n) {
        next++;
        const { process: p } = await client.spawn({ argv: ['/bin/true'], labels: { bench: 'churn' } });
        await client.wait({ handle: p!.handle });
        await client.release({ handle: p!.handle });
      }
    }),
  );
}

interface Sample {
  readonly agent: string;
  readonly startMib: number;
  readonly warmMib: number;
  readonly churnedMib: number;
  readonly idleMib: number;
  readonly fdsWarm: number;
  readonly fdsIdle: number;
  readonly seconds: number;
}

const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;

async function run(repo: string): Promise<Sample> {
  const agent = await startAgent({ repo, maxProcesses: 65536, nodeFlags: values['node-flag'] ?? [], agentFlags: ['--retention-ttl', '1s', ...(values['agent-flag'] ?? [])] });
  const client = new AgentClient(agent.address, undefined, undefined, BENCH_CLIENT);
  try {
    // The socket file exists a moment before the agent listens on it.
    for (let i = 0; ; i++) {
      try {
        await client.list({});
        break;
      } catch (e) {
        if (i > 100) throw e;
        await sleep(50);
      }
    }
    const startMib = mib(rssKib(agent.pid));
    await churn(client, warmup);
    await sleep(2000);
    const warmMib = mib(rssKib(agent.pid));
    const fdsWarm = fdCount(agent.pid);
    const t0 = performance.now();
    await churn(client, cycles);
    const seconds = (performance.now() - t0) / 1000;
    const churnedMib = mib(rssKib(agent.pid));
    await sleep(idleMs);
    return { agent: repo, startMib, warmMib, churnedMib, idleMib: mib(rssKib(agent.pid)), fdsWarm, fdsIdle: fdCount(agent.pid), seconds };
  } finally {
    client.close();
    await agent.stop();
  }
}

const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? '?';
const samples: Sample[] = [];
for (let r = 0; r < Number(values.rounds); r++) {
  for (const a of agents) {
    const s = await run(a);
    samples.push(s);
    console.log(
      `churn ${a}: RSS ${s.startMib} MiB at start, ${s.warmMib} after ${warmup} warm-up cycles, ${s.churnedMib} after ${cycles} more (${Math.round(cycles / s.seconds)}/s), ` +
        `${s.idleMib} MiB after ${idleMs / 1000} s idle (${(s.idleMib - s.warmMib).toFixed(1)} MiB above the warm baseline); fds ${s.fdsWarm} → ${s.fdsIdle}`,
    );
  }
}
const dir = join(REPO, 'bench/results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `churn-rss-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify({ cpu, cycles, warmup, idleMs, samples }, null, 2)}\n`);
console.log(`RSS after ${cycles} churn cycles: ${samples.map((s) => `${s.churnedMib} MiB (idle ${s.idleMib}, warm ${s.warmMib})`).join('; ')} → ${file}`);
