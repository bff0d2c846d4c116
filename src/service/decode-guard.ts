// Requests that cannot be decoded are the caller's error. grpc-js answers INTERNAL when a
// requestDeserialize throws (server-interceptors.js, "Error deserializing request"), which tells a
// client the agent broke and invites a retry; so decoding never throws here: a failed decode
// yields a marker that the handler answers with INVALID_ARGUMENT before any service code sees it.
// Undecodable covers malformed bytes and int64 values beyond 2^53, which ts-proto (forceLong=number)
// refuses: no field of this API can honour such a value anyway.
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { AgentError } from '../process/errors.js';
import { toServiceError } from './status.js';

const UNDECODABLE = Symbol('undecodable');

interface Undecodable {
  readonly [UNDECODABLE]: string;
}

const isUndecodable = (request: unknown): request is Undecodable => typeof request === 'object' && request !== null && UNDECODABLE in request;

const undecodable = (method: string, why: string) =>
  toServiceError(new AgentError('InvalidArgument', `${method}: the request could not be decoded: ${why}`, { reason: 'UNDECODABLE' }), method, () => {});

type Method = ServiceDefinition[string];

/** The service definition with decoders that never throw. */
export function tolerantDefinition<T extends ServiceDefinition>(definition: T): T {
  const methods: Record<string, Method> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    methods[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return decode(bytes);
        } catch (e) {
          return { [UNDECODABLE]: e instanceof Error ? e.message : String(e) } satisfies Undecodable;
        }
      },
    };
  }
  return methods as T;
}

/** The implementation with every handler answering a marked (undecodable) request itself. */
export function refusingUndecodable(definition: ServiceDefinition, implementation: UntypedServiceImplementation): UntypedServiceImplementation {
  const guarded: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = implementation[name];
    if (handler === undefined) continue;
    const rpc = method.path.slice(method.path.lastIndexOf('/') + 1);
    if (method.requestStream) {
      guarded[name] = handler; // no client-streaming method in this API: each message would need the check
    } else if (method.responseStream) {
      guarded[name] = (call: ServerWritableStream<unknown, unknown>) => {
        if (isUndecodable(call.request)) call.emit('error', undecodable(rpc, call.request[UNDECODABLE]));
        else (handler as (c: typeof call) => void)(call);
      };
    } else {
      guarded[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        if (isUndecodable(call.request)) callback(undecodable(rpc, call.request[UNDECODABLE]));
        else (handler as (c: typeof call, cb: typeof callback) => void)(call, callback);
      };
    }
  }
  return guarded;
}
