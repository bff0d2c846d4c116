// Spans encoded as they end reach the exporter as the SDK's BatchSpanProcessor and serializer would
// send them: the same request bytes for the same batches, the same batching rules (full batches at
// once, the rest after the delay, one export at a time, a bounded queue whose overflow is dropped and
// counted, an export given up after its timeout), nothing after shutdown.
import { DiagLogLevel, ROOT_CONTEXT, SpanKind, TraceFlags, diag, trace, type DiagLogger } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import test from 'ava';
import { OtlpSpanStream, type BatchLimits, type EncodedSpanExporter, type EncodedSpans } from '../src/telemetry/otlp-span-stream.js';
import { SpanRecorderProvider } from '../src/telemetry/span-recorder.js';
import { spanLimitsFromEnv } from '../src/telemetry/sdk-env.js';

/** An exporter that keeps what it is given and answers when told to (at once, unless held). */
class Capture implements EncodedSpanExporter {
  readonly batches: EncodedSpans[] = [];
  readonly pending: ((result: ExportResult) => void)[] = [];
  hold = false;
  shutDown = false;

  export(batch: EncodedSpans, done: (result: ExportResult) => void): void {
    this.batches.push(batch);
    if (this.hold) this.pending.push(done);
    else done({ code: ExportResultCode.SUCCESS });
  }

  release(): void {
    for (const done of this.pending.splice(0)) done({ code: ExportResultCode.SUCCESS });
  }

  async forceFlush(): Promise<void> {}

  async shutdown(): Promise<void> {
    this.shutDown = true;
  }
}

const resource = resourceFromAttributes({ 'service.name': 'pidfd-agent', 'host.name': 'node-a' });

/** A recorder whose spans go to `stream` and to a list, so the bytes sent can be checked against the spans. */
function recorder(stream: OtlpSpanStream) {
  const ended: ReadableSpan[] = [];
  const provider = new SpanRecorderProvider({
    resource,
    sampler: new AlwaysOnSampler(),
    limits: spanLimitsFromEnv(),
    processors: [stream, { onStart: () => {}, onEnd: (s: ReadableSpan) => ended.push(s), forceFlush: async () => {}, shutdown: async () => {} }],
  });
  return { provider, ended, agent: provider.getTracer('pidfd-agent'), other: provider.getTracer('other-scope', '1.0.0') };
}

function stream(limits: Partial<BatchLimits>) {
  const capture = new Capture();
  const s = new OtlpSpanStream(capture, limits);
  return { capture, stream: s, ...recorder(s) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('each batch is the request the SDK serializer writes for the same spans, two scopes included', async (t) => {
  const { capture, stream: s, ended, agent, other } = stream({ maxExportBatchSize: 4, scheduledDelayMillis: 60_000 });
  for (let i = 0; i < 10; i++) {
    const tracer = i % 3 === 0 ? other : agent;
    const span = tracer.startSpan(`span ${i}`, { kind: SpanKind.SERVER, attributes: { i, 'rpc.method': 'pidfd.agent.v1.AgentService/Spawn' } }, ROOT_CONTEXT);
    span.addEvent('e', { 'pidfd.agent.handle': `h-${i}` });
    span.end();
  }
  t.is(capture.batches.length, 1, 'a full batch goes at once, the next when the first is through');
  await sleep(0);
  t.is(capture.batches.length, 2);
  await s.forceFlush();
  t.deepEqual(
    capture.batches.map((b) => b.spans),
    [4, 4, 2],
  );
  for (const [i, batch] of capture.batches.entries()) {
    const spans = ended.slice(i * 4, i * 4 + 4);
    // The SDK groups a request by scope in the order scopes first come; so do batches.
    t.deepEqual(Buffer.from(batch.bytes), Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!), `batch ${i}`);
  }
});

test('a batch that does not fill goes after the scheduled delay', async (t) => {
  const { capture, agent } = stream({ maxExportBatchSize: 100, scheduledDelayMillis: 50 });
  agent.startSpan('one', undefined, ROOT_CONTEXT).end();
  agent.startSpan('two', undefined, ROOT_CONTEXT).end();
  t.is(capture.batches.length, 0);
  await sleep(300);
  t.deepEqual(
    capture.batches.map((b) => b.spans),
    [2],
  );
});

test('one export at a time; the queue is bounded, and what overflows is dropped and said once room is back', async (t) => {
  const warnings: string[] = [];
  const logger: DiagLogger = { error: () => {}, warn: (m) => warnings.push(m), info: () => {}, debug: () => {}, verbose: () => {} };
  diag.setLogger(logger, DiagLogLevel.WARN);
  t.teardown(() => diag.disable());
  const { capture, stream: s, agent } = stream({ maxExportBatchSize: 2, maxQueueSize: 4, scheduledDelayMillis: 60_000 });
  capture.hold = true;
  for (let i = 0; i < 10; i++) agent.startSpan(`s${i}`, undefined, ROOT_CONTEXT).end();
  t.is(capture.batches.length, 1, 'the second batch waits for the first');
  // In flight: 2; waiting: 4 (the queue); the other 4 dropped.
  capture.hold = false;
  capture.release();
  await s.forceFlush();
  t.deepEqual(
    capture.batches.map((b) => b.spans),
    [2, 2, 2],
  );
  agent.startSpan('after', undefined, ROOT_CONTEXT).end();
  t.deepEqual(warnings, ['Dropped 4 spans because maxQueueSize reached']);
});

test('an exporter that never answers is given up after the export timeout, and the next batch goes', async (t) => {
  const { capture, stream: s, agent } = stream({ maxExportBatchSize: 1, exportTimeoutMillis: 100 });
  capture.hold = true;
  agent.startSpan('first', undefined, ROOT_CONTEXT).end();
  agent.startSpan('second', undefined, ROOT_CONTEXT).end();
  t.is(capture.batches.length, 1);
  await sleep(400);
  t.is(capture.batches.length, 2);
  capture.hold = false;
  capture.release();
  await s.forceFlush();
});

test('unsampled spans are not sent; shutdown sends what is left, shuts the exporter, and takes nothing after', async (t) => {
  const { capture, stream: s, agent } = stream({ maxExportBatchSize: 100, scheduledDelayMillis: 60_000 });
  const unsampled = trace.setSpanContext(ROOT_CONTEXT, { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.NONE });
  s.onEnd({ ...(agent.startSpan('x', undefined, ROOT_CONTEXT) as unknown as ReadableSpan), spanContext: () => trace.getSpanContext(unsampled)! } as ReadableSpan);
  agent.startSpan('kept', undefined, ROOT_CONTEXT).end();
  await s.shutdown();
  t.true(capture.shutDown);
  t.deepEqual(
    capture.batches.map((b) => b.spans),
    [1],
  );
  agent.startSpan('too late', undefined, ROOT_CONTEXT).end();
  await s.forceFlush();
  t.is(capture.batches.length, 1);
});
