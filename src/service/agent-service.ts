// gRPC handlers: thin, they validate, have the call authorized (auth/authorize.ts), forward to the
// domain and map errors in one place.
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import type { ProcessManager } from '../process/manager.js';
import type { ProcessRecord } from '../process/lifecycle/record.js';
import { AgentError, invalidArgument } from '../process/errors.js';
import type {
  WaitResponse,
  AdoptRequest,
  AgentServiceServer,
  CloseStdinRequest,
  GetRequest,
  ListRequest,
  ListThreadsRequest,
  Process,
  ReleaseRequest,
  ResizeTerminalRequest,
  SignalRequest,
  SpawnBatchRequest,
  SpawnRequest,
  StopRequest,
  WaitRequest,
  WatchRequest,
  WatchResponse,
  WriteStdinRequest,
} from '../api.js';
import { State } from '../api.js';
import { msDuration, processOf, stateFromApi, toUsageEvent } from './convert.js';
import type { Logger } from '../log.js';
import { errorStatus, toServiceError } from './status.js';
import { spawnBatch } from './spawn-batch.js';
import * as validate from './validate.js';
import { MAX_USAGE_SAMPLES, MIN_USAGE_INTERVAL_MS, type WatchHub } from './watch.js';
import { OutputReaders } from './read-output.js';
import { outputStream } from './validate-stdin-output.js';
import { windowSize } from './validate-terminal.js';
import { signalName } from '../process/lifecycle/signalling.js';
import { ServiceGate } from './gate.js';
import { ListPages } from './list-pages.js';
import type { Authorizer, Grant, HandleRpc, Request, Rpc } from '../auth/authorize.js';
import type { EventSubject, EventType } from '../process/events/event-log.js';

const DEFAULT_GRACE_MS = 10_000;

/**
 * Runs fn with a signal that aborts if the client cancels or the gate ends the calls in flight.
 * grpc-js also emits 'cancelled' after every finished call; the listener is gone by then, so no
 * abort (and no DOMException) per call.
 */
async function untilCancelled<T>(call: { once(e: 'cancelled', f: () => void): unknown; off(e: 'cancelled', f: () => void): unknown }, gate: ServiceGate, fn: (abort: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const onCancel = () => abort.abort();
  call.once('cancelled', onCancel);
  gate.track(onCancel);
  try {
    return await fn(abort.signal);
  } finally {
    call.off('cancelled', onCancel);
    gate.untrack(onCancel);
  }
}

type UnaryHandler<Req, Res> = (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void;

/** A handler that decides for itself (SpawnBatch authorizes each item): the gate and the error mapping only. */
const unaryFactory = (log: Logger, gate: ServiceGate) =>
  function unary<Req, Res>(method: string, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>): UnaryHandler<Req, Res> {
    const fail = (e: unknown) => toServiceError(gate.explain(e), method, log);
    return (call, callback) => {
      try {
        gate.check();
        Promise.resolve(fn(call.request, call)).then(
          (res) => callback(null, res),
          (e: unknown) => callback(fail(e)),
        );
      } catch (e) {
        callback(fail(e));
      }
    };
  };

/**
 * Builds the handlers that are authorized: the gate is checked, the request decoded and validated,
 * then decided (the one decision point), then carried out; the grant learns how the call ended and
 * errors are mapped once. A handler that answers synchronously replies at once: no promise, no
 * closure per call.
 */
const decidedFactory = (log: Logger, gate: ServiceGate, auth: Authorizer, manager: ProcessManager) =>
  function decided<Req, Res, R extends Request>(method: R['rpc'] & Rpc, decode: (req: Req) => R, fn: (grant: Grant, request: R, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>, processOf?: (res: Res) => Process | undefined): UnaryHandler<Req, Res> {
    const fail = (e: unknown) => toServiceError(gate.explain(e), method, log);
    const finished = (grant: Grant, res: Res): Res => {
      if (processOf === undefined) grant.finish();
      else {
        const p = processOf(res);
        grant.finish({ handle: p?.handle, pid: p?.pid });
      }
      return res;
    };
    return (call, callback) => {
      let grant: Grant | undefined;
      let res: Res | Promise<Res>;
      try {
        gate.check();
        const request = decode(call.request);
        // A spawn's executable is resolved (and checked) here; its PATH search is a stage of its trace.
        grant = auth.authorize(call, request);
        res = fn(grant, request, call);
        if (!(res instanceof Promise)) res = finished(grant, res);
      } catch (e) {
        grant?.finish({ error: e });
        callback(fail(e));
        return;
      }
      if (!(res instanceof Promise)) {
        callback(null, res);
        return;
      }
      const g = grant;
      res.then((r) => finished(g, r)).then(
        (r) => callback(null, r),
        (e: unknown) => {
          g.finish({ error: e });
          callback(fail(e));
        },
      );
    };
  };

const hasLabels = (have: Readonly<Record<string, string>>, want: Record<string, string>): boolean => {
  for (const k in want) if (have[k] !== want[k]) return false;
  return true;
};

const byHandle = <R extends HandleRpc>(rpc: R, handle: string): { rpc: R; handle: string } => ({ rpc, handle: validate.handle(handle) });

export function agentService(manager: ProcessManager, watchers: WatchHub, log: Logger, auth: Authorizer, readers = new OutputReaders(1024), gate = new ServiceGate(), pages = new ListPages()): AgentServiceServer {
  const decided = decidedFactory(log, gate, auth, manager);
  const unary = unaryFactory(log, gate);
  /** A Wait reply carrying an exit: built first, then a release_on_exit record may go. */
  const delivered = (record: ProcessRecord): WaitResponse => {
    const process = processOf(record);
    manager.delivered(record);
    return { process };
  };
  return {
    spawn: decided(
      'Spawn',
      (req: SpawnRequest) => ({ rpc: 'Spawn' as const, spawn: validate.spawnOptions(req) }),
      async (grant, { spawn }) => {
        const { record, replayed, found } = await manager.spawn(grant.spawnOptions(spawn));
        grant.ran(found);
        return { process: processOf(record), replayed };
      },
      (res) => res.process,
    ),

    // Each item as the Spawn handler above runs it: validated, decided, started, finished.
    spawnBatch: unary('SpawnBatch', (req: SpawnBatchRequest, call) =>
      spawnBatch(
        req,
        async (item) => {
          const request = { rpc: 'Spawn' as const, spawn: validate.spawnOptions(item) };
          const grant = auth.authorize(call, request);
          try {
            const { record, replayed, found } = await manager.spawn(grant.spawnOptions(request.spawn));
            grant.ran(found);
            const process = processOf(record);
            grant.finish({ handle: process.handle, pid: process.pid });
            return { process, replayed };
          } catch (e) {
            grant.finish({ error: e });
            throw e;
          }
        },
        (e) => errorStatus(gate.explain(e), 'SpawnBatch', log),
      ),
    ),

    adopt: decided(
      'Adopt',
      (req: AdoptRequest) => ({ rpc: 'Adopt' as const, adopt: validate.adoptOptions(req) }),
      (grant, { adopt }) => ({ process: processOf(manager.adopt({ ...adopt, owner: grant.owner })) }),
      (res) => res.process,
    ),

    signal: decided(
      'Signal',
      (req: SignalRequest) => {
        const target = validate.signalTarget(req.target, req.tid);
        const signal = req.reclaimMemory ? validate.reclaimSignal(req.signal, target) : validate.signal(req.signal);
        return { ...byHandle('Signal', req.handle), signal, target, reclaim: req.reclaimMemory };
      },
      async (_grant, { handle, signal, target, reclaim }) => {
        if (reclaim) return { signal, signalName: signalName(signal), reclaimTime: msDuration(await manager.killAndReclaim(handle)) };
        manager.signal(handle, signal, target);
        return { signal, signalName: signalName(signal) };
      },
    ),

    wait: decided(
      'Wait',
      (req: WaitRequest) => ({ ...byHandle('Wait', req.handle), timeoutMs: validate.durationMs('timeout', req.timeout) }),
      (_grant, { handle, timeoutMs }, call) => {
        // Exited already: answered at once, with no abort signal to build.
        const record = manager.get(handle);
        if (record.state !== 'running') return delivered(record);
        return untilCancelled(call, gate, async (abort) => delivered(await manager.wait(handle, timeoutMs, abort)));
      },
    ),

    stop: decided(
      'Stop',
      (req: StopRequest) => ({
        ...byHandle('Stop', req.handle),
        stop: { signal: validate.signal(req.signal), graceMs: validate.durationMs('grace', req.grace) ?? DEFAULT_GRACE_MS, scope: validate.stopScope(req), reclaim: req.reclaimMemory },
      }),
      (_grant, { handle, stop }, call) =>
        untilCancelled(call, gate, async (abort) => {
          const { record, escalated, treeGoneAt, reclaimMs } = await manager.stop(handle, stop, abort);
          const process = processOf(record);
          manager.delivered(record);
          return { process, escalated, treeGoneAt: treeGoneAt === undefined ? undefined : new Date(treeGoneAt), reclaimTime: reclaimMs === undefined ? undefined : msDuration(reclaimMs) };
        }),
    ),

    readOutput: (call) => {
      const fail = (e: unknown) => call.emit('error', toServiceError(e, 'ReadOutput', log));
      try {
        gate.check();
        const req = call.request;
        const stream = outputStream(req.stream);
        const grant = auth.authorize(call, byHandle('ReadOutput', req.handle));
        try {
          const record = manager.get(req.handle);
          const { io, output } = manager.output(record, stream);
          // The caller's max_readers slot is held until the stream ends.
          readers.open(call, io, output, req.offset, req.follow, fail, () => grant.revocation('output', record), () => grant.finish());
        } catch (e) {
          grant.finish();
          throw e;
        }
      } catch (e) {
        fail(e);
      }
    },

    writeStdin: decided('WriteStdin', (req: WriteStdinRequest) => ({ ...byHandle('WriteStdin', req.handle), data: req.data }), async (_grant, { handle, data }) => ({
      written: await manager.stdioOf(manager.get(handle)).writeStdin(data),
    })),

    closeStdin: decided('CloseStdin', (req: CloseStdinRequest) => byHandle('CloseStdin', req.handle), async (_grant, { handle }) => {
      const record = manager.get(handle);
      // A terminal cannot be half-closed: end-of-file is typed, as on a keyboard.
      if (manager.hasTerminal(record)) await manager.stdioOf(record).writeStdin(Buffer.from([0x04]));
      else manager.stdioOf(record).closeStdin();
      return {};
    }),

    resizeTerminal: decided(
      'ResizeTerminal',
      (req: ResizeTerminalRequest) => ({ ...byHandle('ResizeTerminal', req.handle), size: windowSize('size', req.size) }),
      (_grant, { handle, size }) => {
        manager.resizeTerminal(handle, size);
        return {};
      },
    ),

    listThreads: decided('ListThreads', (req: ListThreadsRequest) => byHandle('ListThreads', req.handle), (_grant, { handle }) => ({ tids: manager.listThreads(handle) })),

    get: decided('Get', (req: GetRequest) => byHandle('Get', req.handle), (_grant, { handle }) => {
      const record = manager.get(handle);
      return { process: processOf(record, manager.usage(record)) };
    }),

    list: decided(
      'List',
      (req: ListRequest) => {
        const filters = { labels: validate.labels('labels', req.labels), state: req.state === State.STATE_UNSPECIFIED ? undefined : stateFromApi(req.state) };
        return { rpc: 'List' as const, filters, pageSize: req.pageSize, pageToken: req.pageToken };
      },
      (grant, { filters, pageSize, pageToken }) => {
        // After the decision (AIP-158: a token is no authorization): whether a token is this
        // agent's, or an earlier incarnation's, is the agent's state, not the request's.
        const paging = pages.paging(pageSize, pageToken, filters);
        const { labels, state } = filters;
        const matches = (record: ProcessRecord) => (state === undefined || record.state === state) && grant.canSee(record) && hasLabels(record.spec.labels, labels);
        return pages.page((position) => manager.recordsAfter(position), manager.positionsEnd, matches, (record) => processOf(record, manager.usage(record)), manager.lastSequence, paging, filters);
      },
    ),

    release: decided('Release', (req: ReleaseRequest) => byHandle('Release', req.handle), (_grant, { handle }) => {
      manager.release(handle);
      return {};
    }),

    watch: watchHandler(manager, watchers, auth, log, gate),
  };
}

/** Watch: validated, then authorized (a stream slot per identity), then filtered to what the caller may see. */
function watchHandler(manager: ProcessManager, watchers: WatchHub, auth: Authorizer, log: Logger, gate: ServiceGate) {
  return (call: ServerWritableStream<WatchRequest, WatchResponse>): void => {
    const fail = (e: unknown) => call.emit('error', toServiceError(e, 'Watch', log));
    try {
      gate.check();
      const req = call.request;
      if (req.handles.length > validate.LIMITS.watchHandles) {
        throw new AgentError('InvalidArgument', `handles: more than ${validate.LIMITS.watchHandles}`, { reason: 'INVALID_ARGUMENT', field: 'handles' });
      }
      const handles = req.handles.length > 0 ? new Set(req.handles.map(validate.handle)) : null;
      const labels = validate.labels('labels', req.labels);
      const usageMs = validate.durationMs('usage_interval', req.usageInterval);
      if (usageMs !== undefined && usageMs < MIN_USAGE_INTERVAL_MS) throw invalidArgument('usage_interval', `at least ${MIN_USAGE_INTERVAL_MS}ms`);
      // Decided before the event log is consulted: a caller the policy refuses learns nothing of it.
      const grant = auth.authorize(call, { rpc: 'Watch' });
      // Decided per event under the policy in force then: a reload reaches open streams too, and
      // one that takes away read (or the caller's rule) ends the stream.
      let ended = false;
      /** Whether the stream may still send: false (and ended) once a reload or an expiry took that away. */
      const stillGranted = () => {
        if (ended) return false;
        const revoked = grant.revocation('read');
        if (revoked === undefined) return true;
        ended = true;
        queueMicrotask(() => fail(revoked));
        return false;
      };
      const visible = (subject: EventSubject, type: EventType) => stillGranted() && grant.canSee(subject) && (type !== 'output' || grant.may('output'));
      try {
        const events = watchers.log;
        const after = req.afterSequence ?? events.lastSequence;
        // A tenant's cursor expires only when one of its own events went (the ring gives up the
        // events of whoever holds the most); an admin's when anyone's did.
        const owner = () => grant.ownerSeen();
        if (!events.canReplayAfter(after, owner())) {
          throw new AgentError('OutOfRange', `after_sequence ${after} is outside the retained events ${events.replayableFrom(owner())}..${events.lastSequence}: List (every page), then Watch from the first page's sequence`, { reason: 'CURSOR_EXPIRED', field: 'after_sequence' });
        }
        const sample = () => {
          const events: ReturnType<typeof toUsageEvent>[] = [];
          if (!stillGranted()) return events;
          for (const record of manager.records()) {
            if (events.length >= MAX_USAGE_SAMPLES) break;
            if (record.state !== 'running' || (handles !== null && !handles.has(record.handle)) || !hasLabels(record.spec.labels, labels) || !grant.canSee(record)) continue;
            const usage = manager.usage(record);
            if (usage) events.push(toUsageEvent(record, usage));
          }
          return events;
        };
        watchers.open(call, { handles, labels, visible, owner }, after, fail, () => grant.finish(), usageMs === undefined ? undefined : { intervalMs: usageMs, sample });
      } catch (e) {
        grant.finish({ error: e });
        throw e;
      }
    } catch (e) {
      fail(e);
    }
  };
}
