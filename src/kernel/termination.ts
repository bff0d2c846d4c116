/** How a process ended: a normal exit with a code, or death by a signal. Never 128+N. */
export type Termination =
  | { readonly exitCode: number; readonly signal?: undefined }
  | { readonly signal: number; readonly coreDumped: boolean; readonly exitCode?: undefined };

export interface Rusage {
  readonly userMicros: number;
  readonly systemMicros: number;
  /** KiB; for a posix_spawn child at least the agent's RSS at spawn time (shared until exec). */
  readonly maxRssKib: number;
  readonly minorFaults: number;
  readonly majorFaults: number;
  readonly voluntaryContextSwitches: number;
  readonly involuntaryContextSwitches: number;
}
