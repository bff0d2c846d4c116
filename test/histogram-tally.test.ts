// The agent's own histograms reach a metric reader as the SDK's histograms would: the same buckets
// (a value on a boundary in the bucket it closes), sum, count, min and max, per label set.
import { MeterProvider, MetricReader, type HistogramMetricData } from '@opentelemetry/sdk-metrics';
import test from 'ava';
import { Histograms } from '../src/telemetry/histogram-tally.js';

class CollectingReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const BOUNDARIES = [0.001, 0.01, 0.1, 1];
const VALUES = [0, 0.0005, 0.001, 0.0010001, 0.005, 0.01, 0.5, 1, 1.5, 1000, -2];

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
