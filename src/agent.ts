// Composition root of the agent as a library: config → kernel probe → table → reaper → server.
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import type { Server } from '@grpc/grpc-js';
import type { Config } from './config/config.js';
import { probeFeatures, type Features } from './kernel/probe.js';
import { useSpawnShim } from './kernel/spawn.js';
import { EventLog } from './process/event-log.js';
import { ProcessManager } from './process/manager.js';
import { Cgroups, cgroup2Mount } from './process/cgroups.js';
import { builtFile } from './service/server.js';
import { EpollReaper } from './reaper/reaper.js';
import { agentService } from './service/agent-service.js';
import { bind, createServer } from './service/server.js';
import type { Logger } from './service/status.js';
import { WatchHub } from './service/watch.js';
import { OutputReaders } from './service/read-output.js';
import { readBootId } from './process/proc-fs.js';
import { MemoryStore, type ProcessStore } from './store/store.js';
import { SqliteStore } from './store/sqlite-store.js';

export interface Agent {
  readonly manager: ProcessManager;
  readonly features: Features;
  readonly addresses: readonly string[];
  readonly watchers: WatchHub;
  readonly readers: OutputReaders;
  /** Stops serving. Managed processes keep running: they never depended on the agent. */
  stop(): Promise<void>;
}

export async function startAgent(config: Config, log: Logger): Promise<Agent> {
  const features = probeFeatures();
  useSpawnShim(builtFile('dist/lib/libpidfd-spawn.so'));
  const bootId = readBootId();
  const store: ProcessStore =
    config.stateDir === undefined ? new MemoryStore() : new SqliteStore(config.stateDir, bootId, (what, e) => log('store_error', { what, error: String(e) }));
  const events = new EventLog(config.eventRing, Date.now, store.sequences);
  const manager = new ProcessManager(events, {
    maxProcesses: config.maxProcesses,
    ttlMs: config.retentionTtlMs,
    maxExited: config.retentionMax,
    captureBytes: config.captureBytes,
    captureRetainedBytes: config.captureRetainedBytes,
  }, features, {
    helperPath: config.execHelper ?? builtFile('dist/bin/pidfd-exec'),
    cgroups: new Cgroups(config.cgroupParent ?? withMount(cgroup2Mount())),
    agentEnv: config.agentEnv,
  }, store);
  const reaper = new EpollReaper(
    (exits) => manager.onExits(exits),
    (e) => log('reaper_error', { error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
  );
  manager.attachReaper(reaper);
  try {
    const started = performance.now();
    const counts = restore(manager, store, bootId);
    log('restored', { ...counts, ms: Math.round(performance.now() - started) });
  } catch (e) {
    reaper.close();
    store.close();
    throw e;
  }
  const expiry = setInterval(() => manager.expire(), 1000);
  expiry.unref();

  const watchers = new WatchHub(events, config.maxWatchers, config.watchBacklog);
  const readers = new OutputReaders(config.maxWatchers);
  const { server } = createServer(agentService(manager, watchers, log, readers));
  const addresses: string[] = [];
  try {
    for (const address of config.listen) {
      if (address.startsWith('unix://')) await prepareSocket(address.slice('unix://'.length));
      const port = await bind(server, address);
      if (address.startsWith('unix://')) chmodSync(address.slice('unix://'.length), 0o660);
      addresses.push(address.startsWith('unix://') ? address : address.replace(/:0$/, `:${port}`));
    }
  } catch (e) {
    server.forceShutdown();
    reaper.close();
    store.close();
    clearInterval(expiry);
    throw e;
  }
  log('serving', { addresses, features, stateDir: config.stateDir ?? null });
  return {
    manager,
    features,
    addresses,
    watchers,
    readers,
    stop: async () => {
      clearInterval(expiry);
      await shutdown(server);
      reaper.close();
      store.close();
    },
  };
}

/** The saved table comes back before anything is served: re-adopted, or EXITED with its status lost. */
function restore(manager: ProcessManager, store: ProcessStore, bootId: string): Record<string, number> {
  const counts = { readopted: 0, lost: 0, exited: 0 };
  store.batch(() => {
    for (const saved of store.load()) {
      const record = manager.restore(saved, bootId);
      if (record.state === 'running') counts.readopted++;
      else if (saved.state === 'running') counts.lost++;
      else counts.exited++;
    }
  });
  manager.expire();
  return counts;
}

const withMount = (mount: string | undefined) => (mount === undefined ? undefined : `${mount}/pidfd-agent`);

function shutdown(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.forceShutdown(), 2000);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

/** Creates the socket's directory; removes a stale socket, refuses one that another agent serves. */
async function prepareSocket(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${path}: another process is serving on this socket`);
  unlinkSync(path);
}
