// A real gRPC server in the agent's API that answers every unary call with one chosen error and
// records what it was asked: how many attempts a client made, and with which request ids. For
// the clients' retry policies, which the agent cannot be made to exercise on demand.
import type { ExecutionContext } from 'ava';
import { Metadata, Server, ServerCredentials, status, type ServerUnaryCall, type sendUnaryData, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { ErrorInfo } from '../../clients/ts/src/gen/google/rpc/error_details.js';
import { Status } from '../../clients/ts/src/gen/google/rpc/status.js';
import { AgentServiceService } from '../../clients/ts/src/gen/pidfd/agent/v1/agent.js';

export interface Refusal {
  readonly code: status;
  /** ErrorInfo.reason; '' sends no ErrorInfo, as a transport failure has none. */
  readonly reason: string;
}

export interface Attempt {
  readonly method: string;
  /** SpawnRequest.request_id, or each SpawnBatch item's. */
  readonly requestIds: readonly string[];
}

export class RefusingServer {
  readonly attempts: Attempt[] = [];
  refusal: Refusal = { code: status.UNAVAILABLE, reason: '' };

  private constructor(
    readonly address: string,
    private readonly server: Server,
  ) {}

  static async start(path: string): Promise<RefusingServer> {
    const server = new Server();
    const address = `unix://${path}`;
    const self = new RefusingServer(address, server);
    const impl: UntypedServiceImplementation = {};
    for (const [name, def] of Object.entries(AgentServiceService)) {
      if (def.responseStream) continue;
      const method = name.charAt(0).toUpperCase() + name.slice(1);
      impl[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        self.attempts.push({ method, requestIds: requestIdsOf(call.request) });
        callback(self.error());
      };
    }
    server.addService(AgentServiceService, impl);
    await new Promise<void>((resolve, reject) => server.bindAsync(address, ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
    return self;
  }

  /** How many attempts each method got. */
  count(method: string): number {
    return this.attempts.filter((a) => a.method === method).length;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }

  private error() {
    const metadata = new Metadata();
    const { code, reason } = this.refusal;
    if (reason !== '') {
      const info = ErrorInfo.encode({ reason, domain: 'pidfd.agent', metadata: {} }).finish();
      const details = Status.encode({ code, message: 'refused', details: [{ typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from(info) }] }).finish();
      metadata.set('grpc-status-details-bin', Buffer.from(details));
    }
    return { code, details: 'refused', metadata };
  }
}

function requestIdsOf(request: unknown): string[] {
  const r = request as { requestId?: string; requests?: { requestId: string }[] };
  if (r.requests !== undefined) return r.requests.map((x) => x.requestId);
  return r.requestId === undefined ? [] : [r.requestId];
}

/** A failure as the Go and Python retry fixtures print it. */
export interface PrintedFailure {
  readonly code: string;
  readonly request_ids: readonly string[] | null;
  readonly retryable: boolean;
}

/**
 * What the Go and Python fixtures' `refused` run must have asked of `server` beyond their spawns:
 * a batch tried 4 times under its ids (the caller's kept), a read retried when asked, Signal and
 * Stop once, List within its 300 ms deadline.
 */
export function checkRefusedCalls(t: ExecutionContext, server: RefusingServer, batch: PrintedFailure, uuid: RegExp): void {
  const batches = server.attempts.filter((a) => a.method === 'SpawnBatch');
  t.is(batches.length, 4);
  t.is(batch.request_ids![0], 'mine-0');
  t.regex(batch.request_ids![1]!, uuid);
  for (const b of batches) t.deepEqual(b.requestIds, batch.request_ids);
  t.is(server.count('Get'), 4 + 1, 'a read is retried when asked, else not');
  t.is(server.count('Signal'), 1, 'a signal whose reply was lost may have been sent: never retried');
  t.is(server.count('Stop'), 1);
  const listed = server.count('List');
  t.true(listed >= 2 && listed <= 1 + 300 / 25, `${listed} attempts within a 300 ms deadline`);
}

/**
 * The same run against refusals for a handover, which ran nothing: what may be retried then.
 * `once`: the spawns the run makes that are sent only once whatever the refusal (closed, no retry).
 */
export function checkHandoverRefusals(t: ExecutionContext, server: RefusingServer, signal: PrintedFailure, once = 1): void {
  t.is(server.count('Spawn'), 4 + 4 + once, 'a spawn refused for a handover started nothing: retried with or without an id');
  t.is(server.count('Signal'), 4, 'a signal refused for a handover was not sent: retried');
  t.is(server.count('Stop'), 1, 'a Stop in flight at a handover may have signalled: never retried');
  t.true(signal.retryable);
}
