// make bench-handover: upgrading an agent that manages N processes, two ways, in the same run.
//   handover  start the new agent while the old one runs (it takes over, the old one exits)
//   restart   SIGTERM the old agent, then start the new one (what a plain supervisor restart does)
// Half the processes exit one by one across a window around the switch. Measured: how long no
// agent answered (a prober polling Get every 2 ms on a fresh connection after each failure), how
// many of those exits were reported with their status, and whether a Watch resumes from its
// cursor. Agents run under the test suite's C subreaper, which reaps what an old agent leaves.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentCallError, AgentClient, status } from '../clients/ts/src/index.js';
import { pool, range } from '../test/helpers/events.js';
import { Subreaper } from '../test/helpers/subreaper.js';
import { BENCH_CLIENT } from './client-options.js';

const REPO = new URL('../', import.meta.url).pathname;
const AGENT = join(REPO, 'dist/src/main.js');
const SIZES = process.argv.includes('--quick') ? [1000] : [1000, 10_000];
/** The scheduled exits are spread over this window, starting this long before the switch. */
const WINDOW_MS = 2000;
const LEAD_MS = 500;

type Mode = 'handover' | 'restart';

interface Result {
  readonly mode: Mode;
  readonly processes: number;
  /** Longest time between two answers around the switch. */
  readonly unavailable_ms: number;
  readonly scheduled_exits: number;
  readonly status_lost: number;
  readonly wrong_code: number;
  /** A Watch resumed with its pre-switch cursor: 'resumed' or the error it got. */
  readonly watch: string;
  /** From the agents' logs: the old agent's request→handed over, the new one's restore. */
  readonly handover_ms?: number;
  readonly restore_ms?: number;
}

const fixtures = mkdtempSync(join(tmpdir(), 'pidfd-agent-bench-handover-'));
const EXIT_AT = join(fixtures, 'exit-at');
execFileSync('gcc', ['-O2', '-o', EXIT_AT, join(REPO, 'test/fixtures/exit-at.c')]);

/** Polls Get until stopped; returns the longest gap between answers. */
function probe(address: string, handle: string): { stop: () => Promise<number> } {
  let running = true;
  const done = (async () => {
    let client = new AgentClient(address, undefined, { 'grpc.use_local_subchannel_pool': 1 }, BENCH_CLIENT);
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
        client = new AgentClient(address, undefined, { 'grpc.use_local_subchannel_pool': 1 }, BENCH_CLIENT);
      }
      await sleep(2);
    }
    client.close();
    return worst;
  })();
  return { stop: async () => ((running = false), done) };
}

async function ready(address: string, reaper: Subreaper, pid: number): Promise<AgentClient> {
  for (let i = 0; ; i++) {
    const client = new AgentClient(address, undefined, { 'grpc.use_local_subchannel_pool': 1 }, BENCH_CLIENT);
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

async function scenario(reaper: Subreaper, mode: Mode, n: number): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-bench-handover-'));
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir);
  const address = `unix://${join(dir, 'agent.sock')}`;
  const agentArgv = [process.execPath, AGENT, '--listen', address, '--state-dir', stateDir, '--max-processes', String(2 * n + 10)];
  const logStart = reaper.stderr.length;
  const oldPid = await reaper.start(agentArgv);
  let client = await ready(address, reaper, oldPid);

  const half = Math.floor(n / 2);
  const spawnedAt = Date.now();
  const estimate = spawnedAt + n * 2 + 1000; // spawning runs at over 1,000/s
  const t0 = estimate;
  const handles = await pool(range(n), 16, async (i) => {
    const until = i < half ? t0 + Math.floor((i * WINDOW_MS) / half) : t0 + 3_600_000;
    const { process } = await client.spawn({ argv: [EXIT_AT, String(until), String(i % 256)] });
    return process!.handle;
  });
  const cursor = (await client.list({ state: 1 })).sequence;
  const prober = probe(address, handles[n - 1]!);
  await sleep(Math.max(0, t0 + LEAD_MS - Date.now()));

  let newPid: number;
  if (mode === 'handover') {
    newPid = await reaper.start([...agentArgv, '--takeover', 'required']);
    await reaper.wait(oldPid, 120_000);
  } else {
    client.close();
    await reaper.kill(oldPid, 15);
    await reaper.wait(oldPid, 120_000);
    newPid = await reaper.start(agentArgv);
  }
  client.close();
  client = await ready(address, reaper, newPid);
  let watch = 'resumed';
  try {
    for await (const e of client.watch({ afterSequence: cursor })) {
      void e;
      break;
    }
  } catch (e) {
    watch = e instanceof AgentCallError ? `${status[e.code]} ${e.reason}` : String(e);
  }
  await sleep(Math.max(0, t0 + WINDOW_MS + 300 - Date.now()));
  const unavailable = await prober.stop();

  const exits = await pool(range(half), 32, (i) => client.wait({ handle: handles[i]! }, { deadline: 30_000 }));
  const lost = exits.filter((w) => w.process!.exit?.statusLost).length;
  const wrong = exits.filter((w, i) => !w.process!.exit?.statusLost && w.process!.exit?.code !== i % 256).length;
  await pool(range(n - half), 32, (k) => client.signal({ handle: handles[half + k]!, signal: 'SIGKILL' }));
  await pool(range(n - half), 32, (k) => client.wait({ handle: handles[half + k]! }, { deadline: 30_000 }));
  client.close();
  await reaper.kill(newPid, 15);
  await reaper.wait(newPid, 30_000);

  const log = reaper.stderr.slice(logStart);
  const field = (event: string) => Number([...log.matchAll(new RegExp(`"event":"${event}"[^\\n]*?"ms":(\\d+)`, 'g'))].at(-1)?.[1] ?? NaN);
  rmSync(dir, { recursive: true, force: true });
  return {
    mode,
    processes: n,
    unavailable_ms: Math.round(unavailable),
    scheduled_exits: half,
    status_lost: lost,
    wrong_code: wrong,
    watch,
    handover_ms: mode === 'handover' ? field('handed_over') : undefined,
    restore_ms: field(mode === 'handover' ? 'taken_over' : 'restored'),
  };
}

async function main(): Promise<void> {
  const reaper = Subreaper.start();
  const results: Result[] = [];
  try {
    for (const n of SIZES) {
      for (const mode of ['restart', 'handover'] as const) {
        const r = await scenario(reaper, mode, n);
        console.error(JSON.stringify(r));
        results.push(r);
      }
    }
  } finally {
    await reaper.close();
    rmSync(fixtures, { recursive: true, force: true });
  }
  const lines = [
    '| processes | upgrade | no agent answering | exits during it reported with status | status lost | Watch with old cursor | old agent: request→handed over | new agent: restore |',
    '|---:|---|---:|---:|---:|---|---:|---:|',
  ];
  for (const r of results) {
    const restart = results.find((x) => x.processes === r.processes && x.mode === 'restart')!;
    const ratio = r.mode === 'handover' ? ` (${(r.unavailable_ms / restart.unavailable_ms).toFixed(2)}× restart)` : '';
    lines.push(`| ${r.processes.toLocaleString('en')} | ${r.mode} | ${r.unavailable_ms} ms${ratio} | ${r.scheduled_exits - r.status_lost - r.wrong_code} / ${r.scheduled_exits} | ${r.status_lost} | ${r.watch} | ${r.handover_ms === undefined ? '–' : `${r.handover_ms} ms`} | ${r.restore_ms} ms |`);
  }
  console.log(lines.join('\n'));
  const out = join(REPO, 'bench/results', `handover-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify({ command: 'make bench-handover', results }, null, 2) + '\n');
  console.log(`\n${out}`);
}

await main();
