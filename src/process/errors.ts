import { KernelError } from '../kernel/errors.js';

/** The few things that can go wrong, as the domain sees them; service/ maps each to a status. */
export type ErrorKind =
  | 'NotFound'
  | 'AlreadyExists'
  | 'ProcessExited'
  | 'FailedPrecondition'
  | 'InvalidArgument'
  | 'PermissionDenied'
  /** The connection proved no caller the agent can name (gone, or a certificate it refuses). */
  | 'Unauthenticated'
  | 'ResourceExhausted'
  | 'OutOfRange'
  | 'DeadlineExceeded'
  | 'Unsupported'
  | 'Unavailable'
  /** Not carried out, and not to be retried as is (a spawn whose earlier outcome is unknown). */
  | 'Aborted';

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

/**
 * A retry of a request_id whose process was started (or adopted) and released since: done once, it
 * is not done again. ALREADY_EXISTS, as for an adoption of a process already managed: what the
 * request asked for happened, and a retry cannot change that.
 */
export const requestReleased = (t: { readonly requestId: string; readonly handle: string }, done: 'started' | 'adopted') =>
  new AgentError('AlreadyExists', `request_id ${JSON.stringify(t.requestId)}: its process (handle ${t.handle}) was ${done} and has since been released; it is not ${done} again`, {
    reason: 'REQUEST_RELEASED',
    field: 'request_id',
    handle: t.handle,
  });

/** The agent is handing over to its successor: the request was not carried out; retry. */
export const handoverInProgress = () =>
  new AgentError('Unavailable', 'the agent is handing over to its successor: retry', { reason: 'HANDOVER' });

/**
 * The one errno → domain table. `shortage`: the node ran out of something (descriptors, memory,
 * processes); with `shortageIsNodes` the call site says that is not the named field's fault.
 */
const byErrno: Readonly<Record<string, { readonly kind: ErrorKind; readonly shortage?: true }>> = {
  ENOENT: { kind: 'NotFound' },
  ESRCH: { kind: 'NotFound' },
  ENOTDIR: { kind: 'NotFound' },
  EACCES: { kind: 'PermissionDenied' },
  EPERM: { kind: 'PermissionDenied' },
  EMFILE: { kind: 'ResourceExhausted', shortage: true },
  ENFILE: { kind: 'ResourceExhausted', shortage: true },
  EAGAIN: { kind: 'ResourceExhausted', shortage: true },
  ENOMEM: { kind: 'ResourceExhausted', shortage: true },
  ENOSPC: { kind: 'ResourceExhausted' },
  E2BIG: { kind: 'InvalidArgument' },
  ENOEXEC: { kind: 'InvalidArgument' },
  ENAMETOOLONG: { kind: 'InvalidArgument' },
  ELOOP: { kind: 'InvalidArgument' },
  EXDEV: { kind: 'InvalidArgument' },
  EISDIR: { kind: 'InvalidArgument' },
  EINVAL: { kind: 'InvalidArgument' },
  ETXTBSY: { kind: 'Unavailable' },
};

/** What the failing call was about, as its call site knows it. */
export interface ErrnoContext {
  /** What the caller was acting on; the message reads `${what}: ${errno}`. */
  readonly what: string;
  readonly field?: string;
  readonly path?: string;
  readonly handle?: string;
  /** When the cause does not say (a Node fs error, a helper stage). */
  readonly syscall?: string;
  /** The kind for an errno the table does not know; without it such an error stays internal. */
  readonly otherwise?: ErrorKind;
  /** Running out (EMFILE, ENOMEM, EAGAIN...) is the node's state here, not the field's fault. */
  readonly shortageIsNodes?: boolean;
  /** Said after the errno, in parentheses. */
  readonly note?: string;
}

/** The domain error for an errno name in a context; undefined when it stays internal. */
export function errnoError(code: string, context: ErrnoContext, cause?: unknown): AgentError | undefined {
  const entry = byErrno[code];
  const kind = entry?.kind ?? context.otherwise;
  if (kind === undefined) return undefined;
  const { what, path, handle, syscall, note } = context;
  const field = entry?.shortage && context.shortageIsNodes ? undefined : context.field;
  const message = `${what}: ${code}${note === undefined ? '' : ` (${note})`}`;
  return new AgentError(kind, message, { reason: code, syscall, field, path, handle }, cause === undefined ? undefined : { cause });
}

/**
 * Translates a failed system call (a KernelError, or a Node fs error with its errno name) into the
 * domain error, keeping the cause. Anything else, and errnos the context leaves internal, pass through.
 */
export function fromKernel(e: unknown, context: ErrnoContext): unknown {
  const failure = e instanceof KernelError ? { code: e.code, syscall: e.syscall } : nodeErrno(e);
  if (failure === undefined) return e;
  return errnoError(failure.code, { ...context, syscall: failure.syscall ?? context.syscall }, e) ?? e;
}

/** The errno name of an unexpected kernel failure (for the logs and ErrorInfo), else undefined. */
export const kernelErrno = (e: unknown): string | undefined => (e instanceof KernelError ? e.code : undefined);

function nodeErrno(e: unknown): { code: string; syscall?: string } | undefined {
  const { code, syscall } = (e instanceof Error ? e : {}) as NodeJS.ErrnoException;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? { code, syscall } : undefined;
}
