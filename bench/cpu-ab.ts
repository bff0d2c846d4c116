// A same-run A/B of agent CPU per Spawn+Wait cycle at c=16, as bench/run.ts measures
// `agent_cpu_ms_per_cycle_c16`: each agent started as the bench starts it (a fresh state dir, an
// audit log file), warmed up, then utime+stime from /proc/PID/stat around the run.
//
//   node --import tsx bench/cpu-ab.ts --agent DIR --agent DIR2 [--rounds 5] [--cycles 4000]
//                                     [--agent-flags 'DIR2=--ephemeral']
//
// The agents are interleaved (A B A B...) in every round; the report gives each round and the
// medians, with the load average and the CPU model.
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { cpuSeconds, startAgent } from './agent-process.js';
import { AgentDriver } from './driver-ipc.js';

const REPO = new URL('../', import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    agent: { type: 'string', multiple: true },
    'agent-flags': { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
    cycles: { type: 'string', default: '4000' },
    warmup: { type: 'string', default: '1000' },
    conc: { type: 'string', default: '16' },
  },
});
/** An agent is a checkout; `DIR=flags` entries run the same checkout again with extra flags. */
const agents: { label: string; repo: string; flags: string[] }[] = (values.agent ?? [REPO]).map((repo) => ({ label: repo, repo, flags: [] }));
for (const spec of values['agent-flags'] ?? []) {
  const at = spec.indexOf('=');
  const repo = spec.slice(0, at);
  const flags = spec.slice(at + 1).split(' ').filter(Boolean);
  agents.push({ label: `${repo} ${flags.join(' ')}`, repo, flags });
}
const rounds = Number(values.rounds);
const cycles = Number(values.cycles);
const conc = Number(values.conc);
const cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const driver = new AgentDriver();
  const perCycle = agents.map(() => [] as number[]);
  const cps = agents.map(() => [] as number[]);
  const load0 = loadavg();
  console.log(`CPU ${cpuModel}; load average ${load0.map((l) => l.toFixed(2)).join(' ')}; ${rounds} rounds of ${cycles} cycles at c=${conc}`);
  for (let r = 1; r <= rounds; r++) {
    // Alternate the order every round so neither agent always runs first.
    const order = agents.map((_, i) => i);
    if (r % 2 === 0) order.reverse();
    for (const i of order) {
      const a = agents[i]!;
      const agent = await startAgent({ repo: a.repo, maxProcesses: 2000, agentFlags: a.flags });
      try {
        await driver.send({ op: 'init', address: agent.address });
        await driver.run({ op: 'tput', conc: 8, n: Number(values.warmup), via: 'wait' });
        const cpu0 = cpuSeconds(agent.pid);
        const run = await driver.run({ op: 'tput', conc, n: cycles, via: 'wait' });
        const ms = ((cpuSeconds(agent.pid) - cpu0) * 1000) / cycles;
        perCycle[i]!.push(ms);
        cps[i]!.push(cycles / run.wall_s);
        console.log(`round ${r} ${a.label}: agent CPU ${ms.toFixed(4)} ms/cycle, ${(cycles / run.wall_s).toFixed(0)} cycles/s (load ${loadavg()[0]!.toFixed(2)})`);
        await driver.send({ op: 'detach' });
      } finally {
        await agent.stop();
      }
    }
  }
  await driver.send({ op: 'close' }).catch(() => undefined);
  const base = median(perCycle[0]!);
  console.log(`\nmedians (load average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}):`);
  agents.forEach((a, i) => {
    const m = median(perCycle[i]!);
    console.log(`| ${a.label} | ${m.toFixed(4)} ms | ${(m / base).toFixed(3)} | ${median(cps[i]!).toFixed(0)} /s | ${perCycle[i]!.map((x) => x.toFixed(3)).join(', ')} |`);
  });
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
