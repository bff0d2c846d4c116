// Same-run A/B of the agent's CPU per Spawn+Wait cycle (c=16), its throughput, and the time to
// start 1,000 sleepers, between agent checkouts (each with a built dist/), interleaved A B A B.
//
//   node --import tsx bench/spawn-ab.ts --agent /work/baseline --agent . [--rounds 5] [--cycles 3000] [--capture]
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient, OutputMode } from '../clients/ts/src/index.js';
import { cpuSeconds, startAgent } from './agent-process.js';
import { BENCH_CLIENT } from './client-options.js';

const { values } = parseArgs({
  options: {
    agent: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
    cycles: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '500' },
    sleepers: { type: 'string', default: '1000' },
    // Spawn with stdout captured (a pipe read into a ring) instead of discarded.
    capture: { type: 'boolean', default: false },
  },
});
const agents = values.agent ?? ['.'];
const cycles = Number(values.cycles);
const output = values.capture ? { stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } } : {};

async function pool(n: number, conc: number, one: () => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) {
      next++;
      await one();
    }
  }));
}

interface Sample { cpuUsPerCycle: number; mainUsPerCycle: number; spawnerUsPerCycle: number; cyclesPerS: number; sleepersMs: number; sleepersCpuMs: number }

/** CPU seconds of pid's threads: the main thread, the spawner threads, all others. */
function threadCpu(pid: number): { main: number; spawner: number } {
  let main = 0;
  let spawner = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
      const comm = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
      const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const s = (Number(rest[11]) + Number(rest[12])) / 100;
      if (tid === String(pid)) main += s;
      else if (comm === 'pidfd-spawner') spawner += s;
    } catch {
      // a thread that just ended
    }
  }
  return { main, spawner };
}

async function run(repo: string): Promise<Sample> {
  const agent = await startAgent({ repo, maxProcesses: 65536 });
  const client = new AgentClient(agent.address, undefined, undefined, BENCH_CLIENT);
  try {
    for (let i = 0; ; i++) {
      try {
        await client.list({});
        break;
      } catch (e) {
        if (i > 100) throw e;
        await sleep(50);
      }
    }
    const cycle = async () => {
      const { process: p } = await client.spawn({ argv: ['/bin/true'], ...output });
      await client.wait({ handle: p!.handle });
    };
    await pool(Number(values.warmup), 16, cycle);
    const cpu0 = cpuSeconds(agent.pid);
    const th0 = threadCpu(agent.pid);
    const t0 = performance.now();
    await pool(cycles, 16, cycle);
    const t1 = performance.now();
    const cpu1 = cpuSeconds(agent.pid);
    const th1 = threadCpu(agent.pid);
    const handles: string[] = [];
    const s0 = performance.now();
    await pool(Number(values.sleepers), 16, async () => {
      const { process: p } = await client.spawn({ argv: ['/bin/sleep', '1000'], ...output });
      handles.push(p!.handle);
    });
    const s1 = performance.now();
    const cpu2 = cpuSeconds(agent.pid);
    await pool(handles.length, 16, async () => {
      const h = handles.pop()!;
      await client.signal({ handle: h, signal: 'KILL' });
      await client.wait({ handle: h });
    });
    return { cpuUsPerCycle: ((cpu1 - cpu0) / cycles) * 1e6, mainUsPerCycle: ((th1.main - th0.main) / cycles) * 1e6, spawnerUsPerCycle: ((th1.spawner - th0.spawner) / cycles) * 1e6, cyclesPerS: cycles / ((t1 - t0) / 1000), sleepersMs: s1 - s0, sleepersCpuMs: (cpu2 - cpu1) * 1000 };
  } finally {
    client.close();
    await agent.stop();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`# ${values.capture ? 'stdout captured; ' : ''}${cpus()[0]?.model}; loadavg before: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
const results = new Map<string, Sample[]>(agents.map((a) => [a, []]));
for (let r = 0; r < Number(values.rounds); r++) {
  for (const a of agents) {
    const s = await run(a);
    results.get(a)!.push(s);
    console.log(`round ${r + 1} ${a}: cpu ${s.cpuUsPerCycle.toFixed(0)} µs/cycle (main thread ${s.mainUsPerCycle.toFixed(0)}, spawner threads ${s.spawnerUsPerCycle.toFixed(0)}), ${s.cyclesPerS.toFixed(0)} cycles/s, 1,000 sleepers ${s.sleepersMs.toFixed(0)} ms (agent cpu ${s.sleepersCpuMs.toFixed(0)} ms); load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  }
}
for (const a of agents) {
  const ss = results.get(a)!;
  console.log(`median ${a}: cpu ${median(ss.map((s) => s.cpuUsPerCycle)).toFixed(0)} µs/cycle (main thread ${median(ss.map((s) => s.mainUsPerCycle)).toFixed(0)}), ${median(ss.map((s) => s.cyclesPerS)).toFixed(0)} cycles/s, sleepers ${median(ss.map((s) => s.sleepersMs)).toFixed(0)} ms (cpu ${median(ss.map((s) => s.sleepersCpuMs)).toFixed(0)} ms)`);
}
console.log(`# loadavg after: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
