// Kill and reclaim (issue 16): how long after a SIGKILL the memory of a process holding 1 GiB of
// touched anonymous memory is free again, killed with Signal{SIGKILL} and with
// Signal{reclaim_memory} (SIGKILL, then process_mrelease), interleaved round by round.
// "Freed" is read from the victim's own memory cgroup when this node has one to give it (cgroup v1
// memory.usage_in_bytes, or cgroup v2 memory.current), which drops as pages are uncharged;
// /proc/meminfo's MemAvailable is the fallback, and it lags (per-CPU page lists, vmstat folding).
// Usage: node --import tsx bench/reclaim.ts [--rounds N] [--mib N]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AgentClient } from '../clients/ts/src/index.js';
import { startAgent } from './agent-process.js';
import { median } from './stats.js';
import { BENCH_CLIENT } from './client-options.js';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
const { values: opt } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, mib: { type: 'string', default: '1024' } }, strict: true });
const ROUNDS = Math.max(1, Number(opt.rounds));
const MIB = Math.max(16, Number(opt.mib));
const log = (msg: string) => process.stderr.write(`[bench-reclaim ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const tick = () => new Promise((r) => setImmediate(r));

interface Meter {
  readonly source: string;
  /** Where the victim's shell puts itself before it execs the hog (undefined: it stays where it is). */
  readonly procs?: string;
  /** Bytes the victim holds (cgroup) or the node lacks (MemAvailable), now. */
  used(): number;
  close(): void;
}

function meter(): Meter {
  const v1 = '/sys/fs/cgroup/memory';
  if (existsSync(join(v1, 'memory.usage_in_bytes'))) {
    const dir = join(v1, `pidfd-agent-bench-reclaim-${process.pid}`);
    mkdirSync(dir);
    return { source: 'cgroup v1 memory.usage_in_bytes', procs: join(dir, 'cgroup.procs'), used: () => Number(readFileSync(join(dir, 'memory.usage_in_bytes'), 'latin1')), close: () => rmdirSync(dir) };
  }
  const v2 = '/sys/fs/cgroup';
  if (existsSync(join(v2, 'cgroup.subtree_control')) && readFileSync(join(v2, 'cgroup.subtree_control'), 'latin1').includes('memory')) {
    const dir = join(v2, `pidfd-agent-bench-reclaim-${process.pid}`);
    mkdirSync(dir);
    return { source: 'cgroup v2 memory.current', procs: join(dir, 'cgroup.procs'), used: () => Number(readFileSync(join(dir, 'memory.current'), 'latin1')), close: () => rmdirSync(dir) };
  }
  const total = os.totalmem();
  return { source: '/proc/meminfo MemAvailable', used: () => total - Number(/^MemAvailable:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'latin1'))![1]) * 1024, close: () => {} };
}

interface Round {
  readonly reclaim: boolean;
  /** From just before the Signal call to the memory freed, as the meter saw it. */
  readonly freedMs: number;
  /** From just before the Signal call to its reply. */
  readonly replyMs: number;
  /** What the agent reported (reclaim_time), with reclaim. */
  readonly reportedMs?: number;
}

async function round(client: AgentClient, hog: string, m: Meter, reclaim: boolean): Promise<Round> {
  const bytes = MIB * 2 ** 20;
  const baseline = m.used();
  const argv = m.procs ? ['sh', '-c', `echo $$ > ${m.procs} && exec ${hog} ${MIB}`] : [hog, String(MIB)];
  const { process: p } = await client.spawn({ argv });
  const deadline = Date.now() + 60_000;
  while (m.used() - baseline < bytes * 0.98) {
    if (Date.now() > deadline) throw new Error('the victim did not touch its memory within 60 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  const held = m.used();
  // Freed: back to within 2% of the victim's size above the baseline.
  const target = held - bytes * 0.98;
  const started = performance.now();
  let replyMs = 0;
  let reportedMs: number | undefined;
  const call = client.signal({ handle: p!.handle, signal: 'KILL', reclaimMemory: reclaim }).then((res) => {
    replyMs = performance.now() - started;
    if (res.reclaimTime) reportedMs = res.reclaimTime.seconds * 1000 + res.reclaimTime.nanos / 1e6;
  });
  while (m.used() > target) {
    if (performance.now() - started > 30_000) throw new Error('the memory was not freed within 30 s');
    await tick();
  }
  const freedMs = performance.now() - started;
  await call;
  await client.wait({ handle: p!.handle });
  await client.release({ handle: p!.handle });
  return { reclaim, freedMs, replyMs, reportedMs };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'pidfd-agent-bench-reclaim-'));
  const hog = join(dir, 'hog');
  execFileSync('gcc', ['-O2', '-o', hog, join(REPO, 'test/fixtures/hog.c')]);
  const m = meter();
  const agent = await startAgent({ repo: REPO, maxProcesses: 64, agentFlags: ['--ephemeral'] });
  const client = new AgentClient(agent.address, undefined, undefined, BENCH_CLIENT);
  const rounds: Round[] = [];
  try {
    log(`${ROUNDS} rounds of ${MIB} MiB, memory read from ${m.source}`);
    for (let i = 0; i < ROUNDS; i++) {
      for (const reclaim of i % 2 === 0 ? [false, true] : [true, false]) {
        const r = await round(client, hog, m, reclaim);
        log(`round ${i + 1} ${reclaim ? 'reclaim ' : 'kill    '} freed after ${r.freedMs.toFixed(1)} ms (reply ${r.replyMs.toFixed(1)} ms${r.reportedMs === undefined ? '' : `, reclaim_time ${r.reportedMs.toFixed(1)} ms`})`);
        rounds.push(r);
      }
    }
  } finally {
    client.close();
    await agent.stop();
    m.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const of = (reclaim: boolean, f: (r: Round) => number | undefined) => median(rounds.filter((r) => r.reclaim === reclaim).map(f).filter((x): x is number => x !== undefined));
  const summary = {
    mib: MIB,
    rounds: ROUNDS,
    meter: m.source,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    kernel: os.release(),
    killFreedMs: of(false, (r) => r.freedMs),
    reclaimFreedMs: of(true, (r) => r.freedMs),
    reclaimReplyMs: of(true, (r) => r.replyMs),
    reclaimReportedMs: of(true, (r) => r.reportedMs),
    rounds_detail: rounds,
  };
  console.log(`\nKill and reclaim, ${MIB} MiB of touched anonymous memory, median of ${ROUNDS} (memory read from ${m.source}):`);
  console.log(`  SIGKILL                      kill -> memory freed ${summary.killFreedMs.toFixed(1)} ms`);
  console.log(`  SIGKILL + process_mrelease   kill -> memory freed ${summary.reclaimFreedMs.toFixed(1)} ms (reply after ${summary.reclaimReplyMs.toFixed(1)} ms, reclaim_time ${summary.reclaimReportedMs.toFixed(1)} ms)`);
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `reclaim-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`);
  log(`wrote ${file}`);
}

await main();
