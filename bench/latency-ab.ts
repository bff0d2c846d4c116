// Same-run A/B of issue 17's two latency keys, agents built from different checkouts:
//   signal_exit_p50_vs_floor: Signal → EXITED on the Watch p50 (c=1, after a settle) ÷ (a bare Get
//     after the same settle, p50 + the C loop's signal → exit p50), as bench/run.ts measures them;
//   start_1000_vs_c: 1,000 sleepers started with 16 unary Spawns in flight ÷ `spawnloop start 1000`.
// Each round starts every agent (each with its own client process) and alternates small chunks of
// signals and Gets between the C loop and the agents (order rotated per round), so that a load
// that drifts, as it does on a shared machine, weighs on all of them alike; then the starts.
//
//   node --import tsx bench/latency-ab.ts --agent DIR [--agent DIR ...] [--rounds 5] [--n 200] [--chunks 10] [--settle 20]
//
// Ratios are per round against the same round's C loop; the table gives each round and the
// medians over rounds.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startAgent } from './agent-process.js';
import { AgentDriver } from './driver-ipc.js';
import { latencyStats, median, round, type RawRun } from './stats.js';

const BENCH = new URL('.', import.meta.url).pathname;
const C_LOOP = join(BENCH, 'c/spawnloop');
const { values: opt } = parseArgs({
  options: {
    agent: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
    n: { type: 'string', default: '200' },
    settle: { type: 'string', default: '20' },
    chunks: { type: 'string', default: '10' },
    'no-start': { type: 'boolean', default: false },
  },
  strict: true,
});
const agents = (opt.agent ?? []).map((d) => resolve(d));
if (agents.length < 1) throw new Error('usage: bench/latency-ab.ts --agent DIR [--agent DIR ...]');
for (const dir of agents) if (!existsSync(join(dir, 'dist/src/main.js'))) throw new Error(`${dir}: no dist/src/main.js (make build there first)`);
if (!existsSync(C_LOOP)) throw new Error(`${C_LOOP}: missing (make bench/c/spawnloop)`);
const ROUNDS = Math.max(1, Number(opt.rounds));
const N = Math.max(16, Number(opt.n));
const SETTLE = Number(opt.settle);
const START = !opt['no-start'];
const CHUNKS = Math.max(1, Number(opt.chunks));

const log = (msg: string) => process.stderr.write(`[lat-ab ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

function cLoop(args: string[]): Promise<RawRun> {
  return new Promise((res, rej) =>
    execFile(C_LOOP, args, { maxBuffer: 64 << 20 }, (e, stdout) => {
      if (e) return rej(e);
      res(JSON.parse(stdout.trim().split('\n').pop()!) as RawRun);
    }),
  );
}

interface Row {
  round: number;
  agent: string;
  sig_p50_ms: number;
  reply_p50_ms: number;
  rtt_p50_ms: number;
  c_sig_p50_ms: number;
  vs_floor: number;
  start_s: number;
  c_start_s: number;
  start_vs_c: number;
}

const rows: Row[] = [];
const p50 = (lat: readonly number[]) => latencyStats(lat).p50_ms;

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const started = new Date();
  const chunk = Math.max(1, Math.round(N / CHUNKS));
  for (let r = 1; r <= ROUNDS; r++) {
    const order = agents.map((_, i) => agents[(i + r) % agents.length]!);
    log(`round ${r} (load ${os.loadavg()[0]!.toFixed(2)}): ${order.join(', ')}, ${CHUNKS} chunks of ${chunk} signals and Gets each, alternating`);
    const live = await Promise.all(order.map(async (dir) => ({ dir, agent: await startAgent({ repo: dir, maxProcesses: 4000 }), driver: new AgentDriver(), sig: [] as number[], reply: [] as number[], rtt: [] as number[], start: NaN })));
    const cSig: number[] = [];
    try {
      for (const a of live) {
        await a.driver.send({ op: 'init', address: a.agent.address });
        await a.driver.run({ op: 'tput', conc: 8, n: 500, via: 'watch' }); // JIT, channel, pools: discarded
      }
      for (let k = 0; k < CHUNKS; k++) {
        cSig.push(...(await cLoop(['sig', '1', String(chunk), String(SETTLE)])).lat_ns);
        for (const a of live) {
          const sig = await a.driver.run({ op: 'sig', conc: 1, n: chunk, settleMs: SETTLE });
          a.sig.push(...sig.lat_ns);
          a.reply.push(...(sig.reply_ns ?? []));
          a.rtt.push(...(await a.driver.run({ op: 'rtt', n: chunk, settleMs: SETTLE })).lat_ns);
        }
      }
      const cStart = START ? (await cLoop(['start', '1000'])).wall_s : NaN;
      for (const a of live) {
        if (!START) continue;
        a.start = (await a.driver.run({ op: 'hold', count: 1000, conc: 16 })).wall_s;
        await a.driver.run({ op: 'unhold', conc: 16 });
      }
      const cP50 = p50(cSig);
      log(`  C signal→exit p50 ${cP50.toFixed(3)} ms, start 1000 ${cStart.toFixed(3)} s`);
      for (const a of live) {
        const row: Row = {
          round: r,
          agent: a.dir,
          sig_p50_ms: p50(a.sig),
          reply_p50_ms: p50(a.reply),
          rtt_p50_ms: p50(a.rtt),
          c_sig_p50_ms: cP50,
          vs_floor: 0,
          start_s: a.start,
          c_start_s: cStart,
          start_vs_c: a.start / cStart,
        };
        row.vs_floor = row.sig_p50_ms / (row.rtt_p50_ms + cP50);
        rows.push(row);
        log(`  ${a.dir}: Signal→EXITED p50 ${row.sig_p50_ms.toFixed(3)} ms (reply ${row.reply_p50_ms.toFixed(3)}), Get ${row.rtt_p50_ms.toFixed(3)} ms → ×${row.vs_floor.toFixed(3)} floor; start 1000 ${a.start.toFixed(3)} s → ×${row.start_vs_c.toFixed(3)} C`);
      }
    } finally {
      for (const a of live) {
        await a.driver.send({ op: 'close' }).catch(() => undefined);
        await a.agent.stop();
      }
    }
  }
  const cpuModel = os.cpus()[0]?.model ?? '?';
  const L = [`Latency A/B, ${ROUNDS} rounds, ${N} signals per round (settle ${SETTLE} ms), ${os.cpus().length} × ${cpuModel}, load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}:`, ''];
  L.push('| agent | round | Signal→EXITED p50 ms | Signal reply p50 | Get p50 | C sig p50 | ÷ floor | start 1,000 s | C s | ÷ C |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) L.push(`| ${r.agent} | ${r.round} | ${round(r.sig_p50_ms)} | ${round(r.reply_p50_ms)} | ${round(r.rtt_p50_ms)} | ${round(r.c_sig_p50_ms)} | ${round(r.vs_floor)} | ${round(r.start_s)} | ${round(r.c_start_s)} | ${round(r.start_vs_c)} |`);
  for (const dir of agents) {
    const mine = rows.filter((r) => r.agent === dir);
    const m = (f: (r: Row) => number) => round(median(mine.map(f)));
    L.push(`| ${dir} | median | ${m((r) => r.sig_p50_ms)} | ${m((r) => r.reply_p50_ms)} | ${m((r) => r.rtt_p50_ms)} | ${m((r) => r.c_sig_p50_ms)} | ${m((r) => r.vs_floor)} | ${m((r) => r.start_s)} | ${m((r) => r.c_start_s)} | ${m((r) => r.start_vs_c)} |`);
  }
  process.stdout.write(L.join('\n') + '\n');
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `latency-ab-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ date: started.toISOString(), cpu_model: cpuModel, rounds: ROUNDS, n: N, settle_ms: SETTLE, load_start: load0, load_end: os.loadavg(), rows }, null, 1) + '\n');
  log(`wrote ${file}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
