// Small statistics helpers shared by the driver and the report. Latencies travel as nanoseconds.

/** What every peer prints (one JSON line) and the agent driver returns. */
export interface RawRun {
  readonly wall_s: number;
  /** Cycles that ended in an unexpected way (wrong exit code or signal). */
  readonly bad: number;
  readonly lat_ns: readonly number[];
}

export interface LatencyStats {
  readonly n: number;
  readonly p50_ms: number;
  readonly p90_ms: number;
  readonly p99_ms: number;
  readonly max_ms: number;
  readonly mean_ms: number;
}

/** Nearest-rank quantile of an ascending array (q in [0, 1]). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  return quantile([...finite].sort((a, b) => a - b), 0.5);
}

/**
 * A 95 % interval for the median of independent values, from order statistics alone (no shape
 * assumed): [x(k), x(n+1-k)] of the sorted values, k by the normal approximation of the binomial.
 * With fewer than 6 values there is no such interval: the whole range is returned.
 */
export function medianInterval(values: readonly number[]): readonly [number, number] {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const n = sorted.length;
  const k = Math.max(1, Math.floor((n - 1.96 * Math.sqrt(n)) / 2));
  return [sorted[k - 1] ?? Number.NaN, sorted[n - k] ?? Number.NaN];
}

export function latencyStats(latNs: readonly number[]): LatencyStats {
  const ms = latNs.map((v) => v / 1e6).sort((a, b) => a - b);
  const sum = ms.reduce((a, b) => a + b, 0);
  return {
    n: ms.length,
    p50_ms: quantile(ms, 0.5),
    p90_ms: quantile(ms, 0.9),
    p99_ms: quantile(ms, 0.99),
    max_ms: ms[ms.length - 1] ?? Number.NaN,
    mean_ms: ms.length ? sum / ms.length : Number.NaN,
  };
}

/** Rounds for JSON and tables: 3 significant decimals below 10, fewer above. */
export function round(v: number, digits = 3): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export const nowNs = (): number => Number(process.hrtime.bigint());
