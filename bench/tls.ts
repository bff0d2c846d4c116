// What remote access costs (issue 10): Spawn+Wait cycles of /bin/true at c=16 from one client,
// over the unix socket of an agent without a policy, and over the unix socket and over mutual TLS
// of an agent with a policy (the caller a tenant, so every spawn goes through its constraints),
// interleaved in turns of --chunk cycles in one run; prints ratios and writes bench/results/tls-*.json.
// Usage: node --import tsx bench/tls.ts [--rounds N] [--cycles N] [--chunk 500] [--agent DIR]... (trees compared in the same run)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import { AgentClient } from '../clients/ts/src/index.js';
import { CONCURRENCY as CONC, interleavedRound, spawnWaitCycles } from './cycles.js';
import { cpuSeconds, startAgent, type AgentProcess } from './agent-process.js';
import { median } from './stats.js';
import { freePort } from './otlp-count-sink.js';
import { BENCH_CLIENT } from './client-options.js';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
const { values: opt } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, cycles: { type: 'string', default: '3000' }, chunk: { type: 'string', default: '500' }, agent: { type: 'string', multiple: true } }, strict: true });
/** Trees whose agents are compared in the same run (--agent DIR, repeatable; the summary's keys are the last one's). */
const TREES = (opt.agent ?? [REPO]).map((d) => resolve(d));
const ROUNDS = Math.max(1, Number(opt.rounds));
const CYCLES = Math.max(16, Number(opt.cycles));
/** A round's cycles run in turns of this many per variant (cycles.ts interleavedRound). */
const CHUNK = Math.max(16, Math.min(CYCLES, Number(opt.chunk)));
const WARMUP = 4000;
const SPIFFE = 'spiffe://bench.example/tenant';
const log = (msg: string) => process.stderr.write(`[bench-tls ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

function makeCertificates(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=bench-ca');
  const leaf = (name: string, san: string) => {
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  };
  leaf('server', 'IP:127.0.0.1');
  leaf('client', `URI:${SPIFFE}`);
}

interface Variant {
  readonly name: 'unix' | 'unix_policy' | 'tls_policy';
  /** The tree whose agent it is (--agent). */
  readonly tree: string;
  readonly agent: AgentProcess;
  readonly client: AgentClient;
}

type Name = Variant['name'];
type Results = Record<Name, { per_s: number[]; agent_cpu_ms_per_cycle: number[] }>;


async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'pidfd-agent-bench-tls-'));
  const agents: AgentProcess[] = [];
  const clients: AgentClient[] = [];
  try {
    makeCertificates(dir);
    const policy = join(dir, 'policy.yaml');
    writeFileSync(
      policy,
      ['rules:', `  - identities: ["${SPIFFE}", "unix:uid=0"]`, '    role: tenant', '    spawn:', '      run_as: ["root"]', '      executables: ["/bin/*", "/usr/bin/*"]', '      max_processes: 1000', ''].join('\n'),
    );
    const maxProcesses = 4096;
    const read = (f: string) => readFileSync(join(dir, f));
    const variants: Variant[] = [];
    for (const [i, tree] of TREES.entries()) {
      const port = await freePort();
      // Both audit every Spawn (as every agent does) to a file, as a node would, not to the terminal.
      const plain = await startAgent({ repo: tree, maxProcesses, agentFlags: ['--ephemeral', '--retention-max', '1000', '--audit-log', join(dir, `audit-plain-${i}.log`)] });
      agents.push(plain);
      const tlsFlags = ['--tcp', `127.0.0.1:${port}`, '--tls-cert', join(dir, 'server.pem'), '--tls-key', join(dir, 'server.key'), '--tls-client-ca', join(dir, 'ca.pem')];
      const guarded = await startAgent({ repo: tree, maxProcesses, agentFlags: ['--ephemeral', '--retention-max', '1000', '--audit-log', join(dir, `audit-guarded-${i}.log`), '--policy', policy, ...tlsFlags] });
      agents.push(guarded);
      const tlsClient = new AgentClient(`127.0.0.1:${port}`, credentials.createSsl(read('ca.pem'), read('client.key'), read('client.pem')), undefined, BENCH_CLIENT);
      const mine: Variant[] = [
        { name: 'unix', tree, agent: plain, client: new AgentClient(plain.address, undefined, undefined, BENCH_CLIENT) },
        { name: 'unix_policy', tree, agent: guarded, client: new AgentClient(guarded.address, undefined, undefined, BENCH_CLIENT) },
        { name: 'tls_policy', tree, agent: guarded, client: tlsClient },
      ];
      variants.push(...mine);
    }
    clients.push(...variants.map((v) => v.client));
    // Warm-up: connections, the TLS session, and V8 done compiling each path (1,000 cycles left it
    // compiling inside the measured runs: FINDINGS "Session 13: floors"), all variants in turns so
    // that no agent waits idle for the others' (cycles.ts interleavedRound says what that cost).
    for (let warm = 0; warm < WARMUP; warm += 200) for (const v of variants) await spawnWaitCycles(v.client, 200);
    const results = new Map<string, Results>(TREES.map((t) => [t, { unix: { per_s: [], agent_cpu_ms_per_cycle: [] }, unix_policy: { per_s: [], agent_cpu_ms_per_cycle: [] }, tls_policy: { per_s: [], agent_cpu_ms_per_cycle: [] } }]));
    for (let round = 1; round <= ROUNDS; round++) {
      const measured = await interleavedRound(variants, CYCLES, CHUNK, round, (v) => {
        const cpu0 = cpuSeconds(v.agent.pid);
        return () => cpuSeconds(v.agent.pid) - cpu0;
      });
      for (const [i, v] of variants.entries()) {
        const { wall, measured: cpu } = measured[i]!;
        results.get(v.tree)![v.name].per_s.push(CYCLES / wall);
        results.get(v.tree)![v.name].agent_cpu_ms_per_cycle.push((cpu * 1000) / CYCLES);
        log(`round ${round} ${TREES.length > 1 ? `${v.tree} ` : ''}${v.name}: ${(CYCLES / wall).toFixed(0)} cycles/s, agent ${((cpu * 1000) / CYCLES).toFixed(3)} ms CPU/cycle`);
      }
    }
    const summarize = (r: Results) => {
      const m = (name: Name, key: 'per_s' | 'agent_cpu_ms_per_cycle') => median(r[name][key]);
      return {
        spawn_wait_per_s: { unix: m('unix', 'per_s'), unix_policy: m('unix_policy', 'per_s'), tls_policy: m('tls_policy', 'per_s') },
        agent_cpu_ms_per_cycle: { unix: m('unix', 'agent_cpu_ms_per_cycle'), unix_policy: m('unix_policy', 'agent_cpu_ms_per_cycle'), tls_policy: m('tls_policy', 'agent_cpu_ms_per_cycle') },
        tls_policy_vs_unix_throughput: m('tls_policy', 'per_s') / m('unix', 'per_s'),
        unix_policy_vs_unix_throughput: m('unix_policy', 'per_s') / m('unix', 'per_s'),
        tls_policy_vs_unix_agent_cpu: m('tls_policy', 'agent_cpu_ms_per_cycle') / m('unix', 'agent_cpu_ms_per_cycle'),
        rounds_raw: r,
      };
    };
    const last = TREES[TREES.length - 1]!;
    const summary = {
      cpu_model: os.cpus()[0]?.model ?? 'unknown',
      rounds: ROUNDS,
      cycles_per_round: CYCLES,
      concurrency: CONC,
      ...summarize(results.get(last)!),
      ...(TREES.length > 1 ? { by_agent: Object.fromEntries(TREES.map((t) => [t, summarize(results.get(t)!)])) } : {}),
    };
    mkdirSync(join(BENCH, 'results'), { recursive: true });
    const file = join(BENCH, 'results', `tls-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(summary, null, 2) + '\n');
    const pct = (r: number) => `${r.toFixed(2)}×`;
    console.log(`\nSpawn+Wait c=${CONC}, ${CYCLES} cycles × ${ROUNDS} rounds, medians (${summary.cpu_model}):`);
    for (const tree of TREES) {
      const t = summarize(results.get(tree)!);
      if (TREES.length > 1) console.log(` ${tree}:`);
      for (const name of ['unix', 'unix_policy', 'tls_policy'] as const) console.log(`  ${name.padEnd(12)} ${t.spawn_wait_per_s[name].toFixed(0).padStart(6)} cycles/s   agent ${t.agent_cpu_ms_per_cycle[name].toFixed(3)} ms CPU/cycle`);
      console.log(`  TLS+policy ÷ unix: throughput ${pct(t.tls_policy_vs_unix_throughput)}, agent CPU ${pct(t.tls_policy_vs_unix_agent_cpu)}; unix+policy ÷ unix: throughput ${pct(t.unix_policy_vs_unix_throughput)}`);
    }
    console.log(`  written to ${file}`);
  } finally {
    for (const c of clients) c.close();
    for (const a of agents) await a.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
