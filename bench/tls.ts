// What remote access costs (issue 10): Spawn+Wait cycles of /bin/true at c=16 from one client,
// over the unix socket of an agent without a policy, and over the unix socket and over mutual TLS
// of an agent with a policy (the caller a tenant, so every spawn goes through its constraints),
// interleaved round by round in one run; prints ratios and writes bench/results/tls-*.json.
// Usage: node --import tsx bench/tls.ts [--rounds N] [--cycles N]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import { AgentClient } from '../clients/ts/src/index.js';
import { spawnWaitCycles } from './cycles.js';
import { cpuSeconds, startAgent, type AgentProcess } from './agent-process.js';
import { median } from './stats.js';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
const { values: opt } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, cycles: { type: 'string', default: '3000' } }, strict: true });
const ROUNDS = Math.max(1, Number(opt.rounds));
const CYCLES = Math.max(16, Number(opt.cycles));
const CONC = 16;
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

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

interface Variant {
  readonly name: 'unix' | 'unix_policy' | 'tls_policy';
  readonly agent: AgentProcess;
  readonly client: AgentClient;
}

const cycles = (client: AgentClient, n: number) => spawnWaitCycles(client, n, CONC);

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
    const port = await freePort();
    const maxProcesses = 4096;
    // Both audit every Spawn (as every agent does) to a file, as a node would, not to the terminal.
    const plain = await startAgent({ repo: REPO, maxProcesses, agentFlags: ['--ephemeral', '--retention-max', '1000', '--audit-log', join(dir, 'audit-plain.log')] });
    agents.push(plain);
    const tlsFlags = ['--tcp', `127.0.0.1:${port}`, '--tls-cert', join(dir, 'server.pem'), '--tls-key', join(dir, 'server.key'), '--tls-client-ca', join(dir, 'ca.pem')];
    const guarded = await startAgent({ repo: REPO, maxProcesses, agentFlags: ['--ephemeral', '--retention-max', '1000', '--audit-log', join(dir, 'audit-guarded.log'), '--policy', policy, ...tlsFlags] });
    agents.push(guarded);
    const read = (f: string) => readFileSync(join(dir, f));
    const tlsClient = new AgentClient(`127.0.0.1:${port}`, credentials.createSsl(read('ca.pem'), read('client.key'), read('client.pem')));
    const variants: Variant[] = [
      { name: 'unix', agent: plain, client: new AgentClient(plain.address) },
      { name: 'unix_policy', agent: guarded, client: new AgentClient(guarded.address) },
      { name: 'tls_policy', agent: guarded, client: tlsClient },
    ];
    clients.push(...variants.map((v) => v.client));
    for (const v of variants) await cycles(v.client, 200); // warm-up: connections, JIT, TLS session
    const results: Record<Variant['name'], { per_s: number[]; agent_cpu_ms_per_cycle: number[] }> = {
      unix: { per_s: [], agent_cpu_ms_per_cycle: [] },
      unix_policy: { per_s: [], agent_cpu_ms_per_cycle: [] },
      tls_policy: { per_s: [], agent_cpu_ms_per_cycle: [] },
    };
    for (let round = 1; round <= ROUNDS; round++) {
      for (const v of round % 2 === 1 ? variants : [...variants].reverse()) {
        const cpu0 = cpuSeconds(v.agent.pid);
        const wall = await cycles(v.client, CYCLES);
        const cpu = cpuSeconds(v.agent.pid) - cpu0;
        results[v.name].per_s.push(CYCLES / wall);
        results[v.name].agent_cpu_ms_per_cycle.push((cpu * 1000) / CYCLES);
        log(`round ${round} ${v.name}: ${(CYCLES / wall).toFixed(0)} cycles/s, agent ${((cpu * 1000) / CYCLES).toFixed(3)} ms CPU/cycle`);
      }
    }
    const m = (name: Variant['name'], key: 'per_s' | 'agent_cpu_ms_per_cycle') => median(results[name][key]);
    const summary = {
      cpu_model: os.cpus()[0]?.model ?? 'unknown',
      rounds: ROUNDS,
      cycles_per_round: CYCLES,
      concurrency: CONC,
      spawn_wait_per_s: { unix: m('unix', 'per_s'), unix_policy: m('unix_policy', 'per_s'), tls_policy: m('tls_policy', 'per_s') },
      agent_cpu_ms_per_cycle: { unix: m('unix', 'agent_cpu_ms_per_cycle'), unix_policy: m('unix_policy', 'agent_cpu_ms_per_cycle'), tls_policy: m('tls_policy', 'agent_cpu_ms_per_cycle') },
      tls_policy_vs_unix_throughput: m('tls_policy', 'per_s') / m('unix', 'per_s'),
      unix_policy_vs_unix_throughput: m('unix_policy', 'per_s') / m('unix', 'per_s'),
      tls_policy_vs_unix_agent_cpu: m('tls_policy', 'agent_cpu_ms_per_cycle') / m('unix', 'agent_cpu_ms_per_cycle'),
      rounds_raw: results,
    };
    mkdirSync(join(BENCH, 'results'), { recursive: true });
    const file = join(BENCH, 'results', `tls-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(summary, null, 2) + '\n');
    const pct = (r: number) => `${r.toFixed(2)}×`;
    console.log(`\nSpawn+Wait c=${CONC}, ${CYCLES} cycles × ${ROUNDS} rounds, medians (${summary.cpu_model}):`);
    for (const v of variants) console.log(`  ${v.name.padEnd(12)} ${m(v.name, 'per_s').toFixed(0).padStart(6)} cycles/s   agent ${m(v.name, 'agent_cpu_ms_per_cycle').toFixed(3)} ms CPU/cycle`);
    console.log(`  TLS+policy ÷ unix: throughput ${pct(summary.tls_policy_vs_unix_throughput)}, agent CPU ${pct(summary.tls_policy_vs_unix_agent_cpu)}; unix+policy ÷ unix: throughput ${pct(summary.unix_policy_vs_unix_throughput)}`);
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
