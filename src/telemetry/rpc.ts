// One duration measurement per gRPC call and, with traces on, one server span, under the current
// RPC semantic conventions (rpc.system.name, fully qualified rpc.method, rpc.response.status_code
// as the code's name, rpc.server.call.duration in seconds). The caller's W3C traceparent in the
// call metadata is the span's parent, so an orchestrator's trace continues into the agent. The old
// names (rpc.system, rpc.service, rpc.grpc.status_code, rpc.server.duration in ms) are added only
// with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup.
import { status, type Metadata, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type ServiceDefinition, type ServiceError, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type TextMapGetter } from '@opentelemetry/api';
import { globalErrorHandler } from '@opentelemetry/core';
import { observing } from './observing.js';
import { ErrorInfo, Status, type SpawnBatchResponse } from '../api.js';
import type { Series } from './histogram-tally.js';
import type { AgentMetrics } from './metrics.js';

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (md) => Object.keys(md.getMap()),
  get: (md, key) => {
    const values = md.get(key);
    return values.length === 0 ? undefined : values.map(String);
  },
};

/** Codes a server reports as its own failure (the gRPC conventions); the rest are the caller's. */
const SERVER_ERRORS = new Set([status.UNKNOWN, status.DEADLINE_EXCEEDED, status.UNIMPLEMENTED, status.INTERNAL, status.UNAVAILABLE, status.DATA_LOSS]);

const codeName = (code: number): string => status[code] ?? String(code);

/** The ErrorInfo reason the caller receives in grpc-status-details-bin, if any. */
function reasonOf(error: Partial<ServiceError>): string | undefined {
  const bin = error.metadata?.get('grpc-status-details-bin')[0];
  if (!(bin instanceof Buffer)) return undefined;
  try {
    const detail = Status.decode(bin).details.find((d) => d.typeUrl.endsWith('/google.rpc.ErrorInfo'));
    return detail === undefined ? undefined : ErrorInfo.decode(detail.value).reason;
  } catch {
    return undefined;
  }
}

export interface RpcOptions {
  readonly legacyNames: boolean;
  /** Without traces a call is only measured: no context, no span. */
  readonly traces: boolean;
}

export function instrumentService(definition: ServiceDefinition, implementation: UntypedServiceImplementation, agentMetrics: AgentMetrics, options: RpcOptions): UntypedServiceImplementation {
  const tracer = trace.getTracer('pidfd-agent');
  // The process's (a resumed agent instruments its new server): one family each, whose series go on.
  const { call: callDuration, legacy: legacyDuration } = agentMetrics.rpcDurations(options.legacyNames);

  const wrapped: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = implementation[name];
    if (handler === undefined) continue;
    const fullName = method.path.slice(1); // "/pidfd.agent.v1.AgentService/Spawn"
    const [service, short] = fullName.split('/') as [string, string];
    const base: Attributes = { 'rpc.system.name': 'grpc', 'rpc.method': fullName, ...(options.legacyNames ? { 'rpc.system': 'grpc', 'rpc.service': service } : {}) };

    /**
     * The duration series and span attributes per status code, made once. `ending` is what a span
     * lacks of them when it ends (it started with `base`).
     */
    const byCode = new Map<number, { readonly duration: Series; readonly legacy?: Series; readonly ending: Attributes }>();
    const attrsOf = (code: number) => {
      let attrs = byCode.get(code);
      if (attrs === undefined) {
        const ending = { 'rpc.response.status_code': codeName(code), ...(SERVER_ERRORS.has(code) ? { 'error.type': codeName(code) } : {}) };
        const key = `${fullName} ${code}`;
        attrs = {
          duration: callDuration.series(key, () => ({ ...base, ...ending })),
          legacy: legacyDuration?.series(key, () => ({ 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': short, 'rpc.grpc.status_code': code })),
          ending,
        };
        byCode.set(code, attrs);
      }
      return attrs;
    };

    /** Records how a call ended (its span too, if it has one); a failure here is reported, and the reply still goes. */
    const ended = observing((started: number, span: Span | undefined, error: Partial<ServiceError> | null | undefined, value?: unknown) => {
      const code = error ? (error.code ?? status.UNKNOWN) : status.OK;
      const attrs = attrsOf(code);
      // Only a failed call carries a reason (decoded from the details it sends).
      const reason = error ? reasonOf(error) : undefined;
      if (span !== undefined) {
        if (span.isRecording()) {
          if (SERVER_ERRORS.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: error?.details });
          if (reason !== undefined) span.setAttribute('pidfd.agent.error.reason', reason);
          span.setAttributes(attrs.ending);
          if (options.legacyNames) span.setAttribute('rpc.grpc.status_code', code);
        }
        span.end();
      }
      const seconds = (performance.now() - started) / 1000;
      attrs.duration.record(seconds);
      attrs.legacy?.record(seconds * 1000);
      if (short === 'Spawn') agentMetrics.spawn(1, error ? agentMetrics.reasons.of(reason ?? codeName(code)) : 'ok');
      // Each item of a batch is a spawn of its own, answered on its own.
      if (short === 'SpawnBatch' && !error) for (const r of (value as SpawnBatchResponse | undefined)?.results ?? []) agentMetrics.spawn(1, r.error ? agentMetrics.reasons.of(r.error.reason || codeName(r.error.code)) : 'ok');
      if (short === 'Watch' && reason === 'WATCH_BACKLOG') agentMetrics.watchersDropped.add(1);
    });

    const spanOptions = { kind: SpanKind.SERVER, attributes: base };
    /** The call's span in the caller's trace, and the context it runs in (none without traces). */
    const open = (metadata: Metadata): { span: Span; ctx: Context } | undefined => {
      if (!options.traces) return undefined;
      try {
        const parent = propagation.extract(ROOT_CONTEXT, metadata, metadataGetter);
        const span = tracer.startSpan(fullName, spanOptions, parent);
        return { span, ctx: trace.setSpan(parent, span) };
      } catch (e) {
        // The call is served untraced rather than not at all.
        globalErrorHandler(e as Error);
        return undefined;
      }
    };

    if (method.requestStream) {
      wrapped[name] = handler; // no client-streaming method in this API
    } else if (method.responseStream) {
      wrapped[name] = (call: ServerWritableStream<unknown, unknown>) => {
        const started = performance.now();
        const traced = open(call.metadata);
        let done = false;
        const end = (error: Partial<ServiceError> | null) => {
          if (done) return;
          done = true;
          ended(started, traced?.span, error);
        };
        call.once('error', (e: Partial<ServiceError>) => end(e));
        call.once('finish', () => end(null));
        call.once('cancelled', () => end({ code: status.CANCELLED }));
        if (traced === undefined) (handler as (c: typeof call) => void)(call);
        else context.with(traced.ctx, () => (handler as (c: typeof call) => void)(call));
      };
    } else if (!options.traces) {
      // Measured only: one closure per call, nothing else made.
      wrapped[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const started = performance.now();
        (handler as (c: typeof call, cb: sendUnaryData<unknown>) => void)(call, (error, value, trailer, flags) => {
          ended(started, undefined, error, value);
          callback(error, value, trailer, flags);
        });
      };
    } else {
      wrapped[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const started = performance.now();
        const traced = open(call.metadata);
        const reply: sendUnaryData<unknown> = (error, value, trailer, flags) => {
          ended(started, traced?.span, error, value);
          callback(error, value, trailer, flags);
        };
        if (traced === undefined) (handler as (c: typeof call, cb: typeof reply) => void)(call, reply);
        else context.with(traced.ctx, () => (handler as (c: typeof call, cb: typeof reply) => void)(call, reply));
      };
    }
  }
  return wrapped;
}
