// The agent's span recorder stands where the SDK's tracer would: for the same calls its spans reach
// a span processor as the SDK's do (names, kinds, parents, attributes under the limits, events,
// links, status, times, what was dropped), the sampler decides as it decides, and the bytes an
// exporter sends for them are the SDK serializer's.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Context, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import { loggingErrorHandler, setGlobalErrorHandler, suppressTracing } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import {
  SamplingDecision,
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanLimits,
} from '@opentelemetry/sdk-trace-base';
import test from 'ava';
import { encodeTraceRequest } from '../src/telemetry/otlp-span-encoder.js';
import { SpanRecorderProvider } from '../src/telemetry/span-recorder.js';
import { spanLimitsFromEnv } from '../src/telemetry/sdk-env.js';

const resource = resourceFromAttributes({ 'service.name': 'pidfd-agent-test' });

interface Pair {
  readonly sdk: Tracer;
  readonly ours: Tracer;
  spans(): { sdk: ReadableSpan[]; ours: ReadableSpan[] };
}

function pair(sampler: Sampler, limits: SpanLimits = spanLimitsFromEnv()): Pair {
  const sdkExporter = new InMemorySpanExporter();
  const ourExporter = new InMemorySpanExporter();
  const sdk = new BasicTracerProvider({ resource, sampler, spanLimits: limits, spanProcessors: [new SimpleSpanProcessor(sdkExporter)] });
  const ours = new SpanRecorderProvider({ resource, sampler, limits: { ...spanLimitsFromEnv(), ...limits }, processors: [new SimpleSpanProcessor(ourExporter)] });
  return {
    sdk: sdk.getTracer('pidfd-agent', '1.2.3'),
    ours: ours.getTracer('pidfd-agent', '1.2.3'),
    spans: () => ({ sdk: sdkExporter.getFinishedSpans(), ours: ourExporter.getFinishedSpans() }),
  };
}

/** A span as a collector sees it, with ids replaced by their place in the list (the two tracers draw different random ids). */
function seen(spans: readonly ReadableSpan[]) {
  const ids = new Map<string, string>();
  const id = (hex: string | undefined) => {
    if (hex === undefined) return undefined;
    if (!ids.has(hex)) ids.set(hex, `#${ids.size}`);
    return ids.get(hex);
  };
  const ctx = (c: SpanContext | undefined) => (c === undefined ? undefined : { traceId: id(c.traceId), spanId: id(c.spanId), traceFlags: c.traceFlags, traceState: c.traceState?.serialize(), isRemote: c.isRemote });
  return spans.map((s) => ({
    name: s.name,
    kind: s.kind,
    context: ctx(s.spanContext()),
    parent: ctx(s.parentSpanContext),
    attributes: s.attributes,
    droppedAttributesCount: s.droppedAttributesCount,
    links: s.links.map((l) => ({ context: ctx(l.context), attributes: l.attributes, droppedAttributesCount: l.droppedAttributesCount })),
    droppedLinksCount: s.droppedLinksCount,
    events: s.events.map((e) => ({ name: e.name, attributes: e.attributes, droppedAttributesCount: e.droppedAttributesCount })),
    droppedEventsCount: s.droppedEventsCount,
    status: s.status,
    ended: s.ended,
    resource: s.resource.attributes,
    scope: s.instrumentationScope,
  }));
}

const BOOM = Object.assign(new Error('boom'), { code: 'EPERM' });

/** The same calls on either tracer; explicit times where the two must agree to the nanosecond. */
function workload(tracer: Tracer, remote: Context): void {
  const server = tracer.startSpan('pidfd.agent.v1.AgentService/Spawn', { kind: SpanKind.SERVER, attributes: { 'rpc.system.name': 'grpc', 'rpc.method': 'pidfd.agent.v1.AgentService/Spawn' } }, remote);
  const inside = trace.setSpan(remote, server);
  const stage = tracer.startSpan('pidfd.agent.exec', undefined, inside);
  stage.setAttribute('n', 1).setAttribute('f', 1.5).setAttribute('b', true).setAttribute('list', ['a', 'b']);
  stage.setAttribute('undefined', undefined as never).setAttribute('', 'empty key');
  stage.setAttribute('bad', { nested: 1 } as never);
  stage.addEvent('plain');
  stage.addEvent('with attributes', { 'pidfd.agent.handle': 'h-1', skipped: undefined as never });
  stage.addEvent('at a time', 1_764_000_000_123);
  stage.recordException(BOOM);
  stage.recordException('a string');
  stage.end();
  server.setAttributes({ 'process.pid': 4242, 'process.executable.name': 'true' });
  server.setStatus({ code: SpanStatusCode.ERROR, message: 'failed' });
  server.setStatus({ code: SpanStatusCode.UNSET });
  server.updateName('renamed');
  server.end();
  server.end();
  server.setAttribute('after end', 1);
  const exit = tracer.startSpan(
    'pidfd.agent.process_exit',
    { kind: SpanKind.INTERNAL, startTime: 1_764_000_000_500, links: [{ context: server.spanContext(), attributes: { why: 'started by' } }] },
    ROOT_CONTEXT,
  );
  exit.setAttribute('process.exit.code', 0);
  exit.end(1_764_000_000_500);
  const ok = tracer.startSpan('ok', { root: true, startTime: 1_764_000_000_900 }, inside);
  ok.setStatus({ code: SpanStatusCode.OK });
  ok.setStatus({ code: SpanStatusCode.ERROR, message: 'too late' });
  ok.end(new Date(1_764_000_001_000));
  tracer.startSpan('suppressed', undefined, suppressTracing(inside)).end();
}

const remoteParent = (flags: TraceFlags): Context =>
  trace.setSpanContext(ROOT_CONTEXT, { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: flags, isRemote: true });

test('for the same calls the recorder hands a processor what the SDK tracer hands it', (t) => {
  const p = pair(new ParentBasedSampler({ root: new AlwaysOnSampler() }));
  workload(p.sdk, remoteParent(TraceFlags.SAMPLED));
  workload(p.ours, remoteParent(TraceFlags.SAMPLED));
  const { sdk, ours } = p.spans();
  t.is(ours.length, 4);
  t.deepEqual(seen(ours), seen(sdk));
  t.is(ours[0]!.spanContext().traceId, '0af7651916cd43dd8448eb211c80319c', 'the caller trace continues');
  const exit = ours.find((s) => s.name === 'pidfd.agent.process_exit')!;
  const sdkExit = sdk.find((s) => s.name === 'pidfd.agent.process_exit')!;
  t.deepEqual([exit.startTime, exit.endTime, exit.duration], [sdkExit.startTime, sdkExit.endTime, sdkExit.duration]);
  const ok = ours.find((s) => s.name === 'ok')!;
  t.deepEqual(ok.endTime, sdk.find((s) => s.name === 'ok')!.endTime);
  const stage = ours.find((s) => s.name === 'pidfd.agent.exec')!;
  t.deepEqual(stage.events[2]!.time, sdk.find((s) => s.name === 'pidfd.agent.exec')!.events[2]!.time);
});

test('times are wall clock at the start and monotonic after it, in whole nanoseconds', (t) => {
  const p = pair(new AlwaysOnSampler());
  const before = Date.now();
  const span = p.ours.startSpan('timed');
  const spin = performance.now() + 3;
  while (performance.now() < spin);
  span.end();
  const [s] = p.spans().ours;
  const ms = (h: readonly [number, number]) => h[0] * 1000 + h[1] / 1e6;
  t.true(ms(s!.startTime) >= before && ms(s!.startTime) <= Date.now());
  t.true(ms(s!.duration) >= 3 && ms(s!.duration) < 1000, `duration ${ms(s!.duration)} ms`);
  for (const h of [s!.startTime, s!.endTime, s!.duration]) t.true(Number.isInteger(h[1]) && h[1] >= 0 && h[1] < 1e9);
  const ns = (h: readonly [number, number]) => BigInt(h[0]) * 1_000_000_000n + BigInt(h[1]);
  t.is(ns(s!.endTime) - ns(s!.startTime), ns(s!.duration));

  // HrTimes given are kept to the nanosecond (a float of milliseconds would not hold them).
  const exact = p.ours.startSpan('exact', { startTime: [1_764_000_000, 123_456_789] });
  exact.addEvent('at', [1_764_000_000, 223_456_789]);
  exact.end([1_764_000_001, 987_654_321]);
  const e = p.spans().ours[1]!;
  t.deepEqual([e.startTime, e.events[0]!.time, e.endTime, e.duration], [
    [1_764_000_000, 123_456_789],
    [1_764_000_000, 223_456_789],
    [1_764_000_001, 987_654_321],
    [1, 864_197_532],
  ]);
});

test('the limits of the environment apply as the SDK applies them', (t) => {
  const limits: SpanLimits = { attributeCountLimit: 2, attributeValueLengthLimit: 3, eventCountLimit: 1, linkCountLimit: 1, attributePerEventCountLimit: 1, attributePerLinkCountLimit: 1 };
  const p = pair(new AlwaysOnSampler(), limits);
  const other = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED };
  for (const tracer of [p.sdk, p.ours]) {
    const span = tracer.startSpan('limited', { attributes: { a: 'abcdef', b: ['xyzw', 'q'] }, links: [{ context: other, attributes: { x: 1, y: 2 } }, { context: other }] });
    span.setAttribute('c', 'dropped').setAttribute('a', 'replaced');
    span.addEvent('first', { p: 1, q: 2 }).addEvent('second');
    span.end();
  }
  const { sdk, ours } = p.spans();
  t.deepEqual(seen(ours), seen(sdk));
  t.deepEqual(ours[0]!.attributes, { a: 'rep', b: ['xyz', 'q'] });
  t.is(ours[0]!.droppedAttributesCount, 1);
});

test('the sampler decides: dropped spans are not recorded and not exported, and their context still propagates', (t) => {
  for (const [sampler, flags, exported] of [
    [new AlwaysOffSampler(), TraceFlags.SAMPLED, 0],
    [new ParentBasedSampler({ root: new AlwaysOnSampler() }), TraceFlags.NONE, 0],
    [new ParentBasedSampler({ root: new AlwaysOnSampler() }), TraceFlags.SAMPLED, 1],
    [new TraceIdRatioBasedSampler(0), TraceFlags.SAMPLED, 0],
  ] as const) {
    const p = pair(sampler);
    const spans: Span[] = [p.sdk, p.ours].map((tracer) => tracer.startSpan('maybe', undefined, remoteParent(flags)));
    const [sdkSpan, ourSpan] = spans.map((s) => [s.isRecording(), s.spanContext().traceFlags, s.spanContext().traceId === '0af7651916cd43dd8448eb211c80319c']);
    t.deepEqual(ourSpan, sdkSpan);
    t.is(ourSpan![0], exported === 1, 'recording exactly when sampled');
    for (const s of spans) s.end();
    t.is(p.spans().ours.length, exported, sampler.toString());
    t.is(p.spans().sdk.length, exported);
  }
});

test('ids are fresh, valid and of the right length, and a root span starts a new trace', (t) => {
  const p = pair(new AlwaysOnSampler());
  const seenIds = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const span = p.ours.startSpan('root', undefined, ROOT_CONTEXT);
    const { traceId, spanId } = span.spanContext();
    t.true(trace.isSpanContextValid(span.spanContext()));
    seenIds.add(traceId).add(spanId);
    span.end();
  }
  t.is(seenIds.size, 10_000);
});

test('the bytes sent for recorded spans are the SDK serializer bytes', (t) => {
  const p = pair(new ParentBasedSampler({ root: new AlwaysOnSampler() }));
  workload(p.ours, remoteParent(TraceFlags.SAMPLED));
  const { ours } = p.spans();
  t.deepEqual(Buffer.from(encodeTraceRequest(ours)), Buffer.from(ProtobufTraceSerializer.serializeRequest(ours)!));
});

test('the SDK\'s reading of the less common calls: a backdated span ends now, times given twice, exceptions, limits of 0, arrays, a RECORD-only sampler', (t) => {
  const recordOnly: Sampler = { shouldSample: () => ({ decision: SamplingDecision.RECORD }), toString: () => 'record only' };
  for (const [sampler, limits] of [
    [new AlwaysOnSampler(), { attributeValueLengthLimit: 0 }],
    [recordOnly, {}],
  ] as const) {
    const p = pair(sampler, limits);
    const recorded: Span[] = [];
    for (const tracer of [p.sdk, p.ours]) {
      const list = ['a', 'b'];
      const span = tracer.startSpan('backdated', { startTime: Date.now() - 60_000 }, ROOT_CONTEXT);
      span.setAttribute('list', list).setAttribute('text', 'not cut by a limit of 0');
      span.recordException(Object.assign(new Error('zero'), { code: 0, stack: 'fixed' }));
      span.addEvent('two times', [1_764_000_000, 1], [1_764_000_000, 2]);
      span.end();
      recorded.push(span);
      t.false(span.isRecording());
    }
    const { sdk, ours } = p.spans();
    t.is(ours.length, sampler === recordOnly ? 0 : 1, 'RECORD alone is recorded, not exported');
    if (ours.length === 0) {
      t.deepEqual(
        recorded.map((s) => (s as unknown as ReadableSpan).attributes),
        [(recorded[0] as unknown as ReadableSpan).attributes, (recorded[0] as unknown as ReadableSpan).attributes],
      );
      continue;
    }
    t.deepEqual(seen(ours), seen(sdk));
    t.deepEqual(ours[0]!.events[1]!.time, [1_764_000_000, 2]);
    const seconds = (h: readonly [number, number]) => h[0] + h[1] / 1e9;
    t.true(seconds(ours[0]!.duration) >= 59.9, `a backdated span ends now: ${seconds(ours[0]!.duration)} s`);
  }
});

test('startActiveSpan with an explicit undefined context uses the active one', (t) => {
  const p = pair(new AlwaysOnSampler());
  const result = p.ours.startActiveSpan('active', {}, undefined as never, (span) => {
    span.end();
    return 'ran';
  });
  t.is(result, 'ran');
  t.is(p.spans().ours.length, 1);
});

test('durations are whole nanoseconds of the monotonic clock, not steps of a float of epoch milliseconds', (t) => {
  const p = pair(new AlwaysOnSampler());
  for (let i = 0; i < 8; i++) {
    const span = p.ours.startSpan('short', undefined, ROOT_CONTEXT);
    for (let j = 0; j < 1000 * (i + 1); j++) Math.sqrt(j);
    span.end();
  }
  const nanos = p.spans().ours.map((s) => s.duration[0] * 1e9 + s.duration[1]);
  // 2^-12 ms (244.140625 ns) is the step of a float near 1.76e12 ms.
  t.false(nanos.every((n) => Number.isInteger(n / 244.140625)), nanos.join(' '));
});

test('an array attribute is copied: what the caller does with its array afterwards is not recorded', (t) => {
  const p = pair(new AlwaysOnSampler());
  for (const tracer of [p.sdk, p.ours]) {
    const argv = ['/bin/sleep', '1'];
    const span = tracer.startSpan('argv', undefined, ROOT_CONTEXT);
    span.setAttribute('process.command_args', argv);
    argv.push('changed after');
    span.end();
  }
  const { sdk, ours } = p.spans();
  t.deepEqual(ours[0]!.attributes, { 'process.command_args': ['/bin/sleep', '1'] });
  t.deepEqual(seen(ours), seen(sdk));
});

test('odd limits and a processor that throws do not reach the code that made the span', (t) => {
  for (const limits of [{ linkCountLimit: -1, eventCountLimit: -1 }, { linkCountLimit: 0, eventCountLimit: 0 }]) {
    const p = pair(new AlwaysOnSampler(), limits);
    const other = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED };
    for (const tracer of [p.sdk, p.ours]) {
      const span = tracer.startSpan('limited', { links: [{ context: other }, { context: other, attributes: { second: true } }] }, ROOT_CONTEXT);
      span.addEvent('one').addEvent('two');
      span.end();
    }
    const { sdk, ours } = p.spans();
    t.deepEqual(seen(ours), seen(sdk), JSON.stringify(limits));
  }
  const throwing = { onStart: () => { throw new Error('onStart'); }, onEnd: () => { throw new Error('onEnd'); }, forceFlush: async () => {}, shutdown: async () => {} };
  const exporter = new InMemorySpanExporter();
  const provider = new SpanRecorderProvider({ resource, sampler: new AlwaysOnSampler(), limits: spanLimitsFromEnv(), processors: [throwing, new SimpleSpanProcessor(exporter)] });
  const errors: unknown[] = [];
  setGlobalErrorHandler((e) => errors.push(e));
  t.teardown(() => setGlobalErrorHandler(loggingErrorHandler()));
  t.notThrows(() => provider.getTracer('pidfd-agent').startSpan('survives', undefined, ROOT_CONTEXT).end());
  t.is(exporter.getFinishedSpans().length, 1, 'the next processor still gets the span');
  t.is(errors.length, 2);
});
