// In-process same-run A/B of one Spawn's decision (Authorizer.decide + Grant.finish, audit to a
// no-op sink) for /bin/true, as the agent with no --policy decides it: the checkouts' dist/ are
// imported side by side and timed in interleaved rounds (process CPU per decision).
//   node bench/authorize-ab.mjs DIR DIR [--rounds 7] [--n 20000]
import { parseArgs } from 'node:util';
import os from 'node:os';

const { values: opt, positionals: dirs } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, n: { type: 'string', default: '20000' } }, allowPositionals: true });
const variants = await Promise.all(
  dirs.map(async (dir) => {
    const { Authorizer, NSS_NAMES } = await import(`${dir}/dist/src/auth/authorize.js`);
    const { ROOT_ONLY } = await import(`${dir}/dist/src/auth/policy.js`);
    const auth = new Authorizer({
      policy: () => ROOT_ONLY,
      names: NSS_NAMES,
      agentUid: 0,
      agentEnv: { PATH: '/usr/bin:/bin' },
      lookup: () => undefined,
      namespaces: () => ({ target: undefined, release: () => {} }),
      running: () => 0,
      replays: () => false,
      audit: () => {},
    });
    return { dir, auth };
  }),
);
const caller = { identity: 'unix:uid=0', aliases: [], peer: 'unix:pid=1,uid=0,gid=0', transport: 'unix', uid: 0 };
const request = { rpc: 'Spawn', spawn: { argv: ['/bin/true'], labels: {}, setup: {}, newSession: false, stdout: { kind: 'discard' }, stderr: { kind: 'discard' } } };
const N = Number(opt.n);
const rows = new Map(variants.map((v) => [v.dir, []]));
for (const v of variants) for (let i = 0; i < 2000; i++) v.auth.decide(caller, request).finish({ handle: 'h', pid: 1 });
for (let r = 0; r < Number(opt.rounds); r++) {
  for (const v of r % 2 ? [...variants].reverse() : variants) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < N; i++) v.auth.decide(caller, request).finish({ handle: 'h', pid: 1 });
    const c = process.cpuUsage(c0);
    rows.get(v.dir).push(((c.user + c.system) / N));
  }
}
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`${os.cpus().length} x ${os.cpus()[0].model}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; µs CPU per Spawn decision, ${opt.rounds} rounds x ${N}:`);
const ref = rows.get(variants[0].dir);
for (const [dir, us] of rows) console.log(`${dir}: ${us.map((u) => u.toFixed(2)).join(' ')}; median ${med(us).toFixed(2)}; per-round ratio median x${med(us.map((u, i) => u / ref[i])).toFixed(3)}`);
