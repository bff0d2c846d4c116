// The runtime's own health, under OpenTelemetry's Node.js, V8 and process metric names: how late
// the event loop runs (the agent's every reply and reap waits on it), heap, and open descriptors.
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { metrics } from '@opentelemetry/api';

/** Event-loop delay is reported per window of this length: the last completed one. */
const DELAY_WINDOW_MS = 15_000;

export function observeRuntime(): () => void {
  const meter = metrics.getMeter('pidfd-agent');
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  const seconds = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0);
  let window = { p50: 0, p99: 0, max: 0 };
  // A window of its own, not one per collection: two readers (Prometheus and OTLP) would share it.
  const roll = setInterval(() => {
    window = { p50: seconds(delay.percentile(50)), p99: seconds(delay.percentile(99)), max: seconds(delay.max) };
    delay.reset();
  }, DELAY_WINDOW_MS).unref();
  for (const key of ['p50', 'p99', 'max'] as const) {
    meter
      .createObservableGauge(`nodejs.eventloop.delay.${key}`, { description: `Event loop delay (${key}) over the last ${DELAY_WINDOW_MS / 1000} s window`, unit: 's' })
      .addCallback((r) => r.observe(window[key]));
  }
  meter.createObservableGauge('v8js.memory.heap.used', { description: 'V8 heap in use, by heap space', unit: 'By' }).addCallback((r) => {
    for (const space of getHeapSpaceStatistics()) r.observe(space.space_used_size, { 'v8js.heap.space.name': space.space_name });
  });
  meter.createObservableGauge('process.unix.file_descriptor.count', { description: 'Open file descriptors of the agent (pidfds, pipes, sockets)' }).addCallback((r) => {
    r.observe(readdirSync('/proc/self/fd').length - 1); // the directory's own descriptor
  });
  return () => {
    clearInterval(roll);
    delay.disable();
  };
}
