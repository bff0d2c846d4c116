// The one table from domain errors to gRPC status, with google.rpc.ErrorInfo details.
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { KernelError } from '../kernel/errors.js';
import { AgentError, type ErrorKind } from '../process/errors.js';
import { ErrorInfo, Status } from '../../clients/ts/src/gen/google/rpc/status.js';

export const ERROR_DOMAIN = 'pidfd.agent';

const codes: Record<ErrorKind, status> = {
  NotFound: status.NOT_FOUND,
  AlreadyExists: status.ALREADY_EXISTS,
  ProcessExited: status.FAILED_PRECONDITION,
  FailedPrecondition: status.FAILED_PRECONDITION,
  InvalidArgument: status.INVALID_ARGUMENT,
  PermissionDenied: status.PERMISSION_DENIED,
  ResourceExhausted: status.RESOURCE_EXHAUSTED,
  OutOfRange: status.OUT_OF_RANGE,
  DeadlineExceeded: status.DEADLINE_EXCEEDED,
  Unsupported: status.FAILED_PRECONDITION,
  Unavailable: status.UNAVAILABLE,
};

export type Logger = (event: string, fields: Record<string, unknown>) => void;

/** Any thrown value → a ServiceError; anything unexpected is logged and reported generically. */
export function toServiceError(e: unknown, method: string, log: Logger): Partial<ServiceError> {
  if (e instanceof AgentError) {
    const { reason, ...rest } = e.detail;
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(rest)) if (v !== undefined) metadata[k] = String(v);
    return withDetails(codes[e.kind], e.message, reason, metadata);
  }
  log('internal_error', { method, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  const reason = e instanceof KernelError ? e.code : 'INTERNAL';
  return withDetails(status.INTERNAL, 'internal error (logged by the agent)', reason, {});
}

function withDetails(code: status, details: string, reason: string, metadata: Record<string, string>): Partial<ServiceError> {
  const info = ErrorInfo.encode({ reason, domain: ERROR_DOMAIN, metadata }).finish();
  const rpcStatus = Status.encode({
    code,
    message: details,
    details: [{ typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from(info) }],
  }).finish();
  const md = new Metadata();
  md.set('grpc-status-details-bin', Buffer.from(rpcStatus));
  return { code, details, metadata: md };
}
