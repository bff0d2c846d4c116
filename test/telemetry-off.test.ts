// With no OTEL_* variables and no --metrics-listen, telemetry creates nothing: no SDK, no exporter,
// no listener; the API's global providers stay its no-ops. OTEL_SDK_DISABLED=true wins over
// exporters that are configured.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { metrics, trace } from '@opentelemetry/api';
import test from 'ava';
import { startAgentProcess } from './helpers/agent-process.js';
import { otlpEnv, startOtlpSink } from './helpers/otlp-sink.js';
import { startTelemetry } from '../src/telemetry/telemetry.js';

const withoutOtel = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));

/** Inodes of the TCP sockets listening on this node (state 0A), v4 and v6. */
function listeningInodes(): Set<string> {
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A') inodes.add(cols[9]!);
    }
  }
  return inodes;
}

const socketInodes = (pid: number): string[] =>
  readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      return m ? [m[1]!] : [];
    } catch {
      return [];
    }
  });

const telemetryLine = (stderr: string) => JSON.parse(stderr.split('\n').find((l) => l.includes('"event":"telemetry"'))!) as { exporters: string[]; off?: string };

test('nothing configured: no exporter and no listener are created, and the API keeps its no-op providers', async (t) => {
  const off = await startTelemetry(withoutOtel(), { traceArgv: false, metricsOwners: 0 }, { version: '0' }, () => {});
  t.deepEqual(off.exporters, []);
  t.is(typeof off.off, 'string');
  t.is(trace.getTracerProvider().getTracer('x').startSpan('probe').isRecording(), false, 'no tracer provider was registered');
  t.is(metrics.getMeterProvider().constructor.name, 'NoopMeterProvider', 'no meter provider was registered');

  const agent = await startAgentProcess([], [], withoutOtel());
  try {
    await agent.client.spawn({ argv: ['/bin/true'] });
    const line = telemetryLine(agent.stderr());
    t.deepEqual(line.exporters, []);
    t.regex(line.off ?? '', /no OTEL_\*_EXPORTER/);
    const listening = listeningInodes();
    t.deepEqual(
      socketInodes(agent.child.pid!).filter((i) => listening.has(i)),
      [],
      'the agent listens on no TCP port',
    );
  } finally {
    await agent.stop();
  }
});

test('OTEL_SDK_DISABLED=true turns configured exporters off: nothing reaches the receiver', async (t) => {
  const sink = await startOtlpSink();
  t.teardown(() => sink.close());
  const agent = await startAgentProcess([], [], otlpEnv(sink, { OTEL_SDK_DISABLED: 'true' }));
  try {
    const { process } = await agent.client.spawn({ argv: ['/bin/true'] });
    await agent.client.wait({ handle: process!.handle });
    t.is(telemetryLine(agent.stderr()).off, 'OTEL_SDK_DISABLED=true');
  } finally {
    await agent.stop(); // a configured SDK would flush its spans here
  }
  t.deepEqual([...sink.requests.keys()], []);
});
