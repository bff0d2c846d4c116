// What both handover benches (bench/handover.ts, bench/handover-capture.ts) use: an agent's client
// once it answers, and a prober that measures how long none answered.
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient } from '../clients/ts/src/index.js';
import type { Subreaper } from '../test/helpers/subreaper.js';
import { BENCH_CLIENT } from './client-options.js';

export const newClient = (address: string): AgentClient => new AgentClient(address, undefined, { 'grpc.use_local_subchannel_pool': 1 }, BENCH_CLIENT);

/** Polls Get every 2 ms (a fresh connection after each failure) until stopped; returns the longest gap between answers. */
export function probe(address: string, handle: string): { stop: () => Promise<number> } {
  let running = true;
  const done = (async () => {
    let client = newClient(address);
    let last = performance.now();
    let worst = 0;
    while (running) {
      try {
        await client.get({ handle }, { deadline: 1000 });
        const now = performance.now();
        worst = Math.max(worst, now - last);
        last = now;
      } catch {
        client.close();
        client = newClient(address);
      }
      await sleep(2);
    }
    client.close();
    return worst;
  })();
  return { stop: async () => ((running = false), done) };
}

/** A client of the agent started as pid once it answers List. */
export async function ready(address: string, reaper: Subreaper, pid: number): Promise<AgentClient> {
  for (let i = 0; ; i++) {
    const client = newClient(address);
    try {
      await client.list({ state: 1 }, { deadline: 1000 });
      return client;
    } catch (e) {
      client.close();
      if (i > 600 || (await reaper.wait(pid, 0)) !== 'timeout') throw new Error(`agent did not start: ${reaper.stderr.slice(-2000)}`, { cause: e });
      await sleep(25);
    }
  }
}
