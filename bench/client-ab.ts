// Same-run A/B of the TypeScript client (issue 17: on 2 vCPUs the bench client's CPU competes with
// the agent's). One agent (this checkout's) is driven in turn, order rotated per round, by the
// bench driver of each checkout given (DIR/bench/agent-driver.ts, which uses DIR's client): client
// CPU and agent CPU per operation, and throughput, for Spawn+Wait, Spawn+Watch and bare Gets at c=16.
//
//   node --import tsx bench/client-ab.ts --client DIR [--client DIR ...] [--rounds 5] [--n 3000]
//
// The first --client is the reference; ratios are per round against it, then the median.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { DriverCommand, DriverReply, DriverRun } from './agent-driver.js';
import { cpuSeconds, startAgent, type AgentProcess } from './agent-process.js';
import { median, round } from './stats.js';

const BENCH = dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({
  options: {
    client: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
    n: { type: 'string', default: '3000' },
  },
  strict: true,
});
const clients = (opt.client ?? []).map((d) => resolve(d));
if (clients.length < 1) throw new Error('usage: bench/client-ab.ts --client DIR [--client DIR ...]');
for (const dir of clients) if (!existsSync(join(dir, 'bench/agent-driver.ts'))) throw new Error(`${dir}: no bench/agent-driver.ts`);
const ROUNDS = Math.max(1, Number(opt.rounds));
const N = Math.max(16, Number(opt.n));

const log = (msg: string) => process.stderr.write(`[client-ab ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** DIR's bench driver, under DIR's tsx and node_modules. */
class Driver {
  private readonly proc: ChildProcess;
  private pending: ((r: DriverReply) => void) | undefined;
  constructor(dir: string) {
    this.proc = fork(join(dir, 'bench/agent-driver.ts'), [], { cwd: dir, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true });
    this.proc.on('message', (m) => this.settle(m as DriverReply));
    this.proc.on('exit', (code) => this.settle({ ok: false, error: `driver exited (${code})` }));
  }
  async send(cmd: DriverCommand): Promise<DriverReply & { ok: true }> {
    const reply = await new Promise<DriverReply>((res) => {
      this.pending = res;
      this.proc.send(cmd);
    });
    if (!reply.ok) throw new Error(`driver ${cmd.op}: ${reply.error}`);
    return reply;
  }
  async run(cmd: DriverCommand): Promise<DriverRun> {
    const r = (await this.send(cmd)).result;
    if (!r) throw new Error(`driver ${cmd.op}: no result`);
    return r;
  }
  private settle(reply: DriverReply): void {
    const p = this.pending;
    this.pending = undefined;
    p?.(reply);
  }
}

type Case = 'wait' | 'watch' | 'get';
interface Measure {
  readonly round: number;
  readonly client: string;
  readonly case: Case;
  readonly n: number;
  readonly wall_s: number;
  readonly client_cpu_s: number;
  readonly agent_cpu_s: number;
}
const measures: Measure[] = [];

async function oneClient(agent: AgentProcess, driver: Driver, round: number, dir: string): Promise<void> {
  log(`round ${round}: ${dir} (load ${os.loadavg()[0]!.toFixed(2)})`);
  await driver.send({ op: 'init', address: agent.address });
  await driver.run({ op: 'tput', conc: 8, n: 500, via: 'wait' }); // JIT and channel: discarded
  const cases: [Case, DriverCommand][] = [
    ['wait', { op: 'tput', conc: 16, n: N, via: 'wait' }],
    ['watch', { op: 'tput', conc: 16, n: N, via: 'watch' }],
    ['get', { op: 'get', conc: 16, n: N }],
  ];
  for (const [c, cmd] of cases) {
    const a0 = cpuSeconds(agent.pid);
    const run = await driver.run(cmd);
    const m = { round, client: dir, case: c, n: N, wall_s: run.wall_s, client_cpu_s: run.client_cpu_s, agent_cpu_s: cpuSeconds(agent.pid) - a0 };
    measures.push(m);
    log(`  ${c}: ${Math.round(N / m.wall_s)}/s, client CPU ${((m.client_cpu_s * 1000) / N).toFixed(3)} ms, agent CPU ${((m.agent_cpu_s * 1000) / N).toFixed(3)} ms per op`);
  }
  await driver.send({ op: 'detach' });
}

const perOp = (s: number) => (s * 1000) / N;

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const started = new Date();
  const drivers = clients.map((d) => new Driver(d));
  const agent = await startAgent({ repo: dirname(BENCH), maxProcesses: 4000 });
  try {
    for (let r = 1; r <= ROUNDS; r++) {
      for (let i = 0; i < clients.length; i++) {
        const k = (i + r) % clients.length;
        await oneClient(agent, drivers[k]!, r, clients[k]!);
      }
    }
  } finally {
    for (const d of drivers) await d.send({ op: 'close' }).catch(() => undefined);
    await agent.stop();
  }
  const pick = (r: number, dir: string, c: Case) => measures.find((m) => m.round === r && m.client === dir && m.case === c)!;
  const rounds = Array.from({ length: ROUNDS }, (_, i) => i + 1);
  const ref = clients[0]!;
  const rows = clients.map((dir) => {
    const med = (c: Case, f: (m: Measure) => number) => round(median(rounds.map((r) => f(pick(r, dir, c)))), 4);
    const vs = (c: Case, f: (m: Measure) => number) => round(median(rounds.map((r) => f(pick(r, dir, c)) / f(pick(r, ref, c)))), 3);
    const client = (m: Measure) => perOp(m.client_cpu_s);
    const agentCpu = (m: Measure) => perOp(m.agent_cpu_s);
    const rate = (m: Measure) => m.n / m.wall_s;
    return Object.fromEntries([['client', dir], ...(['wait', 'watch', 'get'] as Case[]).flatMap((c) => [
      [`${c}_client_ms`, med(c, client)], [`${c}_client_vs_ref`, vs(c, client)],
      [`${c}_agent_ms`, med(c, agentCpu)], [`${c}_agent_vs_ref`, vs(c, agentCpu)],
      [`${c}_per_s`, Math.round(median(rounds.map((r) => rate(pick(r, dir, c)))))], [`${c}_rate_vs_ref`, vs(c, rate)],
    ])]);
  });
  const cpuModel = os.cpus()[0]?.model ?? '?';
  const result = { date: started.toISOString(), cpu_model: cpuModel, rounds: ROUNDS, n: N, load_start: load0, load_end: os.loadavg(), rows, measures };
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `client-ab-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 1) + '\n');
  const L = [`client A/B, ${ROUNDS} rounds of ${N} per case, ${os.cpus().length} × ${cpuModel}, load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; medians over rounds, ratios per round against the first client:`, ''];
  L.push('| round | client | case | per s | client ms/op | agent ms/op |', '|---:|---|---|---:|---:|---:|');
  for (const m of measures) L.push(`| ${m.round} | ${m.client} | ${m.case} | ${Math.round(m.n / m.wall_s)} | ${perOp(m.client_cpu_s).toFixed(3)} | ${perOp(m.agent_cpu_s).toFixed(3)} |`);
  L.push('', '```', JSON.stringify(rows, null, 1), '```');
  process.stdout.write(L.join('\n') + '\n');
  log(`wrote ${file}`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
