// Every metric the agent exports, by the exact names dashboards and alerts rely on. The Prometheus
// exporter adds `_total` to a monotonic counter whose name lacks it and nothing else (no unit
// suffix), so the names below are what /metrics shows.
import { metrics, type Attributes, type Counter, type Meter, type MetricOptions } from '@opentelemetry/api';
import { ringTally } from '../process/stdio/output-ring.js';
import type { HistogramTally, Histograms, Series } from './histogram-tally.js';
import type { AgentView } from './telemetry.js';

const SECONDS = 's';

/** Label values from an open set (owners, error reasons): the first `max` as they are, the rest "other". */
export class BoundedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}
  of(value: string): string {
    if (this.seen.has(value)) return value;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(value);
    return value;
  }
}

/**
 * A monotonic count per label set, kept in plain JavaScript and read when metrics are collected:
 * counting is a Map lookup by a key the caller already has, where an SDK counter would hash its
 * attributes once per reader on every add. Exported as the same counter (an observable one).
 */
export class Tally {
  private readonly counts = new Map<string, { readonly attrs: Attributes; n: number }>();

  constructor(meter: Meter, name: string, options: MetricOptions) {
    meter.createObservableCounter(name, options).addCallback((r) => {
      for (const c of this.counts.values()) r.observe(c.n, c.attrs);
    });
  }

  /** Adds n to the series `key` names; `attrs` makes its labels the first time. */
  add(n: number, key: string, attrs: () => Attributes): void {
    const c = this.counts.get(key);
    if (c === undefined) this.counts.set(key, { attrs: attrs(), n });
    else c.n += n;
  }
}

/** rpc.server.call.duration, and with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup the old rpc.server.duration. */
export interface RpcDurations {
  readonly call: HistogramTally;
  readonly legacy: HistogramTally | undefined;
}

export type ExitHow = 'code' | 'signal' | 'timeout' | 'lost';

export class AgentMetrics {
  private readonly meter = metrics.getMeter('pidfd-agent');
  readonly spawns: Tally;
  readonly exits: Tally;
  readonly spawnDuration: Series;
  readonly signals: Tally;
  readonly watchersDropped: Counter;
  readonly storeWriteDuration: Series;
  readonly handoverDuration: Series;
  /** ErrorInfo reasons are a fixed set in the code; the cap only guards against a surprise. */
  readonly reasons = new BoundedLabel(64);
  /** Owners become labels only with --metrics-owners N, and at most N of them. */
  private readonly owners: BoundedLabel | null;
  private rpc: RpcDurations | undefined;

  /**
   * The call durations of the gRPC servers, made on first use. Once per process, not per server: an
   * agent that serves again after lingering instruments a new server, and a second family of the
   * same name would be exported beside the first (a scraper rejects it, or drops one at random).
   */
  rpcDurations(legacyNames: boolean): RpcDurations {
    this.rpc ??= {
      call: this.histograms.create('rpc.server.call.duration', {
        description: 'Duration of the calls the agent served',
        unit: 's',
        boundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
      }),
      legacy: legacyNames ? this.histograms.create('rpc.server.duration', { description: 'Duration of the calls the agent served (old RPC conventions)', unit: 'ms' }) : undefined,
    };
    return this.rpc;
  }

  constructor(
    metricsOwners: number,
    readonly histograms: Histograms,
  ) {
    this.owners = metricsOwners > 0 ? new BoundedLabel(metricsOwners) : null;
    const m = this.meter;
    this.spawns = new Tally(m, 'pidfd_agent_spawns_total', { description: 'Spawn calls by result: ok or the ErrorInfo reason the caller received' });
    this.exits = new Tally(m, 'pidfd_agent_exits_total', { description: 'Process exits by how: code, signal, timeout (its deadline) or lost (ended while no agent watched)' });
    this.spawnDuration = histograms
      .create('pidfd_agent_spawn_duration_seconds', {
        description: 'Spawn: from the request (validated and authorized) to the pidfd held',
        unit: SECONDS,
        boundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      })
      .series();
    this.signals = new Tally(m, 'pidfd_agent_signals_total', { description: 'Signals sent to managed processes (Signal, Stop, deadlines), by signal' });
    this.watchersDropped = m.createCounter('pidfd_agent_watchers_dropped_total', { description: 'Watch streams ended because they fell too far behind (WATCH_BACKLOG)' });
    this.storeWriteDuration = histograms
      .create('pidfd_agent_store_write_duration_seconds', {
        description: 'One durable write (a transaction) of the state store',
        unit: SECONDS,
        boundaries: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      })
      .series();
    this.handoverDuration = histograms
      .create('pidfd_agent_handover_duration_seconds', {
        description: 'Taking over from the previous agent: from asking it to hand over to serving its processes',
        unit: SECONDS,
        boundaries: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      })
      .series();
    // Series a dashboard or an alert expects exist from the start, at 0, not from the first event.
    this.spawn(0, 'ok');
    // With owner labels, under `other`, which takes none of the N owners' places.
    for (const how of ['code', 'signal', 'timeout', 'lost'] as const) {
      if (this.owners === null) this.exited(0, how, undefined);
      else this.exits.add(0, `${how}\0other`, () => ({ how, owner: 'other' }));
    }
    for (const signal of ['SIGTERM', 'SIGKILL']) this.signalled(0, signal);
    this.watchersDropped.add(0);
  }

  spawn(n: number, result: string): void {
    this.spawns.add(n, result, () => ({ result }));
  }

  exited(n: number, how: ExitHow, owner: string | undefined): void {
    if (this.owners === null) this.exits.add(n, how, () => ({ how }));
    else {
      const attrs = this.ownerAttrs(owner);
      this.exits.add(n, `${how}\0${String(attrs.owner)}`, () => ({ how, ...attrs }));
    }
  }

  signalled(n: number, signal: string): void {
    this.signals.add(n, signal, () => ({ signal }));
  }

  ownerAttrs(owner: string | undefined): Attributes {
    return this.owners === null ? {} : { owner: this.owners.of(owner ?? 'none') };
  }

  /** What the gauges read: the agent serving in this process (see observe). */
  private view: AgentView | null = null;
  /** Events counted by the agents this process ran before the one viewed. */
  private eventsBefore = 0;

  /**
   * The gauges and totals read from the agent when metrics are collected. A lingering agent that
   * serves again (main) is a second agent in the same process: its view replaces the first, and
   * its events add to what the first counted, so the total never goes back.
   */
  observe(view: AgentView): void {
    const first = this.view === null;
    if (!first) this.eventsBefore += this.view!.events();
    this.view = view;
    if (first) this.instruments();
  }

  private instruments(): void {
    const m = this.meter;
    const view = (): AgentView => this.view!;
    m.createObservableGauge('pidfd_agent_processes', { description: 'Managed processes by state: running, or exited and retained (readable until released or expired)' }).addCallback((r) => {
      if (this.owners === null) {
        r.observe(view().running(), { state: 'running' });
        r.observe(view().retained(), { state: 'exited' });
        return;
      }
      const counts = new Map<string, number>();
      for (const record of view().records()) {
        if (record.state === 'released') continue;
        const key = JSON.stringify([record.state, this.ownerAttrs(record.spec.owner).owner]);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      // `other` for each state always, at 0 when no owner past the N has a process there: a series
      // that comes and goes would read as stale in between.
      for (const state of ['running', 'exited']) {
        const other = JSON.stringify([state, 'other']);
        counts.set(other, counts.get(other) ?? 0);
      }
      for (const [key, n] of counts) {
        const [state, owner] = JSON.parse(key) as [string, string];
        r.observe(n, { state, owner });
      }
    });
    m.createObservableGauge('pidfd_agent_watchers', { description: 'Open Watch streams' }).addCallback((r) => r.observe(view().watchers()));
    m.createObservableCounter('pidfd_agent_events_total', { description: 'Lifecycle and output events appended to the event log' }).addCallback((r) => r.observe(this.eventsBefore + view().events()));
    m.createObservableCounter('pidfd_agent_output_bytes_total', { description: 'Bytes of stdout/stderr captured', unit: 'By' }).addCallback((r) => r.observe(ringTally.captured));
    m.createObservableCounter('pidfd_agent_output_lost_bytes_total', { description: 'Captured bytes no ring holds any more: overwritten by newer output or freed by --capture-retained', unit: 'By' }).addCallback((r) =>
      r.observe(ringTally.lost),
    );
  }
}
