// A real gRPC server in the agent's API that answers every unary call with one chosen error and
// records what it was asked: how many attempts a client made, and with which request ids. For
// the clients' retry policies, which the agent cannot be made to exercise on demand.
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
