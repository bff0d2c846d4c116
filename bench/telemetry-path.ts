// The trace path of one Spawn+Wait cycle alone, in one process, the SDK's span against the agent's:
// the five spans a cycle makes (the Spawn and Wait server spans, the exec and store_write stages, the
// linked exit) with the agent's attributes, through the SDK's BatchSpanProcessor into OTLP requests
// (the agent's one-pass encoder) that go nowhere.
//   sdk:   the SDK's tracer and span (as the agent had them until session 14)
//   agent: span-recorder.ts over the same sampler, limits and processor (session 15)
// The two alternate in short turns, so that a neighbour's load falls on both alike; the figure is
// process CPU (GC included) per cycle, median of the turns. The agent's bench (bench/telemetry.ts)
// measures the same work among everything else a cycle does, where the machine's noise is larger
// than the difference; this one isolates it.
// Usage: node --import tsx bench/telemetry-path.ts [--turns 30] [--cycles 20000]
import os from 'node:os';
import { parseArgs } from 'node:util';
import { ROOT_CONTEXT, SpanKind, trace, type Tracer, type TracerProvider } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { encodeTraceRequest } from '../src/telemetry/otlp-span-encoder.js';
import { spanLimitsFromEnv } from '../src/telemetry/sdk-env.js';
import { SpanRecorderProvider } from '../src/telemetry/span-recorder.js';
import { median } from './stats.js';

const { values: opt } = parseArgs({ options: { turns: { type: 'string', default: '30' }, cycles: { type: 'string', default: '20000' } }, strict: true });
const TURNS = Number(opt.turns);
const CYCLES = Number(opt.cycles);

const resource = resourceFromAttributes({ 'service.name': 'pidfd-agent', 'service.version': '0.1.0', 'host.name': os.hostname(), 'k8s.node.name': 'node-a', 'process.pid': process.pid, 'process.runtime.name': 'nodejs' });
const sampler = () => new ParentBasedSampler({ root: new AlwaysOnSampler() });
let bytesSent = 0;

const exporter = (): SpanExporter => ({
  export(spans: ReadableSpan[], done) {
    bytesSent += encodeTraceRequest(spans).length;
    done({ code: ExportResultCode.SUCCESS });
  },
  shutdown: async () => {},
});
const sdk: TracerProvider = new BasicTracerProvider({ resource, sampler: sampler(), spanProcessors: [new BatchSpanProcessor(exporter())] });
const agent: TracerProvider = new SpanRecorderProvider({ resource, sampler: sampler(), limits: spanLimitsFromEnv(), processors: [new BatchSpanProcessor(exporter())] });

const SPAWN = 'pidfd.agent.v1.AgentService/Spawn';
const WAIT = 'pidfd.agent.v1.AgentService/Wait';
const base = (method: string) => ({ kind: SpanKind.SERVER, attributes: { 'rpc.system.name': 'grpc', 'rpc.method': method } });
const SPAWN_OPTIONS = base(SPAWN);
const WAIT_OPTIONS = base(WAIT);
const OK = { 'rpc.response.status_code': 'OK' };

function cycle(tracer: Tracer, i: number): void {
  const server = tracer.startSpan(SPAWN, SPAWN_OPTIONS, ROOT_CONTEXT);
  const inside = trace.setSpan(ROOT_CONTEXT, server);
  tracer.startSpan('pidfd.agent.exec', undefined, inside).end();
  tracer.startSpan('pidfd.agent.store_write', undefined, inside).end();
  server.setAttribute('process.pid', 100_000 + (i % 30_000)).setAttribute('process.executable.name', 'true').setAttribute('pidfd.agent.handle', `h${i.toString(36)}xlesxa7njooaokyut7yi`);
  server.setAttributes(OK);
  server.end();
  const wait = tracer.startSpan(WAIT, WAIT_OPTIONS, ROOT_CONTEXT);
  wait.setAttributes(OK);
  wait.end();
  const exitedAt = Date.now();
  const exit = tracer.startSpan('pidfd.agent.process_exit', { kind: SpanKind.INTERNAL, links: [{ context: server.spanContext() }], startTime: exitedAt }, ROOT_CONTEXT);
  exit.setAttributes({ 'process.pid': 100_000 + (i % 30_000), 'process.executable.name': 'true', 'pidfd.agent.handle': `h${i.toString(36)}`, 'pidfd.agent.exit.how': 'code', 'process.exit.code': 0 });
  exit.end(exitedAt);
}

/** µs of process CPU per cycle for `n` cycles, with what the timers of the batch processors flush. */
async function turn(provider: TracerProvider, n: number): Promise<number> {
  const tracer = provider.getTracer('pidfd-agent');
  const before = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    cycle(tracer, i);
    // The agent's event loop turns between calls: the SDK processor's exports run on it.
    if (i % 16 === 15) await new Promise<void>((r) => setImmediate(r));
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

for (const p of [sdk, agent]) await turn(p, CYCLES); // warm-up
const results = { sdk: [] as number[], agent: [] as number[] };
for (let t = 0; t < TURNS; t++) {
  for (const [name, p] of t % 2 === 0 ? ([['sdk', sdk], ['agent', agent]] as const) : ([['agent', agent], ['sdk', sdk]] as const)) results[name].push(await turn(p, CYCLES));
}
const ratios = results.agent.map((a, i) => a / results.sdk[i]!);
console.log(`${os.cpus()[0]?.model}, load ${os.loadavg()[0]!.toFixed(2)}; ${TURNS} turns of ${CYCLES} cycles each (5 spans a cycle), process CPU per cycle, medians:`);
console.log(`  sdk   (the SDK's tracer and span): ${median(results.sdk).toFixed(2)} µs`);
console.log(`  agent (span-recorder.ts):          ${median(results.agent).toFixed(2)} µs`);
console.log(`  agent / sdk, per turn: median ×${median(ratios).toFixed(3)} (turns ×${Math.min(...ratios).toFixed(2)}–×${Math.max(...ratios).toFixed(2)}); ${(bytesSent / 1024 / 1024).toFixed(0)} MiB of requests encoded`);
process.exit(0);
