// Node's own child_process.spawn, in-process, stdio ignored: the "no manager at all" baseline.
// Plain JavaScript on purpose: libuv forks, so the spawner's own size (a tsx loader thread and
// its modules) would slow every spawn and understate Node.
// usage: node bench/peers/child-process.mjs tput CONC N
//        node bench/peers/child-process.mjs sig CONC N SETTLE_MS
// Prints one JSON line {wall_s, bad, lat_ns}.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

const nowNs = () => Number(process.hrtime.bigint());
const [mode, a, b, c] = process.argv.slice(2);
const conc = Number(a);
const n = Number(b);

const exitOf = (child) => new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

async function tput() {
  const lat = [];
  let started = 0;
  let bad = 0;
  const T0 = nowNs();
  const worker = async () => {
    while (started < n) {
      started++;
      const t0 = nowNs();
      const { code } = await exitOf(spawn('/bin/true', [], { stdio: 'ignore' }));
      lat.push(nowNs() - t0);
      if (code !== 0) bad++;
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
  return { wall_s: (nowNs() - T0) / 1e9, bad, lat_ns: lat };
}

/** Batches of CONC sleepers: settle, SIGTERM all, latency = kill -> 'exit' per child. */
async function sig(settleMs) {
  const lat = [];
  let bad = 0;
  const T0 = nowNs();
  while (lat.length < n) {
    const k = Math.min(conc, n - lat.length);
    const kids = Array.from({ length: k }, () => spawn('/bin/sleep', ['100000'], { stdio: 'ignore' }));
    await sleep(settleMs);
    await Promise.all(
      kids.map(async (child) => {
        const exited = exitOf(child);
        const t0 = nowNs();
        child.kill('SIGTERM');
        const { signal } = await exited;
        lat.push(nowNs() - t0);
        if (signal !== 'SIGTERM') bad++;
      }),
    );
  }
  return { wall_s: (nowNs() - T0) / 1e9, bad, lat_ns: lat };
}

const result = mode === 'tput' ? await tput() : mode === 'sig' ? await sig(Number(c ?? 20)) : undefined;
if (!result) {
  console.error('usage: child-process.mjs tput CONC N | sig CONC N SETTLE_MS');
  process.exit(2);
}
process.stdout.write(JSON.stringify(result) + '\n');
