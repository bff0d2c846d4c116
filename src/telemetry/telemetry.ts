// The agent's telemetry as the composition root sees it. Off (nothing configured) it is a set of
// no-ops and the OpenTelemetry SDK is never even loaded; on, ./enabled.ts is imported and built.
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { ProcessRecord } from '../process/lifecycle/record.js';
import type { ProcessStore } from '../process/process-store.js';
import { NO_TELEMETRY, type ProcessTelemetry } from '../process/telemetry-port.js';
import { planTelemetry, type TelemetryPlan, type TelemetrySettings } from './plan.js';

export type { TelemetrySettings } from './plan.js';

/** What the gauges read when scraped: the agent's state at that moment. */
export interface AgentView {
  readonly running: () => number;
  readonly retained: () => number;
  /** Every record (for owner labels only). */
  readonly records: () => Iterable<ProcessRecord>;
  readonly watchers: () => number;
  /** Events appended since this agent started. */
  readonly events: () => number;
}

export interface Telemetry {
  /** What was started, for the agent's log (empty when off). */
  readonly exporters: readonly string[];
  readonly off?: string;
  /** Where Prometheus scrapes (--metrics-listen, with the port chosen when 0 was asked). */
  readonly metricsUrl?: string;
  readonly process: ProcessTelemetry;
  /** The gRPC implementation with one server span and one duration per call. */
  instrumentService(definition: ServiceDefinition, implementation: UntypedServiceImplementation): UntypedServiceImplementation;
  /** The store with its durable writes timed. */
  timedStore(store: ProcessStore): ProcessStore;
  observe(view: AgentView): void;
  handedOver(seconds: number): void;
  /** trace_id and span_id of the active span, for log lines. */
  traceIds(): { trace_id: string; span_id: string } | undefined;
  /** Flushes and stops the exporters; what fails there is logged, never thrown: the agent's exit is not telemetry's. */
  shutdown(): Promise<void>;
}

export const TELEMETRY_OFF: Telemetry = {
  exporters: [],
  process: NO_TELEMETRY,
  instrumentService: (_d, implementation) => implementation,
  timedStore: (store) => store,
  observe: () => {},
  handedOver: () => {},
  traceIds: () => undefined,
  shutdown: async () => {},
};

/** Identity of this agent for the resource (service.version, k8s.node.name). */
export interface AgentIdentity {
  readonly version: string;
  readonly nodeName?: string;
}

/** `log`: where what goes wrong in the SDK is written, from its first warning about a variable on. */
export async function startTelemetry(env: Readonly<Record<string, string | undefined>>, settings: TelemetrySettings, identity: AgentIdentity, log: Logger): Promise<Telemetry> {
  const plan: TelemetryPlan = planTelemetry(env, settings);
  if (plan.off !== undefined) return { ...TELEMETRY_OFF, off: plan.off };
  const { enableTelemetry } = await import('./enabled.js');
  return enableTelemetry(plan, settings, identity, env, log);
}
