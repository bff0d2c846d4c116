// A real gRPC server in the agent's API whose List pages expire on demand, as if the agent had
// restarted or handed over between two pages: for the clients' list-all helpers, which a real
// agent makes hard to catch between two pages from Go or Python.
//
// Each first page (no token) is listing n: one process `n-first` and the token `n`. The page after
// it is refused as `expire` says (the first listing's only, every one's, or every one's as a
// token never issued); else it is the process `n-second`, the last.
import { Metadata, Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { ErrorInfo } from '../../clients/ts/src/gen/google/rpc/error_details.js';
import { Status } from '../../clients/ts/src/gen/google/rpc/status.js';
import { AgentServiceService, type ListRequest, type ListResponse, Process } from '../../clients/ts/src/gen/pidfd/agent/v1/agent.js';

export type Expiry = 'first-listing' | 'every-listing' | 'invalid';

export class ExpiringPages {
  /** The page_token of each List asked, in order. */
  readonly asked: string[] = [];
  private listings = 0;

  private constructor(
    readonly address: string,
    private readonly server: Server,
    private readonly expire: Expiry,
  ) {}

  static async start(path: string, expire: Expiry): Promise<ExpiringPages> {
    const server = new Server();
    const address = `unix://${path}`;
    const self = new ExpiringPages(address, server, expire);
    server.addService(AgentServiceService, { list: (call: ServerUnaryCall<ListRequest, ListResponse>, callback: sendUnaryData<ListResponse>) => self.list(call.request, callback) });
    await new Promise<void>((resolve, reject) => server.bindAsync(address, ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
    return self;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }

  private list(req: ListRequest, callback: sendUnaryData<ListResponse>): void {
    this.asked.push(req.pageToken);
    const process = (handle: string) => Process.fromPartial({ handle, argv: ['true'] });
    if (req.pageToken === '') {
      const n = ++this.listings;
      callback(null, { processes: [process(`${n}-first`)], sequence: 10 * n, nextPageToken: String(n) });
      return;
    }
    const n = Number(req.pageToken);
    if (this.expire === 'invalid') return callback(refusal(status.INVALID_ARGUMENT, 'INVALID_PAGE_TOKEN'));
    if (this.expire === 'every-listing' || n === 1) return callback(refusal(status.ABORTED, 'PAGE_TOKEN_EXPIRED'));
    callback(null, { processes: [process(`${n}-second`)], sequence: 10 * n + 1, nextPageToken: '' });
  }
}

function refusal(code: status, reason: string) {
  const info = ErrorInfo.encode({ reason, domain: 'pidfd.agent', metadata: { field: 'page_token' } }).finish();
  const details = Status.encode({ code, message: 'page_token: refused', details: [{ typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from(info) }] }).finish();
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(details));
  return { code, details: 'page_token: refused', metadata };
}
