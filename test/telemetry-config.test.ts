// The telemetry flags: --metrics-listen is loopback unless an address is given, and never a name.
import test from 'ava';
import { ConfigError, parseConfig } from '../src/config/config.js';
import { planTelemetry } from '../src/telemetry/plan.js';
import { formatLogLine } from '../src/log.js';
import { otlpProtobufSpanExporter } from '../src/telemetry/sdk.js';

test('--metrics-listen PORT is loopback; another address only when given, and never a name', (t) => {
  t.deepEqual(parseConfig(['--metrics-listen', '9464']).metricsListen, { host: '127.0.0.1', port: 9464 });
  t.deepEqual(parseConfig(['--metrics-listen', '0.0.0.0:9464']).metricsListen, { host: '0.0.0.0', port: 9464 });
  t.deepEqual(parseConfig(['--metrics-listen', '[::1]:9464']).metricsListen, { host: '::1', port: 9464 });
  t.throws(() => parseConfig(['--metrics-listen', 'localhost:9464']), { instanceOf: ConfigError, message: /not an IP address/ });
  t.throws(() => parseConfig(['--metrics-listen', '127.0.0.1:70000']), { instanceOf: ConfigError, message: /out of range/ });
  t.is(parseConfig([]).metricsListen, undefined);
});

test('--log-format, --trace-argv and --metrics-owners', (t) => {
  t.is(parseConfig([]).logFormat, 'json');
  t.is(parseConfig(['--log-format', 'text']).logFormat, 'text');
  t.throws(() => parseConfig(['--log-format', 'xml']), { instanceOf: ConfigError, message: /json or text/ });
  t.false(parseConfig([]).traceArgv);
  t.true(parseConfig(['--trace-argv']).traceArgv);
  t.is(parseConfig(['--metrics-owners', '20']).metricsOwners, 20);
  t.is(formatLogLine('text', new Date(0), 'serving', { addresses: ['unix:///a b'], n: 1, word: 'ok' }), '1970-01-01T00:00:00.000Z serving addresses=["unix:///a b"] n=1 word=ok');
});

test('telemetry is on only when an exporter, an OTLP endpoint or --metrics-listen says so', (t) => {
  t.truthy(planTelemetry({}, {}).off);
  t.truthy(planTelemetry({ OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' }, {}).off);
  t.like(planTelemetry({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }, {}), { traces: true, otlpMetrics: true, off: undefined });
  t.like(planTelemetry({ OTEL_TRACES_EXPORTER: 'otlp' }, {}), { traces: true, otlpMetrics: false });
  t.like(planTelemetry({}, { metricsListen: { host: '127.0.0.1', port: 9464 } }), { traces: false, otlpMetrics: false, off: undefined });
  t.like(planTelemetry({ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }, { metricsListen: { host: '127.0.0.1', port: 1 } }), { traces: false, off: 'OTEL_SDK_DISABLED=true' });
  t.true(planTelemetry({ OTEL_SEMCONV_STABILITY_OPT_IN: 'http,rpc/dup' }, {}).legacyRpcNames);
  // The SDK's other metrics exporters: prometheus where its variables say (9464 by default), console.
  t.like(planTelemetry({ OTEL_METRICS_EXPORTER: 'prometheus' }, {}), { prometheus: { host: '127.0.0.1', port: 9464 }, off: undefined });
  t.like(planTelemetry({ OTEL_METRICS_EXPORTER: 'prometheus', OTEL_EXPORTER_PROMETHEUS_HOST: '0.0.0.0', OTEL_EXPORTER_PROMETHEUS_PORT: '9000' }, {}), { prometheus: { host: '0.0.0.0', port: 9000 } });
  t.like(planTelemetry({ OTEL_METRICS_EXPORTER: 'prometheus' }, { metricsListen: { host: '127.0.0.1', port: 1 } }), { prometheus: { port: 1 } }, '--metrics-listen says where');
  t.like(planTelemetry({ OTEL_METRICS_EXPORTER: 'console' }, {}), { consoleMetrics: true, off: undefined });
  t.like(planTelemetry({ OTEL_METRICS_EXPORTER: 'prometheus', OTEL_EXPORTER_PROMETHEUS_PORT: '99999' }, {}), { prometheus: { port: 9464 }, warnings: ['OTEL_EXPORTER_PROMETHEUS_PORT="99999" is not a port: using 9464'] });
  t.regex(planTelemetry({ OTEL_METRICS_EXPORTER: 'bogus' }, {}).off ?? '', /names no exporter the agent has \(bogus;/);
});

test('spans go through the agent\'s own OTLP encoder only for OTLP over http/protobuf alone', (t) => {
  const ours = (env: Record<string, string>) => otlpProtobufSpanExporter(env) !== undefined;
  t.true(ours({}), 'the default: otlp, http/protobuf');
  t.true(ours({ OTEL_TRACES_EXPORTER: 'otlp' }));
  t.true(ours({ OTEL_TRACES_EXPORTER: ' otlp ', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }));
  t.true(ours({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' }), 'the traces protocol decides');
  t.false(ours({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }));
  t.false(ours({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }));
  t.false(ours({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' }));
  t.false(ours({ OTEL_TRACES_EXPORTER: 'console' }));
  t.false(ours({ OTEL_TRACES_EXPORTER: 'otlp,console' }), 'several exporters: the SDK makes them all');
});
