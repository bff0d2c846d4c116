// The agent's client side of the bench: a long-lived process (forked by run.ts, IPC channel) that
// drives a running pidfd-agent with the shipped TypeScript client. It keeps one gRPC channel and
// one Watch stream open for its whole life, like a real controller would.
import { AgentClient, EventType, State, type Event } from '../clients/ts/src/index.js';
import { nowNs, type RawRun } from './stats.js';
import { BENCH_CLIENT } from './client-options.js';

export type DriverCommand =
  | { readonly op: 'init'; readonly address: string }
  /** Spawn → exit cycles of /bin/true, `conc` in flight; exit seen by Wait or on the Watch stream. */
  | { readonly op: 'tput'; readonly conc: number; readonly n: number; readonly via: 'wait' | 'watch' }
  /** Batches of `conc` sleepers: settle, Signal TERM to all, latency = Signal sent → EXITED on Watch. */
  | { readonly op: 'sig'; readonly conc: number; readonly n: number; readonly settleMs: number }
  /** Bare Get calls on one sleeper, `conc` in flight: what any RPC costs the agent. */
  | { readonly op: 'get'; readonly conc: number; readonly n: number }
  /** A Get round trip after the same idle as `sig` (the floor of any RPC-driven signal). */
  | { readonly op: 'rtt'; readonly n: number; readonly settleMs: number }
  /** Starts `count` sleepers (`conc` Spawn calls in flight) and keeps their handles. */
  | { readonly op: 'hold'; readonly count: number; readonly conc: number }
  /** Signal KILL + Wait for `count` held sleepers (all when omitted). */
  | { readonly op: 'unhold'; readonly count?: number; readonly conc: number }
  /** Releases every exited record the agent keeps (`conc` Release calls in flight): nothing managed. */
  | { readonly op: 'releaseExited'; readonly conc: number }
  /** Closes the channel (before the agent is stopped); forgets held handles. */
  | { readonly op: 'detach' }
  | { readonly op: 'close' };

export interface DriverRun extends RawRun {
  /** Client process CPU seconds (user + system) spent in this run. */
  readonly client_cpu_s: number;
  /** For sig: Signal sent → Signal reply. */
  readonly reply_ns?: readonly number[];
}

export type DriverReply = { readonly ok: true; readonly result?: DriverRun; readonly held?: number } | { readonly ok: false; readonly error: string };

const SLEEPER = ['/bin/sleep', '100000'];
const TRUE = ['/bin/true'];

let client: AgentClient | undefined;
let watchAbort: AbortController | undefined;
const held: string[] = [];

/** handle → who waits for its EXITED event; exits that beat their registration park in `early`. */
const exitWaiters = new Map<string, (t: number, e: Event) => void>();
const early = new Map<string, { t: number; e: Event }>();

function exitEvent(handle: string): Promise<{ t: number; e: Event }> {
  const seen = early.get(handle);
  if (seen) {
    early.delete(handle);
    return Promise.resolve(seen);
  }
  return new Promise((resolve) => exitWaiters.set(handle, (t, e) => resolve({ t, e })));
}

async function follow(c: AgentClient, after: number, signal: AbortSignal): Promise<void> {
  // Ends quietly on abort; any other end throws.
  for await (const e of c.watch({ afterSequence: after }, { signal })) {
    if (e.type !== EventType.EVENT_TYPE_EXITED) continue;
    const t = nowNs();
    const handle = e.process?.handle ?? '';
    const w = exitWaiters.get(handle);
    if (w) {
      exitWaiters.delete(handle);
      w(t, e);
    } else {
      early.set(handle, { t, e });
    }
  }
}

function agent(): AgentClient {
  if (!client) throw new Error('not initialised');
  return client;
}

async function spawnHandle(argv: string[]): Promise<string> {
  const res = await agent().spawn({ argv });
  const handle = res.process?.handle;
  if (!handle) throw new Error('Spawn returned no handle');
  return handle;
}

/** Runs `body` with timing and client CPU accounting. */
async function measured(body: (lat: number[], bad: { n: number }) => Promise<void>, extra?: { reply_ns: number[] }): Promise<DriverRun> {
  early.clear(); // exits of earlier runs nobody asked for
  const lat: number[] = [];
  const bad = { n: 0 };
  const cpu0 = process.cpuUsage();
  const T0 = nowNs();
  await body(lat, bad);
  const wall_s = (nowNs() - T0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { wall_s, bad: bad.n, lat_ns: lat, client_cpu_s: (cpu.user + cpu.system) / 1e6, ...extra };
}

function tput(conc: number, n: number, via: 'wait' | 'watch'): Promise<DriverRun> {
  return measured(async (lat, bad) => {
    let started = 0;
    const worker = async (): Promise<void> => {
      while (started < n) {
        started++;
        const t0 = nowNs();
        const handle = await spawnHandle(TRUE);
        let code: number | undefined;
        if (via === 'wait') {
          const res = await agent().wait({ handle });
          lat.push(nowNs() - t0);
          code = res.process?.exit?.code;
        } else {
          const { t, e } = await exitEvent(handle);
          lat.push(t - t0);
          code = e.process?.exit?.code;
        }
        if (code !== 0) bad.n++;
      }
    };
    await Promise.all(Array.from({ length: conc }, worker));
  });
}

function sig(conc: number, n: number, settleMs: number): Promise<DriverRun> {
  const reply_ns: number[] = [];
  return measured(async (lat, bad) => {
    while (lat.length < n) {
      const k = Math.min(conc, n - lat.length);
      const handles = await Promise.all(Array.from({ length: k }, () => spawnHandle(SLEEPER)));
      await new Promise((r) => setTimeout(r, settleMs));
      await Promise.all(
        handles.map(async (handle) => {
          const exited = exitEvent(handle);
          const t0 = nowNs();
          await agent().signal({ handle, signal: 'TERM' });
          reply_ns.push(nowNs() - t0);
          const { t, e } = await exited;
          lat.push(t - t0);
          if (e.process?.exit?.signal !== 15) bad.n++;
        }),
      );
    }
  }, { reply_ns });
}

function rtt(n: number, settleMs: number): Promise<DriverRun> {
  return measured(async (lat) => {
    const handle = await spawnHandle(SLEEPER);
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setTimeout(r, settleMs));
      const t0 = nowNs();
      await agent().get({ handle });
      lat.push(nowNs() - t0);
    }
    await agent().signal({ handle, signal: 'KILL' });
    await agent().wait({ handle });
  });
}

function getsOn(handle: string, conc: number, n: number): Promise<DriverRun> {
  return measured(async (lat) => {
    let started = 0;
    const worker = async (): Promise<void> => {
      while (started < n) {
        started++;
        const t0 = nowNs();
        await agent().get({ handle });
        lat.push(nowNs() - t0);
      }
    };
    await Promise.all(Array.from({ length: conc }, worker));
  });
}

function hold(count: number, conc: number): Promise<DriverRun> {
  return measured(async () => {
    let started = 0;
    const worker = async (): Promise<void> => {
      while (started < count) {
        started++;
        held.push(await spawnHandle(SLEEPER));
      }
    };
    await Promise.all(Array.from({ length: conc }, worker));
  });
}

function unhold(count: number, conc: number): Promise<DriverRun> {
  const victims = held.splice(Math.max(0, held.length - count));
  return measured(async (_lat, bad) => {
    const worker = async (): Promise<void> => {
      for (let handle = victims.pop(); handle !== undefined; handle = victims.pop()) {
        await agent().signal({ handle, signal: 'KILL' });
        const res = await agent().wait({ handle });
        if (res.process?.exit?.signal !== 9) bad.n++;
      }
    };
    await Promise.all(Array.from({ length: conc }, worker));
  });
}

async function releaseExited(conc: number): Promise<void> {
  const { processes } = await agent().list({ state: State.STATE_EXITED });
  const handles = processes.map((p) => p.handle);
  const worker = async (): Promise<void> => {
    for (let handle = handles.pop(); handle !== undefined; handle = handles.pop()) await agent().release({ handle });
  };
  await Promise.all(Array.from({ length: conc }, worker));
}

function detach(): void {
  const c = client;
  client = undefined;
  watchAbort?.abort();
  watchAbort = undefined;
  c?.close();
  held.length = 0;
  exitWaiters.clear();
  early.clear();
}

async function handle(cmd: DriverCommand): Promise<DriverReply> {
  switch (cmd.op) {
    case 'init': {
      detach();
      const c = new AgentClient(cmd.address, undefined, undefined, BENCH_CLIENT);
      const { sequence } = await c.list({});
      client = c;
      watchAbort = new AbortController();
      follow(c, sequence, watchAbort.signal).catch((e: unknown) => {
        if (client !== c) return; // the agent was stopped after detach
        console.error('agent-driver: Watch ended:', e);
        process.exit(1);
      });
      return { ok: true };
    }
    case 'detach':
      detach();
      return { ok: true, held: held.length };
    case 'tput':
      return { ok: true, result: await tput(cmd.conc, cmd.n, cmd.via) };
    case 'sig':
      return { ok: true, result: await sig(cmd.conc, cmd.n, cmd.settleMs) };
    case 'get': {
      const handle = await spawnHandle(SLEEPER);
      try {
        return { ok: true, result: await getsOn(handle, cmd.conc, cmd.n) };
      } finally {
        await agent().signal({ handle, signal: 'KILL' });
        await agent().wait({ handle });
      }
    }
    case 'rtt':
      return { ok: true, result: await rtt(cmd.n, cmd.settleMs) };
    case 'hold':
      return { ok: true, result: await hold(cmd.count, cmd.conc), held: held.length };
    case 'unhold':
      return { ok: true, result: await unhold(cmd.count ?? held.length, cmd.conc), held: held.length };
    case 'releaseExited':
      await releaseExited(cmd.conc);
      return { ok: true };
    case 'close':
      detach();
      setImmediate(() => process.exit(0));
      return { ok: true };
  }
}

process.on('disconnect', () => process.exit(0)); // the bench driver is gone

// Commands arrive one at a time; each gets exactly one reply.
process.on('message', (cmd: DriverCommand) => {
  handle(cmd).then(
    (reply) => process.send?.(reply),
    (e: unknown) => process.send?.({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies DriverReply),
  );
});
