// Reading an agent's /metrics: each sample line as "name{labels}" → value.
import type { AgentProcess } from './agent-process.js';
import { eventually } from './harness.js';

export type Samples = Map<string, number>;

export async function scrape(url: string): Promise<Samples> {
  const text = await (await fetch(url)).text();
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** The metric families present: sample names without labels or histogram suffixes. */
export const families = (samples: Samples): Set<string> =>
  new Set([...samples.keys()].flatMap((k) => {
    const name = k.replace(/\{.*$/, '');
    return [name, name.replace(/_(bucket|count|sum)$/, '')];
  }));

/** The /metrics URL the agent logged (it listens on a port of its choosing with --metrics-listen 127.0.0.1:0). */
export const metricsUrl = (agent: AgentProcess): Promise<string> =>
  eventually('the agent logs its metrics URL', () => {
    const line = agent
      .stderr()
      .split('\n')
      .find((l) => l.includes('"event":"telemetry"'));
    return line === undefined ? undefined : ((JSON.parse(line) as { metrics_url?: string }).metrics_url ?? undefined);
  });
