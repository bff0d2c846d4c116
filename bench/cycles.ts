// The unit the in-process benches drive an agent with: Spawn /bin/true + Wait, `conc` in flight.
import type { AgentClient } from '../clients/ts/src/index.js';
import { seededPick } from './stats.js';

/** Spawn+Wait cycles in flight at once, unless a bench asks for another number. */
export const CONCURRENCY = 16;

/** Runs n Spawn+Wait cycles with `conc` in flight; returns the wall time in seconds. */
export async function spawnWaitCycles(client: AgentClient, n: number, conc = CONCURRENCY): Promise<number> {
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
 * Every agent warmed up together, in turns of `chunk` cycles, until each has run `ms` of them. One
 * agent warmed up after another leaves the first idle for the others' whole warm-up, long enough
 * for V8's memory reducer to shrink its heap (below). Returns the cycles each agent ran.
 */
export async function warmUpTogether(clients: readonly AgentClient[], ms: number, chunk = 200): Promise<number> {
  const loaded = clients.map(() => 0);
  let cycles = 0;
  while (Math.min(...loaded) < ms) {
    for (const [i, client] of clients.entries()) loaded[i]! += (await spawnWaitCycles(client, chunk)) * 1000;
    cycles += chunk;
  }
  return cycles;
}

/**
 * One round: `n` cycles on every agent, run in turns of `chunk`, in an order shuffled for the round
 * (seeded by `round`) and kept for all its turns. Within the round no agent waits longer than the
 * others' turns; across the boundary between two rounds, at most twice that. The shuffle keeps any
 * agent from always following the same one, whose leftover work (a batch export, a collection)
 * would fall into its turn. `measure` brackets each turn (it returns what to add up, e.g. the agent's
 * CPU time). Why turns: an agent that idled 10-30 s while the others were measured had V8's memory
 * reducer shrink its heap (`Mark-Compact (reduce)` in --trace-gc, the young generation back to
 * 1 MiB), and it paid 100-250 µs a cycle, averaged over its next 3,000-cycle run, while the heap
 * grew back: which variant had waited longest decided a ratio (bench/FINDINGS.md "Session 16").
 * Returns seconds of wall time and the sums of `measure`, per agent.
 */
export async function interleavedRound<A extends { readonly client: AgentClient }>(
  agents: readonly A[],
  n: number,
  chunk: number,
  round: number,
  measure: (agent: A) => () => number,
): Promise<{ wall: number; measured: number }[]> {
  const out = agents.map(() => ({ wall: 0, measured: 0 }));
  const order = agents.map((_, i) => i);
  const pick = seededPick(round);
  for (let i = order.length - 1; i > 0; i--) {
    const j = pick(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  for (let done = 0; done < n; done += chunk) {
    const cycles = Math.min(chunk, n - done);
    for (const i of order) {
      const finish = measure(agents[i]!);
      out[i]!.wall += await spawnWaitCycles(agents[i]!.client, cycles);
      out[i]!.measured += finish();
    }
  }
  return out;
}
