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

const DEFAULT_GRACE_MS = 10_000;

/**
 * Runs fn with a signal that aborts if the client cancels. grpc-js also emits 'cancelled' after
 * every finished call; the listener is gone by then, so no abort (and no DOMException) per call.
 */
async function untilCancelled<T>(call: { once(e: 'cancelled', f: () => void): unknown; off(e: 'cancelled', f: () => void): unknown }, fn: (abort: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const onCancel = () => abort.abort();
  call.once('cancelled', onCancel);
  try {
    return await fn(abort.signal);
  } finally {
    call.off('cancelled', onCancel);
  }
}

function unary<Req, Res>(method: string, log: Logger, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    try {
      Promise.resolve(fn(call.request, call)).then(
        (res) => callback(null, res),
        (e: unknown) => callback(toServiceError(e, method, log)),
      );
    } catch (e) {
      callback(toServiceError(e, method, log));
    }
  };
}

const hasLabels = (have: Readonly<Record<string, string>>, want: Record<string, string>): boolean => {
  for (const k in want) if (have[k] !== want[k]) return false;
  return true;
};

export function agentService(manager: ProcessManager, watchers: WatchHub, log: Logger, readers = new OutputReaders(1024)): AgentServiceServer {
  return {
    spawn: unary('Spawn', log, async (req) => {
      const { record, replayed } = await manager.spawn(validate.spawnOptions(req));
      return { process: toProcess(record), replayed };
    }),

    adopt: unary('Adopt', log, (req) => ({ process: toProcess(manager.adopt(validate.adoptOptions(req))) })),

    signal: unary('Signal', log, (req) => {
      const signal = validate.signal(req.signal);
      manager.signal(validate.handle(req.handle), signal, validate.signalTarget(req.target, req.tid));
      return { signal, signalName: signalName(signal) };
    }),

    wait: unary('Wait', log, (req, call) =>
      untilCancelled(call, async (abort) => {
        const record = await manager.wait(validate.handle(req.handle), validate.durationMs('timeout', req.timeout), abort);
        return { process: toProcess(record) };
      }),
    ),

    stop: unary('Stop', log, (req, call) =>
      untilCancelled(call, async (abort) => {
        const signal = validate.signal(req.signal);
        const grace = validate.durationMs('grace', req.grace) ?? DEFAULT_GRACE_MS;
        const { record, escalated } = await manager.stop(validate.handle(req.handle), signal, grace, req.processGroup, abort);
        return { process: toProcess(record), escalated };
      }),
    ),

    readOutput: (call) => {
      const fail = (e: unknown) => call.emit('error', toServiceError(e, 'ReadOutput', log));
      try {
        const req = call.request;
        const { io, output } = manager.stdio.output(manager.get(validate.handle(req.handle)), outputStream(req.stream));
        readers.open(call, io, output, req.offset, req.follow, fail);
      } catch (e) {
        fail(e);
      }
    },

    writeStdin: unary('WriteStdin', log, async (req) => ({
      written: await manager.stdio.of(manager.get(validate.handle(req.handle))).writeStdin(req.data),
    })),

    closeStdin: unary('CloseStdin', log, (req) => {
      manager.stdio.of(manager.get(validate.handle(req.handle))).closeStdin();
      return {};
    }),

    listThreads: unary('ListThreads', log, (req) => ({ tids: manager.listThreads(validate.handle(req.handle)) })),

    get: unary('Get', log, (req) => ({ process: toProcess(manager.get(validate.handle(req.handle))) })),

    list: unary('List', log, (req) => {
      const labels = validate.labels('labels', req.labels);
      const state = req.state === State.STATE_UNSPECIFIED ? undefined : stateFromApi(req.state);
      const processes = [];
      for (const record of manager.table.values()) {
        if (state !== undefined && record.state !== state) continue;
        if (hasLabels(record.spec.labels, labels)) processes.push(toProcess(record));
      }
      return { processes, sequence: manager.events.lastSequence };
    }),

    release: unary('Release', log, (req) => {
      manager.release(validate.handle(req.handle));
      return {};
    }),

    watch: (call: ServerWritableStream<WatchRequest, WatchResponse>) => {
      const fail = (e: unknown) => call.emit('error', toServiceError(e, 'Watch', log));
      try {
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
