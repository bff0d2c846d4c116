import { KernelError } from '../kernel/errors.js';

/** The few things that can go wrong, as the domain sees them; service/ maps each to a status. */
export type ErrorKind =
  | 'NotFound'
  | 'AlreadyExists'
  | 'ProcessExited'
  | 'FailedPrecondition'
  | 'InvalidArgument'
  | 'PermissionDenied'
  | 'ResourceExhausted'
  | 'OutOfRange'
  | 'DeadlineExceeded'
  | 'Unsupported'
  | 'Unavailable';

export interface ErrorDetail {
  /** A stable machine-readable reason: the errno name when the kernel gave one. */
  readonly reason: string;
  readonly field?: string;
  readonly path?: string;
  readonly syscall?: string;
  readonly handle?: string;
}

export class AgentError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly detail: ErrorDetail,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AgentError';
  }
}

export const notFound = (message: string, detail: ErrorDetail) => new AgentError('NotFound', message, detail);
export const invalidArgument = (field: string, message: string, reason = 'INVALID_ARGUMENT') =>
  new AgentError('InvalidArgument', `${field}: ${message}`, { reason, field });
export const unknownHandle = (handle: string) =>
  new AgentError('NotFound', `unknown handle ${JSON.stringify(handle)}`, { reason: 'UNKNOWN_HANDLE', handle });
export const processExited = (handle: string) =>
  new AgentError('ProcessExited', `process ${handle} has exited: nothing was sent`, { reason: 'PROCESS_EXITED', handle });

/** The agent is handing over to its successor: the request was not carried out; retry. */
export const handoverInProgress = () =>
  new AgentError('Unavailable', 'the agent is handing over to its successor: retry', { reason: 'HANDOVER' });

const kindByErrno: Readonly<Record<string, ErrorKind>> = {
  ENOENT: 'NotFound',
  ESRCH: 'NotFound',
  ENOTDIR: 'NotFound',
  EACCES: 'PermissionDenied',
  EPERM: 'PermissionDenied',
  EMFILE: 'ResourceExhausted',
  ENFILE: 'ResourceExhausted',
  EAGAIN: 'ResourceExhausted',
  ENOMEM: 'ResourceExhausted',
  ENOSPC: 'ResourceExhausted',
  E2BIG: 'InvalidArgument',
  ENOEXEC: 'InvalidArgument',
  ENAMETOOLONG: 'InvalidArgument',
  ELOOP: 'InvalidArgument',
  EISDIR: 'InvalidArgument',
  EINVAL: 'InvalidArgument',
  ETXTBSY: 'Unavailable',
};

/**
 * Translates a failed system call into the domain error, keeping the cause and naming what the
 * caller was acting on. Unknown errnos stay KernelError (an internal error).
 */
export function fromKernel(e: unknown, context: { what: string; field?: string; path?: string; handle?: string }): unknown {
  if (!(e instanceof KernelError)) return e;
  const kind = kindByErrno[e.code];
  if (kind === undefined) return e;
  const { what, field, path, handle } = context;
  return new AgentError(kind, `${what}: ${e.code}`, { reason: e.code, syscall: e.syscall, field, path, handle }, { cause: e });
}
