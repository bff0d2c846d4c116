// What the domain tells an observer (telemetry/ implements it): process/ declares the port, so it
// names no tracing or metrics library and costs one no-op call per hook when nobody listens.
import type { ProcessRecord } from './lifecycle/record.js';

/** The stages of a spawn that take time, each a child span of the Spawn when tracing is on. */
export type SpawnStage = 'executable' | 'cgroup' | 'exec' | 'store';

/** One spawn's stages and start, tied to the call that asked for it. */
export interface SpawnTrace {
  /** Runs fn as one stage (a returned promise ends the stage when it settles). */
  stage<T>(stage: SpawnStage, fn: () => T): T;
  /** The process is held by its pidfd, so long after the request. */
  started(record: ProcessRecord, spawnSeconds: number): void;
}

export interface ProcessTelemetry {
  /** Runs fn as one stage of the call running now (a returned promise ends the stage when it settles). */
  stage<T>(stage: SpawnStage, fn: () => T): T;
  /**
   * Taken when a spawn begins, while its call is the one running: the stages and start it reports
   * after it has waited for something still belong to that call.
   */
  spawnTrace(): SpawnTrace;
  /** A spawned or adopted process is held by its pidfd; a spawn says how long that took. */
  started(record: ProcessRecord, spawnSeconds?: number): void;
  /** Its exit is recorded (or found lost after a restart). */
  exited(record: ProcessRecord): void;
  /** A signal was sent to it. */
  signalled(signal: number): void;
}

const NO_SPAWN_TRACE: SpawnTrace = {
  stage: (_stage, fn) => fn(),
  started: () => {},
};

export const NO_TELEMETRY: ProcessTelemetry = {
  stage: (_stage, fn) => fn(),
  spawnTrace: () => NO_SPAWN_TRACE,
  started: () => {},
  exited: () => {},
  signalled: () => {},
};
