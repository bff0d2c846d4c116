// The OpenTelemetry SDK, configured the standard way: the OTEL_* variables it reads itself (trace
// exporter, OTLP endpoint and protocol, sampler, resource attributes, service name), plus what only
// the agent knows: its resource, the Prometheus endpoint of --metrics-listen, and which signals the
// plan turned on (the SDK's own default would export traces over OTLP to localhost unasked). Spans
// are made by the agent's recorder (span-recorder.ts) over the sampler, limits and processors the
// SDK builds from the environment (sdk-env.ts).
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { diag, ROOT_CONTEXT, trace, type Context, type ContextManager } from '@opentelemetry/api';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { AggregationTemporality, ConsoleMetricExporter, InstrumentType, PeriodicExportingMetricReader, type IMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { OTLPMetricExporter as OtlpGrpc } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPMetricExporter as OtlpJson } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as OtlpProto } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Histograms } from './histogram-tally.js';
import { serveMetrics, type Collect } from './metrics-endpoint.js';
import { OtlpSpanSerializer } from './otlp-span-encoder.js';
import { detectedResource, samplerFromEnv, spanLimitsFromEnv, spanProcessorsFromEnv } from './sdk-env.js';
import { SpanRecorderProvider } from './span-recorder.js';
import type { TelemetryPlan } from './plan.js';
import type { AgentIdentity } from './telemetry.js';

/** Contexts that go nowhere, as the API has without an SDK. */
const NO_CONTEXT: ContextManager = {
  active: () => ROOT_CONTEXT,
  with: (_context, fn, thisArg, ...args) => fn.call(thisArg, ...args),
  bind: (_context, target) => target,
  enable() {
    return this;
  },
  disable() {
    return this;
  },
};

/**
 * The context of the code running now, and nothing after its first await: a call's span is active
 * while its handler runs synchronously, and what the agent does for it later carries the span
 * explicitly (process-spans.ts spawnTrace, the audit of a call). AsyncLocalStorage would carry it
 * across awaits, but on Node 20 it hooks every promise and async resource the agent makes (some
 * 60 per Spawn+Wait cycle), traced or not.
 */
function syncContext(): ContextManager {
  let current: Context = ROOT_CONTEXT;
  return {
    active: () => current,
    with(context, fn, thisArg, ...args) {
      const previous = current;
      current = context;
      try {
        return fn.call(thisArg, ...args);
      } finally {
        current = previous;
      }
    },
    bind: (_context, target) => target,
    enable() {
      return this;
    },
    disable() {
      current = ROOT_CONTEXT;
      return this;
    },
  };
}

export interface StartedSdk {
  readonly exporters: readonly string[];
  /** The address /metrics is served on (the port chosen, when 0 was asked). */
  readonly metricsAddress?: string;
  shutdown(): Promise<void>;
}

type Env = Readonly<Record<string, string | undefined>>;

function otlpMetricExporter(env: Env): { exporter: PushMetricExporter; protocol: string } {
  const protocol = (env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf').trim();
  if (protocol === 'grpc') return { exporter: new OtlpGrpc(), protocol };
  if (protocol === 'http/json') return { exporter: new OtlpJson(), protocol };
  return { exporter: new OtlpProto(), protocol: 'http/protobuf' };
}

/**
 * The exporter the SDK would make for OTLP over http/protobuf (same endpoint, headers, timeout and
 * retries from OTEL_EXPORTER_OTLP_*), writing its requests with the one-pass encoder. Undefined
 * where the SDK's own choice stands: another exporter or protocol, or more than one exporter.
 */
export function otlpProtobufSpanExporter(env: Env): SpanExporter | undefined {
  const names = [...new Set((env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '' && s !== 'null'))];
  if (names.length > 1 || (names.length === 1 && names[0] !== 'otlp')) return undefined;
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf').trim();
  if (protocol !== 'http/protobuf') return undefined;
  const options = convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' });
  return new OTLPExporterBase<ReadableSpan[]>(createOtlpHttpExportDelegate(options, OtlpSpanSerializer, 'otlp_http_span_exporter', TraceExporterMetricsHelper, undefined));
}

/** The exporter's metrics in Prometheus text, as its own handler writes them (no prefix, no timestamps, no scope info). */
function prometheusText(exporter: PrometheusExporter): Collect {
  const serializer = new PrometheusSerializer('', false, undefined, false, true);
  return async () => {
    const { resourceMetrics, errors } = await exporter.collect();
    if (errors.length > 0) diag.error('PrometheusExporter: metrics collection errors', ...errors);
    return serializer.serialize(resourceMetrics);
  };
}

/** The longest delay a timer takes: node runs a longer one after 1 ms, which would export in a hot loop. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration variable in milliseconds; what is not one (or out of a timer's range) is said, and the default used. */
function milliseconds(env: Env, name: string, fallback: number): number {
  const text = env[name]?.trim();
  if (text === undefined || text === '') return fallback;
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (n >= 1 && n <= MAX_TIMER_MS) return n;
  diag.warn(`${name}=${JSON.stringify(text)} is not a number of milliseconds from 1 to ${MAX_TIMER_MS}: using ${fallback}`);
  return fallback;
}

/** `histograms` are read by every metric reader beside the SDK's own instruments, each in its temporality. */
export async function startSdk(plan: TelemetryPlan, identity: AgentIdentity, env: Env, histograms: Histograms): Promise<StartedSdk> {
  const exporters: string[] = [];
  const readers: IMetricReader[] = [];
  let prometheus: PrometheusExporter | undefined;
  if (plan.prometheus) {
    prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true, metricProducers: [histograms.producer(AggregationTemporality.CUMULATIVE)] });
    readers.push(prometheus);
  }
  if (plan.otlpMetrics || plan.consoleMetrics) {
    const intervalMs = milliseconds(env, 'OTEL_METRIC_EXPORT_INTERVAL', 60_000);
    // The reader refuses a timeout longer than its interval.
    const timeoutMs = Math.min(intervalMs, milliseconds(env, 'OTEL_METRIC_EXPORT_TIMEOUT', 30_000));
    /** A pushing reader, with the agent's own histograms in the temporality its exporter asks for. */
    const periodic = (exporter: PushMetricExporter) => {
      const temporality = exporter.selectAggregationTemporality?.(InstrumentType.HISTOGRAM) ?? AggregationTemporality.CUMULATIVE;
      return new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: intervalMs, exportTimeoutMillis: timeoutMs, metricProducers: [histograms.producer(temporality)] });
    };
    if (plan.otlpMetrics) {
      const { exporter, protocol } = otlpMetricExporter(env);
      readers.push(periodic(exporter));
      exporters.push(`metrics:otlp(${protocol})`);
    }
    if (plan.consoleMetrics) {
      readers.push(periodic(new ConsoleMetricExporter()));
      exporters.push('metrics:console');
    }
  }
  // Detected once here, so that the metrics (NodeSDK's) and the spans (ours) carry the same resource.
  const resource = detectedResource(
    defaultResource().merge(
      resourceFromAttributes({
        'service.name': 'pidfd-agent',
        'service.version': identity.version,
        'host.name': hostname(),
        ...(identity.nodeName ? { 'k8s.node.name': identity.nodeName } : {}),
      }),
    ),
  );
  // host.id and the like are read asynchronously; an exporter that reads the resource before they
  // settle logs an error for it (every scrape) and exports it without them.
  await resource.waitForAsyncAttributes?.();
  const sdk = new NodeSDK({
    resource,
    autoDetectResources: false,
    metricReaders: readers,
    // No span processor for NodeSDK: it would build a tracer provider, and the agent's tracer is
    // span-recorder.ts over the processors the SDK builds from the environment (sdk-env.ts).
    // Without traces no context is propagated; with them, only synchronously (syncContext).
    spanProcessors: [],
    contextManager: plan.traces ? syncContext() : NO_CONTEXT,
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  let spans: SpanRecorderProvider | undefined;
  if (plan.traces) {
    const processors = spanProcessorsFromEnv(otlpProtobufSpanExporter(env));
    if (processors.length > 0) {
      spans = new SpanRecorderProvider({ resource, sampler: samplerFromEnv(), limits: spanLimitsFromEnv(), processors });
      trace.setGlobalTracerProvider(spans);
      exporters.push(`traces:${env.OTEL_TRACES_EXPORTER ?? 'otlp'}`);
    }
  }
  let server: Server | undefined;
  try {
    if (prometheus && plan.prometheus) server = await serveMetrics(prometheusText(prometheus), plan.prometheus.host, plan.prometheus.port);
  } catch (e) {
    await Promise.all([sdk.shutdown(), spans?.shutdown()]);
    throw new Error(`--metrics-listen ${plan.prometheus!.host}:${plan.prometheus!.port}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const address = server?.address() as AddressInfo | null | undefined;
  const metricsAddress = address ? `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : undefined;
  if (metricsAddress) exporters.push(`metrics:prometheus(http://${metricsAddress}/metrics)`);
  return {
    exporters,
    metricsAddress,
    shutdown: async () => {
      server?.close();
      await Promise.all([sdk.shutdown(), spans?.shutdown()]);
    },
  };
}
