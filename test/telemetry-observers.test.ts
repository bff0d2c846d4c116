// What observes the agent never stops it: with a tracer whose spans fail at every step, a spawn's
// stages still run and return, an exit is still counted, a call still gets its reply, and nothing
// reaches the caller of a hook.
import { Metadata, type sendUnaryData, type ServiceDefinition } from '@grpc/grpc-js';
import { trace, type Span, type Tracer, type TracerProvider } from '@opentelemetry/api';
import { loggingErrorHandler, setGlobalErrorHandler } from '@opentelemetry/core';
import test from 'ava';
import type { ProcessRecord } from '../src/process/lifecycle/record.js';
import { Histograms } from '../src/telemetry/histogram-tally.js';
import { AgentMetrics } from '../src/telemetry/metrics.js';
import { processTelemetry } from '../src/telemetry/process-spans.js';
import { instrumentService } from '../src/telemetry/rpc.js';

const failing = (what: string) => () => {
  throw new Error(`${what} failed`);
};

test.serial('a tracer that throws costs the process its spans, never its stages, exits or signals', async (t) => {
  let startsLeft = 1;
  const brokenSpan = { end: failing('end'), setAttribute: failing('setAttribute'), isRecording: () => true, spanContext: failing('spanContext') } as unknown as Span;
  const tracer = { startSpan: () => (startsLeft-- > 0 ? brokenSpan : failing('startSpan')()) } as unknown as Tracer;
  const provider: TracerProvider = { getTracer: () => tracer };
  t.true(trace.setGlobalTracerProvider(provider));
  t.teardown(() => trace.disable());
  const errors: string[] = [];
  setGlobalErrorHandler((e) => errors.push(String((e as Error).message ?? e)));
  t.teardown(() => setGlobalErrorHandler(loggingErrorHandler()));

  const metrics = new AgentMetrics(0, new Histograms());
  const telemetry = processTelemetry(metrics, { traces: true, traceArgv: false });
  const spawn = telemetry.spawnTrace();
  t.is(spawn.stage('exec', () => 'ran with a span whose end throws'), 'ran with a span whose end throws');
  t.is(await spawn.stage('store', async () => 'ran without a span'), 'ran without a span');
  t.throws(() => spawn.stage('cgroup', failing('the stage itself')), { message: 'the stage itself failed' }, "the stage's own error is still the caller's");

  const record = { handle: 'h1', identity: { pid: 4242 }, spec: { argv: ['/bin/true'], owner: undefined }, exit: { exitedAt: Date.now(), termination: { exitCode: 0 } } } as unknown as ProcessRecord;
  t.notThrows(() => spawn.started(record, 0.001));
  t.notThrows(() => telemetry.exited(record));
  t.notThrows(() => telemetry.signalled(15));
  // exec: its end; store, cgroup and the exit: their start (no call's span is active, so started() has none to mark).
  t.deepEqual(errors, ['end failed', 'startSpan failed', 'startSpan failed', 'startSpan failed']);
});

test.serial('a tracer that throws costs a call its span, never its reply', async (t) => {
  let starts = 0;
  const brokenSpan = { end: failing('end'), setAttribute: failing('setAttribute'), setAttributes: failing('setAttributes'), setStatus: failing('setStatus'), isRecording: () => true, spanContext: failing('spanContext') } as unknown as Span;
  const tracer = { startSpan: () => (starts++ % 2 === 0 ? failing('startSpan')() : brokenSpan) } as unknown as Tracer;
  t.true(trace.setGlobalTracerProvider({ getTracer: () => tracer }));
  t.teardown(() => trace.disable());
  const errors: string[] = [];
  setGlobalErrorHandler((e) => errors.push(String((e as Error).message ?? e)));
  t.teardown(() => setGlobalErrorHandler(loggingErrorHandler()));

  const definition = { Get: { path: '/pidfd.agent.v1.AgentService/Get', requestStream: false, responseStream: false } } as unknown as ServiceDefinition;
  const implementation = { Get: (_call: unknown, callback: sendUnaryData<string>) => callback(null, 'the reply') };
  const wrapped = instrumentService(definition, implementation, new AgentMetrics(0, new Histograms()), { legacyNames: false, traces: true });
  for (let i = 0; i < 2; i++) {
    const reply = await new Promise<string | null | undefined>((resolve) => (wrapped.Get as (c: unknown, cb: sendUnaryData<string>) => void)({ metadata: new Metadata() }, (_e, v) => resolve(v)));
    t.is(reply, 'the reply', i === 0 ? 'its span could not start' : 'its span could not end');
  }
  t.is(errors.length, 2, errors.join(', '));
});
