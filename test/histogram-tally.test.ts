// The agent's own histograms reach a metric reader as the SDK's histograms would: the same buckets
// (a value on a boundary in the bucket it closes), sum, count, min and max, per label set.
import { AggregationTemporality, MeterProvider, MetricReader, type HistogramMetricData } from '@opentelemetry/sdk-metrics';
import test from 'ava';
import { Histograms } from '../src/telemetry/histogram-tally.js';

class CollectingReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const BOUNDARIES = [0.001, 0.01, 0.1, 1];
const VALUES = [0, 0.0005, 0.001, 0.0010001, 0.005, 0.01, 0.5, 1, 1.5, 1000, -2, Number.NaN];

test('a tally collects what an SDK histogram of the same boundaries collects, label set by label set', async (t) => {
  const histograms = new Histograms();
  const reader = new CollectingReader({ metricProducers: [histograms] });
  const provider = new MeterProvider({ readers: [reader] });
  t.teardown(() => provider.shutdown());
  const sdk = provider.getMeter('test').createHistogram('sdk', { unit: 's', advice: { explicitBucketBoundaries: BOUNDARIES } });
  const ours = histograms.create('ours', { description: 'd', unit: 's', boundaries: BOUNDARIES });
  const labelled = ours.series('OK', () => ({ code: 'OK' }));
  const other = ours.series('NOT_FOUND', () => ({ code: 'NOT_FOUND' }));
  t.is(ours.series('OK', () => ({ code: 'made twice' })), labelled, 'a key names one series');
  for (const v of VALUES) {
    sdk.record(v, { code: 'OK' });
    labelled.record(v);
  }
  sdk.record(0.02, { code: 'NOT_FOUND' });
  other.record(0.02);

  const { resourceMetrics } = await reader.collect();
  const all = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics) as HistogramMetricData[];
  const points = (name: string) =>
    all
      .find((m) => m.descriptor.name === name)!
      .dataPoints.map((p) => ({ attributes: p.attributes, value: p.value }))
      .sort((a, b) => String(a.attributes.code).localeCompare(String(b.attributes.code)));
  t.is(points('ours').length, 2);
  t.deepEqual(points('ours'), points('sdk'));
  const theirs = all.find((m) => m.descriptor.name === 'sdk')!;
  const mine = all.find((m) => m.descriptor.name === 'ours')!;
  t.is(mine.aggregationTemporality, theirs.aggregationTemporality);
  t.is(mine.dataPointType, theirs.dataPointType);
  t.is(mine.descriptor.unit, 's');
});

test('a histogram with nothing recorded has its series at zero, without min and max', async (t) => {
  const histograms = new Histograms();
  histograms.create('empty', { description: 'd' }).series();
  const { resourceMetrics } = await histograms.collect();
  const [metric] = resourceMetrics.scopeMetrics[0]!.metrics as HistogramMetricData[];
  t.is(metric!.dataPoints.length, 1);
  const value = metric!.dataPoints[0]!.value;
  t.is(value.count, 0);
  t.is(value.sum, 0);
  t.is(value.min, undefined);
  t.is(value.buckets.counts.length, value.buckets.boundaries.length + 1);
  t.true(value.buckets.counts.every((c) => c === 0));
});

test('a reader that asks for delta gets what each interval took, beside a cumulative reader of the same tallies', async (t) => {
  const histograms = new Histograms();
  const cumulative = new CollectingReader({ metricProducers: [histograms.producer(AggregationTemporality.CUMULATIVE)] });
  const delta = new CollectingReader({ aggregationTemporalitySelector: () => AggregationTemporality.DELTA, metricProducers: [histograms.producer(AggregationTemporality.DELTA)] });
  const provider = new MeterProvider({ readers: [cumulative, delta] });
  t.teardown(() => provider.shutdown());
  const sdk = provider.getMeter('test').createHistogram('sdk', { advice: { explicitBucketBoundaries: BOUNDARIES } });
  const series = histograms.create('ours', { description: 'd', boundaries: BOUNDARIES }).series('x', () => ({ code: 'OK' }));
  const record = (values: number[]) => values.forEach((v) => (sdk.record(v, { code: 'OK' }), series.record(v)));
  const collect = async (reader: CollectingReader) => {
    const metrics = (await reader.collect()).resourceMetrics.scopeMetrics.flatMap((s) => s.metrics) as HistogramMetricData[];
    const of = (name: string) => metrics.find((m) => m.descriptor.name === name);
    const shape = (m: HistogramMetricData | undefined) => m && { temporality: m.aggregationTemporality, points: m.dataPoints.map((p) => ({ buckets: p.value.buckets, sum: p.value.sum, count: p.value.count })) };
    return { ours: shape(of('ours')), sdk: shape(of('sdk')) };
  };
  record([0.0005, 0.02, 0.5]);
  const first = await collect(delta);
  t.deepEqual(first.ours, first.sdk);
  t.is(first.ours?.temporality, AggregationTemporality.DELTA);
  record([0.002, 2]);
  const second = await collect(delta);
  t.deepEqual(second.ours, second.sdk);
  t.is(second.ours?.points[0]!.count, 2, 'only what came since the last collection');
  const nothing = await collect(delta);
  t.deepEqual(nothing, { ours: undefined, sdk: undefined }, 'an interval without records is left out');
  const total = await collect(cumulative);
  t.deepEqual(total.ours, total.sdk);
  t.is(total.ours?.points[0]!.count, 5);
});
