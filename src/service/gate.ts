import { setMaxListeners } from 'node:events';
import { AgentError } from '../process/errors.js';

/**
 * Whether the agent takes requests. Closed while it hands over to its successor: every new call
 * is UNAVAILABLE (clients retry, and reach the successor); when the handover completes, calls in
 * flight end the same way.
 */
export class ServiceGate {
  private closedBy: AgentError | null = null;
  private ending = ServiceGate.controller();
  /** Calls in flight that end themselves when the gate ends them: a Set is cheaper per call than a listener on the signal. */
  private readonly inFlight = new Set<() => void>();

  /** Every call in flight listens (its own bound is the server's), so no listener count warns. */
  private static controller(): AbortController {
    const c = new AbortController();
    setMaxListeners(0, c.signal);
    return c;
  }

  /** Aborted when the calls in flight must end. */
  get signal(): AbortSignal {
    return this.ending.signal;
  }

  /** Throws the reason while closed. */
  check(): void {
    if (this.closedBy !== null) throw this.closedBy;
  }

  /** The error a call ends with once the gate ended it, else `e` itself. */
  explain(e: unknown): unknown {
    return this.ending.signal.aborted && this.closedBy !== null ? this.closedBy : e;
  }

  close(why: AgentError): void {
    this.closedBy = why;
  }

  open(): void {
    this.closedBy = null;
    if (this.ending.signal.aborted) this.ending = ServiceGate.controller();
  }

  /** `end` runs when the gate ends the calls in flight, unless it was untracked first. */
  track(end: () => void): void {
    this.inFlight.add(end);
  }

  untrack(end: () => void): void {
    this.inFlight.delete(end);
  }

  /** Ends the calls in flight (with the reason the gate was closed for). */
  endCalls(): void {
    this.ending.abort();
    for (const end of [...this.inFlight]) end();
    this.inFlight.clear();
  }
}
