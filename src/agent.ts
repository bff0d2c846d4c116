// Composition root of the agent as a library: config → kernel probe → table → reaper → server.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from '@grpc/grpc-js';
import type { Config } from './config/config.js';
import { probeFeatures, type Features } from './kernel/probe.js';
import { useSpawnShim } from './kernel/spawn.js';
import { EventLog } from './process/events/event-log.js';
import { eventEncoding } from './service/event-encoding.js';
import { ProcessManager } from './process/manager.js';
import { Cgroups, cgroup2Mount } from './process/spawn/cgroups.js';
import { nodeNamespaces, type NamespaceTarget } from './process/spawn/namespaces.js';
import { builtFile } from './built-files.js';
import { EpollReaper } from './reaper/reaper.js';
import { agentService } from './service/agent-service.js';
import { ListPages } from './service/list-pages.js';
import { createProbeServer, createServer, SERVICE_NAME, type GrpcServer } from './service/server.js';
import { listenUnix, type GrpcListener } from './transport/listeners.js';
import { listenProbe } from './transport/probe-listener.js';
import { INBOUND_BYTES, InboundBudget } from './transport/inbound-budget.js';
import { OutboundBudget } from './transport/outbound-budget.js';
import { IdentityConnections } from './transport/identity-connections.js';
import { listenTcp } from './transport/tcp-listener.js';
import { prepareSocket, socketGid } from './transport/unix-socket.js';
import { TlsFileProvider } from './transport/tls-credentials.js';
import type { Logger } from './log.js';
import { WatchHub } from './service/watch.js';
import { OutputReaders } from './service/read-output.js';
import { readBootId } from './process/lifecycle/proc-fs.js';
import { MemoryStore, type ProcessStore, type SavedProcess } from './process/process-store.js';
import { openStore } from './store/recover.js';
import { PageTokenKeyUnusable, pageTokenKey } from './store/page-token-key.js';
import { ThreadedStore, type StallWatch } from './store/threaded-store.js';
import { useFdPassing } from './kernel/fd-passing.js';
import { IDLE_POLICY, IdleMemory, processSignals, reduceProcessMemory, releaseFreedMemory, settleYoungGeneration } from './kernel/idle-memory.js';
import { forgetExitedReplies } from './service/convert.js';
import { useReclaim } from './kernel/reclaim.js';
import { refuseIfServed, requestHandover } from './handover/incoming.js';
import { HandoverListener, type HandoverHost } from './handover/outgoing.js';
import { encodeSnapshot, type Snapshot } from './handover/snapshot.js';
import { ServiceGate } from './service/gate.js';
import { statusDetails } from './service/status.js';
import { handoverInProgress } from './process/errors.js';
import { Lingering, StateDirTaken, type Ended } from './handover/lingering.js';
import { StoreInUse } from './store/sqlite-store.js';
import { openAccess } from './auth/access.js';
import { Authorizer, cachedNames, NSS_NAMES } from './auth/authorize.js';
import { certificateIdentity } from './auth/caller.js';
import { TELEMETRY_OFF, type Telemetry } from './telemetry/telemetry.js';

export interface Agent {
  readonly manager: ProcessManager;
  readonly features: Features;
  readonly addresses: readonly string[];
  readonly watchers: WatchHub;
  readonly readers: OutputReaders;
  /**
   * Resolves once this agent has handed over to a successor and stopped serving: with
   * --after-handover linger, with what it keeps while it lingers (resumeAgent takes it back).
   */
  readonly handedOver: Promise<LingeringAgent | null>;
  /**
   * Resolves if the state store is lost under the agent, with why (store_lost's reason: its state
   * dir deleted or replaced, or its thread ended): it must stop.
   */
  readonly storeLost: Promise<'state_dir_replaced' | 'store_thread_exited'>;
  /** Reads --policy again (SIGHUP): true when the file is now in force, false when the old policy stays. */
  reloadPolicy(): boolean;
  /** Stops serving. Managed processes keep running: they never depended on the agent. */
  stop(): Promise<void>;
}

/** The health probe's server and listener (--health-listen). */
type Probe = GrpcServer & { readonly listener: GrpcListener };

/** An agent lingering after a handover: it keeps its probe, which the agent serving again takes on. */
export type LingeringAgent = Lingering<Probe | undefined>;

/** Below these, a released request_id can be forgotten within a client's retry window (see startAgent). */
const RELEASED_KEYS_FLOOR = { ttlMs: 60_000, count: 1_000 };

/**
 * Starts the agent and serves. `stopping` is a stop asked for while it starts (SIGTERM): until the
 * agent has taken anything over (asked a serving agent for a handover, or opened the store) the
 * start ends there, and a takeover is abandoned unconfirmed (the serving agent serves on); both
 * throw its reason. Past that point the start completes, and the caller stops the agent in order.
 */
export function startAgent(config: Config, log: Logger, telemetry: Telemetry = TELEMETRY_OFF, stopping?: AbortSignal): Promise<Agent> {
  return start(config, log, telemetry, stopping);
}

/**
 * --after-handover linger, once the successor is gone and no agent serves the state dir
 * (successor_gone): the lingering agent starts again in its own process, as a plain start on the
 * state dir, and re-adopts every process from it. It takes nothing over: 'served' when an agent
 * answers on handover.sock or holds the store by the time it would open it (that agent's to
 * serve; the caller lingers on, following it). `stopping` as for startAgent: a stop before the
 * store is open ends the start (throwing its reason) and the agent lingers on until it exits.
 */
export async function resumeAgent(config: Config, log: Logger, telemetry: Telemetry, stopping: AbortSignal | undefined, lingering: LingeringAgent): Promise<Agent | 'served'> {
  try {
    return await start({ ...config, takeover: undefined }, log, telemetry, stopping, lingering);
  } catch (e) {
    if (!(e instanceof StateDirTaken || e instanceof StoreInUse)) throw e;
    log('resume_deferred', { why: e.message, note: 'another agent has the state dir: lingering on, following it' });
    return 'served';
  }
}

/** from: the lingering agent starting again (resumeAgent), whose probe it takes on. */
async function start(config: Config, log: Logger, telemetry: Telemetry, stopping: AbortSignal | undefined, from?: LingeringAgent): Promise<Agent> {
  const features = probeFeatures();
  useSpawnShim(builtFile('dist/lib/libpidfd-spawn.so'));
  useFdPassing(builtFile('dist/lib/libpidfd-fdpass.so'));
  useReclaim(builtFile('dist/lib/libpidfd-reclaim.so'));
  const bootId = readBootId();
  // Released request ids are kept as long as, and as many as, exited records (tombstones.ts). The
  // clients resend a Spawn whose reply was lost for ~10 s; keys kept for less, or pushed out by a
  // small cap, let such a retry start its command a second time.
  if (config.retentionTtlMs < RELEASED_KEYS_FLOOR.ttlMs || config.retentionMax < RELEASED_KEYS_FLOOR.count) {
    log('retention_warning', {
      retentionTtlMs: config.retentionTtlMs,
      retentionMax: config.retentionMax,
      note: `released request_ids are remembered only --retention-ttl and up to --retention-max: below ${RELEASED_KEYS_FLOOR.ttlMs / 1000} s or ${RELEASED_KEYS_FLOOR.count} a client's retry after a lost reply can start its command again`,
    });
  }
  // Before it touches anything: a start that was not asked to take over leaves a serving agent
  // (say the node's DaemonSet pod) alone and fails at once, naming it.
  // (Starting again after lingering, it looks right before opening the store.)
  if (config.stateDir !== undefined && config.takeover === undefined && from === undefined) refuseIfServed(config.stateDir);
  // Whatever can fail on its own comes before asking a running agent to hand over: once it has,
  // this one must be able to serve.
  const access = openAccess(config.policyFile, config.auditLog, log);
  let cgroups: Cgroups | undefined;
  let tls: TlsFileProvider | null = null;
  let namespaces: NamespaceTarget | undefined;
  // Opened before a handover is asked for, like everything that can fail on its own (a path another
  // agent answers on, say), and kept while the agent lingers after one.
  let probe: Probe | undefined;
  let gid: number;
  const helperPath = config.execHelper ?? builtFile('dist/bin/pidfd-exec');
  try {
    gid = socketGid(config.socketGroup);
    cgroups = new Cgroups(config.cgroupParent ?? withMount(cgroup2Mount()));
    if (config.defaultCgroup !== undefined) cgroups.useDefault(config.defaultCgroup);
    if (config.spawnInNamespacesOf !== undefined) namespaces = await nodeNamespaces(config.spawnInNamespacesOf, helperPath);
    tls = config.tls === undefined ? null : new TlsFileProvider(config.tls, log);
    if (config.healthListen !== undefined && from === undefined) {
      const probeServer = createProbeServer();
      try {
        probe = { ...probeServer, listener: await listenProbe(probeServer.server, config.healthListen, config.handshakeTimeoutMs, log) };
      } catch (e) {
        probeServer.server.forceShutdown();
        throw e;
      }
    }
  } catch (e) {
    tls?.close();
    namespaces?.close();
    cgroups?.close();
    access.close();
    throw e;
  }
  // What the agent holds of the node beyond the table: released on every way out.
  const node = cgroups;
  const closeNode = () => {
    tls?.close();
    namespaces?.close();
    node.close();
    access.close();
  };
  /** At a start that failed: nothing was served there but health. */
  const dropProbe = () => {
    probe?.listener.close();
    probe?.listener.drain(0);
    probe?.server.forceShutdown();
    probe = undefined;
  };
  const closeProbe = async (graceMs: number) => {
    const p = probe;
    probe = undefined;
    if (p !== undefined) await shutdown(p.server, [p.listener], graceMs);
  };
  let handover: Snapshot | null;
  let store: ProcessStore;
  let threaded: ThreadedStore | undefined;
  // A state dir whose file system stalls (frozen, hung) stalls the store's thread, not the agent:
  // past --store-timeout writes fail (STORE_WRITE_FAILED) and the API's health is NOT_SERVING
  // until the stalled write is done; then the exits held back meanwhile are recorded and told.
  let showStoreHealth = () => {};
  let apiServing = false;
  let afterStall = () => {};
  let checkStoreNow = () => {};
  const stalls: StallWatch = {
    stalled: (what, timeoutMs) => {
      log('store_stalled', { what, timeout_ms: timeoutMs, note: 'a store write did not finish in time: writes fail (STORE_WRITE_FAILED) until it does; reads, signals and deadlines go on' });
      showStoreHealth();
    },
    recovered: ({ what, ms, landed, undone }) => {
      log('store_recovered', { what, ms, landed, undone });
      showStoreHealth();
      afterStall();
    },
    // Not a second later: the loss is told as what it is (below), and the agent stops.
    ended: () => checkStoreNow(),
  };
  const askedAt = performance.now();
  try {
    stopping?.throwIfAborted();
    handover = config.stateDir === undefined || config.takeover === undefined ? null : await requestHandover(config.stateDir, config.takeover === 'required', stopping);
  } catch (e) {
    dropProbe();
    closeNode();
    // A takeover that failed on its own (a refusal, an old agent gone silent or serving again)
    // after a stop was asked for took nothing over either: it is still the stop asked for.
    if (stopping?.aborted) {
      const failed = e === stopping.reason ? {} : { takeover_failed: e instanceof Error ? e.message : String(e) };
      log('start_stopped', { ...failed, note: 'stopped before taking anything over: a serving agent serves on, and the state dir waits for the next start as it was' });
      throw stopping.reason;
    }
    throw e;
  }
  try {
    from?.checkFree();
    // Serving again, a store found busy means served (checkFree has just found it free): waited
    // for, it would hold up the event loop, the lingering reaper and probe with it, for seconds.
    const persisted = config.stateDir === undefined ? undefined : await openStateStore(config.stateDir, bootId, config, log, stalls, from === undefined ? undefined : 0);
    if (persisted instanceof ThreadedStore) threaded = persisted;
    store = persisted === undefined ? new MemoryStore() : telemetry.timedStore(persisted);
  } catch (e) {
    handover?.close();
    dropProbe();
    closeNode();
    throw e;
  }
  // The store is this agent's: lingering ends before restore re-adopts the processes it reaped.
  const lingered = from?.end();
  if (lingered !== undefined) probe = lingered.kept;
  const events = new EventLog(config.eventRing, eventEncoding, Date.now, store.sequences);
  const manager = new ProcessManager(events, {
    maxProcesses: config.maxProcesses,
    ttlMs: config.retentionTtlMs,
    maxExited: config.retentionMax,
    captureBytes: config.captureBytes,
    captureRetainedBytes: config.captureRetainedBytes,
    captureTotalBytes: config.captureTotalBytes,
    captureDir: config.stateDir === undefined ? undefined : join(config.stateDir, 'capture'),
    captureLog: log,
  }, features, {
    helperPath,
    cgroups,
    agentEnv: config.agentEnv,
    namespaces,
  }, store);
  const reaper = new EpollReaper(
    (exits) => manager.onExits(exits),
    (e) => log('reaper_error', { error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
  );
  manager.attachReaper(reaper);
  manager.attachTelemetry(telemetry.process);
  try {
    const started = performance.now();
    const counts = restore(manager, store, bootId, handover, lingered?.exits);
    // In the same turn as the end of the lingering: no exit among them goes unreaped meanwhile.
    for (const child of lingered?.children.splice(0) ?? []) manager.reapReleased(child.ref, child.spec, child.ownedCgroup);
    log(handover ? 'taken_over' : 'restored', { ...counts, ms: Math.round(performance.now() - started), sequence: events.lastSequence });
    if (handover) telemetry.handedOver((performance.now() - askedAt) / 1000);
  } catch (e) {
    handover?.close();
    for (const child of lingered?.children ?? []) child.ref.close();
    reaper.close();
    store.close();
    dropProbe();
    closeNode();
    throw e;
  }
  // After any burst that grew the heap, once quiet: the memory it took is given back.
  const idleMemory = new IdleMemory(processSignals(() => events.lastSequence), () => {
    forgetExitedReplies();
    const done = reduceProcessMemory();
    log('memory_reduced', { ...done });
    return done.complete;
  }, IDLE_POLICY, settleYoungGeneration, () => log('memory_released', { ...releaseFreedMemory(() => store.releaseMemory()) }));
  // A state dir deleted or replaced under the agent (a hostPath cleaned, an operator's rm): its
  // writes would be acknowledged into a file no later agent reads (exits could not even be
  // reported: they wait to be recorded), and another agent could start on the path. From the
  // next second on nothing more is recorded (STORE_WRITE_FAILED), health says NOT_SERVING, and
  // the agent stops (main), so that its DaemonSet starts a fresh one; what runs keeps running.
  // So too when the store's thread (--store-timeout) ends on its own: an error in it, out of
  // memory. Nothing records any more, and a new thread could not be trusted with the store: the
  // write it died in may have landed, and only that thread could have written it back (undoLast).
  let loseStore: (reason: 'state_dir_replaced' | 'store_thread_exited') => void = () => {};
  const storeLost = new Promise<'state_dir_replaced' | 'store_thread_exited'>((resolve) => (loseStore = resolve));
  let lost = false;
  const checkStore = () => {
    if (lost || store.inPlace()) return;
    lost = true;
    for (const service of ['', SERVICE_NAME]) {
      health.setStatus(service, 'NOT_SERVING');
      probe?.health.setStatus(service, 'NOT_SERVING');
    }
    const exit = threaded?.exit;
    const why =
      exit === undefined
        ? 'the state store is no longer at its path (its state dir was deleted or replaced): nothing more can be recorded'
        : "the state store's thread ended (--store-timeout): nothing more can be recorded";
    const cause = exit === undefined ? { reason: 'state_dir_replaced' as const } : { reason: 'store_thread_exited' as const, exit_code: exit.code, ...(exit.error === undefined ? {} : { error: exit.error }) };
    log('store_lost', { stateDir: config.stateDir ?? null, ...cause, note: why });
    loseStore(cause.reason);
  };
  checkStoreNow = () => {
    try {
      checkStore();
    } catch (e) {
      log('housekeeping_failed', { task: 'store', error: String(e) });
    }
  };
  const startExpiry = () => {
    // Housekeeping that fails (out of fds, say) is logged and tried again next second; thrown
    // from a timer it would end the agent.
    const timer = setInterval(() => {
      for (const [task, run] of [['store', checkStore], ['expire', () => manager.expire()], ['idle_memory', () => idleMemory.tick()]] as const) {
        try {
          run();
        } catch (e) {
          log('housekeeping_failed', { task, error: String(e) });
        }
      }
    }, 1000);
    timer.unref();
    return timer;
  };
  let expiry = startExpiry();

  const authorizer = new Authorizer({
    policy: access.policy,
    names: NSS_NAMES,
    ruleNames: cachedNames(NSS_NAMES),
    agentUid: process.getuid?.() ?? 0,
    transports: { tcpTls: config.tls !== undefined },
    agentEnv: config.agentEnv,
    lookup: (handle) => manager.find(handle),
    namespaces: (spawn) => manager.namespacesOf(spawn),
    running: (owner) => manager.runningOwnedBy(owner),
    released: (owner) => manager.releasedRunningOwnedBy(owner),
    replays: (owner, requestId) => manager.hasRequest(owner, requestId),
    // Audit lines of a traced call name its trace, so the two join.
    audit: (entry) => access.audit.write({ ...entry, ...telemetry.traceIds() }),
    // A PATH search is the executable resolution of a spawn's trace; the rest of a decision takes
    // microseconds, less than its span would cost.
    searching: (fn) => manager.traceStage('executable', fn),
    // Its outcome is audited after the call has waited, when its span is no longer the active one.
    auditOfCall: () => {
      const ids = telemetry.traceIds();
      return ids && ((entry) => access.audit.write({ ...entry, ...ids }));
    },
  });
  const watchers = new WatchHub(events, config.maxWatchers, config.watchBacklog);
  const readers = new OutputReaders(config.maxWatchers);
  const gate = new ServiceGate();
  const pages = new ListPages(config.stateDir === undefined ? undefined : sharedPageKey(config.stateDir, log));
  const { server, health } = createServer(agentService(manager, watchers, log, authorizer, readers, gate, pages), telemetry.instrumentService);
  // Only the API's own status: the server's ('', which the DaemonSet's liveness probe asks) stays
  // SERVING, since the agent still answers, and a restart could not help (its process cannot
  // even end before the stalled write does) but would lose the exits held back (status_lost).
  showStoreHealth = () => {
    if (lost) return;
    const status = store.stalled() ? 'NOT_SERVING' : 'SERVING';
    health.setStatus(SERVICE_NAME, status);
    // The probe socket says the same of the API once it serves (its '' stays SERVING, as above).
    if (apiServing) probe?.health.setStatus(SERVICE_NAME, status);
  };
  showStoreHealth();
  afterStall = () => {
    if (stopped) return;
    try {
      manager.expire();
    } catch (e) {
      log('housekeeping_failed', { task: 'expire', error: String(e) });
    }
  };
  const eventsBefore = events.lastSequence;
  telemetry.observe({
    running: () => manager.stats().running,
    retained: () => manager.stats().processes - manager.stats().running,
    records: () => manager.records(),
    watchers: () => watchers.stats().length,
    events: () => events.lastSequence - eventsBefore,
  });
  let handedOver!: (lingering: LingeringAgent | null) => void;
  const done = new Promise<LingeringAgent | null>((resolve) => (handedOver = resolve));
  let lingering: LingeringAgent | null = null;
  let listener: HandoverListener | null = null;
  let stopped = false;
  let handedOff = false;
  const stop = async (graceMs: number, keepProbe = false) => {
    if (stopped) return;
    stopped = true;
    if (config.readyFile !== undefined) rmSync(config.readyFile, { force: true });
    clearInterval(expiry);
    listener?.close();
    apiServing = false;
    probe?.health.setStatus(SERVICE_NAME, 'NOT_SERVING');
    await Promise.all([shutdown(server, listeners, graceMs), keepProbe ? undefined : closeProbe(graceMs)]);
    inbound.close();
    outbound.close();
    await manager.settled();
    reaper.close();
    store.close();
    // A thread stuck in a write ends once the write is done (and written back, if it landed
    // after its caller was told it failed); the process could not end before that anyway.
    await threaded?.ended();
    closeNode();
  };
  const host: HandoverHost = {
    refusal: () => (features.pidfdInfoExit ? undefined : 'this kernel has no PIDFD_INFO_EXIT (Linux 6.15+): the successor could not read the exits of the processes handed over'),
    prepare: async () => {
      gate.close(handoverInProgress());
      clearInterval(expiry);
      await manager.quiesce();
    },
    encode: () => encodeSnapshot(manager, bootId),
    resume: () => {
      manager.resume();
      expiry = startExpiry();
      gate.open();
    },
    commit: async (successor) => {
      handedOff = true;
      const linger = config.afterHandover === 'linger';
      try {
        const why = handoverInProgress();
        gate.endCalls();
        watchers.endAll(why);
        readers.endAll(why);
        // The calls just ended still have their status to send: a short grace, not a force.
        await stop(COMMIT_GRACE_MS, linger);
        manager.closeDetachedStdio();
      } finally {
        // Lingering, the agent is still the processes' way back should no agent serve them any
        // more: then it serves them again (resumeAgent), with its probe, and this table goes.
        if (linger) {
          const letGo = () => {
            manager.closeReferences();
            probe = undefined;
          };
          const children = [...manager.children()].map(({ ref, record }) => ({ ref, spec: record.spec, ownedCgroup: record.ownedCgroup }));
          lingering = new Lingering(config.stateDir!, children, successor, log, probe, letGo);
          log('lingering', { children: lingering.watched, successor: successor?.pid ?? null, note: 'serving nothing; reaping the processes it started until SIGTERM; should no agent serve the state dir any more, it serves it again' });
        } else successor?.close();
      }
    },
  };
  const addresses: string[] = [];
  const listeners: GrpcListener[] = [];
  const inbound = new InboundBudget(log, { ...INBOUND_BYTES, stallMs: config.handshakeTimeoutMs });
  const outbound = new OutboundBudget(log, statusDetails);
  const bounds = { maxConnections: config.maxConnections, handshakeTimeoutMs: config.handshakeTimeoutMs, inbound, outbound, perIdentity: new IdentityConnections(config.maxConnectionsPerIdentity) };
  try {
    for (const address of config.listen) {
      if (address.startsWith('unix://')) {
        const path = address.slice('unix://'.length);
        await prepareSocket(path, gid);
        listeners.push(listenUnix(server, path, gid, bounds, log));
      } else {
        listeners.push(await listenTcp(server, address, log, { tls: tls ?? undefined, ...bounds, certificateOwner: certificateIdentity }));
      }
    }
    addresses.push(...listeners.map((l) => l.address));
    if (config.stateDir !== undefined) listener = new HandoverListener(config.stateDir, host, log, () => handedOver(lingering));
  } catch (e) {
    for (const l of listeners) l.close();
    inbound.close();
    outbound.close();
    server.forceShutdown();
    reaper.close();
    // Restore took the saved rings (their files go once read) and has read the pipes since: what
    // it holds goes back to the state dir for the next start, as at a stop.
    manager.saveCaptures();
    store.close();
    dropProbe();
    closeNode();
    clearInterval(expiry);
    throw e;
  }
  if (config.readyFile !== undefined) writeFileSync(config.readyFile, `${process.pid}\n`);
  apiServing = true;
  showStoreHealth();
  log('serving', { addresses, features, stateDir: config.stateDir ?? null, ...(probe === undefined ? {} : { health: probe.listener.address }) });
  return {
    manager,
    features,
    addresses,
    watchers,
    readers,
    handedOver: done,
    storeLost,
    reloadPolicy: access.reload,
    stop: async () => {
      // A stop (SIGTERM) while a handover is under way waits for its outcome: once the snapshot
      // is out, the successor may take over whenever this agent's end of the connection goes,
      // and rings saved now would be stale files in the successor's state dir. Committed, there
      // is nothing left to stop; failed, this agent serves again and stops as usual.
      const handingOver = listener?.pending;
      listener?.close();
      if (handingOver) {
        log('stop_waits_for_handover', { note: 'a handover is under way: stopping once it has completed or failed' });
        await handingOver;
      }
      await stop(STOP_GRACE_MS);
      // After a handover the agent lingered with only its probe: that goes now.
      await closeProbe(STOP_GRACE_MS);
      // No successor: what the rings hold waits in the state dir for the next agent. (After a
      // handover the state dir and the pipes are the successor's.)
      if (!handedOff) manager.saveCaptures();
    },
  };
}

/**
 * The saved table comes back before anything is served: re-adopted (through the pidfds the
 * previous agent handed over, if it did), or EXITED with its status lost. After a handover the
 * event history and sequence continue where the previous agent stopped.
 */
function restore(manager: ProcessManager, store: ProcessStore, bootId: string, handover: Snapshot | null, reaped?: Ended<unknown>['exits']): Record<string, number> {
  const counts: { readopted: number; lost: number; exited: number; reaped_while_lingering?: number; released_running?: number } = { readopted: 0, lost: 0, exited: 0 };
  const handed = handover?.pidfds() ?? new Map();
  const handedReleased = handover?.releasedPidfds() ?? new Map();
  try {
    const lost = [];
    const collected = [];
    // Exits in the order they happened, then the running ones (those found gone exit now): the
    // table's retention takes the oldest exits first, and the store lists running rows first.
    const exitedAt = (saved: SavedProcess) => saved.exit?.exitedAt ?? Infinity;
    const inOrder = [...store.load()].sort((a, b) => exitedAt(a) - exitedAt(b) || 0); // running − running: NaN, kept in place
    for (const saved of inOrder) {
      const ref = saved.state === 'running' ? handed.get(saved.handle) : undefined;
      if (ref !== undefined) handed.delete(saved.handle);
      const { record, lost: isLost, reaped: wasReaped } = manager.restore(saved, bootId, ref, reaped);
      if (record.state === 'running') counts.readopted++;
      else if (isLost) lost.push(record);
      else if (wasReaped) collected.push(record);
      else counts.exited++;
    }
    manager.restoreIntents(store.intents());
    manager.restoreTombstones(store.tombstones());
    // Released processes still running count against their owners here as they did there.
    const releasedRunning = manager.restoreReleased(store.runningReleased(), bootId, handedReleased);
    if (releasedRunning > 0) counts.released_running = releasedRunning;
    handover?.apply(manager);
    if (handover === null) manager.resumeCaptures();
    else manager.discardSavedRings();
    // Exits reaped while lingering are as new to the store as lost ones: recorded and told alike.
    manager.reportLost([...lost, ...collected]);
    counts.lost = lost.length;
    if (reaped !== undefined) counts.reaped_while_lingering = collected.length;
  } finally {
    for (const ref of [...handed.values(), ...handedReleased.values()]) ref.close();
    handover?.close();
  }
  manager.expire();
  return counts;
}

/**
 * With --store-timeout the store is on a thread of its own (threaded-store.ts); without it, on the
 * event loop, which costs less (bench/FINDINGS.md "Session 19") but stalls with the file system.
 */
async function openStateStore(stateDir: string, bootId: string, config: Config, log: Logger, watch: StallWatch, lockWaitMs?: number): Promise<ProcessStore> {
  const onError = (what: string, e: unknown) => log('store_error', { what, error: String(e) });
  // (On its thread, a wait for the lock holds up nothing else.)
  const { store, recovery } =
    config.storeTimeoutMs === undefined
      ? openStore(stateDir, bootId, onError, config.recover, lockWaitMs)
      : await ThreadedStore.open({ stateDir, bootId, recover: config.recover, timeoutMs: config.storeTimeoutMs, onError, watch });
  if (recovery.kind === 'healthy') log('store_recovery', { result: 'healthy', note: 'the store opened and passed its check: nothing moved' });
  if (recovery.kind === 'moved-aside') {
    log('store_recovery', {
      result: 'started_empty',
      cause: recovery.cause,
      moved_aside: recovery.files,
      readopted: 0,
      note: 'the processes the damaged store listed are not re-adopted: they keep running, unmanaged',
    });
  }
  return store;
}

const withMount = (mount: string | undefined) => (mount === undefined ? undefined : `${mount}/pidfd-agent`);

const STOP_GRACE_MS = 2000;
const COMMIT_GRACE_MS = 250;

/** Stops accepting, ends every connection (what is still open after graceMs is destroyed). */
function shutdown(server: Server, listeners: readonly GrpcListener[], graceMs: number): Promise<void> {
  for (const l of listeners) l.close();
  return new Promise((resolve) => {
    const force = setTimeout(() => server.forceShutdown(), graceMs + 1000);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
    // Only after tryShutdown: it waits for the sessions it finds still open, a drained one it
    // would count as closed at once (while its last statuses are still being written).
    for (const l of listeners) l.drain(graceMs);
  });
}

/** The state dir's page-token key, or none (tokens then name this run alone, as with --ephemeral). */
function sharedPageKey(stateDir: string, log: Logger): Buffer | undefined {
  try {
    return pageTokenKey(stateDir);
  } catch (e) {
    if (!(e instanceof PageTokenKeyUnusable)) throw e;
    log('page_token_key_unusable', { why: e.message, note: 'List page tokens of an earlier agent will be INVALID_PAGE_TOKEN, not PAGE_TOKEN_EXPIRED, until the file is fixed' });
    return undefined;
  }
}
