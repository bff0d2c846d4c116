// What observes the agent must never stop it: a telemetry hook that fails reports the failure to the
// SDK's error handler (the agent's log, diagnostics.ts) and returns, so that an exit is still settled
// for its waiters and a call still gets its reply.
import { globalErrorHandler } from '@opentelemetry/core';

export function observing<A extends unknown[]>(hook: (...args: A) => void): (...args: A) => void {
  return (...args) => {
    try {
      hook(...args);
    } catch (e) {
      globalErrorHandler(e as Error);
    }
  };
}
