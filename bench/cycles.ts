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
