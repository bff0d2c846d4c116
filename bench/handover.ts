// make bench-handover: upgrading an agent that manages N processes, two ways, in the same run.
//   handover  start the new agent while the old one runs (it takes over, the old one exits)
//   restart   SIGTERM the old agent, then start the new one (what a plain supervisor restart does)
// Half the processes exit one by one across a window around the switch. Measured: how long no
// agent answered (a prober polling Get every 2 ms on a fresh connection after each failure), how
// many of those exits were reported with their status, and whether a Watch resumes from its
// cursor. Agents run under the test suite's C subreaper, which reaps what an old agent leaves.
// Then the capture case (bench/handover-capture.ts): a handover whose snapshot carries full rings.
//   --quick          1,000 processes only; the capture case without 64 MiB rings, one round
//   --capture-only   only the capture case
//   --agent DIR      the capture case's agent builds to compare (repeatable; default this checkout)
//   --rounds N       capture rounds (default 3)
//   --case NAME      only this capture case (repeatable): empty, default (1 MiB rings), max (64 MiB)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentCallError, type AgentClient, status } from '../clients/ts/src/index.js';
import { pool, range } from '../test/helpers/events.js';
import { Subreaper } from '../test/helpers/subreaper.js';
import { captureScenario, DEFAULT_RING, MAX_RING, type CaptureCase, type CaptureResult } from './handover-capture.js';
import { probe, ready } from './handover-probe.js';
import { median } from './stats.js';

const REPO = new URL('../', import.meta.url).pathname;
const AGENT = join(REPO, 'dist/src/main.js');
const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'capture-only': { type: 'boolean', default: false },
    /** The capture case's agents (a checkout with dist/ built), interleaved; default this one. */
    agent: { type: 'string', multiple: true },
    rounds: { type: 'string' },
    /** Only these capture cases (repeatable): empty, default, max. */
    case: { type: 'string', multiple: true },
  },
});
const SIZES = flags.quick ? [1000] : [1000, 10_000];
const CAPTURE_ONLY = flags['capture-only'];
const AGENT_DIRS = (flags.agent ?? [REPO]).map((d) => resolve(d));
const ROUNDS = Number(flags.rounds ?? (flags.quick ? 1 : 3));
const CPU_COUNT = cpus().length;
/**
 * 16 processes, each a captured stdout written 1.5 times over: rings of --capture-bytes' default
 * (16 MiB of snapshot) and of its maximum (1 GiB); and the same with nothing written, the floor.
 */
const CAPTURE_CASES: readonly CaptureCase[] = [
  { name: 'empty', processes: 16, ringBytes: DEFAULT_RING, written: 0 },
  { name: 'default', processes: 16, ringBytes: DEFAULT_RING, written: 1.5 * DEFAULT_RING },
  ...(flags.quick ? [] : [{ name: 'max', processes: 16, ringBytes: MAX_RING, written: 1.5 * MAX_RING }]),
].filter((c) => flags.case === undefined || flags.case.includes(c.name));
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
  // Exits scheduled before the cursor would not be "during the switch", and a Watch from it would
  // wait for the other half's exits an hour away: a machine this slow cannot run the scenario.
  if (Date.now() > t0) throw new Error(`spawning ${n} processes took ${Date.now() - spawnedAt} ms, past the exits' schedule (${t0 - spawnedAt} ms): the machine is too busy for this scenario`);
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
  const quiet = AbortSignal.timeout(10_000);
  try {
    for await (const e of client.watch({ afterSequence: cursor }, { signal: quiet })) {
      void e;
      break;
    }
  } catch (e) {
    watch = quiet.aborted ? 'no event within 10 s' : e instanceof AgentCallError ? `${status[e.code]} ${e.reason}` : String(e);
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

/** Per case and agent, the median of each timing over the rounds. */
function captureTable(results: readonly CaptureResult[]): string {
  const mib = (b: number) => `${(b / 1024 / 1024).toLocaleString('en', { maximumFractionDigits: 0 })} MiB`;
  const lines = [
    '| processes × ring | snapshot | agent | no agent answering (prober) | handover_started → serving | old: request → handed over | new: handover_duration | restore | ring read back |',
    '|---|---:|---|---:|---:|---:|---:|---:|---|',
  ];
  const key = (r: CaptureResult) => `${r.processes}\0${r.ring_bytes}\0${r.agent}`;
  for (const k of new Set(results.map(key))) {
    const rs = results.filter((r) => key(r) === k);
    const r = rs[0]!;
    const failed = rs.filter((x) => x.failed !== undefined).length;
    const m = (f: (r: CaptureResult) => number) => (failed === rs.length ? 'failed' : `${Math.round(median(rs.map(f)))} ms`);
    const ring = r.ring_bytes === 0 ? 'empty' : mib(r.ring_bytes);
    lines.push(`| ${r.processes} × ${ring} | ${mib(median(rs.map((x) => x.snapshot_bytes)))} | ${relative(REPO, r.agent) || '.'} | ${m((x) => x.unavailable_ms)} | ${m((x) => x.no_agent_ms)} | ${m((x) => x.handed_over_ms)} | ${m((x) => x.takeover_metric_ms)} | ${m((x) => x.restore_ms)} | ${failed > 0 ? `takeover failed ${failed}/${rs.length}: ${rs.find((x) => x.failed)!.failed}` : rs.every((x) => x.ring_ok) ? 'ok' : 'WRONG'} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const reaper = Subreaper.start();
  const results: Result[] = [];
  const captured: CaptureResult[] = [];
  try {
    if (!CAPTURE_ONLY) {
      for (const n of SIZES) {
        for (const mode of ['restart', 'handover'] as const) {
          const r = await scenario(reaper, mode, n);
          console.error(JSON.stringify(r));
          results.push(r);
        }
      }
    }
    // Interleaved: each round runs every case on every agent.
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of CAPTURE_CASES) {
        for (const agent of AGENT_DIRS) {
          const r = await captureScenario(reaper, agent, c);
          console.error(JSON.stringify({ round, ...r }));
          captured.push(r);
        }
      }
    }
  } finally {
    await reaper.close();
    rmSync(fixtures, { recursive: true, force: true });
  }
  if (results.length > 0) {
    const lines = [
      '| processes | upgrade | no agent answering | exits during it reported with status | status lost | Watch with old cursor | old agent: request→handed over | new agent: restore |',
      '|---:|---|---:|---:|---:|---|---:|---:|',
    ];
    for (const r of results) {
      const restart = results.find((x) => x.processes === r.processes && x.mode === 'restart')!;
      const ratio = r.mode === 'handover' ? ` (${(r.unavailable_ms / restart.unavailable_ms).toFixed(2)}× restart)` : '';
      lines.push(`| ${r.processes.toLocaleString('en')} | ${r.mode} | ${r.unavailable_ms} ms${ratio} | ${r.scheduled_exits - r.status_lost - r.wrong_code} / ${r.scheduled_exits} | ${r.status_lost} | ${r.watch} | ${r.handover_ms === undefined ? '–' : `${r.handover_ms} ms`} | ${r.restore_ms} ms |`);
    }
    console.log(lines.join('\n') + '\n');
  }
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  console.log(`captured output (${CPU_COUNT} CPUs, ${cpu}, ${ROUNDS} rounds, medians):\n${captureTable(captured)}`);
  const out = join(REPO, 'bench/results', `handover-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify({ command: `node --import tsx bench/handover.ts ${process.argv.slice(2).join(' ')}`.trim(), cpu, results, captured }, null, 2) + '\n');
  console.log(`\n${out}`);
}

await main();
