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
 * One round: `n` cycles on every agent, run in turns of `chunk` so that no agent idles for longer
 * than the others' turn, the order of the turns rotated by `round`; `measure` brackets each turn
 * (it returns what to add up, e.g. the agent's CPU time). An agent that idled ~10-30 s while the
 * others were measured had V8's memory reducer shrink its heap (`Mark-Compact (reduce)` in
 * --trace-gc, young generation back to 1 MiB), and its next 1,000-2,000 cycles paid +150-250 µs each
 * on V8's worker threads and +40 on the main thread while the heap grew back: which variant had
 * waited longest decided a ratio (bench/FINDINGS.md "Session 16"). Returns seconds of wall time and
 * the sums of `measure`, per agent.
 */
export async function interleavedRound<A extends { readonly client: AgentClient }>(
  agents: readonly A[],
  n: number,
  chunk: number,
  round: number,
  measure: (agent: A) => () => number,
): Promise<{ wall: number; measured: number }[]> {
  const out = agents.map(() => ({ wall: 0, measured: 0 }));
  const turns = Math.ceil(n / chunk);
  for (let turn = 0; turn < turns; turn++) {
    const cycles = Math.min(chunk, n - turn * chunk);
    for (let k = 0; k < agents.length; k++) {
      const i = (round + turn + k) % agents.length;
      const done = measure(agents[i]!);
      out[i]!.wall += await spawnWaitCycles(agents[i]!.client, cycles);
      out[i]!.measured += done();
    }
  }
  return out;
}
