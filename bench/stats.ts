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
 * A repeatable `pick(n)` in [0, n). mulberry32: an LCG's low bits repeat with a short period, and
 * `% n` reads only those.
 */
export function seededPick(start: number): (n: number) => number {
  let seed = start >>> 0;
  return (n) => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/**
 * A 95 % interval for the median of values that come in groups which differ among themselves (the
 * rounds of one agent process, which keeps its own speed for its life): groups are resampled, then
 * values within each, 2,000 times (a cluster bootstrap). The seed is fixed, so a file reads the same
 * every time. With few groups the interval is rough, and it is as wide as the groups disagree.
 */
export function clusteredMedianInterval(groups: readonly (readonly number[])[], iterations = 2000): readonly [number, number] {
  const filled = groups.filter((g) => g.length > 0);
  if (filled.length === 0) return [Number.NaN, Number.NaN];
  const pick = seededPick(0x9e3779b9);
  const medians: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const sample: number[] = [];
    for (let g = 0; g < filled.length; g++) {
      const group = filled[pick(filled.length)]!;
      for (let r = 0; r < group.length; r++) sample.push(group[pick(group.length)]!);
    }
    medians.push(median(sample));
  }
  medians.sort((a, b) => a - b);
  return [quantile(medians, 0.025), quantile(medians, 0.975)];
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
