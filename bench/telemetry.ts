// What telemetry costs (issue 13): Spawn+Wait cycles of /bin/true at c=16 against an agent with
// telemetry off (no OTEL_* variables, no --metrics-listen) and one with everything on (traces at
// 100% sampling and metrics over OTLP/HTTP to a local sink, /metrics scraped every few seconds),
// interleaved round by round in one run; prints the throughput loss and writes
// bench/results/telemetry-*.json. A third agent has metrics alone (no traces), to tell what spans
// cost from what metrics cost. Usage: node --import tsx bench/telemetry.ts [--rounds N] [--cycles N]
import { createServer } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AgentClient } from '../clients/ts/src/index.js';
import { cpuSeconds, startAgent, type AgentProcess } from './agent-process.js';
import { median } from './stats.js';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
const { values: opt } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, cycles: { type: 'string', default: '3000' } }, strict: true });
const ROUNDS = Math.max(1, Number(opt.rounds));
const CYCLES = Math.max(16, Number(opt.cycles));
const CONC = 16;
const SCRAPE_MS = 5000;
const log = (msg: string) => process.stderr.write(`[bench-telemetry ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** The OTLP/HTTP receiver: takes every export and counts it, decoding nothing. */
async function startSink(): Promise<{ endpoint: string; received: Map<string, { requests: number; bytes: number }>; close(): void }> {
  const received = new Map<string, { requests: number; bytes: number }>();
  const server = createServer((req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      const r = received.get(req.url ?? '') ?? { requests: 0, bytes: 0 };
      received.set(req.url ?? '', { requests: r.requests + 1, bytes: r.bytes + bytes });
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received, close: () => server.close() };
}

async function cycles(client: AgentClient, n: number): Promise<number> {
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next++ < n) {
      const { process: p } = await client.spawn({ argv: ['/bin/true'] });
      await client.wait({ handle: p!.handle });
    }
  };
  await Promise.all(Array.from({ length: CONC }, worker));
  return (performance.now() - started) / 1000;
}

const withoutOtel = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));

async function main(): Promise<void> {
  const sink = await startSink();
  const agents: AgentProcess[] = [];
  const clients: AgentClient[] = [];
  let scraper: NodeJS.Timeout | undefined;
  try {
    const common = { repo: REPO, maxProcesses: 4096 };
    const flags = ['--retention-max', '1000'];
    const off = await startAgent({ ...common, agentFlags: flags, env: withoutOtel() });
    agents.push(off);
    const metricsPort = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as AddressInfo;
        s.close(() => resolve(port));
      });
    });
    const on = await startAgent({
      ...common,
      agentFlags: [...flags, '--metrics-listen', `127.0.0.1:${metricsPort}`],
      env: {
        ...withoutOtel(),
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_TRACES_SAMPLER: 'always_on',
        OTEL_METRIC_EXPORT_INTERVAL: String(SCRAPE_MS),
      },
    });
    agents.push(on);
    // Metrics alone (Prometheus and OTLP, no traces): what the spans cost is the difference.
    const metricsOnly = await startAgent({
      ...common,
      agentFlags: [...flags, '--metrics-listen', '127.0.0.1:0'],
      env: { ...withoutOtel(), OTEL_METRICS_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_METRIC_EXPORT_INTERVAL: String(SCRAPE_MS) },
    });
    agents.push(metricsOnly);
    let scrapes = 0;
    scraper = setInterval(() => {
      void fetch(`http://127.0.0.1:${metricsPort}/metrics`)
        .then((r) => r.text())
        .then(() => scrapes++, () => undefined);
    }, SCRAPE_MS);
    const variants = [
      { name: 'off' as const, agent: off, client: new AgentClient(off.address) },
      { name: 'on' as const, agent: on, client: new AgentClient(on.address) },
      { name: 'metrics' as const, agent: metricsOnly, client: new AgentClient(metricsOnly.address) },
    ];
    clients.push(...variants.map((v) => v.client));
    for (const v of variants) await cycles(v.client, 300); // warm-up: connections, JIT
    const results = { off: { per_s: [] as number[], cpu: [] as number[] }, on: { per_s: [] as number[], cpu: [] as number[] }, metrics: { per_s: [] as number[], cpu: [] as number[] } };
    for (let round = 1; round <= ROUNDS; round++) {
      for (const v of round % 2 === 1 ? variants : [...variants].reverse()) {
        const cpu0 = cpuSeconds(v.agent.pid);
        const wall = await cycles(v.client, CYCLES);
        const cpu = cpuSeconds(v.agent.pid) - cpu0;
        results[v.name].per_s.push(CYCLES / wall);
        results[v.name].cpu.push((cpu * 1000) / CYCLES);
        log(`round ${round} telemetry ${v.name}: ${(CYCLES / wall).toFixed(0)} cycles/s, agent ${((cpu * 1000) / CYCLES).toFixed(3)} ms CPU/cycle`);
      }
    }
    const perS = { off: median(results.off.per_s), on: median(results.on.per_s), metrics: median(results.metrics.per_s) };
    const cpu = { off: median(results.off.cpu), on: median(results.on.cpu), metrics: median(results.metrics.cpu) };
    const loss = 1 - perS.on / perS.off;
    const summary = {
      cpu_model: os.cpus()[0]?.model ?? 'unknown',
      cpus: os.cpus().length,
      loadavg_at_end: os.loadavg(),
      rounds: ROUNDS,
      cycles_per_round: CYCLES,
      concurrency: CONC,
      spawn_wait_per_s: perS,
      agent_cpu_ms_per_cycle: cpu,
      throughput_loss: loss,
      throughput_loss_metrics_only: 1 - perS.metrics / perS.off,
      goal: '<= 5 %',
      otlp_received: Object.fromEntries(sink.received),
      metrics_scrapes: scrapes,
      rounds_raw: results,
    };
    mkdirSync(join(BENCH, 'results'), { recursive: true });
    const file = join(BENCH, 'results', `telemetry-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(summary, null, 2) + '\n');
    console.log(`\nSpawn+Wait c=${CONC}, ${CYCLES} cycles × ${ROUNDS} rounds, medians (${summary.cpu_model}, load ${os.loadavg()[0]!.toFixed(1)}):`);
    for (const v of variants) console.log(`  telemetry ${v.name.padEnd(7)} ${perS[v.name].toFixed(0).padStart(6)} cycles/s   agent ${cpu[v.name].toFixed(3)} ms CPU/cycle`);
    console.log(`  throughput loss with telemetry on: ${(loss * 100).toFixed(1)} % (goal ≤ 5 %); agent CPU ×${(cpu.on / cpu.off).toFixed(2)}`);
    console.log(`  metrics alone: loss ${((1 - perS.metrics / perS.off) * 100).toFixed(1)} %, agent CPU ×${(cpu.metrics / cpu.off).toFixed(2)}`);
    console.log(`  OTLP sink received: ${[...sink.received].map(([path, r]) => `${path} ${r.requests} requests, ${(r.bytes / 1024).toFixed(0)} KiB`).join('; ')}; /metrics scraped ${scrapes}×`);
    console.log(`  written to ${file}`);
  } finally {
    if (scraper) clearInterval(scraper);
    for (const c of clients) c.close();
    for (const a of agents) await a.stop();
    sink.close();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
