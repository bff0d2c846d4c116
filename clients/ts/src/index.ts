// A thin typed wrapper over the generated grpc-js client: promises, async-iterable Watch,
// partial requests, and errors that carry the agent's google.rpc.ErrorInfo (errno name, field).
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { credentials, Metadata, status, type ChannelCredentials, type ClientOptions, type ServiceError } from '@grpc/grpc-js';
import {
  AdoptRequest,
  AgentServiceClient,
  CloseStdinRequest,
  GetRequest,
  ListRequest,
  ReleaseRequest,
  ResizeTerminalRequest,
  ListThreadsRequest,
  ReadOutputRequest,
  SignalRequest,
  SpawnBatchRequest,
  SpawnRequest,
  StopRequest,
  WaitRequest,
  WatchRequest,
  WriteStdinRequest,
  type AdoptResponse,
  type CloseStdinResponse,
  type Event,
  type Exit,
  type GetResponse,
  type ListResponse,
  type ListThreadsResponse,
  type StopResponse,
  type ReleaseResponse,
  type ResizeTerminalResponse,
  type ReadOutputResponse,
  type SignalResponse,
  type SpawnBatchResponse,
  type SpawnResponse,
  type WaitResponse,
  type WatchResponse,
  type WriteStdinResponse,
} from './gen/pidfd/agent/v1/agent.js';
import { AgentCallError, closedInFlight, endedByClose, type FailedCall } from './errors.js';
import { DEFAULT_RETRY, isRetryable, withRetry, type RetryPolicy } from './retry.js';

export * from './gen/pidfd/agent/v1/agent.js';
export { status } from '@grpc/grpc-js';
export { AgentCallError } from './errors.js';
export { DEFAULT_RETRY, isRetryable, type RetryPolicy } from './retry.js';

type DeepPartial<T> = T extends Date | Uint8Array
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

export interface CallOptions {
  /** Absolute deadline or milliseconds from now. */
  readonly deadline?: Date | number;
  readonly signal?: AbortSignal;
  /**
   * Retry this call on UNAVAILABLE where isRetryable allows, with this policy; false: never.
   * Default: the client's policy for spawn and spawnBatch, none for the other calls.
   */
  readonly retry?: RetryPolicy | false;
}

export interface SpawnOptions extends CallOptions {
  /**
   * false: send a request without request_id as it is. By default the client gives it a random
   * one (UUID), which makes a retry safe: the agent replays the first spawn, never starts a second.
   */
  readonly autoRequestId?: boolean;
}

export interface AgentClientOptions {
  /** The retry policy of spawn and spawnBatch (DEFAULT_RETRY); false: no call is retried unless it asks. */
  readonly retry?: RetryPolicy | false;
  /** The default of SpawnOptions.autoRequestId for every spawn of this client (true). */
  readonly autoRequestId?: boolean;
}

/** The most processes a List page holds (a larger page_size is taken as this). */
export const MAX_LIST_PAGE_SIZE = 1000;
/** The reason of a page token issued before the agent restarted or handed over: list again from the first page. */
export const PAGE_TOKEN_EXPIRED = 'PAGE_TOKEN_EXPIRED';

/** A request id as the client makes them up: a random UUID. */
export const newRequestId = (): string => randomUUID();

/**
 * 'exited with code 3', 'killed by signal SIGTERM', or 'status lost'. Exit.status is a oneof:
 * `code` is undefined here when `signal` is set (other languages read it as 0).
 */
export function describeExit(exit: Exit | undefined): string {
  if (exit?.code !== undefined) return `exited with code ${exit.code}`;
  if (exit?.signal !== undefined) return `killed by signal ${exit.signalName || exit.signal}`;
  return 'status lost';
}

/**
 * Keepalive: a PING every 30 s while calls are open keeps a quiet Watch or ReadOutput stream
 * alive through proxies and load balancers that drop idle connections (often after 60 s), and
 * finds a dead connection 10 s later.
 */
export const KEEPALIVE_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 0,
} as const;

type Unary<Req, Res> = (req: Req, md: Metadata, opts: { deadline?: Date }, cb: (e: ServiceError | null, r: Res) => void) => { cancel(): void };

export class AgentClient {
  readonly raw: AgentServiceClient;
  /** Streams open on the channel: close() cancels them. */
  private readonly open = new Set<{ cancel(): void }>();
  private closed = false;
  /**
   * Aborted by close(): a call waiting for its reply is cancelled (grpc-js's close() would let it
   * wait), a retry waiting out its backoff ends with its last error; both are marked clientClosed.
   */
  private readonly closing = new AbortController();
  private readonly retry: RetryPolicy | false;
  private readonly autoRequestId: boolean;

  /**
   * address: unix:///path/to/agent.sock or host:port. The channel reconnects after 100 ms at first
   * (grpc's default is 1 s): the agent is node-local, and a restart or handover lasts ~0.1 s.
   */
  constructor(address: string, creds: ChannelCredentials = credentials.createInsecure(), options?: Partial<ClientOptions>, clientOptions: AgentClientOptions = {}) {
    this.retry = clientOptions.retry ?? DEFAULT_RETRY;
    this.autoRequestId = clientOptions.autoRequestId ?? true;
    setMaxListeners(0, this.closing.signal); // one listener per call in a backoff, bounded by the calls
    this.raw = new AgentServiceClient(address, creds, {
      'grpc.enable_channelz': 0,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
      ...KEEPALIVE_OPTIONS,
      ...options,
    });
  }

  /**
   * With the request_id given, or a new random one (see SpawnOptions.autoRequestId), returned as
   * `requestId` and carried by a failure's AgentCallError: resend with it to retry safely.
   * Retried on a dropped connection or a handover (the client's policy), under that same id.
   */
  async spawn(req: DeepPartial<SpawnRequest>, opts?: SpawnOptions): Promise<SpawnResponse & { readonly requestId: string }> {
    const request = SpawnRequest.fromPartial(req);
    if (request.requestId === '' && (opts?.autoRequestId ?? this.autoRequestId)) request.requestId = newRequestId();
    const res = await this.unary(this.raw.spawn, request, { method: 'Spawn', requestIds: [request.requestId] }, opts, this.retry);
    return Object.assign(res, { requestId: request.requestId });
  }
  adopt(req: DeepPartial<AdoptRequest>, opts?: CallOptions): Promise<AdoptResponse> {
    const request = AdoptRequest.fromPartial(req);
    return this.unary(this.raw.adopt, request, { method: 'Adopt', requestIds: [request.requestId] }, opts);
  }
  signal(req: DeepPartial<SignalRequest>, opts?: CallOptions): Promise<SignalResponse> {
    return this.unary(this.raw.signal, SignalRequest.fromPartial(req), { method: 'Signal' }, opts);
  }
  wait(req: DeepPartial<WaitRequest>, opts?: CallOptions): Promise<WaitResponse> {
    return this.unary(this.raw.wait, WaitRequest.fromPartial(req), { method: 'Wait' }, opts);
  }
  get(req: DeepPartial<GetRequest>, opts?: CallOptions): Promise<GetResponse> {
    return this.unary(this.raw.get, GetRequest.fromPartial(req), { method: 'Get' }, opts);
  }
  /**
   * One List call: every process at once when neither pageSize nor pageToken is set (failing with
   * RESOURCE_EXHAUSTED / LIST_TOO_LARGE when they do not fit in one 4 MiB response), else one page.
   * listAll pages through them all.
   */
  list(req: DeepPartial<ListRequest> = {}, opts?: CallOptions): Promise<ListResponse> {
    return this.unary(this.raw.list, ListRequest.fromPartial(req), { method: 'List' }, opts);
  }
  /**
   * Every process the filters match, a page at a time (pageSize as given, else the largest, 1000),
   * as one ListResponse: the processes of all pages, and the first page's sequence, after which a
   * Watch misses no change, those made while paging included. A page token dies with the agent that
   * issued it: when the agent restarts or hands over between two pages (ABORTED /
   * PAGE_TOKEN_EXPIRED), the listing starts again from the first page, once; a second time, that
   * error is thrown.
   */
  async listAll(req: DeepPartial<ListRequest> = {}, opts?: CallOptions): Promise<ListResponse> {
    const request = ListRequest.fromPartial({ ...req, pageToken: '' });
    if (request.pageSize === 0) request.pageSize = MAX_LIST_PAGE_SIZE;
    try {
      return await this.listPages(request, opts);
    } catch (e) {
      if (!(e instanceof AgentCallError) || e.reason !== PAGE_TOKEN_EXPIRED) throw e;
      return await this.listPages(request, opts);
    }
  }
  private async listPages(request: ListRequest, opts?: CallOptions): Promise<ListResponse> {
    const first = await this.list(request, opts);
    const processes = first.processes;
    for (let pageToken = first.nextPageToken; pageToken !== ''; ) {
      const page = await this.list({ ...request, pageToken }, opts);
      // The agent never sends an empty page that goes on: such a server would have this loop forever.
      if (page.processes.length === 0 && page.nextPageToken !== '') throw new Error('List: an empty page with a next_page_token');
      for (const p of page.processes) processes.push(p);
      pageToken = page.nextPageToken;
    }
    return { processes, sequence: first.sequence, nextPageToken: '' };
  }
  release(req: DeepPartial<ReleaseRequest>, opts?: CallOptions): Promise<ReleaseResponse> {
    return this.unary(this.raw.release, ReleaseRequest.fromPartial(req), { method: 'Release' }, opts);
  }
  stop(req: DeepPartial<StopRequest>, opts?: CallOptions): Promise<StopResponse> {
    return this.unary(this.raw.stop, StopRequest.fromPartial(req), { method: 'Stop' }, opts);
  }
  listThreads(req: DeepPartial<ListThreadsRequest>, opts?: CallOptions): Promise<ListThreadsResponse> {
    return this.unary(this.raw.listThreads, ListThreadsRequest.fromPartial(req), { method: 'ListThreads' }, opts);
  }
  /** Resolves once the agent handed all of `data` to the pipe (RESOURCE_EXHAUSTED when too much waits). */
  writeStdin(req: DeepPartial<WriteStdinRequest>, opts?: CallOptions): Promise<WriteStdinResponse> {
    return this.unary(this.raw.writeStdin, WriteStdinRequest.fromPartial(req), { method: 'WriteStdin' }, opts);
  }
  closeStdin(req: DeepPartial<CloseStdinRequest>, opts?: CallOptions): Promise<CloseStdinResponse> {
    return this.unary(this.raw.closeStdin, CloseStdinRequest.fromPartial(req), { method: 'CloseStdin' }, opts);
  }
  resizeTerminal(req: DeepPartial<ResizeTerminalRequest>, opts?: CallOptions): Promise<ResizeTerminalResponse> {
    return this.unary(this.raw.resizeTerminal, ResizeTerminalRequest.fromPartial(req), { method: 'ResizeTerminal' }, opts);
  }
  /**
   * Several Spawns in one call (at most 256); results[i] answers requests[i], started or with its
   * own error. Each item gets a request_id as in spawn (`requestIds`), and the call is retried as spawn.
   */
  async spawnBatch(req: DeepPartial<SpawnBatchRequest>, opts?: SpawnOptions): Promise<SpawnBatchResponse & { readonly requestIds: readonly string[] }> {
    const request = SpawnBatchRequest.fromPartial(req);
    if (opts?.autoRequestId ?? this.autoRequestId) for (const r of request.requests) if (r.requestId === '') r.requestId = newRequestId();
    const requestIds = request.requests.map((r) => r.requestId);
    const res = await this.unary(this.raw.spawnBatch, request, { method: 'SpawnBatch', requestIds }, opts, this.retry);
    return Object.assign(res, { requestIds });
  }

  /**
   * Events one by one as an async iterable (the agent may batch several per message). Ends when `signal` aborts or the loop breaks; throws
   * AgentCallError when the agent ends the stream (OUT_OF_RANGE, RESOURCE_EXHAUSTED, ...).
   */
  async *watch(req: DeepPartial<WatchRequest> = {}, opts?: CallOptions): AsyncGenerator<Event> {
    const call = this.raw.watch(WatchRequest.fromPartial(req), new Metadata(), { deadline: deadlineOf(opts) });
    for await (const res of this.stream<WatchResponse>(call, 'Watch', opts)) yield* res.events;
  }

  /**
   * Captured output as it is read: each response has its `offset`, the `lostBytes` the ring
   * overwrote before it, and `eof` on the last one once the process exited and its pipe is drained.
   * Ends like `watch`.
   */
  async *readOutput(req: DeepPartial<ReadOutputRequest>, opts?: CallOptions): AsyncGenerator<ReadOutputResponse> {
    // Opened on the first next(), like watch: an iterator never read holds no stream.
    const call = this.raw.readOutput(ReadOutputRequest.fromPartial(req), new Metadata(), { deadline: deadlineOf(opts) });
    yield* this.stream<ReadOutputResponse>(call, 'ReadOutput', opts);
  }

  /**
   * Only a cancel of ours (the signal, close()) ends a stream quietly: one the agent or the connection
   * ended (an agent stopping resets its streams, which grpc-js reports as CANCELLED) is thrown, so
   * that a follower never mistakes it for the end of the output.
   */
  private async *stream<Res>(call: AsyncIterable<unknown> & { cancel(): void }, method: string, opts?: CallOptions): AsyncGenerator<Res> {
    let aborted = false;
    const onAbort = () => {
      aborted = true;
      call.cancel();
    };
    const signal = opts?.signal;
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    this.open.add(call);
    try {
      for await (const res of call) yield res as Res;
    } catch (e) {
      const err = e as ServiceError;
      if (err.code === status.CANCELLED && (aborted || this.closed)) return;
      throw new AgentCallError(err, { method });
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.open.delete(call);
      call.cancel();
    }
  }

  /**
   * Closes the channel and cancels the calls and streams still open on it. A unary call waiting
   * for its reply fails at once with UNAVAILABLE marked clientClosed (it may have run: a spawn
   * carries its requestId, to resend on a new client).
   */
  close(): void {
    this.closed = true;
    this.closing.abort();
    for (const call of [...this.open]) call.cancel();
    this.raw.close();
  }

  /**
   * One call, or several under the retry policy (the call's own, else `byDefault`): the deadline
   * is fixed once, for all attempts together.
   */
  private unary<Req, Res>(method: Unary<Req, Res>, req: Req, call: FailedCall, opts?: CallOptions, byDefault: RetryPolicy | false = false): Promise<Res> {
    const policy = opts?.retry ?? byDefault;
    const deadline = deadlineOf(opts);
    if (policy === false) return this.attempt(method, req, call, deadline, opts?.signal);
    // A failure that would have been retried, had close() (and not the caller's signal) not ended the retries.
    const stopped = (e: unknown) => {
      if (this.closing.signal.aborted && !opts?.signal?.aborted) endedByClose(e as AgentCallError);
    };
    return withRetry(policy, deadline, [opts?.signal, this.closing.signal], () => this.attempt(method, req, call, deadline, opts?.signal), stopped);
  }

  private attempt<Req, Res>(method: Unary<Req, Res>, req: Req, failed: FailedCall, deadline: Date | undefined, signal: AbortSignal | undefined): Promise<Res> {
    return new Promise((resolve, reject) => {
      // grpc-js captures the caller's stack (`new Error()`) at the start of every unary call, to
      // append to a failed call's error; AgentCallError never shows it, and the capture was a
      // seventh of the client's CPU per call. Only grpc-js's synchronous start runs without it.
      const stackTraceLimit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      const closing = this.closing.signal;
      let cut = false;
      const onAbort = () => call.cancel();
      const onClose = () => {
        cut = true;
        call.cancel();
      };
      let call: { cancel(): void };
      try {
        call = method.call(this.raw, req, new Metadata(), { deadline }, (e, res) => {
          signal?.removeEventListener('abort', onAbort);
          closing.removeEventListener('abort', onClose);
          if (!e) return resolve(res);
          const error = new AgentCallError(e, failed);
          // The caller's own abort wins: it asked for the CANCELLED. An answer of the agent's (it
          // has a reason) that came in before the close took effect stays the agent's.
          reject(cut && !signal?.aborted ? closedInFlight(failed, error) : error);
        });
      } finally {
        Error.stackTraceLimit = stackTraceLimit;
      }
      if (signal?.aborted) call.cancel();
      else signal?.addEventListener('abort', onAbort, { once: true });
      closing.addEventListener('abort', onClose, { once: true });
    });
  }
}

function deadlineOf(opts?: CallOptions): Date | undefined {
  const d = opts?.deadline;
  return d === undefined ? undefined : typeof d === 'number' ? new Date(Date.now() + d) : d;
}
