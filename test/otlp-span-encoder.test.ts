// The agent's OTLP request encoder writes the bytes the SDK's serializer writes, for every shape a
// span can take: so a collector receives the same thing whichever of the two made it.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import test from 'ava';
import { encodeTraceRequest, OtlpSpanSerializer } from '../src/telemetry/otlp-span-encoder.js';

const ODD_VALUES: Attributes = {
  empty: '',
  ascii: 'pidfd.agent.v1.AgentService/Spawn',
  utf8: 'grüße, 世界, 🚀',
  lone_surrogate: 'a\ud800b',
  yes: true,
  no: false,
  zero: 0,
  small: 7,
  negative: -3,
  big: 2 ** 40 + 5,
  max_safe: Number.MAX_SAFE_INTEGER,
  min_safe: Number.MIN_SAFE_INTEGER,
  fraction: 0.25,
  nan: Number.NaN,
  infinity: Number.POSITIVE_INFINITY,
  strings: ['a', 'grüße', ''],
  numbers: [1, -1, 2.5],
  bools: [true, false],
  empty_list: [],
};

/** Spans of every shape, from two resources and three scopes, as the SDK hands them to an exporter. */
function madeSpans(): ReadableSpan[] {
  const spans: ReadableSpan[] = [];
  for (const resource of [resourceFromAttributes({ 'service.name': 'pidfd-agent', 'host.name': 'node-a', 'service.instance.id': 'ü' }), resourceFromAttributes({ 'service.name': 'other' })]) {
    const memory = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ resource, spanProcessors: [new SimpleSpanProcessor(memory)], spanLimits: { attributeCountLimit: 64, linkCountLimit: 2, eventCountLimit: 2 } });
    const agent = provider.getTracer('pidfd-agent');
    const versioned = provider.getTracer('versioned', '1.2.3', { schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' });

    const remote = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
      traceState: new TraceState('vendor=a,other=b'),
    });
    const server = agent.startSpan('pidfd.agent.v1.AgentService/Spawn', { kind: SpanKind.SERVER, attributes: { 'rpc.system.name': 'grpc' } }, remote);
    server.setAttributes(ODD_VALUES);
    server.addEvent('no attributes');
    server.addEvent('with attributes', { at: 1, why: 'ü' }, [1_700_000_000, 123_456_789]);
    server.addEvent('dropped: over the event limit');
    server.setStatus({ code: SpanStatusCode.ERROR, message: 'spawn failed: ENOENT' });
    server.end();

    const child = agent.startSpan('pidfd.agent.exec', undefined, trace.setSpan(ROOT_CONTEXT, server));
    child.end();
    const linked = agent.startSpan('pidfd.agent.process_exit', {
      kind: SpanKind.INTERNAL,
      links: [{ context: server.spanContext() }, { context: child.spanContext(), attributes: { 'link.why': 'started by' } }, { context: child.spanContext() }],
      startTime: 1_700_000_000_123,
    });
    linked.setStatus({ code: SpanStatusCode.OK });
    linked.end(1_700_000_000_124);

    // A span too long for two bytes of length, and one short enough for one.
    versioned.startSpan('long', { attributes: { blob: 'x'.repeat(20_000) } }).end();
    versioned.startSpan('s', { kind: SpanKind.CLIENT }).end();
    agent.startSpan('producer', { kind: SpanKind.PRODUCER, attributes: { bytes: new Uint8Array([0, 1, 255]) as unknown as string } }).end([0, 0]);
    agent.startSpan('far future', { kind: SpanKind.CONSUMER, startTime: [4_102_444_800, 999_999_999] }).end([4_102_444_801, 0]);
    const many = agent.startSpan('over the attribute limit');
    for (let i = 0; i < 80; i++) many.setAttribute(`key.${i}`, i);
    many.end();
    spans.push(...memory.getFinishedSpans());
  }
  return spans;
}

test('the encoder writes the SDK serializer bytes for every shape of span', (t) => {
  const spans = madeSpans();
  t.true(spans.some((s) => s.droppedAttributesCount > 0) && spans.some((s) => s.droppedLinksCount > 0) && spans.some((s) => s.droppedEventsCount > 0), 'some counts were dropped');
  const theirs = Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);
  const ours = Buffer.from(encodeTraceRequest(spans));
  t.true(theirs.length > 40_000, `${theirs.length} bytes`);
  t.is(ours.length, theirs.length);
  const firstDifference = ours.findIndex((b, i) => b !== theirs[i]);
  t.is(firstDifference, -1, `bytes differ from offset ${firstDifference}`);
});

test('each span alone, and every prefix of the list, encodes as the SDK does', (t) => {
  const spans = madeSpans();
  for (let i = 0; i < spans.length; i++) {
    t.deepEqual(Buffer.from(encodeTraceRequest([spans[i]!])), Buffer.from(ProtobufTraceSerializer.serializeRequest([spans[i]!])!), spans[i]!.name);
    t.deepEqual(Buffer.from(encodeTraceRequest(spans.slice(0, i))), Buffer.from(ProtobufTraceSerializer.serializeRequest(spans.slice(0, i))!), `the first ${i}`);
  }
});

test('a request after a much larger one, and an empty one, are whole', (t) => {
  const spans = madeSpans();
  const big = Array.from({ length: 40 }, () => spans).flat();
  t.deepEqual(Buffer.from(encodeTraceRequest(big)), Buffer.from(ProtobufTraceSerializer.serializeRequest(big)!));
  t.deepEqual(Buffer.from(encodeTraceRequest(spans.slice(0, 1))), Buffer.from(ProtobufTraceSerializer.serializeRequest(spans.slice(0, 1))!));
  t.is(encodeTraceRequest([]).length, 0);
  t.deepEqual(OtlpSpanSerializer.deserializeResponse(new Uint8Array([0x0a, 0x02, 0x08, 0x03])), ProtobufTraceSerializer.deserializeResponse(new Uint8Array([0x0a, 0x02, 0x08, 0x03])));
});

test('values kept from earlier requests are written as the SDK writes them, and so are those of a key whose values keep changing', (t) => {
  const memory = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'pidfd-agent' }), spanProcessors: [new SimpleSpanProcessor(memory)] });
  const tracer = provider.getTracer('pidfd-agent');
  for (let i = 0; i < 100; i++) {
    const span = tracer.startSpan('s', { attributes: { 'rpc.method': i % 2 ? 'pidfd.agent.v1.AgentService/Spawn' : 'pidfd.agent.v1.AgentService/Wait', 'pidfd.agent.handle': `handle-${i}`, long: 'x'.repeat(200 + (i % 3)), 'grüße': 'ü' } }, ROOT_CONTEXT);
    span.end();
  }
  const spans = memory.getFinishedSpans();
  for (let round = 0; round < 3; round++) {
    t.deepEqual(Buffer.from(encodeTraceRequest(spans)), Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!), `round ${round}`);
    for (let i = 0; i < spans.length; i += 7) t.deepEqual(Buffer.from(encodeTraceRequest(spans.slice(i, i + 3))), Buffer.from(ProtobufTraceSerializer.serializeRequest(spans.slice(i, i + 3))!));
  }
});
