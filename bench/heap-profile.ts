// Where the agent allocates on the hot path: the agent runs with V8's sampling heap profiler
// (bench/heap-sampler.mjs, preloaded; it keeps the samples of objects collected since) while the bench
// client drives Spawn+Wait or Spawn+Watch cycles at c=16; the samples are summed by allocating
// function (self) and the top rows printed. Samples of start-up and warm-up are included.
//
//   node --import tsx bench/heap-profile.ts [--agent DIR] [--cycles 4000] [--via wait|watch] [--interval 4096]
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startAgent } from './agent-process.js';
import { AgentDriver } from './driver-ipc.js';

const { values: opt } = parseArgs({
  options: {
    agent: { type: 'string', default: new URL('..', import.meta.url).pathname },
    cycles: { type: 'string', default: '4000' },
    via: { type: 'string', default: 'wait' },
    interval: { type: 'string', default: '4096' },
    top: { type: 'string', default: '30' },
  },
  strict: true,
});

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

const dir = mkdtempSync(join(tmpdir(), 'heap-prof-'));
const out = join(dir, 'agent.heapprofile');
const agent = await startAgent({
  repo: resolve(opt.agent),
  maxProcesses: 5000,
  nodeFlags: ['--import', new URL('heap-sampler.mjs', import.meta.url).pathname],
  env: { ...process.env, HEAP_SAMPLER_OUT: out, HEAP_SAMPLER_INTERVAL: opt.interval },
});
const driver = new AgentDriver();
const N = Number(opt.cycles);
try {
  await driver.send({ op: 'init', address: agent.address });
  await driver.run({ op: 'tput', conc: 8, n: 1000, via: 'wait' });
  await driver.run({ op: 'tput', conc: 16, n: N, via: opt.via as 'wait' | 'watch' });
  await driver.send({ op: 'close' });
} finally {
  await agent.stop();
}
const file = out;
const root = (JSON.parse(readFileSync(out, 'utf8')) as { head: Node }).head;
const self = new Map<string, number>();
let total = 0;
const walk = (n: Node) => {
  const { functionName, url, lineNumber } = n.callFrame;
  const i = url.indexOf('/dist/');
  const nm = url.lastIndexOf('node_modules/');
  const where = i >= 0 && nm < 0 ? url.slice(i + 6) : nm >= 0 ? url.slice(nm + 13) : url;
  const k = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
  self.set(k, (self.get(k) ?? 0) + n.selfSize);
  total += n.selfSize;
  for (const c of n.children) walk(c);
};
walk(root);
const cyclesAll = N + 1000;
console.log(`${file}: ${(total / 1048576).toFixed(1)} MiB sampled over the agent's life (~${Math.round(total / cyclesAll)} B per cycle of ${cyclesAll}, start-up included)`);
console.log('| share | B per cycle | function |\n|---:|---:|---|');
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(opt.top))) console.log(`| ${((100 * v) / total).toFixed(1)}% | ${Math.round(v / cyclesAll)} | \`${k}\` |`);
process.exit(0);
