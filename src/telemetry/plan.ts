// Whether telemetry is on, and what it exports, decided from the standard OTEL_* variables and the
// agent's flags alone: nothing configured means no SDK, no exporter, no listener.

/** Where /metrics is served (--metrics-listen). */
export interface MetricsListen {
  readonly host: string;
  readonly port: number;
}

export interface TelemetrySettings {
  readonly metricsListen?: MetricsListen;
  /** Record the argv of spawned processes on spans (--trace-argv): it may hold secrets. */
  readonly traceArgv: boolean;
  /** Label processes and exits by owner for at most this many owners (--metrics-owners); 0: never. */
  readonly metricsOwners: number;
}

export interface TelemetryPlan {
  /** Spans go to the exporters OTEL_TRACES_EXPORTER names (the SDK reads it; default otlp). */
  readonly traces: boolean;
  /** Metrics are pushed over OTLP (OTEL_METRICS_EXPORTER=otlp, or an OTLP endpoint). */
  readonly otlpMetrics: boolean;
  /** Metrics are written to stdout (OTEL_METRICS_EXPORTER=console). */
  readonly consoleMetrics?: boolean;
  readonly prometheus?: MetricsListen;
  /** Old (pre-1.38) RPC names as well, for dashboards being migrated (OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup). */
  readonly legacyRpcNames: boolean;
  /** Why nothing is on, when nothing is. */
  readonly off?: string;
  /** What in the variables could not be read, said once the SDK's diagnostics reach the log. */
  readonly warnings?: readonly string[];
}

type Env = Readonly<Record<string, string | undefined>>;

const list = (value: string | undefined): string[] =>
  (value ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '' && s !== 'null');

const isTrue = (value: string | undefined) => value?.trim().toLowerCase() === 'true';

/** What to start. An exporter named by a variable counts as configured; so does an OTLP endpoint. */
export function planTelemetry(env: Env, settings: Pick<TelemetrySettings, 'metricsListen'>): TelemetryPlan {
  const legacyRpcNames = list(env.OTEL_SEMCONV_STABILITY_OPT_IN).includes('rpc/dup');
  if (isTrue(env.OTEL_SDK_DISABLED)) return { traces: false, otlpMetrics: false, legacyRpcNames, off: 'OTEL_SDK_DISABLED=true' };
  const endpoint = (signal: 'TRACES' | 'METRICS') => env[`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`] ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const tracesExporters = list(env.OTEL_TRACES_EXPORTER);
  const metricsExporters = list(env.OTEL_METRICS_EXPORTER);
  const traces = tracesExporters.length > 0 ? !tracesExporters.includes('none') : endpoint('TRACES') !== undefined;
  const metricsOff = metricsExporters.includes('none');
  const named = (name: string) => !metricsOff && metricsExporters.includes(name);
  const otlpMetrics = metricsExporters.length > 0 ? named('otlp') : endpoint('METRICS') !== undefined;
  // As the SDK's own prometheus exporter would listen; --metrics-listen, when given, says where.
  const warnings: string[] = [];
  const prometheus = settings.metricsListen ?? (named('prometheus') ? { host: env.OTEL_EXPORTER_PROMETHEUS_HOST?.trim() || '127.0.0.1', port: prometheusPort(env.OTEL_EXPORTER_PROMETHEUS_PORT, warnings) } : undefined);
  const plan = { traces, otlpMetrics, consoleMetrics: named('console'), prometheus, legacyRpcNames, warnings };
  if (traces || otlpMetrics || plan.consoleMetrics || prometheus !== undefined) return plan;
  const unknown = metricsExporters.filter((e) => !['otlp', 'prometheus', 'console', 'none'].includes(e));
  return { ...plan, off: unknown.length > 0 ? `OTEL_METRICS_EXPORTER names no exporter the agent has (${unknown.join(', ')}; it has otlp, prometheus, console)` : 'no OTEL_*_EXPORTER, OTLP endpoint or --metrics-listen' };
}

/** OTEL_EXPORTER_PROMETHEUS_PORT, 9464 by default (and, with a warning, for what is not a port). */
function prometheusPort(text: string | undefined, warnings: string[]): number {
  const given = text?.trim() || '9464';
  const n = /^\d+$/.test(given) ? Number(given) : Number.NaN;
  if (n >= 0 && n <= 65535) return n;
  warnings.push(`OTEL_EXPORTER_PROMETHEUS_PORT=${JSON.stringify(text)} is not a port: using 9464`);
  return 9464;
}
