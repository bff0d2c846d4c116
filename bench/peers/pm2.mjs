// PM2 7.0.4 (the peer), driven through its programmatic API like shared/baselines/peers: the
// daemon ("God") spawns; this client talks to it over rpc.sock and learns exits on the pub.sock
// bus ('process:event', event 'exit'). Needs PM2_HOME (the bench driver gives it a temp dir).
// usage: node bench/peers/pm2.mjs tput CONC N       start /bin/true under a unique name, exit
//                                                   event, delete (delete is in the cycle time,
//                                                   not in the start->exit latency)
//        node bench/peers/pm2.mjs sig CONC N SETTLE_MS  batches: start CONC `sleep 100000`,
//                                                   settle, sendSignalToProcessId SIGTERM all,
//                                                   exit events, delete
//        node bench/peers/pm2.mjs daemon | kill     start the daemon (prints its pid) | stop it
// Prints one JSON line {wall_s, bad, lat_ns, ...}.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

if (!process.env.PM2_HOME) {
  console.error('pm2.mjs: set PM2_HOME');
  process.exit(2);
}
const pm2 = createRequire(import.meta.url)('pm2');
const nowNs = () => Number(process.hrtime.bigint());
const [mode, a, b, c] = process.argv.slice(2);
const conc = Number(a);
const n = Number(b);
const RUN = process.pid.toString(36);

const base = {
  interpreter: 'none',
  autorestart: false,
  exec_mode: 'fork',
  out_file: '/dev/null',
  error_file: '/dev/null',
  merge_logs: true,
  vizion: false,
  pmx: false,
};

const call = (fn, ...args) => new Promise((resolve, reject) => fn.call(pm2, ...args, (e, r) => (e ? reject(e) : resolve(r))));

/** name -> resolve({t, pkt}) for the next exit event of that app. */
const waiters = new Map();
const exitOf = (name) => new Promise((resolve) => waiters.set(name, resolve));

async function connect() {
  await call(pm2.connect);
  const bus = await new Promise((resolve, reject) => pm2.launchBus((e, bus) => (e ? reject(e) : resolve(bus))));
  bus.on('process:event', (pkt) => {
    if (pkt.event !== 'exit') return;
    const t = nowNs();
    const w = waiters.get(pkt.process.name);
    if (w) {
      waiters.delete(pkt.process.name);
      w({ t, pkt });
    }
  });
  await sleep(200); // let the bus subscription settle
}

async function tput() {
  const lat = [];
  const codes = {};
  let started = 0;
  let bad = 0;
  const T0 = nowNs();
  const worker = async () => {
    while (started < n) {
      const name = `tp-${RUN}-${started++}`;
      const exited = exitOf(name);
      const t0 = nowNs();
      await call(pm2.start, { ...base, name, script: '/bin/true' });
      const { t, pkt } = await exited;
      lat.push(t - t0);
      const code = pkt.process.exit_code;
      codes[code] = (codes[code] ?? 0) + 1;
      if (code !== 0) bad++;
      await call(pm2.delete, pkt.process.pm_id);
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
  return { wall_s: (nowNs() - T0) / 1e9, bad, codes, lat_ns: lat };
}

async function sig(settleMs) {
  const lat = [];
  const codes = {};
  let batch = 0;
  const T0 = nowNs();
  while (lat.length < n) {
    const k = Math.min(conc, n - lat.length);
    const names = Array.from({ length: k }, (_, i) => `sig-${RUN}-${batch}-${i}`);
    batch++;
    const ids = await Promise.all(
      names.map(async (name) => (await call(pm2.start, { ...base, name, script: '/bin/sleep', args: ['100000'] }))[0].pm2_env.pm_id),
    );
    await sleep(settleMs);
    await Promise.all(
      names.map(async (name, i) => {
        const exited = exitOf(name);
        const t0 = nowNs();
        await call(pm2.sendSignalToProcessId, 'SIGTERM', ids[i]);
        const { t, pkt } = await exited;
        lat.push(t - t0);
        const code = pkt.process.exit_code; // PM2 reports signal deaths as code 0
        codes[code] = (codes[code] ?? 0) + 1;
      }),
    );
    for (const id of ids) await call(pm2.delete, id);
  }
  return { wall_s: (nowNs() - T0) / 1e9, bad: 0, codes, lat_ns: lat };
}

let result;
if (mode === 'kill') {
  await call(pm2.connect);
  await call(pm2.killDaemon);
  result = { killed: true };
} else {
  await connect();
  if (mode === 'daemon') result = { pid: Number(readFileSync(join(process.env.PM2_HOME, 'pm2.pid'), 'utf8')) };
  else if (mode === 'tput') result = await tput();
  else if (mode === 'sig') result = await sig(Number(c ?? 20));
}
try {
  pm2.Client.disconnectBus(() => {});
} catch {}
pm2.disconnect();
if (!result) {
  console.error('usage: pm2.mjs tput CONC N | sig CONC N SETTLE_MS | daemon | kill');
  process.exit(2);
}
process.stdout.write(JSON.stringify(result) + '\n');
setTimeout(() => process.exit(0), 100).unref();
