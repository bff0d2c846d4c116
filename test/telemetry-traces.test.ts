// Spawn with the caller's W3C traceparent: the agent's server span continues that trace under the
// current RPC conventions, the spawn stages are its children, the exit links back to it, and the
// audit line of the call names the trace. Received by a local OTLP/HTTP receiver, as JSON and as
// protobuf (the agent's own request encoder, src/telemetry/otlp-span-encoder.ts).
import { randomBytes } from 'node:crypto';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import test from 'ava';
import { SpawnRequest, type SpawnResponse } from '../clients/ts/src/gen/pidfd/agent/v1/agent.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { eventually, sleep } from './helpers/harness.js';
import { readFileSync } from 'node:fs';
import { attr, otlpEnv, startOtlpSink, type ReceivedSpan } from './helpers/otlp-sink.js';
import { COMMAND_ARGS_CHARS } from '../src/telemetry/process-spans.js';
import { spawn as spawnChild } from 'node:child_process';

const SPAWN = 'pidfd.agent.v1.AgentService/Spawn';

async function spansUntil(spans: ReceivedSpan[], found: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !found(); i++) await sleep(25);
}

const traceparentContinues = test.macro({
  exec: async (t, protocol: 'http/json' | 'http/protobuf') => {
    const sink = await startOtlpSink();
    t.teardown(() => sink.close());
    const agent = await startAgentProcess([], [], otlpEnv(sink, { K8S_NODE_NAME: 'node-a', OTEL_EXPORTER_OTLP_PROTOCOL: protocol }));
    try {
      const traceId = randomBytes(16).toString('hex');
      const callerSpan = randomBytes(8).toString('hex');
      const md = new Metadata();
      md.set('traceparent', `00-${traceId}-${callerSpan}-01`);
      const res = await new Promise<SpawnResponse>((resolve, reject) =>
        agent.client.raw.spawn(SpawnRequest.fromPartial({ argv: ['/bin/sh', '-c', 'exit 3', 'secret-argument'] }), md, (e: ServiceError | null, r?: SpawnResponse) => (e ? reject(e) : resolve(r!))),
      );
      const pid = res.process!.pid;
      await agent.client.wait({ handle: res.process!.handle });

      const server = () => sink.spans.find((s) => s.name === SPAWN && s.traceId === traceId);
      const exit = () => sink.spans.find((s) => s.name === 'pidfd.agent.process_exit' && attr(s.attributes, 'process.pid') === pid);
      await spansUntil(sink.spans, () => server() !== undefined && exit() !== undefined && sink.spans.some((s) => s.name === 'pidfd.agent.store_write'));
      const span = server();
      if (span === undefined) return t.fail(`no ${SPAWN} span in trace ${traceId}; received: ${sink.spans.map((s) => s.name).join(', ')}`);

      t.is(span.parentSpanId, callerSpan, "the caller's span is the parent");
      t.is(span.kind, 2, 'SPAN_KIND_SERVER');
      t.is(attr(span.attributes, 'rpc.system.name'), 'grpc');
      t.is(attr(span.attributes, 'rpc.method'), SPAWN);
      t.is(attr(span.attributes, 'rpc.response.status_code'), 'OK');
      t.is(attr(span.attributes, 'process.pid'), pid);
      t.is(attr(span.attributes, 'process.executable.name'), 'sh');
      t.is(attr(span.attributes, 'rpc.system'), undefined, 'old names only with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup');
      t.is(attr(span.attributes, 'process.command_args'), undefined, 'argv only with --trace-argv');
      t.is(attr(span.resource, 'service.name'), 'pidfd-agent');
      t.is(typeof attr(span.resource, 'service.version'), 'string');
      t.is(typeof attr(span.resource, 'host.name'), 'string');
      t.is(attr(span.resource, 'k8s.node.name'), 'node-a');

      const children = sink.spans.filter((s) => s.traceId === traceId && s.parentSpanId === span.spanId).map((s) => s.name);
      for (const stage of ['pidfd.agent.exec', 'pidfd.agent.store_write']) t.true(children.includes(stage), `${stage} among ${children.join(', ')}`);
      // A stage that did not run has no span: /bin/sh has a slash (no PATH search), no cgroup was asked for.
      for (const stage of ['pidfd.agent.resolve_executable', 'pidfd.agent.cgroup']) t.false(children.includes(stage), `no ${stage} among ${children.join(', ')}`);

      const ended = exit()!;
      t.deepEqual(ended.links?.map((l) => [l.traceId, l.spanId]), [[traceId, span.spanId]], 'the exit links to the Spawn span');
      t.is(attr(ended.attributes, 'process.exit.code'), 3);
      t.is(attr(ended.attributes, 'pidfd.agent.exit.how'), 'code');

      const audit = agent
        .stderr()
        .split('\n')
        .filter((l) => l.includes('"event":"audit"') && l.includes(res.process!.handle));
      t.true(audit.some((l) => (JSON.parse(l) as { trace_id?: string }).trace_id === traceId), `the audit line names the trace: ${audit.join('\n')}`);
    } finally {
      await agent.stop();
    }
  },
  title: (_, protocol) => `a Spawn carrying a traceparent becomes a server span of that trace, with stage children and a linked exit (OTLP ${protocol})`,
});

test(traceparentContinues, 'http/json');
test(traceparentContinues, 'http/protobuf');

test('--trace-argv records argv; OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup adds the old RPC names; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the resource', async (t) => {
  const sink = await startOtlpSink();
  t.teardown(() => sink.close());
  const agent = await startAgentProcess(
    ['--trace-argv'],
    [],
    otlpEnv(sink, { OTEL_SEMCONV_STABILITY_OPT_IN: 'rpc/dup', OTEL_SERVICE_NAME: 'agent-under-test', OTEL_RESOURCE_ATTRIBUTES: 'service.namespace=ci,deployment.environment.name=test' }),
  );
  try {
    const res = await agent.client.spawn({ argv: ['/bin/true', 'visible'] });
    const server = () => sink.spans.find((s) => s.name === SPAWN && attr(s.attributes, 'process.pid') === res.process!.pid);
    await spansUntil(sink.spans, () => server() !== undefined);
    const span = server();
    if (span === undefined) return t.fail('no Spawn span received');
    t.deepEqual(attr(span.attributes, 'process.command_args'), ['/bin/true', 'visible']);
    // A long argv is cut to COMMAND_ARGS_CHARS in all: it sits on two spans a process, queued while a collector is slow.
    const long = await agent.client.spawn({ argv: ['/bin/true', 'x'.repeat(20_000), 'y'] });
    const longSpan = () => sink.spans.find((s) => s.name === SPAWN && attr(s.attributes, 'process.pid') === long.process!.pid);
    await spansUntil(sink.spans, () => longSpan() !== undefined);
    t.deepEqual(attr(longSpan()!.attributes, 'process.command_args'), ['/bin/true', `${'x'.repeat(COMMAND_ARGS_CHARS - '/bin/true'.length)}…`, '…(1 more)']);
    t.is(attr(span.attributes, 'rpc.method'), SPAWN, 'the stable value where old and new share a key');
    t.is(attr(span.attributes, 'rpc.system'), 'grpc');
    t.is(attr(span.attributes, 'rpc.service'), 'pidfd.agent.v1.AgentService');
    t.is(attr(span.attributes, 'rpc.grpc.status_code'), 0);
    t.is(attr(span.resource, 'service.name'), 'agent-under-test');
    t.is(attr(span.resource, 'service.namespace'), 'ci');
    t.is(attr(span.resource, 'deployment.environment.name'), 'test');
    t.is(typeof attr(span.resource, 'service.version'), 'string', "the agent's own attributes stay beside them");
  } finally {
    await agent.stop();
  }
});

test('a Spawn of a bare name has its PATH search as a stage of its trace', async (t) => {
  const sink = await startOtlpSink();
  t.teardown(() => sink.close());
  const agent = await startAgentProcess([], [], otlpEnv(sink));
  try {
    const traceId = randomBytes(16).toString('hex');
    const md = new Metadata();
    md.set('traceparent', `00-${traceId}-${randomBytes(8).toString('hex')}-01`);
    await new Promise<SpawnResponse>((resolve, reject) =>
      agent.client.raw.spawn(SpawnRequest.fromPartial({ argv: ['true'] }), md, (e: ServiceError | null, r?: SpawnResponse) => (e ? reject(e) : resolve(r!))),
    );
    const server = () => sink.spans.find((s) => s.name === SPAWN && s.traceId === traceId);
    const search = () => sink.spans.find((s) => s.name === 'pidfd.agent.resolve_executable' && s.traceId === traceId);
    await spansUntil(sink.spans, () => server() !== undefined && search() !== undefined);
    const span = server();
    if (span === undefined) return t.fail(`no ${SPAWN} span in trace ${traceId}`);
    t.is(search()?.parentSpanId, span.spanId, 'resolve_executable is a child of the Spawn span');
  } finally {
    await agent.stop();
  }
});

test('an adopted process whose title holds its arguments: no process.executable.name from it, and the title on no span', async (t) => {
  const sink = await startOtlpSink();
  t.teardown(() => sink.close());
  const agent = await startAgentProcess([], [], otlpEnv(sink, {}));
  t.teardown(() => agent.stop());
  const titled = spawnChild('/bin/bash', ['-c', 'exec -a "/usr/bin/dbtool --password=hunter2" sleep 100'], { stdio: 'ignore' });
  t.teardown(() => titled.kill('SIGKILL'));
  await eventually('the process exec\'d under its title', () => readFileSync(`/proc/${titled.pid}/cmdline`, 'latin1').includes('hunter2'));
  const { process: p } = await agent.client.adopt({ pid: titled.pid! });
  await agent.client.signal({ handle: p!.handle, signal: 'KILL' });
  await agent.client.wait({ handle: p!.handle });
  const adopt = () => sink.spans.find((s) => s.name === 'pidfd.agent.v1.AgentService/Adopt');
  const exit = () => sink.spans.find((s) => s.name === 'pidfd.agent.process_exit' && attr(s.attributes, 'process.pid') === titled.pid);
  await spansUntil(sink.spans, () => adopt() !== undefined && exit() !== undefined);
  t.is(attr(adopt()!.attributes, 'process.pid'), titled.pid);
  t.is(attr(adopt()!.attributes, 'process.executable.name'), undefined);
  t.is(attr(exit()!.attributes, 'process.executable.name'), undefined);
  t.false(JSON.stringify(sink.spans).includes('hunter2'), 'the title is on no span');
});
