// The unit the in-process benches drive an agent with: Spawn /bin/true + Wait, `conc` in flight.
import type { AgentClient } from '../clients/ts/src/index.js';

/** Runs n Spawn+Wait cycles with `conc` in flight; returns the wall time in seconds. */
export async function spawnWaitCycles(client: AgentClient, n: number, conc = 16): Promise<number> {
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next++ < n) {
      const { process: p } = await client.spawn({ argv: ['/bin/true'] });
      await client.wait({ handle: p!.handle });
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
  return (performance.now() - started) / 1000;
}

/**
 * One Spawn+Wait a second for every agent but the one being measured. An agent quiet for 7 s gives
 * its heap back (src/kernel/idle-memory.ts) and its next measured run then pays V8 growing it again
 * (+100-250 µs per cycle on V8's worker threads, FINDINGS "Session 13: telemetry cost"): a cost of
 * having waited, not of a cycle. ~0.1 % of a CPU per agent kept awake.
 */
export function keepAwake<K>(agents: readonly { readonly key: K; readonly client: AgentClient }[]): { measuring(key: K | undefined): void; stop(): void } {
  let measured: K | undefined;
  const timer = setInterval(() => {
    for (const { key, client } of agents) if (key !== measured) void spawnWaitCycles(client, 1, 1).catch(() => undefined);
  }, 1000);
  return {
    measuring: (key) => (measured = key),
    stop: () => clearInterval(timer),
  };
}
