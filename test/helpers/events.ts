import type { AgentClient, Event } from '../../clients/ts/src/index.js';

/** Collects events from a Watch until `until` says stop; the stream is cancelled afterwards. */
export async function collect(
  client: AgentClient,
  req: Parameters<AgentClient['watch']>[0],
  until: (events: Event[]) => boolean,
  timeoutMs = 30_000,
): Promise<Event[]> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const events: Event[] = [];
  try {
    for await (const e of client.watch(req, { signal: abort.signal })) {
      events.push(e);
      if (until(events)) break;
    }
  } finally {
    clearTimeout(timer);
  }
  if (!until(events)) throw new Error(`watch ended after ${events.length} events without reaching its goal`);
  return events;
}

/** Runs fn over items with at most `concurrency` in flight. */
export async function pool<T, R>(items: readonly T[], concurrency: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

export const range = (n: number) => Array.from({ length: n }, (_, i) => i);
