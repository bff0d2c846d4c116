import { closeFd } from '../kernel/fd.js';
import type { PidRef } from '../kernel/pid-ref.js';
import { discardChild } from '../kernel/spawn.js';
import { Signal } from '../kernel/signals.js';
import type { Features } from '../kernel/probe.js';
import type { Reaper, ReapedExit } from './reaping.js';
import { AgentError, fromKernel, invalidArgument, requestReleased, unknownHandle } from './errors.js';
import { NamespaceTarget, type Joined } from './spawn/namespaces.js';
import { KernelError } from '../kernel/errors.js';
import type { EventLog, EvictionMarks, ProcessEvent } from './events/event-log.js';
import type { Logger } from '../log.js';
import type { StreamName } from './stdio/captured-output.js';
import type { ProcessStdio, StdioState } from './stdio/process-pipes.js';
import { newHandleId, type HandleId } from './lifecycle/handle.js';
import { type AdoptOptions, type SignalTarget, type SpawnOptions } from './options.js';
import { elapsedSince, instantNow, stampNow } from './lifecycle/clock.js';
import { deadlineAt, ProcessRecord, type DeadlineAt, type ExitInfo } from './lifecycle/record.js';
import { ProcessTable, requestKey, type RetentionPolicy } from './lifecycle/table.js';
import { NO_TOMBSTONES, sameAdoption, spawnFingerprint, Tombstones, type Tombstone, type TombstonePlan } from './lifecycle/tombstones.js';
import { sendSignal, threadIds } from './lifecycle/signalling.js';
import { killAndReclaim } from './lifecycle/reclaim.js';
import { usageOf, type Usage } from './lifecycle/usage.js';
import { killTree, liveTree, populated, signalTree, treeOf, untilEmpty } from './lifecycle/tree.js';
import { launch, type Launched, type SpawnEnvironment } from './spawn/launch.js';
export type { SpawnEnvironment } from './spawn/launch.js';
import { openForAdoption } from './lifecycle/adoption.js';
import { Waiters } from './lifecycle/waiters.js';
import { StdioTable } from './stdio/pipe-table.js';
import { CaptureFiles } from './stdio/capture-files.js';
import { MemoryStore, StoreWriteFailed, type CaptureMark, type ProcessStore, type ReleasedProcess, type SavedProcess, type SavedReleased, type SpawnIntent, type StoreWrites } from './process-store.js';
import { Terminals, type WindowSize } from './stdio/terminals.js';
import { reopen, verifyHanded, type Reopened } from './lifecycle/readopt.js';
import { ownerIdentity } from './lifecycle/owner.js';
import { boundedArgv } from './lifecycle/proc-fs.js';
import { NO_TELEMETRY, type ProcessTelemetry, type SpawnStage } from './telemetry-port.js';

export interface ManagerLimits extends RetentionPolicy {
  /** Running processes (spawned + adopted) at most; more is RESOURCE_EXHAUSTED. */
  readonly maxProcesses: number;
  /** Ring size per captured stream when the request does not say (--capture-bytes). */
  readonly captureBytes?: number;
  /** Captured output kept for exited processes in all (--capture-retained). */
  readonly captureRetainedBytes?: number;
  /** The rings of running and retained processes together (--capture-total). */
  readonly captureTotalBytes?: number;
  /** Where a later agent finds what it needs to go on reading captured output (STATE_DIR/capture). */
  readonly captureDir?: string;
  /** Where a capture dir that refuses files is reported (the files are optional). */
  readonly captureLog?: Logger;
}

/** What Stop reaches: the process, its process group, or the tree in its own cgroup. */
export type StopScope = 'process' | 'process-group' | 'tree';

export interface StopOptions {
  readonly signal: number;
  readonly graceMs: number;
  readonly scope: StopScope;
  /** SIGKILL is followed by process_mrelease. */
  readonly reclaim?: boolean;
}

export interface StopResult {
  readonly record: ProcessRecord;
  readonly escalated: boolean;
  /** scope 'tree': when cgroup.events said populated 0 (ms since the epoch). */
  readonly treeGoneAt?: number;
  /** reclaim, when SIGKILL was sent: ms from the SIGKILL to the memory freed. */
  readonly reclaimMs?: number;
}

export interface SpawnResult {
  readonly record: ProcessRecord;
  readonly replayed: boolean;
  /** argv[0] without a slash found by the exec helper's PATH search as the target user: the file it exec'd. */
  readonly found?: string;
}

/**
 * The domain: starts and adopts processes, holds them by pidfd in the table, turns reaped exits
 * into records and events. Every kernel error leaves here as an AgentError.
 */
export class ProcessManager {
  private readonly table: ProcessTable;
  /** The request_ids of records released: a retry of one starts nothing. */
  private readonly tombstones: Tombstones;
  /** The agent's ends of spawned processes' pipes (captured output, stdin). */
  private readonly stdio: StdioTable;
  private readonly waiters = new Waiters();
  /** The pty masters of processes with a terminal, for their window size. */
  private readonly terminals = new Terminals();
  /** Every process we still watch, including released children that must still be reaped. */
  private readonly byRef = new Map<PidRef, ProcessRecord>();
  private readonly byInode = new Map<bigint, ProcessRecord>();
  /** Released processes still watched because they still run (and count), by pidfs inode. */
  private readonly releasedByInode = new Map<bigint, ProcessRecord>();
  /** Released processes found gone whose store rows (releasedRunning) are still to be deleted. */
  private readonly releasedGone = new Set<HandleId>();
  private readonly agentPid = process.pid;
  /** Spawns waiting for their child's exec, by request_id, and how many there are. */
  private readonly spawning = new Map<string, Promise<SpawnResult>>();
  private pending = 0;
  /** Records held whose Spawn has not returned yet. */
  private readonly heldInSpawn = new Set<ProcessRecord>();
  /** Aborts the Stops that deadlines started, when a handover quiesces the agent. */
  private deadlineStops = new AbortController();
  /** Created cgroups still populated by descendants of an exited process. */
  private readonly cgroupsToRemove = new Set<string>();
  /** Kills with reclaim_memory still freeing memory: their exits are recorded after, with the time. */
  private readonly reclaiming = new Map<ProcessRecord, Promise<unknown>>();
  private reaper!: Reaper;
  /**
   * Exits reaped but not yet in the store, oldest first: nobody is told of them until they are
   * (a crash meanwhile makes them status_lost, never an exit told and then lost). `shown`: a
   * restored record found gone, EXITED in the table already (its RUNNING row is checked again at
   * every start, with the same answer); only its event waits.
   */
  private readonly unrecorded: Unrecorded[] = [];
  /**
   * Spawns started in this turn of the event loop, not yet in the store nor in the table: they
   * are committed in one transaction, with the exits reaped meanwhile, once the turn's I/O is done.
   */
  private readonly starting: QueuedStart[] = [];
  /** commitStarts is due at the end of this turn. */
  private commitDue = false;
  /** Spawns an earlier agent recorded as intended but not as started, by request key. */
  private readonly unknownOutcomes = new Map<string, SpawnIntent>();
  private telemetry: ProcessTelemetry = NO_TELEMETRY;
  /** release_on_exit records whose exit a reply carries: released together once those replies are built. */
  private readonly deliveredExits = new Set<ProcessRecord>();

  constructor(
    private readonly events: EventLog,
    private readonly limits: ManagerLimits,
    private readonly features: Features,
    private readonly node: SpawnEnvironment,
    /** The persisted table (--state-dir); every transition is written through it. */
    private readonly store: ProcessStore = new MemoryStore(),
  ) {
    this.table = new ProcessTable(limits);
    this.tombstones = new Tombstones(limits);
    this.stdio = new StdioTable(events, limits.captureBytes, limits.captureRetainedBytes, limits.captureTotalBytes, limits.captureDir === undefined ? null : new CaptureFiles(limits.captureDir, limits.captureLog), (marks) => this.writeMarks(marks));
  }

  /** The reaper is built by the composition root with `onExits` as its sink. */
  attachReaper(reaper: Reaper): void {
    this.reaper = reaper;
  }

  /** Traces and metrics (telemetry/), when the composition root turned them on. */
  attachTelemetry(telemetry: ProcessTelemetry): void {
    this.telemetry = telemetry;
  }

  /** Runs fn as a stage of a spawn the telemetry can see (the PATH search of its authorization, say). */
  traceStage<T>(stage: SpawnStage, fn: () => T): T {
    return this.telemetry.stage(stage, fn);
  }

  /** Starts a process; concurrent Spawns overlap while each waits for its child's exec. */
  async spawn(options: SpawnOptions): Promise<SpawnResult> {
    const requested = performance.now();
    const earlier = this.replay(options.owner, options.requestId, options.argv);
    if (earlier) return { record: earlier, replayed: true };
    // In flight by owner and key, as the table keeps them: one caller's key never joins another's spawn.
    const id = options.requestId === undefined ? undefined : requestKey(options.owner, options.requestId);
    if (id !== undefined) {
      this.refuseUnknownOutcome(id, options.argv);
      this.refuseReleased(id, options.argv);
    }
    const inflight = id === undefined ? undefined : this.spawning.get(id);
    if (inflight) return { record: (await inflight).record, replayed: true };
    this.checkCapacity();
    // A held record is in byRef and in `pending` until its Spawn returns: heldInSpawn keeps it from
    // counting twice, against --max-processes (checkCapacity) and a policy's max_processes (whose
    // grant counts the spawn until it returns: runningOwnedBy).
    let heldRecord: ProcessRecord | undefined;
    const held = (record: ProcessRecord) => {
      heldRecord = record;
      this.heldInSpawn.add(record);
    };
    const started = this.start(options, requested, held);
    if (id !== undefined) this.spawning.set(id, started);
    this.pending++;
    try {
      return await started;
    } finally {
      this.pending--;
      if (heldRecord !== undefined) this.heldInSpawn.delete(heldRecord);
      if (id !== undefined) this.spawning.delete(id);
    }
  }

  /**
   * With a request_id, the intent is durable before the exec: a restarted agent then knows the
   * spawn may have run, and never starts it again (refuseUnknownOutcome).
   */
  private async start(requested: SpawnOptions, requestedAt: number, held: (record: ProcessRecord) => void): Promise<SpawnResult> {
    const handle = newHandleId();
    // Its commit would fail at once: nothing is started only to be killed.
    if (this.store.stalled()) throw storeWriteFailed(new StoreWriteFailed('the process', { cause: new Error('the state store is still in a write that did not finish in time (its file system stalls)') }), handle);
    const traced = this.telemetry.spawnTrace();
    const options = this.stdio.resolve(requested);
    const intent: SpawnIntent | undefined =
      options.requestId === undefined ? undefined : { owner: options.owner, requestId: options.requestId, handle, argv: options.argv, createdAt: Date.now(), createdStamp: stampNow() };
    const joined = this.namespacesOf(options);
    let reserved: number | undefined;
    let child: Launched;
    try {
      reserved = this.stdio.reserve(options);
      if (intent) this.write('the spawn intent', 0, (w) => w.intended(intent), handle);
      try {
        child = await launch(options, this.node, handle, joined.target, traced.stage);
      } catch (e) {
        if (intent) this.settleIntent(intent);
        throw e;
      }
    } catch (e) {
      if (reserved !== undefined) this.stdio.unreserve(reserved, options.owner);
      throw e;
    } finally {
      joined.release();
    }
    let record: ProcessRecord;
    try {
      record = this.hold(child.ref.take(), { argv: options.argv, labels: options.labels, adopted: false, requestId: options.requestId, owner: options.owner, ...(options.releaseOnExit && { releaseOnExit: true }) }, handle);
      held(record);
    } catch (e) {
      // The child itself is gone already (hold kills what it cannot take on); the exec worked,
      // so the error is the agent's own (out of descriptors, epoll watches...), not argv[0]'s.
      for (const fd of child.pipes) if (fd !== null) closeFd(fd);
      if (child.terminal !== undefined) closeFd(child.terminal);
      child.undo();
      this.stdio.unreserve(reserved, options.owner);
      if (intent) this.settleIntent(intent);
      throw fromKernel(e, { what: `managing the started ${options.argv[0]!}` });
    }
    this.stdio.attach(record, child.pipes, options, reserved);
    if (child.terminal !== undefined) this.terminals.add(record, child.terminal);
    record.ownCgroup(child.ownedCgroup);
    if (options.deadline) this.armDeadline(record, deadlineAt(options.deadline));
    traced.started(record, (performance.now() - requestedAt) / 1000);
    await traced.stage('store', () => this.persistSoon(record, intent));
    return { record, replayed: false, ...(child.found !== undefined && { found: child.found }) };
  }

  adopt(options: AdoptOptions): ProcessRecord {
    if (!this.features.pidfdInfoExit) {
      throw new AgentError('Unsupported', 'adopt needs PIDFD_INFO_EXIT (Linux 6.15+)', { reason: 'ENOTSUP' });
    }
    if (options.pid === this.agentPid) throw invalidArgument('pid', 'the agent cannot adopt itself');
    const earlier = options.requestId === undefined ? undefined : this.table.byRequest(options.owner, options.requestId);
    if (earlier) {
      // As for Spawn, a repeated key replays the same request, never vouches for another process.
      const inode = options.expectedPidfsInode;
      if (earlier.identity.pid !== options.pid || (inode !== undefined && inode !== earlier.identity.pidfsInode)) {
        throw invalidArgument('request_id', 'already used for a different pid or identity');
      }
      return earlier;
    }
    const released = options.requestId === undefined ? undefined : this.tombstones.find(requestKey(options.owner, options.requestId));
    if (released) {
      if (!sameAdoption(released, options.pid, options.expectedPidfsInode)) throw invalidArgument('request_id', 'already used for a different pid or identity');
      throw requestReleased(released, 'adopted');
    }
    this.checkCapacity();
    const opened = openForAdoption(options, (i) => this.byInode.get(i));
    let record: ProcessRecord;
    try {
      record = this.hold(opened.ref.take(), { argv: opened.argv, labels: options.labels, adopted: true, requestId: options.requestId, owner: options.owner });
    } catch (e) {
      throw fromKernel(e, { what: `adopt ${options.pid}`, field: 'pid' });
    }
    this.telemetry.started(record);
    this.persist(record, undefined);
    return record;
  }

  signal(handle: string, signal: number, target: SignalTarget): void {
    const record = this.get(handle);
    if (target.kind !== 'tree') sendSignal(record, signal, target, this.collect);
    else {
      const dir = liveTree(record);
      if (signal === Signal.SIGKILL) killTree(record, dir);
      else signalTree(record, dir, signal);
    }
    this.telemetry.signalled(signal);
  }

  /**
   * SIGKILL, then process_mrelease: resolves with ms from the SIGKILL to the memory freed. The
   * exit is recorded only after that, so the exit event carries the time too.
   */
  killAndReclaim(handle: string): Promise<number> {
    const record = this.get(handle);
    const reclaimed = killAndReclaim(record, this.collect);
    const noted = reclaimed.then((ms) => record.noteReclaim(ms)).catch(() => undefined).finally(() => this.reclaiming.delete(record));
    this.reclaiming.set(record, noted);
    return reclaimed;
  }

  /**
   * Sends `signal`, waits up to `graceMs` for the exit, then SIGKILL to the same target. A group
   * is reached through the leader's pidfd, so only while the leader is not reaped: members that
   * outlive it are not addressed again (by number that would be racy; see README). A tree is its
   * own cgroup: it is done when the cgroup is empty, whatever became of the process itself.
   */
  async stop(handle: string, options: StopOptions, abort: AbortSignal): Promise<StopResult> {
    if (options.scope === 'tree') return this.stopTree(handle, options, abort);
    const record = this.get(handle);
    const target: SignalTarget = { kind: options.scope };
    if (options.reclaim && options.signal === Signal.SIGKILL) return this.stopReclaiming(handle, false, abort);
    if (!this.trySignal(handle, options.signal, target)) return { record: await this.wait(handle, undefined, abort), escalated: false };
    try {
      return { record: await this.wait(handle, options.graceMs, abort), escalated: false };
    } catch (e) {
      if (!(e instanceof AgentError) || e.detail.reason !== 'TIMEOUT') throw e;
    }
    if (options.reclaim) return this.stopReclaiming(handle, true, abort);
    this.trySignal(handle, Signal.SIGKILL, target);
    return { record: await this.wait(record.handle, undefined, abort), escalated: true };
  }

  private async stopReclaiming(handle: string, escalated: boolean, abort: AbortSignal): Promise<StopResult> {
    let reclaimMs: number;
    try {
      reclaimMs = await this.killAndReclaim(handle);
    } catch (e) {
      if (e instanceof AgentError && e.kind === 'ProcessExited') return { record: await this.wait(handle, undefined, abort), escalated: false };
      throw e;
    }
    return { record: await this.wait(handle, undefined, abort), escalated, reclaimMs };
  }

  private async stopTree(handle: string, options: StopOptions, abort: AbortSignal): Promise<StopResult> {
    let record = this.get(handle);
    const dir = treeOf(record);
    let escalated = false;
    if (populated(dir)) {
      const graceful = options.signal !== Signal.SIGKILL;
      if (graceful) signalTree(record, dir, options.signal);
      else killTree(record, dir);
      if (graceful && !(await untilEmpty(dir, abort, options.graceMs))) {
        killTree(record, dir);
        escalated = true;
      }
      await untilEmpty(dir, abort);
    }
    const treeGoneAt = Date.now();
    record = await this.wait(handle, undefined, abort);
    if (this.cgroupsToRemove.has(dir) && this.node.cgroups.remove(dir)) this.cgroupsToRemove.delete(dir);
    return { record, escalated, treeGoneAt };
  }

  /** What a running process uses now (undefined once it has exited). */
  usage(record: ProcessRecord): Usage | undefined {
    return usageOf(record);
  }

  /** Sets the window size of a process spawned with a terminal. */
  resizeTerminal(handle: string, size: WindowSize): void {
    this.terminals.resize(this.get(handle), size);
  }

  /** Whether the process was spawned with a terminal (and runs). */
  hasTerminal(record: ProcessRecord): boolean {
    return this.terminals.has(record);
  }

  /** Thread IDs of a running process, leader first. */
  listThreads(handle: string): number[] {
    return threadIds(this.get(handle), this.collect);
  }

  /** False when the process had already exited (nothing was sent). */
  private trySignal(handle: string, signal: number, target: SignalTarget): boolean {
    try {
      this.signal(handle, signal, target);
      return true;
    } catch (e) {
      if (e instanceof AgentError && e.kind === 'ProcessExited') return false;
      throw e;
    }
  }

  /** An exit collected on the way (a signal refused, say) is recorded at once, not at the turn's end. */
  private readonly collect = (ref: PidRef): void => {
    this.reaper.collect(ref);
    this.recordExits();
  };

  /**
   * Stops every change that does not come from a request, for a handover: exits ready now are
   * recorded, later ones are left to the successor; deadline timers stop (the successor re-arms
   * them from the store). Resolves once no spawn is in flight (the caller stopped taking new ones).
   */
  async quiesce(spawnWaitMs = 10_000): Promise<void> {
    if (!(await this.settled(spawnWaitMs))) {
      throw new AgentError('Unavailable', `${this.pending} spawns still in flight after ${spawnWaitMs} ms`, { reason: 'SPAWNS_IN_FLIGHT' });
    }
    this.reaper.pause();
    this.reaper.flush();
    // Exits the store has not taken yet are not handed over: the successor finds them status_lost.
    this.recordExits();
    this.deadlineStops.abort();
    for (const record of this.byRef.values()) record.pauseDeadline();
    this.stdio.quiesce();
  }

  /** True once no spawn is in flight, false if some still are after timeoutMs. */
  async settled(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    return this.pending === 0;
  }

  /** Undoes quiesce (even a partial one) when the handover failed: what happened meanwhile is collected now. */
  resume(): void {
    this.stdio.resume();
    if (this.deadlineStops.signal.aborted) this.deadlineStops = new AbortController();
    for (const record of this.byRef.values()) record.resumeDeadline();
    this.reaper.resume();
    this.reaper.flush();
  }

  /** Running processes with their references, borrowed (not released ones the agent only still reaps). */
  *held(): IterableIterator<{ record: ProcessRecord; ref: PidRef }> {
    for (const [ref, record] of this.byRef) if (record.state === 'running') yield { record, ref };
  }

  /** Our own children not yet reaped (released ones too), borrowed: still ours to reap after a handover. */
  *children(): IterableIterator<{ readonly ref: PidRef; readonly record: ProcessRecord }> {
    for (const [ref, record] of this.byRef) if (record.parentage === 'child') yield { ref, record };
  }

  /**
   * Serving again in the process that lingered after a handover (after restore): a child of this
   * process that the table did not take back (released before, or by the successor; its row gone)
   * is still ours to reap, or it would stay a zombie. It is watched hidden, as a released child,
   * and stays its owner's against max_processes until its exit. Consumes ref (closed when the
   * table holds the process already).
   */
  reapReleased(ref: PidRef, spec: ProcessRecord['spec'], ownedCgroup: string | undefined): void {
    const inode = ref.inode;
    // Held already: the table took it back, or the store listed it as released (restoreReleased).
    if (this.byInode.has(inode) || this.releasedByInode.has(inode)) return ref.close();
    const record = new ProcessRecord(newHandleId(), { pid: ref.pid, pidfsInode: inode }, spec, Date.now(), ref);
    this.holdReleased(record, ref, 'child');
    // Released where the store did not keep it (by an older agent, say): kept from now on, if the
    // store takes it; if not, it counts here all the same.
    try {
      this.store.commit(`the released ${record.handle}`, 0, (w) => w.releasedRunning(releasedProcess(record)));
    } catch {
      // reported by the store
    }
  }

  /**
   * Takes back what earlier agents released while it ran (at startup, after restore): each still
   * the process saved (its pidfs inode, in this boot) is watched hidden again and counts against
   * its owner until its exit, through the pidfd a predecessor handed over (`handed`, by handle:
   * those used are taken out) or one opened as a re-adoption does; the others' rows go. Returns
   * how many it holds.
   */
  restoreReleased(saved: readonly SavedReleased[], bootId: string, handed: Map<string, PidRef>): number {
    let held = 0;
    for (const s of saved) {
      const given = handed.get(s.handle);
      handed.delete(s.handle);
      const found: Reopened = given === undefined ? reopen(s, bootId) : verifyHanded(s, given.take());
      if (!found.found || this.releasedByInode.has(s.pidfsInode)) {
        if (found.found) found.ref.close();
        this.releasedGone.add(s.handle);
        continue;
      }
      const ref = found.ref.take();
      const record = new ProcessRecord(s.handle, { pid: s.pid, pidfsInode: s.pidfsInode }, { argv: [], labels: {}, adopted: false, owner: ownerIdentity(s.owner) }, s.releasedAt, ref);
      if (found.parentage === 'foreign') record.orphaned();
      this.holdReleased(record, ref, found.parentage, s.ownedCgroup);
      held++;
    }
    return held;
  }

  /** Watches a released process that still runs, hidden: it counts until its exit. Consumes ref. */
  private holdReleased(record: ProcessRecord, ref: PidRef, parentage: 'child' | 'foreign', ownedCgroup = record.ownedCgroup): void {
    record.ownCgroup(ownedCgroup);
    record.markReleased();
    try {
      this.reaper.watch(ref, parentage);
    } catch (e) {
      ref.close();
      throw e;
    }
    this.byRef.set(ref, record);
    this.keepReleased(record);
  }

  /** A released process that still runs: its owner's against max_processes until its exit. */
  private keepReleased(record: ProcessRecord): void {
    this.table.releasedWhileRunning(record);
    this.releasedByInode.set(record.identity.pidfsInode, record);
  }

  /** For a handover: the released processes that still run and count, borrowed. */
  *releasedHeld(): IterableIterator<{ readonly ref: PidRef; readonly record: ProcessRecord }> {
    for (const record of this.releasedByInode.values()) if (record.ref !== null) yield { ref: record.ref, record };
  }

  /**
   * After a handover and a stop (the reaper closed): a lingering agent that takes the processes
   * back from the state dir starts a new table with references of its own, so this one's go.
   */
  closeReferences(): void {
    for (const ref of this.byRef.keys()) {
      ref.unwatch();
      ref.close();
    }
    this.byRef.clear();
    this.byInode.clear();
    this.releasedByInode.clear();
  }

  /** Resolves with the exited record; rejects on timeout, release or abort. */
  wait(handle: string, timeoutMs: number | undefined, abort: AbortSignal): Promise<ProcessRecord> {
    const record = this.get(handle);
    if (record.state !== 'running') return Promise.resolve(record);
    return this.waiters.wait(record, timeoutMs, abort);
  }

  /** Running processes (spawned or adopted) an identity owns, but for those whose Spawn is still in flight. */
  runningOwnedBy(owner: string): number {
    let n = this.table.runningOwnedBy(owner);
    // Only what the table counts: a held record waits for its group commit before it enters the
    // table, and subtracting it then too gave -1, room for one more spawn than max_processes.
    for (const r of this.heldInSpawn) if (r.spec.owner === owner && r.state === 'running' && this.table.get(r.handle) === r) n--;
    return n;
  }

  /** Released processes of an identity's that still run (and count in runningOwnedBy). */
  releasedRunningOwnedBy(owner: string): number {
    return this.table.releasedRunningOwnedBy(owner);
  }

  /** Whether `owner` already used this request_id (a repeat replays it, or is refused: it starts nothing). */
  hasRequest(owner: string, requestId: string): boolean {
    const key = requestKey(owner, requestId);
    return this.table.byRequest(owner, requestId) !== undefined || this.unknownOutcomes.has(key) || this.tombstones.find(key) !== undefined;
  }

  /** Every record in the table (running, exited and not yet released), in no particular order. */
  records(): IterableIterator<ProcessRecord> {
    return this.table.values();
  }

  /** The records of positions above `position` (a List page's start), in position order. */
  recordsAfter(position: number): Iterable<ProcessRecord> {
    return this.table.valuesAfter(position);
  }

  /** Above the position of every record so far (a List's first page bounds its last with it). */
  get positionsEnd(): number {
    return this.table.positionsEnd;
  }

  /** The sequence number of the last event: List answers with it, Watch resumes after it. */
  get lastSequence(): number {
    return this.events.lastSequence;
  }

  /** The pipes of a spawned process (stdin, captured output), owned by the manager. */
  stdioOf(record: ProcessRecord): ProcessStdio {
    return this.stdio.of(record);
  }

  /** What ReadOutput reads of one stream of a record. */
  output(record: ProcessRecord, stream: StreamName): ReturnType<StdioTable['output']> {
    return this.stdio.output(record, stream);
  }

  /**
   * After a handover: pipes whose processes the successor took over are ours to close, and the
   * rings go (the successor has its copies). A lingering agent holds no captured output, and one
   * that serves again holds only the rings it takes back.
   */
  closeDetachedStdio(): void {
    this.stdio.closeDetached();
    this.stdio.dropHandedOver();
  }

  /** Counts for tests and metrics. */
  stats(): { readonly processes: number; readonly running: number; readonly stdio: ReturnType<StdioTable['stats']> } {
    return { processes: this.table.size, running: this.table.runningCount, stdio: this.stdio.stats() };
  }

  /** For a handover: the state of every process's pipes. */
  handoverStdio(): ReturnType<StdioTable['handoverState']> {
    return this.stdio.handoverState();
  }

  /** For a handover: the events still held for replay. */
  heldEvents(): ReturnType<EventLog['held']> {
    return this.events.held();
  }

  /** Taking over: a process's pipes as the predecessor left them. */
  continueStdio(record: ProcessRecord, state: StdioState): void {
    this.stdio.continue(record, state);
  }

  /** Taking over: the predecessor's replayable events, its last sequence number and where it gave events up. */
  seedEvents(lastSequence: number, events: readonly ProcessEvent[], marks?: EvictionMarks): void {
    this.events.seed(lastSequence, events, marks);
  }

  /** For a handover: where the event log gave events up. */
  eventMarks(): EvictionMarks {
    return this.events.evictionMarks();
  }

  /** For a handover: the oldest cursor from which an admin's Watch replays (every event after it is held). */
  replayableFrom(): number {
    return this.events.replayableFrom();
  }

  /**
   * The namespaces a spawn's child joins: the process's of join_namespaces_of (held until
   * release), else the agent's --spawn-in-namespaces-of, else none.
   */
  namespacesOf(options: SpawnOptions): Joined {
    const handle = options.joinNamespacesOf;
    if (handle === undefined) return { target: this.node.namespaces, release: () => {} };
    const ref = this.get(handle).ref;
    const exited = () => new AgentError('ProcessExited', `join_namespaces_of: process ${handle} has exited`, { reason: 'PROCESS_EXITED', handle, field: 'join_namespaces_of' });
    if (ref === null) throw exited();
    let target: NamespaceTarget;
    try {
      target = NamespaceTarget.of(ref.dup());
    } catch (e) {
      // Its root is gone with its exit (ENOENT of a zombie, ESRCH once reaped).
      if (e instanceof KernelError && (e.code === 'ENOENT' || e.code === 'ESRCH')) throw exited();
      throw fromKernel(e, { what: `join_namespaces_of: ${handle}`, field: 'join_namespaces_of' });
    }
    return { target, release: () => target.close() };
  }

  /** The record of a handle, or undefined (never throws). */
  find(handle: string): ProcessRecord | undefined {
    return this.table.get(handle);
  }

  get(handle: string): ProcessRecord {
    const record = this.table.get(handle);
    if (!record) throw unknownHandle(handle);
    return record;
  }

  /** Durable before it is done: a release the store cannot record is refused, the handle kept. */
  release(handle: string): void {
    const record = this.get(handle);
    const tombstones = this.tombstones.planRelease([record]);
    const ref = record.ref;
    // One it spawned that still runs keeps its owner's place until its exit, also for the agents
    // after this one: the store keeps it, in the transaction of the release.
    const runsOn = ref !== null && this.byRef.has(ref) && !record.spec.adopted ? releasedProcess(record) : undefined;
    this.write(`the release of ${record.handle}`, 1, (w) => {
      writeReleases(w, [record], tombstones);
      if (runsOn !== undefined) w.releasedRunning(runsOn);
    }, record.handle);
    // What the store now holds, first: forget can still fail (a capture file it cannot remove).
    this.tombstones.apply(tombstones);
    try {
      this.forget(record);
    } finally {
      // A released process it spawned that still runs stays watched (hidden): a child of ours is
      // reaped and never left a zombie, and any (a child of an earlier agent's too) stays its
      // owner's against max_processes until its exit, even when forget threw past taking it out
      // of the table. An adopted process is let go: it was never the owner's start.
      if (ref !== null && this.byRef.has(ref)) {
        if (runsOn === undefined) this.stopManaging(record, ref);
        else this.keepReleased(record);
      }
    }
    this.recordExits();
  }

  /**
   * A Wait or Stop reply carries this exit: a release_on_exit record is then released. Deferred
   * past the microtasks, so every reply settled by the same exit is built from the EXITED record
   * first; the store commits the releases before the table forgets them, as Release does.
   */
  delivered(record: ProcessRecord): void {
    if (!record.spec.releaseOnExit || record.state !== 'exited') return;
    if (this.deliveredExits.size === 0) setImmediate(() => this.releaseDelivered());
    this.deliveredExits.add(record);
  }

  private releaseDelivered(): void {
    const records = [...this.deliveredExits].filter((r) => r.state === 'exited' && this.table.get(r.handle) === r);
    this.deliveredExits.clear();
    if (records.length === 0) return;
    const tombstones = this.tombstones.planRelease(records);
    try {
      this.store.commit(`${records.length} releases on exit`, this.events.lastSequence + records.length, (w) => writeReleases(w, records, tombstones));
    } catch {
      return; // they stay EXITED, as any exit, until Release or retention
    }
    this.tombstones.apply(tombstones);
    for (const r of records) this.forget(r);
  }

  /** Reaper sink: exits arrive in batches; each is recorded once, and reported once recorded. */
  onExits(exits: readonly ReapedExit[]): void {
    const now = Date.now();
    const stamp = stampNow();
    for (const exit of exits) {
      const record = this.byRef.get(exit.ref);
      if (!record) continue;
      const reclaiming = this.reclaiming.get(record);
      if (reclaiming) {
        void reclaiming.then(() => this.onExits([exit]));
        continue;
      }
      this.byRef.delete(exit.ref);
      this.table.releasedExited(record);
      this.dropInode(record);
      if (record.state === 'released') {
        if (this.releasedByInode.get(record.identity.pidfsInode) === record) this.releasedByInode.delete(record.identity.pidfsInode);
        this.releasedGone.add(record.handle);
      }
      this.unrecorded.push({
        record,
        exit: record.exitFor({ termination: exit.termination, statusLost: exit.termination === undefined || undefined, rusage: exit.rusage, exitedAt: now, exitedStamp: stamp }),
        shown: false,
      });
    }
    // Recorded at the end of this turn, in one transaction with the spawns that finish in it.
    // With no spawn in flight there is nothing to group with: recorded and told now, so the
    // EXITED event is written, and sent, in this turn of the loop rather than the next.
    if (this.pending > 0 || this.starting.length > 0) return this.commitSoon();
    this.expire();
    this.events.notifyNow();
  }

  /**
   * Writes the exits not yet in the store in one transaction, then reports them. When the store
   * cannot take them, they stay unreported (the records RUNNING, Wait waiting) and are tried again
   * with the next exit and every second. Released records need no write.
   */
  private recordExits(): void {
    const batch = this.recordableExits();
    // Released processes found gone: their rows go with the exits (or alone), nobody to tell.
    const gone = [...this.releasedGone];
    if (batch.length === 0 && gone.length === 0) return;
    try {
      this.store.commit(`${batch.length} exits`, this.events.lastSequence + batch.length, (w) => {
        for (const u of batch) w.exited(u.record.handle, u.exit);
        for (const handle of gone) w.releasedEnded(handle);
      });
    } catch {
      this.unrecorded.unshift(...batch);
      return;
    }
    for (const handle of gone) this.releasedGone.delete(handle);
    this.reportExits(batch);
  }

  /**
   * Takes the exits the store can be given now, oldest first: not those of released records (no
   * row), nor those of spawns whose own row is still waiting for its commit.
   */
  private recordableExits(): Unrecorded[] {
    if (this.unrecorded.length === 0) return [];
    // A restored record released meanwhile was finished at restore; only its event was waiting.
    for (const u of this.unrecorded) if (u.record.state === 'released' && !u.shown) this.finishReleased(u.record, u.exit);
    const batch: Unrecorded[] = [];
    const waiting: Unrecorded[] = [];
    for (const u of this.unrecorded.splice(0)) {
      if (u.record.state === 'released') continue;
      if (this.starting.some((s) => s.record === u.record)) waiting.push(u);
      else batch.push(u);
    }
    this.unrecorded.push(...waiting);
    return batch;
  }

  /** Exits now in the store: the records turn EXITED, and everyone waiting is told. */
  private reportExits(batch: readonly Unrecorded[]): void {
    for (const { record, exit, shown } of batch) {
      if (!shown) {
        record.markExited(exit);
        this.stdio.exited(record);
        // Kept open until the exit even after a release: closing a master hangs up its session.
        this.terminals.close(record);
        this.cleanUp(record);
        this.table.noteExited(record);
      }
      this.telemetry.exited(record);
      this.events.append('exited', record);
      if (!shown) this.waiters.settle(record);
    }
  }

  /** A released process's exit: nothing to write (its row is gone), nobody to tell. */
  private finishReleased(record: ProcessRecord, exit: ExitInfo): void {
    record.markExited(exit);
    this.telemetry.exited(record);
    this.stdio.exited(record);
    this.terminals.close(record);
    this.cleanUp(record);
    record.markReleased();
  }

  /**
   * Writes what waits (exits), then releases exited records past retention (and forgets unknown
   * spawn outcomes as old), once the store has deleted them; removes emptied cgroups. Also run
   * periodically, which retries whatever the store could not take before.
   */
  expire(now = Date.now()): void {
    this.recordExits();
    const instant = instantNow(now);
    const expired = this.table.expired(instant);
    const intents = [...this.unknownOutcomes].filter(([, i]) => elapsedSince(i.createdAt, i.createdStamp, instant) >= this.limits.ttlMs);
    // Tombstones past their TTL go too; those of the records released here are new.
    const tombstones = this.tombstones.size === 0 && expired.length === 0 ? NO_TOMBSTONES : this.tombstones.plan(expired, instant);
    if (expired.length > 0 || intents.length > 0 || tombstones.drop.length > 0) {
      let committed = false;
      try {
        this.store.commit('retention expiry', this.events.lastSequence + expired.length, (w) => {
          writeReleases(w, expired, tombstones);
          for (const [, i] of intents) w.settled(i.owner, i.requestId);
        });
        committed = true;
      } catch {
        // kept, readable as before, until the store takes the deletes
      }
      if (committed) {
        this.tombstones.apply(tombstones);
        for (const [key] of intents) this.unknownOutcomes.delete(key);
        for (const record of expired) this.forget(record);
      }
    }
    for (const dir of this.cgroupsToRemove) if (this.node.cgroups.remove(dir)) this.cgroupsToRemove.delete(dir);
    this.stdio.enforceRetention();
  }

  /**
   * The deadline: kill_signal, then SIGKILL after the grace, through Stop; the exit then records
   * reason TIMEOUT.
   */
  private armDeadline(record: ProcessRecord, d: DeadlineAt): void {
    // The stop reads deadlineStops when it fires: a resume after a handover replaces the controller.
    record.armDeadline(d, () => void this.stop(record.handle, { signal: d.killSignal, graceMs: d.graceMs, scope: 'process' }, this.deadlineStops.signal).catch(() => undefined));
  }

  /** After the exit (which stopped the deadline): a created cgroup is removed once it is empty. */
  private cleanUp(record: ProcessRecord): void {
    const dir = record.ownedCgroup;
    if (dir !== undefined && !this.node.cgroups.remove(dir)) this.cgroupsToRemove.add(dir);
  }

  /**
   * Takes ref on: watched (so its exit is collected), not yet in the table nor announced
   * (persist does that once the store has it). Consumes ref in any case: if it cannot be taken on,
   * a child of ours is killed and reaped (unreaped, so its pidfd still names it) and the
   * reference closed, so nothing runs unmanaged and nothing leaks.
   */
  private hold(ref: PidRef, spec: ProcessRecord['spec'], handle = newHandleId()): ProcessRecord {
    const parentage = ProcessRecord.parentageOf(spec);
    let record: ProcessRecord;
    try {
      record = new ProcessRecord(handle, { pid: ref.pid, pidfsInode: ref.inode }, spec, Date.now(), ref);
      this.reaper.watch(ref, parentage);
    } catch (e) {
      if (parentage === 'child') discardChild(ref);
      else ref.close();
      throw e;
    }
    this.byRef.set(ref, record);
    this.byInode.set(record.identity.pidfsInode, record);
    return record;
  }

  /**
   * Takes back a record saved by an earlier agent (at startup, before serving). A RUNNING one is
   * re-adopted only if its identity still holds (readopt.ts), through the pidfd the earlier agent
   * handed over when there was a handover; otherwise it becomes EXITED with its status lost (the
   * caller then reports it with `reportLost`), and whoever holds its pid now is never touched.
   * `reaped`: exits this process reaped itself while it lingered after a handover (by pidfs
   * inode); such a record becomes EXITED with that status (`reaped`, reported the same way).
   */
  restore(saved: SavedProcess, bootId: string, handed?: PidRef, reaped?: ReadonlyMap<bigint, Omit<ExitInfo, 'reason'>>): { record: ProcessRecord; lost: boolean; reaped: boolean } {
    // An adoption saved by an agent before adopted command lines were cut is cut now.
    const spec = { argv: saved.adopted ? boundedArgv(saved.argv) : saved.argv, labels: saved.labels, adopted: saved.adopted, requestId: saved.requestId, owner: ownerIdentity(saved.owner) };
    const found = saved.state !== 'running' ? undefined : handed === undefined ? reopen(saved, bootId) : verifyHanded(saved, handed.take());
    const ref = found?.found ? found.ref.take() : null;
    const record = new ProcessRecord(saved.handle, { pid: saved.pid, pidfsInode: saved.pidfsInode }, spec, saved.startedAt, ref);
    record.ownCgroup(saved.ownedCgroup);
    this.table.add(record);
    this.stdio.restoredMarks(saved.handle, saved.captures);
    if (found?.found && ref !== null) {
      if (found.parentage === 'foreign') record.orphaned();
      this.reaper.watch(ref, found.parentage);
      this.byRef.set(ref, record);
      this.byInode.set(saved.pidfsInode, record);
      if (saved.deadline) this.armDeadline(record, saved.deadline);
      return { record, lost: false, reaped: false };
    }
    // Gone, but reaped by this very process while it lingered: its status is known after all.
    const collected = saved.state === 'running' ? reaped?.get(saved.pidfsInode) : undefined;
    record.markExited(saved.exit ?? collected ?? { termination: undefined, statusLost: true, reason: 'exited', exitedAt: Date.now(), exitedStamp: stampNow() });
    this.table.noteExited(record);
    // A cgroup the previous agent could not remove yet (still populated then) is retried here.
    if (saved.exit !== undefined && record.ownedCgroup !== undefined) this.cleanUp(record);
    return { record, lost: saved.exit === undefined && collected === undefined, reaped: collected !== undefined };
  }

  /**
   * After restoring without a handover: captured output continues where the previous agent left
   * it (its saved rings, the pipes taken back from running processes); stale files go.
   */
  resumeCaptures(): void {
    for (const record of this.table.values()) this.stdio.readopt(record);
    this.stdio.sweepFiles((handle) => this.table.get(handle) !== undefined);
  }

  /**
   * After a handover: the rings came with the snapshot, so a ring file in the state dir is none
   * of this agent's (one an earlier agent saved at a stop that raced a handover, say). Left
   * there, an agent starting after this one crashed would resume from it, at offsets this one
   * has handed out since for other bytes.
   */
  discardSavedRings(): void {
    this.stdio.discardSavedRings();
  }

  /** A stop without successor: rings are saved for the next agent; the processes keep their pipes. */
  saveCaptures(): void {
    this.stdio.saveRings();
  }

  /** Restored processes found gone: their exits (status lost, or reaped here) are recorded, then announced. */
  reportLost(records: readonly ProcessRecord[]): void {
    for (const record of records) {
      this.cleanUp(record);
      this.unrecorded.push({ record, exit: record.exit!, shown: true });
    }
    this.recordExits();
  }

  /** Spawns an earlier agent intended and did not record: a retry of one is refused, never run. */
  restoreIntents(intents: readonly SpawnIntent[]): void {
    for (const i of intents) this.unknownOutcomes.set(requestKey(i.owner, i.requestId), i);
  }

  /** Request ids of records an earlier agent released: a retry of one is refused, never run. */
  restoreTombstones(tombstones: readonly Tombstone[]): void {
    this.tombstones.restore(tombstones);
  }

  /**
   * A start is durable before anyone hears of it, and with it the intent is settled; one that
   * cannot be made durable is undone, unannounced.
   */
  private persist(record: ProcessRecord, intent: SpawnIntent | undefined): void {
    try {
      this.store.commit(`the process ${record.handle}`, this.events.lastSequence + 1, (w) => writeStart(w, record, intent, this.stdio.startMarks(record)));
    } catch (e) {
      this.abandon(record);
      if (intent) this.settleIntent(intent);
      throw storeWriteFailed(e, record.handle);
    }
    this.announce(record);
  }

  private announce(record: ProcessRecord): void {
    this.stdio.recorded(record);
    this.table.add(record);
    this.events.append(record.spec.adopted ? 'adopted' : 'spawned', record);
  }

  /**
   * persist, grouped: the spawns that finish in one turn of the event loop, and the exits reaped
   * in it, are one transaction (a commit costs about as much as all the rows in it).
   */
  private persistSoon(record: ProcessRecord, intent: SpawnIntent | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      this.starting.push({ record, intent, resolve, reject });
      this.commitSoon();
    });
  }

  private commitSoon(): void {
    if (this.commitDue) return;
    this.commitDue = true;
    setImmediate(this.commitStarts);
  }

  /**
   * All or nothing, and before anyone is told: spawns in start order (each announced before its
   * exit), then the exits. When the transaction fails, each spawn is tried alone (a failure fails
   * that Spawn), and the exits wait as they do after any failed write.
   */
  private readonly commitStarts = (): void => {
    this.commitDue = false;
    const starts = this.starting.splice(0);
    if (starts.length === 0) return this.expire();
    const exits = this.recordableExits();
    try {
      this.store.commit(`${starts.length} processes and ${exits.length} exits`, this.events.lastSequence + starts.length + exits.length, (w) => {
        for (const s of starts) writeStart(w, s.record, s.intent, this.stdio.startMarks(s.record));
        for (const u of exits) w.exited(u.record.handle, u.exit);
      });
    } catch {
      this.unrecorded.unshift(...exits);
      for (const s of starts) {
        try {
          this.persist(s.record, s.intent);
          s.resolve();
        } catch (e) {
          s.reject(e);
        }
      }
      this.expire();
      return;
    }
    for (const s of starts) {
      this.announce(s.record);
      s.resolve();
    }
    this.reportExits(exits);
    this.expire();
  };

  /** A start the store could not record: our own child is killed (and reaped), a foreign one let go. */
  private abandon(record: ProcessRecord): void {
    // Our own child, just started and unreaped: its pidfd cannot address anyone else. One reaped
    // while its start waited for the group commit is past signalling (ESRCH).
    if (record.parentage === 'child' && record.ref !== null && this.byRef.has(record.ref)) record.ref.signal(Signal.SIGKILL);
    record.pauseDeadline();
    this.dropInode(record);
    record.markReleased();
    this.stdio.released(record);
    const ref = record.ref;
    if (ref !== null && record.parentage === 'foreign') this.stopManaging(record, ref);
  }

  /**
   * The intent's outcome is known (nothing started, or the start was undone). If the store cannot
   * take that, the intent stays, and this agent answers a retry as a restarted one would.
   */
  private settleIntent(intent: SpawnIntent): void {
    try {
      this.store.commit('the spawn outcome', 0, (w) => w.settled(intent.owner, intent.requestId));
    } catch {
      this.unknownOutcomes.set(requestKey(intent.owner, intent.requestId), intent);
    }
  }

  /**
   * Captured streams' marks (stdio/capture-marks.ts): one transaction for all of them, no event
   * numbered; false when the store refused it (the streams then wait at their marks).
   */
  private writeMarks(marks: readonly (readonly [HandleId, CaptureMark])[]): boolean {
    try {
      this.store.commit(marks.length === 1 ? 'a capture mark' : `${marks.length} capture marks`, 0, (w) => {
        for (const [handle, mark] of marks) w.captured(handle, mark);
      });
      return true;
    } catch {
      return false;
    }
  }

  /** One transaction whose failure fails the call (STORE_WRITE_FAILED), nothing changed. */
  private write(what: string, events: number, writes: (w: StoreWrites) => void, handle: string): void {
    try {
      this.store.commit(what, this.events.lastSequence + events, writes);
    } catch (e) {
      throw storeWriteFailed(e, handle);
    }
  }

  private refuseUnknownOutcome(key: string, argv: readonly string[]): void {
    const intent = this.unknownOutcomes.get(key);
    if (!intent) return;
    if (!sameArgv(intent.argv, argv)) throw invalidArgument('request_id', 'already used for a different argv');
    throw new AgentError(
      'Aborted',
      `request_id ${JSON.stringify(intent.requestId)}: an agent stopped while starting it, before recording whether it ran (handle ${intent.handle}); it is not started again`,
      { reason: 'OUTCOME_UNKNOWN', field: 'request_id', handle: intent.handle },
    );
  }

  /** The key's process was started and released since: the retry starts nothing. */
  private refuseReleased(key: string, argv: readonly string[]): void {
    const released = this.tombstones.find(key);
    if (!released) return;
    if (released.fingerprint !== spawnFingerprint(argv)) throw invalidArgument('request_id', 'already used for a different argv');
    throw requestReleased(released, 'started');
  }

  private forget(record: ProcessRecord): void {
    this.table.remove(record);
    this.dropInode(record);
    record.markReleased();
    this.stdio.released(record);
    this.events.append('released', record);
    this.waiters.settle(record);
  }

  /** Deregister, then close: a foreign process is not ours to reap. */
  private stopManaging(record: ProcessRecord, ref: PidRef): void {
    this.reaper.unwatch(ref);
    this.byRef.delete(ref);
    record.closePidfd();
  }

  /** A released process may be adopted again under a new handle: the inode then maps to that one. */
  private dropInode(record: ProcessRecord): void {
    if (this.byInode.get(record.identity.pidfsInode) === record) this.byInode.delete(record.identity.pidfsInode);
  }

  private replay(owner: string | undefined, requestId: string | undefined, argv: readonly string[]): ProcessRecord | undefined {
    if (!requestId) return undefined;
    const earlier = this.table.byRequest(owner, requestId);
    if (!earlier) return undefined;
    if (!sameArgv(earlier.spec.argv, argv)) throw invalidArgument('request_id', 'already used for a different argv');
    return earlier;
  }

  private checkCapacity(): void {
    if (this.byRef.size + this.pending - this.heldInSpawn.size >= this.limits.maxProcesses) {
      throw new AgentError('ResourceExhausted', `at most ${this.limits.maxProcesses} processes are managed at once`, { reason: 'MAX_PROCESSES' });
    }
  }
}

interface Unrecorded {
  readonly record: ProcessRecord;
  readonly exit: ExitInfo;
  readonly shown: boolean;
}

interface QueuedStart {
  readonly record: ProcessRecord;
  readonly intent: SpawnIntent | undefined;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

/** Released records' rows go; their request_ids stay taken, in the same transaction. */
function writeReleases(w: StoreWrites, records: readonly ProcessRecord[], tombstones: TombstonePlan): void {
  for (const r of records) w.released(r.handle);
  for (const t of tombstones.drop) w.untombstoned(t.owner, t.requestId);
  for (const t of tombstones.add) w.tombstoned(t);
}

/** What the store keeps of a released process that still runs (the release is now). */
function releasedProcess(record: ProcessRecord): ReleasedProcess {
  const { handle, identity, spec, ownedCgroup } = record;
  return { handle, pid: identity.pid, pidfsInode: identity.pidfsInode, releasedAt: Date.now(), ...(spec.owner === undefined ? {} : { owner: spec.owner }), ...(ownedCgroup === undefined ? {} : { ownedCgroup }) };
}

/** A start's row, its captured streams' marks, and its intent settled with it. */
function writeStart(w: StoreWrites, record: ProcessRecord, intent: SpawnIntent | undefined, marks: readonly CaptureMark[]): void {
  w.started(record);
  for (const m of marks) w.captured(record.handle, m);
  if (intent) w.settled(intent.owner, intent.requestId);
}

const sameArgv = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function storeWriteFailed(e: unknown, handle: string): AgentError {
  return new AgentError('Unavailable', e instanceof Error ? e.message : String(e), { reason: 'STORE_WRITE_FAILED', handle }, { cause: e });
}
