// Histograms kept in plain JavaScript and handed to every metric reader (Prometheus, OTLP) as a
// MetricProducer when it collects. An SDK histogram hashes its attributes on every record, once per
// reader; here the caller holds its series (one per label set, made once) and a record is a bucket
// search and four additions. The readers see the SDK's own histogram shape, cumulative or, for a
// reader whose exporter asks for it, delta.
import { ValueType, type Attributes, type HrTime } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import { emptyResource } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType, type CollectionResult, type HistogramMetricData, type MetricProducer } from '@opentelemetry/sdk-metrics';

/** The SDK's default boundaries, for a histogram that names none. */
const DEFAULT_BOUNDARIES = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000];

export interface HistogramOptions {
  readonly description: string;
  readonly unit?: string;
  readonly boundaries?: readonly number[];
}

/** One label set of a histogram: what a caller records into. */
export class Series {
  readonly startTime: HrTime = hrTime();
  readonly counts: number[];
  sum = 0;
  count = 0;
  min = Infinity;
  max = -Infinity;

  constructor(
    readonly attributes: Attributes,
    private readonly boundaries: readonly number[],
  ) {
    this.counts = new Array<number>(boundaries.length + 1).fill(0);
  }

  record(value: number): void {
    if (!(value >= 0)) return; // as the SDK's histograms: nothing below 0, and no NaN to poison the sum
    // A value on a boundary belongs to the bucket that boundary closes, as in the SDK and Prometheus (le).
    const b = this.boundaries;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }
}

export class HistogramTally {
  private readonly byKey = new Map<string, Series>();
  private readonly boundaries: readonly number[];

  constructor(
    readonly name: string,
    private readonly options: HistogramOptions,
  ) {
    this.boundaries = options.boundaries ?? DEFAULT_BOUNDARIES;
  }

  /** The series `key` names; `attributes` makes its labels the first time. Keep it and record into it. */
  series(key = '', attributes: () => Attributes = () => ({})): Series {
    let s = this.byKey.get(key);
    if (s === undefined) this.byKey.set(key, (s = new Series(attributes(), this.boundaries)));
    return s;
  }

  /** Cumulative points: everything since each series began. */
  data(now: HrTime): HistogramMetricData {
    return this.metric(AggregationTemporality.CUMULATIVE, [...this.byKey.values()].map((s) => this.point(s, s.startTime, now, s.counts, s.sum, s.count, s.count > 0 ? { min: s.min, max: s.max } : {})));
  }

  /**
   * Delta points: what each series took since `last` saw it (updated here), for a reader that
   * asked for delta. A series that took nothing is left out; min and max of the interval are not
   * kept (they are optional in OTLP).
   */
  delta(now: HrTime, last: WeakMap<Series, Reported>): HistogramMetricData {
    const points = [];
    for (const s of this.byKey.values()) {
      const before = last.get(s);
      const count = s.count - (before?.count ?? 0);
      if (count === 0) continue;
      const counts = s.counts.map((c, i) => c - (before?.counts[i] ?? 0));
      points.push(this.point(s, before?.at ?? s.startTime, now, counts, s.sum - (before?.sum ?? 0), count, {}));
      last.set(s, { at: now, counts: [...s.counts], sum: s.sum, count: s.count });
    }
    return this.metric(AggregationTemporality.DELTA, points);
  }

  private point(s: Series, startTime: HrTime, endTime: HrTime, counts: readonly number[], sum: number, count: number, minMax: { min?: number; max?: number }) {
    return { startTime, endTime, attributes: s.attributes, value: { buckets: { boundaries: [...this.boundaries], counts: [...counts] }, sum, count, ...minMax } };
  }

  private metric(aggregationTemporality: AggregationTemporality, dataPoints: HistogramMetricData['dataPoints']): HistogramMetricData {
    return {
      descriptor: { name: this.name, description: this.options.description, unit: this.options.unit ?? '', valueType: ValueType.DOUBLE },
      aggregationTemporality,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints,
    };
  }
}

/** What a delta reader was last given of a series. */
interface Reported {
  readonly at: HrTime;
  readonly counts: readonly number[];
  readonly sum: number;
  readonly count: number;
}

/** The agent's histograms, as one producer every reader is given. */
export class Histograms implements MetricProducer {
  private readonly tallies: HistogramTally[] = [];
  /** A producer's resource is not read: each reader reports the SDK's own. */
  private readonly resource = emptyResource();

  create(name: string, options: HistogramOptions): HistogramTally {
    const tally = new HistogramTally(name, options);
    this.tallies.push(tally);
    return tally;
  }

  /** Cumulative, as Prometheus reads them. */
  async collect(): Promise<CollectionResult> {
    const now = hrTime();
    return this.result(this.tallies.map((t) => t.data(now)));
  }

  /** A producer for one reader, in the temporality its exporter asks for histograms in (OTLP: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE). */
  producer(temporality: AggregationTemporality): MetricProducer {
    if (temporality === AggregationTemporality.CUMULATIVE) return this;
    const last = new WeakMap<Series, Reported>();
    // As the SDK's delta readers: a histogram that took nothing in the interval is left out.
    return { collect: async () => this.result(this.tallies.map((t) => t.delta(hrTime(), last)).filter((m) => m.dataPoints.length > 0)) };
  }

  private result(metrics: HistogramMetricData[]): CollectionResult {
    return { resourceMetrics: { resource: this.resource, scopeMetrics: [{ scope: { name: 'pidfd-agent' }, metrics }] }, errors: [] };
  }
}
