// Profiles the agent's hot paths: the agent runs under `node --cpu-prof` while the bench client
// drives one case, then the profile's self time is summarised by function and by area.
// usage: node --import tsx bench/profile.ts [--cycles 20000] [--tries 2000] [--managed 0] [--case tput-c16 --case watch-c16 --case sig-c1] [--agent-flag=--metrics-listen=127.0.0.1:0]...
// Writes bench/profiles/<case>/*.cpuprofile (git-ignored; open in Chrome DevTools) and
// bench/results/profile.md.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { DriverCommand } from './agent-driver.js';
import { cpuSeconds, startAgent } from './agent-process.js';
import { AgentDriver } from './driver-ipc.js';
import { latencyStats } from './stats.js';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);

const { values: opt } = parseArgs({
  options: {
    cycles: { type: 'string', default: '20000' },
    tries: { type: 'string', default: '2000' },
    managed: { type: 'string', default: '0' },
    /** Which cases to profile (repeatable): tput-c16 (Spawn+Wait), watch-c16 (Spawn+Watch), sig-c1. */
    case: { type: 'string', multiple: true },
    /** A flag for the agent, e.g. --agent-flag=--metrics-listen=127.0.0.1:0 (repeatable). */
    'agent-flag': { type: 'string', multiple: true },
  },
  strict: true,
});

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives, short enough for a table. */
function area(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native / builtin)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) return url;
  const i = url.indexOf('/dist/');
  return i >= 0 ? url.slice(i + '/dist/'.length) : url;
}

function summarise(profile: CpuProfile, top: number): { total_ms: number; byFunction: string[]; byArea: string[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    if (!node) return;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') return;
    total += dt;
    const a = area(url, functionName);
    const file = url ? `${a === url ? url.split('/').pop() : a}${a.endsWith('.js') ? '' : ':' + (url.split('/').pop() ?? '')}` : '';
    const k = `${functionName || '(anonymous)'}  ${file ? `${file}:${lineNumber + 1}` : ''}`.trim();
    self.set(k, (self.get(k) ?? 0) + dt);
    areas.set(a, (areas.get(a) ?? 0) + dt);
  });
  const rows = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((x, y) => y[1] - x[1])
      .slice(0, top)
      .map(([k, ms]) => `| ${(100 * ms / total).toFixed(1)}% | ${ms.toFixed(0)} | \`${k.replace(/\|/g, '\\|')}\` |`);
  return { total_ms: total, byFunction: rows(self), byArea: rows(areas) };
}

async function profileCase(name: string, cmd: DriverCommand, managed: number): Promise<string> {
  const dir = join(BENCH, 'profiles', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const agent = await startAgent({ repo: REPO, maxProcesses: managed + 5000, nodeFlags: ['--cpu-prof', '--cpu-prof-dir', dir], agentFlags: opt['agent-flag'] ?? [] });
  const driver = new AgentDriver();
  let out = '';
  try {
    await driver.send({ op: 'init', address: agent.address });
    await driver.run({ op: 'tput', conc: 8, n: 1000, via: 'wait' });
    if (managed > 0) await driver.run({ op: 'hold', count: managed, conc: 16 });
    const cpu0 = cpuSeconds(agent.pid);
    const run = await driver.run(cmd);
    const cpu = cpuSeconds(agent.pid) - cpu0;
    const lat = latencyStats(run.lat_ns);
    const n = run.lat_ns.length;
    out += `Run: ${n} ${cmd.op === 'tput' ? 'cycles' : 'signals'}, ${(n / run.wall_s).toFixed(0)}/s, p50 ${lat.p50_ms.toFixed(3)} ms, p99 ${lat.p99_ms.toFixed(3)} ms; agent CPU ${cpu.toFixed(2)} s (${(cpu * 1000 / n).toFixed(3)} s per 1,000), client CPU ${run.client_cpu_s.toFixed(2)} s.\n`;
    if (managed > 0) await driver.run({ op: 'unhold', conc: 16 });
    await driver.send({ op: 'close' });
  } finally {
    await agent.stop();
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${dir}`);
  const s = summarise(JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile, 25);
  out += `Non-idle samples: ${s.total_ms.toFixed(0)} ms over the agent's whole life (start-up and warm-up included). Profile: bench/profiles/${name}/${file}.\n`;
  out += `Caveat: where posix_spawn runs on the main thread, glibc blocks all signals while the vfork child runs, so V8's SIGPROF samples falling in that window are counted when it returns: that self time is wall time the thread spent blocked, not CPU time.\n\n`;
  out += `Self time by area:\n\n| share | ms | area |\n|---:|---:|---|\n${s.byArea.slice(0, 12).join('\n')}\n\n`;
  out += `Top self time by function:\n\n| share | ms | function |\n|---:|---:|---|\n${s.byFunction.join('\n')}\n`;
  return out;
}

const cycles = Number(opt.cycles);
const tries = Number(opt.tries);
const managed = Number(opt.managed);
const sections: string[] = [`# Agent CPU profiles (\`node --cpu-prof\` on the agent process)\n\nGenerated by \`node --import tsx bench/profile.ts --cycles ${cycles} --tries ${tries} --managed ${managed}\` on ${new Date().toISOString()}.\n`];
for (const [name, title, cmd] of [
  ['tput-c16', `Spawn + Wait of /bin/true, 16 in flight, ${cycles} cycles`, { op: 'tput', conc: 16, n: cycles, via: 'wait' }],
  ['watch-c16', `Spawn + Watch for EXITED of /bin/true, 16 in flight, ${cycles} cycles`, { op: 'tput', conc: 16, n: cycles, via: 'watch' }],
  ['sig-c1', `Signal TERM → EXITED on Watch, one at a time, ${tries} tries (2 ms settle)`, { op: 'sig', conc: 1, n: tries, settleMs: 2 }],
] as const) {
  if (!(opt.case ?? ['tput-c16', 'sig-c1']).includes(name)) continue;
  process.stderr.write(`[profile] ${name}\n`);
  sections.push(`## ${title}${managed ? ` (${managed} managed)` : ''}\n\n${await profileCase(name, cmd, managed)}`);
}
mkdirSync(join(BENCH, 'results'), { recursive: true });
writeFileSync(join(BENCH, 'results', 'profile.md'), sections.join('\n'));
process.stdout.write(sections.join('\n'));
process.exit(0);
