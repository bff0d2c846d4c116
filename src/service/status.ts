// The one table from domain errors to gRPC status, with google.rpc.ErrorInfo details.
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { AgentError, kernelErrno, type ErrorKind } from '../process/errors.js';
import type { Logger } from '../log.js';
import { ErrorInfo, Status } from '../api.js';

export const ERROR_DOMAIN = 'pidfd.agent';

const codes: Record<ErrorKind, status> = {
  NotFound: status.NOT_FOUND,
  AlreadyExists: status.ALREADY_EXISTS,
  ProcessExited: status.FAILED_PRECONDITION,
  FailedPrecondition: status.FAILED_PRECONDITION,
  InvalidArgument: status.INVALID_ARGUMENT,
  PermissionDenied: status.PERMISSION_DENIED,
  Unauthenticated: status.UNAUTHENTICATED,
  ResourceExhausted: status.RESOURCE_EXHAUSTED,
  OutOfRange: status.OUT_OF_RANGE,
  DeadlineExceeded: status.DEADLINE_EXCEEDED,
  Unsupported: status.FAILED_PRECONDITION,
  Unavailable: status.UNAVAILABLE,
  Aborted: status.ABORTED,
};

/** A status with its ErrorInfo, bounded: what a call (or one item of a batch) answers. */
export interface ErrorStatus {
  readonly code: status;
  readonly message: string;
  readonly reason: string;
  readonly metadata: Record<string, string>;
}

/** Any thrown value → a status; anything unexpected is logged and reported generically. */
export function errorStatus(e: unknown, method: string, log: Logger): ErrorStatus {
  if (e instanceof AgentError) {
    const { reason, ...rest } = e.detail;
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(rest)) if (v !== undefined) metadata[k] = String(v);
    return boundedStatus(codes[e.kind], e.message, reason, metadata);
  }
  log('internal_error', { method, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  const reason = kernelErrno(e) ?? 'INTERNAL';
  return boundedStatus(status.INTERNAL, 'internal error (logged by the agent)', reason, {});
}

/** Any thrown value → a ServiceError; anything unexpected is logged and reported generically. */
export function toServiceError(e: unknown, method: string, log: Logger): Partial<ServiceError> {
  return withDetails(errorStatus(e, method, log));
}

/**
 * Messages and ErrorInfo values echo request values (a signal name, a path, a label key), so
 * they are bounded: the status travels in HTTP/2 trailers, and Node refuses to send a header block
 * over 64 KiB, which left the call hanging and stalled every later call on its connection.
 * 1 KiB of message and 512 characters per value stay under that even percent-encoded and in base64.
 */
const MAX_MESSAGE_CHARS = 1024;
const MAX_VALUE_CHARS = 512;

function bounded(text: string, max: number): string {
  if (text.length <= max) return text;
  // Never half a surrogate pair: grpc-js encodeURI()s the message, which throws on a lone one.
  const end = /[\ud800-\udbff]/.test(text[max - 1]!) ? max - 1 : max;
  return `${text.slice(0, end)}… (${text.length - end} more characters)`;
}

function boundedStatus(code: status, fullDetails: string, fullReason: string, fullMetadata: Record<string, string>): ErrorStatus {
  const message = bounded(fullDetails, MAX_MESSAGE_CHARS);
  const reason = bounded(fullReason, MAX_VALUE_CHARS);
  const metadata = Object.fromEntries(Object.entries(fullMetadata).map(([k, v]) => [k, bounded(v, MAX_VALUE_CHARS)]));
  return { code, message, reason, metadata };
}

/** grpc-status-details-bin: a google.rpc.Status with the ErrorInfo (also for refusals below grpc-js, transport/outbound-budget.ts). */
export function statusDetails({ code, message, reason, metadata }: ErrorStatus): Buffer {
  const info = ErrorInfo.encode({ reason, domain: ERROR_DOMAIN, metadata }).finish();
  const rpcStatus = Status.encode({
    code,
    message,
    details: [{ typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from(info) }],
  }).finish();
  return Buffer.from(rpcStatus);
}

function withDetails(s: ErrorStatus): Partial<ServiceError> {
  const md = new Metadata();
  md.set('grpc-status-details-bin', statusDetails(s));
  return { code: s.code, details: s.message, metadata: md };
}
