// Per-thread agent CPU around a Spawn+Wait (or Spawn+Watch) run at c=16, for agent variants run
// interleaved in the same run: /proc/PID/task/*/stat (utime, stime) per thread name, so the main
// thread's CPU is told apart from the spawner's, libuv's pool and V8's helpers. A profile charges
// a thread's blocked wall time as self time; this counts only what the kernel charged as CPU.
//
//   node --import tsx bench/thread-cpu.ts --variant DIR[::flag,flag[::nodeflag,nodeflag]] [--variant ...] [--rounds 5] [--n 4000] [--via wait|watch]
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startAgent, threadCpuMs } from './agent-process.js';
import { AgentDriver } from './driver-ipc.js';
import { median } from './stats.js';

const { values: opt } = parseArgs({
  options: {
    variant: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
    n: { type: 'string', default: '4000' },
    via: { type: 'string', default: 'wait' },
    /** Spawn+Wait cycles at c=8 before the measured run (JIT, channel, pools). */
    warmup: { type: 'string', default: '1000' },
  },
  strict: true,
});
const variants = (opt.variant ?? []).map((v) => {
  const [dir, flags, nodeFlags] = v.split('::');
  return { name: v, dir: resolve(dir!), flags: flags ? flags.split(',') : [], nodeFlags: nodeFlags ? nodeFlags.split(',') : [] };
});
const ROUNDS = Number(opt.rounds);
const N = Number(opt.n);
const via = opt.via as 'wait' | 'watch';
/** BY_TID=1: each thread on its own (which of the threads named `node` works). */
const byName = (comm: string, tid: string) => (process.env.BY_TID ? `${comm}/${tid}` : comm);

const driver = new AgentDriver();
const rows: { round: number; variant: string; perThread: Record<string, number>; total: number; cps: number; rssMiB: number }[] = [];
/** VmRSS in MiB. */
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? NaN) / 1024;
for (let r = 1; r <= ROUNDS; r++) {
  const order = variants.map((_, i) => variants[(i + r) % variants.length]!);
  for (const v of order) {
    const agent = await startAgent({ repo: v.dir, maxProcesses: 4000, agentFlags: v.flags, nodeFlags: [...(process.env.AGENT_NODE_FLAGS?.split(' ').filter(Boolean) ?? []), ...v.nodeFlags] });
    try {
      await driver.send({ op: 'init', address: agent.address });
      await driver.run({ op: 'tput', conc: 8, n: Number(opt.warmup), via });
      // TRACE_CMD (e.g. `perf record -g -o /tmp/x.data -p` or `strace -c -f -p`): run with the
      // agent's pid appended around the measured run, stopped with SIGINT.
      const trace = process.env.TRACE_CMD ? spawn('/bin/sh', ['-c', `exec ${process.env.TRACE_CMD} ${agent.pid}`], { stdio: 'inherit' }) : undefined;
      if (trace) await new Promise((r) => setTimeout(r, 500));
      const t0 = threadCpuMs(agent.pid, byName);
      const run = await driver.run({ op: 'tput', conc: 16, n: N, via });
      const t1 = threadCpuMs(agent.pid, byName);
      if (trace) {
        const done = new Promise((r) => trace.once('exit', r));
        trace.kill('SIGINT');
        await done;
      }
      const perThread: Record<string, number> = {};
      let total = 0;
      for (const [k, v1] of t1) {
        const d = (v1 - (t0.get(k) ?? 0)) / N;
        total += d;
        if (d > 0) perThread[k] = Math.round(d * 1000) / 1000;
      }
      // RSS 500 ms after the burst (before the agent's quiet-time reducer could run).
      await new Promise((r) => setTimeout(r, 500));
      const rss = rssMiB(agent.pid);
      rows.push({ round: r, variant: v.name, perThread, total, cps: N / run.wall_s, rssMiB: rss });
      process.stderr.write(`round ${r} ${v.name} load ${os.loadavg()[0]!.toFixed(2)}: ${total.toFixed(3)} ms/cycle, ${Math.round(N / run.wall_s)}/s, RSS ${rss.toFixed(1)} MiB ${JSON.stringify(perThread)}\n`);
      await driver.send({ op: 'detach' });
    } finally {
      await agent.stop();
    }
  }
}
await driver.send({ op: 'close' }).catch(() => undefined);
console.log(`${os.cpus().length} x ${os.cpus()[0]?.model}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}, ${ROUNDS} rounds x ${N} ${via} cycles at c=16; medians (ms CPU per cycle):`);
for (const v of variants) {
  const mine = rows.filter((x) => x.variant === v.name);
  const names = new Set(mine.flatMap((x) => Object.keys(x.perThread)));
  const per = [...names].map((n) => `${n}=${median(mine.map((x) => x.perThread[n] ?? 0)).toFixed(3)}`).join(' ');
  const ref = rows.filter((x) => x.variant === variants[0]!.name);
  const ratio = median(mine.map((x) => x.total / (ref.find((y) => y.round === x.round)?.total ?? NaN)));
  console.log(`${v.name}: total ${median(mine.map((x) => x.total)).toFixed(3)} (x${ratio.toFixed(3)} of the first, per-round median; rounds ${mine.map((x) => x.total.toFixed(3)).join(' ')}), ${Math.round(median(mine.map((x) => x.cps)))}/s, RSS 0.5 s after ${median(mine.map((x) => x.rssMiB)).toFixed(1)} MiB; ${per}`);
}
process.exit(0);
