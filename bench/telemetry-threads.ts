// Where telemetry's CPU goes (issue 13 item 6): agents of each variant alive side by side, warmed
// up past their first export and scrape, then Spawn+Wait of /bin/true at c=16 run on each in turn,
// round by round, with the agent's CPU split by thread (/proc/PID/task/*/stat: main, V8's helpers,
// libuv's pool, the spawner) and, with --cpu-prof, the main thread's self time by area and function
// for the whole measured part (profiles in bench/profiles/telemetry-*/).
// A variant is DIR::MODE, MODE one of
//   off      no OTEL_* variables, no --metrics-listen
//   metrics  OTLP metrics + /metrics (scraped), no traces
//   traces   OTLP traces at 100 % sampling, no metrics at all
//   on       everything (as bench/telemetry.ts's "on")
//   MODE+K=V,K=V  extra environment for the agent (e.g. on+OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2048)
// Usage: node --import tsx bench/telemetry-threads.ts --variant /work/baseline::off --variant /work/baseline::on [--rounds 4] [--cycles 3000] [--chunk 500] [--cpu-prof] [--node-flag=--perf-basic-prof ...: for every agent]
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AgentClient } from '../clients/ts/src/index.js';
import { interleavedRound, warmUpTogether } from './cycles.js';
import { startAgent, threadCpuMs, type AgentProcess } from './agent-process.js';
import { median } from './stats.js';
import { freePort, startCountingSink, withoutOtel } from './otlp-count-sink.js';
import { BENCH_CLIENT } from './client-options.js';

const BENCH = dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({
  options: { variant: { type: 'string', multiple: true }, rounds: { type: 'string', default: '4' }, cycles: { type: 'string', default: '3000' }, chunk: { type: 'string', default: '500' }, 'cpu-prof': { type: 'boolean', default: false }, 'node-flag': { type: 'string', multiple: true } },
  strict: true,
});
const ROUNDS = Math.max(1, Number(opt.rounds));
const CYCLES = Math.max(16, Number(opt.cycles));
const CHUNK = Math.max(16, Math.min(CYCLES, Number(opt.chunk)));
const SCRAPE_MS = 5000;

/** Cycles every agent ran in its life (warm-up included), to turn a whole-life profile into per-cycle figures. */
let lifeCycles = 0;


const sink = await startCountingSink();
const endpoint = sink.endpoint;

interface Running {
  readonly name: string;
  readonly agent: AgentProcess;
  readonly client: AgentClient;
  readonly profDir?: string;
}
const running: Running[] = [];
const scrapers: NodeJS.Timeout[] = [];
const rows: { round: number; name: string; perThread: Record<string, number>; total: number; cps: number }[] = [];
try {
  for (const [i, v] of (opt.variant ?? []).entries()) {
    const [dir, spec] = v.split('::') as [string, string];
    const [mode, extra] = spec.split('+') as [string, string | undefined];
    const extraEnv = Object.fromEntries((extra ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
    const port = await freePort();
    const otlp = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_METRIC_EXPORT_INTERVAL: String(SCRAPE_MS) };
    const flags = ['--retention-max', '1000'];
    const listen = [...flags, '--metrics-listen', `127.0.0.1:${port}`];
    const setup =
      mode === 'off'
        ? { flags, env: withoutOtel() }
        : mode === 'metrics'
          ? { flags: listen, env: { ...withoutOtel(), ...otlp, OTEL_METRICS_EXPORTER: 'otlp', OTEL_TRACES_EXPORTER: 'none' } }
          : mode === 'traces'
            ? { flags, env: { ...withoutOtel(), ...otlp, OTEL_TRACES_EXPORTER: 'otlp', OTEL_METRICS_EXPORTER: 'none', OTEL_TRACES_SAMPLER: 'always_on' } }
            : { flags: listen, env: { ...withoutOtel(), ...otlp, OTEL_TRACES_EXPORTER: 'otlp', OTEL_METRICS_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'always_on' } };
    const profDir = opt['cpu-prof'] ? join(BENCH, 'profiles', `telemetry-${i}-${mode}`) : undefined;
    if (profDir) {
      rmSync(profDir, { recursive: true, force: true });
      mkdirSync(profDir, { recursive: true });
    }
    const agent = await startAgent({ repo: resolve(dir), maxProcesses: 4096, agentFlags: setup.flags, env: { ...setup.env, ...extraEnv }, nodeFlags: [...(opt['node-flag'] ?? []), ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [])] });
    const client = new AgentClient(agent.address, undefined, undefined, BENCH_CLIENT);
    if (setup.flags === listen) scrapers.push(setInterval(() => void fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => undefined), SCRAPE_MS));
    running.push({ name: v, agent, client, profDir });
  }
  // Warmed up together and measured in turns of --chunk, so that no agent idles for long (cycles.ts interleavedRound).
  const warm = await warmUpTogether(running.map(({ client }) => client), SCRAPE_MS + 1500);
  lifeCycles = warm + ROUNDS * CYCLES;
  const threads = (pid: number) => threadCpuMs(pid, (comm, _tid, nth) => (comm === 'node' ? `node#${nth}` : comm));
  for (let round = 1; round <= ROUNDS; round++) {
    const perThread = running.map(() => ({}) as Record<string, number>);
    const measured = await interleavedRound(running, CYCLES, CHUNK, round, (r) => {
      const t0 = threads(r.agent.pid);
      return () => {
        const sums = perThread[running.indexOf(r)]!;
        for (const [k, v1] of threads(r.agent.pid)) sums[k] = (sums[k] ?? 0) + v1 - (t0.get(k) ?? 0);
        return 0;
      };
    });
    for (const [i, { name }] of running.entries()) {
      const per: Record<string, number> = {};
      let total = 0;
      for (const [k, ms] of Object.entries(perThread[i]!)) {
        const d = (ms / CYCLES) * 1000; // µs per cycle
        total += d;
        if (d > 0) per[k] = Math.round(d);
      }
      const cps = CYCLES / measured[i]!.wall;
      rows.push({ round, name, perThread: per, total, cps });
      process.stderr.write(`round ${round} ${name} load ${os.loadavg()[0]!.toFixed(2)}: ${total.toFixed(0)} µs/cycle, ${Math.round(cps)}/s ${JSON.stringify(per)}\n`);
    }
  }
} finally {
  for (const s of scrapers) clearInterval(s);
  for (const { client, agent } of running) {
    client.close();
    await agent.stop();
  }
  const stats = JSON.stringify(await sink.received());
  sink.close();
  console.log(`OTLP sink received: ${stats}`);
}
console.log(`${os.cpus().length} x ${os.cpus()[0]?.model}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}, ${ROUNDS} rounds x ${CYCLES} Spawn+Wait cycles at c=16; medians (µs agent CPU per cycle):`);
for (const { name } of running) {
  const mine = rows.filter((x) => x.name === name);
  const names = new Set(mine.flatMap((x) => Object.keys(x.perThread)));
  const per = [...names].map((n) => `${n}=${median(mine.map((x) => x.perThread[n] ?? 0)).toFixed(0)}`).join(' ');
  const r = running.find((x) => x.name === name)!;
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`${name}: total ${median(mine.map((x) => x.total)).toFixed(0)} (mean ${mean(mine.map((x) => x.total)).toFixed(1)}), ${Math.round(median(mine.map((x) => x.cps)))}/s (mean ${mean(mine.map((x) => x.cps)).toFixed(0)}); ${per}; ${lifeCycles} cycles in its life${r.profDir ? `, profile in ${r.profDir}` : ''}`);
  // Against the off agent of the same tree, round by round (each round measures both back to back).
  const off = running.find((x) => x.name.split('::')[0] === name.split('::')[0] && x.name.endsWith('::off'));
  if (off !== undefined && off !== r) {
    const ratios = mine.map((x) => x.total / rows.find((y) => y.round === x.round && y.name === off.name)!.total);
    const mainRatios = mine.map((x) => (x.perThread.main ?? 0) / (rows.find((y) => y.round === x.round && y.name === off.name)!.perThread.main ?? 1));
    console.log(`  against ${off.name}, per round: total ×${ratios.map((x) => x.toFixed(2)).join(' ×')} (median ×${median(ratios).toFixed(3)}); main thread median ×${median(mainRatios).toFixed(3)}`);
  }
}
process.exit(0);
