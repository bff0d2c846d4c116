// Issue 11 item 4: capture throughput of a `yes`-like writer with a live reader. The agent spawns
// `yes` with --stdout capture (1 MiB ring); a client follows it with ReadOutput for --seconds.
// "captured" is how far the stream got (the reader's last offset + its data: everything the agent
// read from the pipe, including what the reader lost), "delivered" what reached the reader.
//
//   node --import tsx bench/capture.ts [--seconds 3] [--rounds 3] [--agent DIR]...
//
// Each trial also runs bench/capture-ring.mjs: the same writer with the live reader inside the
// agent's process (no gRPC), the capture path alone ("ring").
//
// Several --agent checkouts (each with a built dist/) are interleaved round by round (A B A B...),
// so a loaded machine affects them alike. Writes bench/results/capture-*.json.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient, OutputMode, OutputStream } from '../clients/ts/src/index.js';
import { startAgent } from './agent-process.js';
import { BENCH_CLIENT } from './client-options.js';

const REPO = new URL('../', import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    agent: { type: 'string', multiple: true },
  },
});
const seconds = Number(values.seconds);
const agents = values.agent ?? [REPO];

interface Trial {
  readonly agent: string;
  readonly capturedGBs: number;
  readonly deliveredGBs: number;
  /** The capture path alone: pipe → ring → a reader in the agent's process. */
  readonly ringGBs: number;
}

function ringTrial(repo: string): number {
  const out = execFileSync(process.execPath, [join(REPO, 'bench/capture-ring.mjs'), repo, String(seconds)], { encoding: 'utf8' });
  const { bytes, seconds: s } = JSON.parse(out.trim().split('\n').pop()!) as { bytes: number; seconds: number };
  return bytes / s / 1e9;
}

async function trial(repo: string): Promise<Trial> {
  const agent = await startAgent({ repo, maxProcesses: 1024 });
  const client = new AgentClient(agent.address, undefined, undefined, BENCH_CLIENT);
  try {
    // The socket file exists a moment before the agent listens on it.
    for (let i = 0; ; i++) {
      try {
        await client.list({});
        break;
      } catch (e) {
        if (i > 100) throw e;
        await sleep(50);
      }
    }
    const { process: p } = await client.spawn({ argv: ['yes', 'y'.repeat(63)], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
    const handle = p!.handle;
    let delivered = 0;
    let reached = 0;
    const started = performance.now();
    const stopAt = started + seconds * 1000;
    const call = client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT, follow: true });
    for await (const r of call) {
      delivered += r.data.length;
      reached = r.offset + r.data.length;
      if (performance.now() >= stopAt) break;
    }
    const elapsed = (performance.now() - started) / 1000;
    await client.signal({ handle, signal: 'KILL' });
    await client.wait({ handle });
    return { agent: repo, capturedGBs: reached / elapsed / 1e9, deliveredGBs: delivered / elapsed / 1e9, ringGBs: ringTrial(repo) };
  } finally {
    client.close();
    await agent.stop();
  }
}

const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
const trials: Trial[] = [];
for (let r = 0; r < Number(values.rounds); r++) {
  for (const a of agents) {
    const t = await trial(a);
    trials.push(t);
    console.log(`round ${r + 1} ${a}: over gRPC captured ${t.capturedGBs.toFixed(3)} GB/s, delivered ${t.deliveredGBs.toFixed(3)} GB/s; in-process reader ${t.ringGBs.toFixed(3)} GB/s`);
  }
}
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const summary = agents.map((a) => {
  const mine = trials.filter((t) => t.agent === a);
  return { agent: a, capturedGBs: median(mine.map((t) => t.capturedGBs)), deliveredGBs: median(mine.map((t) => t.deliveredGBs)), ringGBs: median(mine.map((t) => t.ringGBs)) };
});
for (const s of summary) console.log(`capture throughput (median of ${values.rounds}) ${s.agent}: in-process reader ${s.ringGBs.toFixed(3)} GB/s; over gRPC captured ${s.capturedGBs.toFixed(3)} GB/s, delivered ${s.deliveredGBs.toFixed(3)} GB/s`);
const dir = join(REPO, 'bench/results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `capture-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify({ cpu, seconds, trials, summary }, null, 2)}\n`);
console.log(`CPU ${cpu} → ${file}`);
