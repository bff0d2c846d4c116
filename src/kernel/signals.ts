import { constants } from 'node:os';

// glibc reserves 32 and 33 for its own threads; SIGRTMIN as seen by programs is 34.
const SIGRTMIN = 34;
const SIGRTMAX = 64;

const byNumber = new Map<number, string>();
const byName = new Map<string, number>();
for (const [name, n] of Object.entries(constants.signals)) {
  if (!byNumber.has(n)) byNumber.set(n, name);
  byName.set(name, n);
}
for (let n = SIGRTMIN; n <= SIGRTMAX; n++) {
  const name = n === SIGRTMIN ? 'SIGRTMIN' : n === SIGRTMAX ? 'SIGRTMAX' : `SIGRTMIN+${n - SIGRTMIN}`;
  byNumber.set(n, name);
  byName.set(name, n);
}

export const Signal = { SIGKILL: 9, SIGTERM: 15, SIGCHLD: 17 } as const;

/** The conventional name of a signal number (SIGTERM), or SIG<n> for an unnamed one. */
export function signalName(signal: number): string {
  return byNumber.get(signal) ?? `SIG${signal}`;
}

/** Parses "SIGTERM", "TERM", "sigterm" or "15"; undefined when it names no deliverable signal. */
export function parseSignal(text: string): number | undefined {
  const t = text.trim().toUpperCase();
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    return byNumber.has(n) ? n : undefined;
  }
  return byName.get(t.startsWith('SIG') ? t : `SIG${t}`);
}
