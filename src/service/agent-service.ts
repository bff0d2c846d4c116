// gRPC handlers: thin, they validate, forward to the domain and map errors in one place.
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import type { ProcessManager } from '../process/manager.js';
import { AgentError } from '../process/errors.js';
import type { AgentServiceServer, WatchRequest, WatchResponse } from '../../clients/ts/src/gen/pidfd/agent/v1/agent.js';
import { State } from '../../clients/ts/src/gen/pidfd/agent/v1/agent.js';
import { stateFromApi, toProcess } from './convert.js';
import { toServiceError, type Logger } from './status.js';
import * as validate from './validate.js';
import type { WatchHub } from './watch.js';
import { OutputReaders } from './read-output.js';
import { outputStream } from './validate-stdio.js';
import { signalName } from '../kernel/signals.js';
import { ServiceGate } from './gate.js';
import { ownerOf } from '../auth/caller.js';

const DEFAULT_GRACE_MS = 10_000;

/**
 * Runs fn with a signal that aborts if the client cancels. grpc-js also emits 'cancelled' after
 * every finished call; the listener is gone by then, so no abort (and no DOMException) per call.
 */
async function untilCancelled<T>(call: { once(e: 'cancelled', f: () => void): unknown; off(e: 'cancelled', f: () => void): unknown }, gate: ServiceGate, fn: (abort: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const onCancel = () => abort.abort();
  call.once('cancelled', onCancel);
  gate.signal.addEventListener('abort', onCancel);
  try {
    return await fn(abort.signal);
  } finally {
    call.off('cancelled', onCancel);
    gate.signal.removeEventListener('abort', onCancel);
  }
}

type UnaryHandler<Req, Res> = (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void;

/** Builds the unary handlers of one service: the gate is checked first, errors mapped once. */
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

const hasLabels = (have: Readonly<Record<string, string>>, want: Record<string, string>): boolean => {
  for (const k in want) if (have[k] !== want[k]) return false;
  return true;
};

export function agentService(manager: ProcessManager, watchers: WatchHub, log: Logger, readers = new OutputReaders(1024), gate = new ServiceGate()): AgentServiceServer {
  const unary = unaryFactory(log, gate);
  return {
    spawn: unary('Spawn', async (req, call) => {
      const { record, replayed } = await manager.spawn({ ...validate.spawnOptions(req), owner: ownerOf(call) });
      return { process: toProcess(record), replayed };
    }),

    adopt: unary('Adopt', (req, call) => ({ process: toProcess(manager.adopt({ ...validate.adoptOptions(req), owner: ownerOf(call) })) })),

    signal: unary('Signal', (req) => {
      const signal = validate.signal(req.signal);
      manager.signal(validate.handle(req.handle), signal, validate.signalTarget(req.target, req.tid));
      return { signal, signalName: signalName(signal) };
    }),

    wait: unary('Wait', (req, call) =>
      untilCancelled(call, gate, async (abort) => {
        const record = await manager.wait(validate.handle(req.handle), validate.durationMs('timeout', req.timeout), abort);
        return { process: toProcess(record) };
      }),
    ),

    stop: unary('Stop', (req, call) =>
      untilCancelled(call, gate, async (abort) => {
        const signal = validate.signal(req.signal);
        const grace = validate.durationMs('grace', req.grace) ?? DEFAULT_GRACE_MS;
        const { record, escalated } = await manager.stop(validate.handle(req.handle), signal, grace, req.processGroup, abort);
        return { process: toProcess(record), escalated };
      }),
    ),

    readOutput: (call) => {
      const fail = (e: unknown) => call.emit('error', toServiceError(e, 'ReadOutput', log));
      try {
        gate.check();
        const req = call.request;
        const { io, output } = manager.stdio.output(manager.get(validate.handle(req.handle)), outputStream(req.stream));
        readers.open(call, io, output, req.offset, req.follow, fail);
      } catch (e) {
        fail(e);
      }
    },

    writeStdin: unary('WriteStdin', async (req) => ({
      written: await manager.stdio.of(manager.get(validate.handle(req.handle))).writeStdin(req.data),
    })),

    closeStdin: unary('CloseStdin', (req) => {
      manager.stdio.of(manager.get(validate.handle(req.handle))).closeStdin();
      return {};
    }),

    listThreads: unary('ListThreads', (req) => ({ tids: manager.listThreads(validate.handle(req.handle)) })),

    get: unary('Get', (req) => ({ process: toProcess(manager.get(validate.handle(req.handle))) })),

    list: unary('List', (req) => {
      const labels = validate.labels('labels', req.labels);
      const state = req.state === State.STATE_UNSPECIFIED ? undefined : stateFromApi(req.state);
      const processes = [];
      for (const record of manager.table.values()) {
        if (state !== undefined && record.state !== state) continue;
        if (hasLabels(record.spec.labels, labels)) processes.push(toProcess(record));
      }
      return { processes, sequence: manager.events.lastSequence };
    }),

    release: unary('Release', (req) => {
      manager.release(validate.handle(req.handle));
      return {};
    }),

    watch: (call: ServerWritableStream<WatchRequest, WatchResponse>) => {
      const fail = (e: unknown) => call.emit('error', toServiceError(e, 'Watch', log));
      try {
        gate.check();
        const req = call.request;
        if (req.handles.length > validate.LIMITS.watchHandles) {
          throw new AgentError('InvalidArgument', `handles: more than ${validate.LIMITS.watchHandles}`, { reason: 'INVALID_ARGUMENT', field: 'handles' });
        }
        const filter = {
          handles: req.handles.length > 0 ? new Set(req.handles.map(validate.handle)) : null,
          labels: validate.labels('labels', req.labels),
        };
        const events = manager.events;
        const after = req.afterSequence ?? events.lastSequence;
        if (!events.canReplayAfter(after)) {
          throw new AgentError('OutOfRange', `after_sequence ${after} is outside the retained events ${events.firstSequence - 1}..${events.lastSequence}: List, then Watch from its sequence`, { reason: 'CURSOR_EXPIRED', field: 'after_sequence' });
        }
        watchers.open(call, filter, after, fail);
      } catch (e) {
        fail(e);
      }
    },
  };
}
