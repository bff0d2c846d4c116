// Telemetry on: the SDK started, the instruments made, and the hooks the agent calls. Imported
// only when something is configured, so an agent without telemetry never loads the SDK.
import { diag, INVALID_TRACEID, trace } from '@opentelemetry/api';
import type { Logger } from '../log.js';
import type { TelemetryPlan, TelemetrySettings } from './plan.js';
import { startSdk } from './sdk.js';
import { AgentMetrics } from './metrics.js';
import { Histograms } from './histogram-tally.js';
import { observeRuntime } from './runtime.js';
import { instrumentService } from './rpc.js';
import { processTelemetry } from './process-spans.js';
import { timedStore } from './store-timing.js';
import { logDiagnostics } from './diagnostics.js';
import type { AgentIdentity, Telemetry } from './telemetry.js';

export async function enableTelemetry(plan: TelemetryPlan, settings: TelemetrySettings, identity: AgentIdentity, env: Readonly<Record<string, string | undefined>>, log: Logger): Promise<Telemetry> {
  // Before the SDK reads its variables: what it cannot read is said then, and only then.
  logDiagnostics(log, env);
  for (const warning of plan.warnings ?? []) diag.warn(warning);
  const histograms = new Histograms();
  const sdk = await startSdk(plan, identity, env, histograms);
  const agentMetrics = new AgentMetrics(settings.metricsOwners, histograms);
  const stopRuntime = observeRuntime();
  return {
    exporters: sdk.exporters,
    metricsUrl: sdk.metricsAddress === undefined ? undefined : `http://${sdk.metricsAddress}/metrics`,
    process: processTelemetry(agentMetrics, { traces: plan.traces, traceArgv: settings.traceArgv }),
    instrumentService: (definition, implementation) => instrumentService(definition, implementation, agentMetrics, { legacyNames: plan.legacyRpcNames, traces: plan.traces }),
    timedStore: (store) => timedStore(store, agentMetrics.storeWriteDuration),
    observe: (view) => agentMetrics.observe(view),
    handedOver: (seconds) => agentMetrics.handoverDuration.record(seconds),
    traceIds: () => {
      const span = trace.getActiveSpan();
      const ids = span?.spanContext();
      // Spans here are the recorder's, from its ids or a traceparent the propagator checked: only the
      // invalid context of no span at all needs telling apart (not the API's regex checks per call).
      return ids && ids.traceId !== INVALID_TRACEID ? { trace_id: ids.traceId, span_id: ids.spanId } : undefined;
    },
    shutdown: async () => {
      stopRuntime();
      try {
        await sdk.shutdown();
      } catch (e) {
        // A collector that is down at the end loses the last batch; the agent still stopped cleanly.
        diag.error(`shutdown: the last export failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    },
  };
}
