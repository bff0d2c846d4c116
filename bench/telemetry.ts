// What telemetry costs (issue 13): Spawn+Wait cycles of /bin/true at c=16 against an agent with
// telemetry off (no OTEL_* variables, no --metrics-listen) and one with everything on (traces at
// 100% sampling and metrics over OTLP/HTTP to a local sink, /metrics scraped every few seconds),
// interleaved in turns of --chunk cycles in one run (one agent measured at a time, all warmed up
// together first), the OTLP sink in a process of its own; prints the throughput loss and writes
// bench/results/telemetry-*.json, with a 95 % interval of the loss and whether that settles the
// goal. A third agent has metrics alone (no traces), to tell what spans cost from what metrics
// cost. --agent DIR (repeatable) compares trees in the same run; --lives N starts every agent
// afresh N times, the rounds shared among the lives.
// Usage: node --import tsx bench/telemetry.ts [--rounds 12] [--lives 3] [--cycles 3000] [--chunk 500] [--agent DIR ...]
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AgentClient } from '../clients/ts/src/index.js';
import { CONCURRENCY as CONC, interleavedRound, warmUpTogether } from './cycles.js';
import { cpuSeconds, startAgent, type AgentProcess } from './agent-process.js';
import { clusteredMedianInterval, median } from './stats.js';
import { freePort, startCountingSink, withoutOtel } from './otlp-count-sink.js';
import { BENCH_CLIENT } from './client-options.js';

/** Issue 13's goal for the throughput loss with everything on. */
const GOAL = 0.05;

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
const { values: opt } = parseArgs({ options: { rounds: { type: 'string', default: '12' }, cycles: { type: 'string', default: '3000' }, chunk: { type: 'string', default: '500' }, lives: { type: 'string', default: '3' }, agent: { type: 'string', multiple: true } }, strict: true });
/** Trees whose agents are compared (--agent DIR, repeatable; the summary's keys are the last one's). */
const DIRS = (opt.agent ?? [REPO]).map((d) => resolve(d));
const ROUNDS = Math.max(1, Number(opt.rounds));
const CYCLES = Math.max(16, Number(opt.cycles));
/** A round's cycles run in turns of this many per agent (cycles.ts interleavedRound). */
const CHUNK = Math.max(16, Math.min(CYCLES, Number(opt.chunk)));
/**
 * How many times every agent is started afresh, the rounds shared among them. Two processes of the
 * same build may keep different speeds for their whole life (identical metrics code read ×0.82 in
 * one process and ×1.07 in another, bench/FINDINGS.md "Session 15", partly the memory reducer of
 * "Session 16"): rounds of one life cannot average that out, lives can.
 */
const LIVES = Math.min(ROUNDS, Math.max(1, Math.floor(Number(opt.lives)) || 1));
const SCRAPE_MS = 5000;
// A mean, not a median: a sink's CPU moves in ticks of 10 ms, most turns read none.
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const log = (msg: string) => process.stderr.write(`[bench-telemetry ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);


type Name = 'off' | 'on' | 'metrics';
const NAMES: Name[] = ['off', 'on', 'metrics'];

interface Runs {
  readonly per_s: number[];
  readonly cpu: number[];
  /** The agent process (life) each round was measured on. */
  readonly life: number[];
  /** ms of the OTLP sink's CPU per cycle while this variant ran (what receiving its exports cost). */
  readonly sink_cpu: number[];
}

function summarise(runs: Record<Name, Runs>) {
  const perS = { off: median(runs.off.per_s), on: median(runs.on.per_s), metrics: median(runs.metrics.per_s) };
  const cpu = { off: median(runs.off.cpu), on: median(runs.on.cpu), metrics: median(runs.metrics.cpu) };
  // Each round measures every variant back to back: a ratio per round cancels what the machine did
  // in that round, which the medians of each variant alone do not (they differed by 8 points).
  const paired = (xs: readonly number[], ys: readonly number[]) => median(xs.map((x, i) => ys[i]! / x));
  // How far the machine's noise leaves the median of the rounds' losses: one run's figure moved by
  // several points from run to run at a load of 5, and from one agent process to the next
  // (bench/FINDINGS.md "Session 15"), so the interval resamples lives as well as rounds.
  const lives = [...new Set(runs.off.life)];
  const ratios = lives.map((life) => runs.off.per_s.flatMap((x, i) => (runs.off.life[i] === life ? [runs.on.per_s[i]! / x] : [])));
  const [ratioLow, ratioHigh] = clusteredMedianInterval(ratios);
  const [lossLow, lossHigh] = [1 - ratioHigh, 1 - ratioLow];
  return {
    spawn_wait_per_s: perS,
    agent_cpu_ms_per_cycle: cpu,
    sink_cpu_ms_per_cycle: { off: mean(runs.off.sink_cpu), on: mean(runs.on.sink_cpu), metrics: mean(runs.metrics.sink_cpu) },
    throughput_loss: 1 - paired(runs.off.per_s, runs.on.per_s),
    throughput_loss_interval_95: [lossLow, lossHigh],
    goal_met: lives.length < 3 || runs.off.per_s.length < 6 ? 'too few lives or rounds to say' : lossHigh <= GOAL ? 'yes' : lossLow > GOAL ? 'no' : 'undecided at this noise',
    throughput_loss_metrics_only: 1 - paired(runs.off.per_s, runs.metrics.per_s),
    agent_cpu_ratio: paired(runs.off.cpu, runs.on.cpu),
    agent_cpu_ratio_metrics_only: paired(runs.off.cpu, runs.metrics.cpu),
    throughput_loss_of_medians: 1 - perS.on / perS.off,
    agent_cpu_ratio_of_medians: cpu.on / cpu.off,
    rounds_raw: runs,
  };
}

async function main(): Promise<void> {
  const sink = await startCountingSink();
  try {
    const flags = ['--retention-max', '1000'];
    const otlp = { OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_METRIC_EXPORT_INTERVAL: String(SCRAPE_MS) };
    // Everything on: traces at 100 % sampling and metrics over OTLP, /metrics scraped.
    // Metrics alone (Prometheus and OTLP, no traces): what the spans cost is the difference.
    const start = (repo: string, name: Name, port: number): Promise<AgentProcess> => {
      const common = { repo, maxProcesses: 4096 };
      if (name === 'off') return startAgent({ ...common, agentFlags: flags, env: withoutOtel() });
      const listen = [...flags, '--metrics-listen', `127.0.0.1:${port}`];
      // OTEL_EXPORTER_OTLP_ENDPOINT alone turns traces on (the standard's default exporter is otlp): say none.
      if (name === 'metrics') return startAgent({ ...common, agentFlags: listen, env: { ...withoutOtel(), ...otlp, OTEL_METRICS_EXPORTER: 'otlp', OTEL_TRACES_EXPORTER: 'none' } });
      return startAgent({ ...common, agentFlags: listen, env: { ...withoutOtel(), ...otlp, OTEL_TRACES_EXPORTER: 'otlp', OTEL_METRICS_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'always_on' } });
    };
    const variants = DIRS.flatMap((dir) => NAMES.map((name) => ({ dir, name })));
    const results = new Map(DIRS.map((dir) => [dir, Object.fromEntries(NAMES.map((n) => [n, { per_s: [], cpu: [], life: [], sink_cpu: [] } as Runs])) as Record<Name, Runs>]));
    let scrapes = 0;
    // Every agent of a life is started and warmed up before any is measured: a fresh agent spends
    // its first seconds compiling (on V8's background threads, which count as its CPU), more of it
    // with the SDK loaded, and a bench that restarted agents between rounds measured that instead.
    let round = 0;
    for (let life = 1; life <= LIVES; life++) {
      const rounds = Math.floor(ROUNDS / LIVES) + (life <= ROUNDS % LIVES ? 1 : 0);
      const running: { dir: string; name: Name; agent: AgentProcess; client: AgentClient }[] = [];
      const lifeScrapers: NodeJS.Timeout[] = [];
      try {
        for (const { dir, name } of variants) {
          const metricsPort = await freePort();
          const agent = await start(dir, name, metricsPort);
          const client = new AgentClient(agent.address, undefined, undefined, BENCH_CLIENT);
          running.push({ dir, name, agent, client });
          if (name !== 'off') {
            const s = setInterval(() => {
              void fetch(`http://127.0.0.1:${metricsPort}/metrics`)
                .then((r) => r.text())
                .then(() => scrapes++, () => undefined);
            }, SCRAPE_MS);
            lifeScrapers.push(s);
          }
        }
        // Warm-up past the first metric export and scrape: the exporters load and compile their
        // code then, once in an agent's life, which is not a cost per cycle. All together, so that
        // none waits idle for the others' warm-up (cycles.ts warmUpTogether).
        await warmUpTogether(running.map(({ client }) => client), SCRAPE_MS + 1500);
        // Every variant runs each round's cycles in turns of CHUNK, in an order shuffled per round,
        // so that none idles for long and each round's machine is every variant's (cycles.ts
        // interleavedRound says what a long wait cost).
        for (const last = round + rounds; round < last; ) {
          round++;
          const sinkCpu = running.map(() => 0);
          const measured = await interleavedRound(running, CYCLES, CHUNK, round, (r) => {
            const [cpu0, sink0] = [cpuSeconds(r.agent.pid), cpuSeconds(sink.pid)];
            return () => {
              sinkCpu[running.indexOf(r)]! += cpuSeconds(sink.pid) - sink0;
              return cpuSeconds(r.agent.pid) - cpu0;
            };
          });
          for (const [i, { dir, name }] of running.entries()) {
            const { wall, measured: cpu } = measured[i]!;
            results.get(dir)![name].per_s.push(CYCLES / wall);
            results.get(dir)![name].cpu.push((cpu * 1000) / CYCLES);
            results.get(dir)![name].life.push(life);
            results.get(dir)![name].sink_cpu.push((sinkCpu[i]! * 1000) / CYCLES);
            log(`round ${round}${LIVES > 1 ? ` (life ${life})` : ''} ${dir} telemetry ${name}: ${(CYCLES / wall).toFixed(0)} cycles/s, agent ${((cpu * 1000) / CYCLES).toFixed(3)} ms CPU/cycle, load ${os.loadavg()[0]!.toFixed(2)}`);
          }
        }
      } finally {
        for (const s of lifeScrapers) clearInterval(s);
        for (const { client, agent } of running) {
          client.close();
          await agent.stop();
        }
      }
    }
    const received = await sink.received();
    const byAgent = Object.fromEntries([...results].map(([dir, runs]) => [dir, summarise(runs)]));
    const last = byAgent[DIRS[DIRS.length - 1]!]!;
    const summary = {
      cpu_model: os.cpus()[0]?.model ?? 'unknown',
      cpus: os.cpus().length,
      loadavg_at_end: os.loadavg(),
      rounds: ROUNDS,
      lives: LIVES,
      cycles_per_round: CYCLES,
      cycles_per_turn: CHUNK,
      concurrency: CONC,
      ...last,
      goal: '<= 5 %',
      otlp_received: received,
      metrics_scrapes: scrapes,
      ...(DIRS.length > 1 ? { by_agent: byAgent } : {}),
    };
    mkdirSync(join(BENCH, 'results'), { recursive: true });
    const file = join(BENCH, 'results', `telemetry-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(summary, null, 2) + '\n');
    console.log(`\nSpawn+Wait c=${CONC}, ${CYCLES} cycles × ${ROUNDS} rounds in turns of ${CHUNK}, one agent at a time, medians of each variant (${summary.cpu_model}, load ${os.loadavg()[0]!.toFixed(1)}):`);
    for (const [dir, s] of Object.entries(byAgent)) {
      if (DIRS.length > 1) console.log(` ${dir}:`);
      for (const name of NAMES) console.log(`  telemetry ${name.padEnd(7)} ${s.spawn_wait_per_s[name].toFixed(0).padStart(6)} cycles/s   agent ${s.agent_cpu_ms_per_cycle[name].toFixed(3)} ms CPU/cycle   OTLP sink ${s.sink_cpu_ms_per_cycle[name].toFixed(3)} ms CPU/cycle`);
      console.log(`  throughput loss with telemetry on: ${(s.throughput_loss * 100).toFixed(1)} % (95 % interval ${(s.throughput_loss_interval_95[0]! * 100).toFixed(1)}–${(s.throughput_loss_interval_95[1]! * 100).toFixed(1)} %; goal ≤ 5 %: ${s.goal_met}); agent CPU ×${s.agent_cpu_ratio.toFixed(2)} (medians of the rounds' ratios; of the medians above: ${(s.throughput_loss_of_medians * 100).toFixed(1)} %, ×${s.agent_cpu_ratio_of_medians.toFixed(2)})`);
      console.log(`  metrics alone: loss ${(s.throughput_loss_metrics_only * 100).toFixed(1)} %, agent CPU ×${s.agent_cpu_ratio_metrics_only.toFixed(2)}`);
    }
    console.log(`  OTLP sink received: ${Object.entries(received).map(([path, r]) => `${path} ${r.requests} requests, ${(r.bytes / 1024).toFixed(0)} KiB`).join('; ')}; /metrics scraped ${scrapes}×`);
    console.log(`  written to ${file}`);
  } finally {
    sink.close();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
