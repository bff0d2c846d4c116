// A failed call as a value: the gRPC code, the agent's google.rpc.ErrorInfo, and which call it was
// (method and request ids), so that isRetryable can tell from the error alone whether a retry is safe.
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { ErrorInfo } from './gen/google/rpc/error_details.js';
import { Status } from './gen/google/rpc/status.js';

/** What the client knows of the call that failed. */
export interface FailedCall {
  /** The gRPC method: 'Spawn', 'Get', ... */
  readonly method: string;
  /** Spawn, Adopt: the request's request_id; SpawnBatch: each item's ('' where none). */
  readonly requestIds?: readonly string[];
}

/** A failed call: the gRPC code plus the agent's reason (errno name or domain reason). */
export class AgentCallError extends Error {
  readonly code: status;
  readonly details: string;
  /** ENOENT, EPERM, PROCESS_EXITED, UNKNOWN_HANDLE, ... ('' when the agent sent none: a transport failure). */
  readonly reason: string;
  /** field, path, syscall, handle where the agent named them. */
  readonly info: Readonly<Record<string, string>>;
  /** The gRPC method ('Spawn', 'Get', ...); '' when the error was made from a bare ServiceError. */
  readonly method: string;
  /** Spawn and Adopt: the request_id sent (the caller's or the one the client made up; '' for none). Resend with it to retry. */
  readonly requestId?: string;
  /** SpawnBatch: each item's request_id, in order. */
  readonly requestIds?: readonly string[];
  /**
   * The client's close() ended the call, so it may have run on the agent. Either it would have
   * been retried, but close() came while it waited out a backoff, and this is its last attempt's
   * failure (UNAVAILABLE); or close() came before its reply, and this is UNAVAILABLE with no
   * reason, as for a connection lost then (isRetryable tells whether resending it is safe).
   */
  readonly clientClosed: boolean = false;

  constructor(e: Pick<ServiceError, 'code' | 'details' | 'metadata'>, call?: FailedCall) {
    super(`${status[e.code] ?? e.code}: ${e.details}`);
    this.name = 'AgentCallError';
    this.code = e.code;
    this.details = e.details;
    const info = decodeErrorInfo(e.metadata);
    this.reason = info?.reason ?? '';
    this.info = info?.metadata ?? {};
    this.method = call?.method ?? '';
    if (call?.requestIds !== undefined) {
      if (call.method === 'SpawnBatch') this.requestIds = call.requestIds;
      else this.requestId = call.requestIds[0];
    }
  }
}

function decodeErrorInfo(md: Metadata | undefined): ErrorInfo | undefined {
  const raw = md?.get('grpc-status-details-bin')[0];
  if (!(raw instanceof Buffer)) return undefined;
  const detail = Status.decode(raw).details.find((d) => d.typeUrl.endsWith('/google.rpc.ErrorInfo'));
  return detail && ErrorInfo.decode(detail.value);
}

/** Marks a retried call's last failure as ended by the client's close() (see clientClosed). */
export function endedByClose(e: AgentCallError): void {
  if (e.clientClosed) return; // closedInFlight's: already says how
  (e as { clientClosed: boolean }).clientClosed = true;
  e.message += ' (the client was closed during the retry backoff)';
}

/**
 * The failure of a call close() cancelled before its reply: not the CANCELLED grpc-js ends it
 * with, which hides that it may have run, but what a connection lost then says. An error the
 * agent sent (it has a reason), or any other code, is returned as it is: its outcome is known
 * (grpc-js hands a reply on through a few async hops, so it can come in after close()).
 */
export function closedInFlight(call: FailedCall, failure: AgentCallError): AgentCallError {
  if (failure.reason !== '' || (failure.code !== status.CANCELLED && failure.code !== status.UNAVAILABLE)) return failure;
  const e = new AgentCallError({ code: status.UNAVAILABLE, details: 'no reply, the outcome is unknown', metadata: new Metadata() }, call);
  (e as { clientClosed: boolean }).clientClosed = true;
  e.message += ' (the client was closed with the call in flight)';
  return e;
}
