// What the SDK reports going wrong (an export refused or timed out, a full span queue, a variable it
// cannot read) as lines of the agent's own log. Without a diagnostic logger the SDK says nothing, and
// a collector that is down looks like a quiet node. A collector that stays down fails every export:
// each message is written once, then at most once a minute with how often it came in between.
import { diag, DiagLogLevel, type DiagLogger } from '@opentelemetry/api';
import type { Logger } from '../log.js';

const QUIET_MS = 60_000;
/** Messages tracked for repeats; a flood of distinct ones is written and forgotten past this. */
const MAX_TRACKED = 64;
const MAX_MESSAGE = 2_000;

/** The message of an error the SDK's handler passes on as JSON ({"stack", "message", "name"}). */
function messageOf(text: string): string {
  if (!text.startsWith('{')) return text;
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    return typeof parsed.message === 'string' ? parsed.message : text;
  } catch {
    return text;
  }
}

/** What JSON makes of a value, or its string when JSON cannot (a cycle, a BigInt): a log line must never throw into the SDK. */
function json(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** A stack says where in the SDK, which no operator acts on: the first line says what. */
function describe(value: unknown): string {
  const text = value instanceof Error ? value.message : typeof value === 'string' ? messageOf(value) : json(value);
  const line = text.split('\n').find((l) => !/^\s+at /.test(l)) ?? '';
  return line.length > MAX_MESSAGE ? `${line.slice(0, MAX_MESSAGE)}…` : line;
}

/**
 * Lines a minute in all: a collector or proxy whose messages differ every time (a random reason
 * phrase) is a new problem each time by its text, and must not flood the log for it.
 */
export const PROBLEM_LINES_PER_MINUTE = 20;

export function diagnosticsLogger(log: Logger, now: () => number = Date.now): DiagLogger {
  const seen = new Map<string, { at: number; repeated: number }>();
  let windowAt = Number.NEGATIVE_INFINITY;
  let written = 0;
  let unwritten = 0;
  /** Says how many went unwritten when the minute ends, also when nothing comes after them. */
  let flush: NodeJS.Timeout | undefined;
  const reportUnwritten = () => {
    flush = undefined;
    if (unwritten > 0) log('telemetry_problem', { level: 'warn', message: `${unwritten} more problems in the minute before were not logged (at most ${PROBLEM_LINES_PER_MINUTE} lines a minute)` });
    unwritten = 0;
  };
  const report =
    (level: 'error' | 'warn') =>
    (message: string, ...args: unknown[]): void => {
      const text = [message, ...args].map(describe).filter((s) => s !== '').join(' ');
      // The same message with other numbers in it ("Dropped 12 spans") is the same problem.
      const key = `${level}\0${text.replace(/\d+/g, '#')}`;
      const t = now();
      const last = seen.get(key);
      if (last !== undefined && t - last.at < QUIET_MS) {
        last.repeated++;
        return;
      }
      if (t - windowAt >= QUIET_MS) {
        clearTimeout(flush);
        reportUnwritten();
        windowAt = t;
        written = 0;
      }
      if (written >= PROBLEM_LINES_PER_MINUTE) {
        unwritten++;
        flush ??= setTimeout(reportUnwritten, Math.max(0, windowAt + QUIET_MS - t)).unref();
        return;
      }
      written++;
      log('telemetry_problem', { level, message: text, ...(last !== undefined && last.repeated > 0 ? { repeated: last.repeated } : {}) });
      if (last === undefined && seen.size >= MAX_TRACKED) seen.clear();
      seen.set(key, { at: t, repeated: 0 });
    };
  const ignore = () => {};
  return { error: report('error'), warn: report('warn'), info: ignore, debug: ignore, verbose: ignore };
}

/**
 * The SDK's warnings and errors go to the agent's log, unless OTEL_LOG_LEVEL asked for the SDK's
 * own console logger (which the SDK then installed itself).
 */
export function logDiagnostics(log: Logger, env: Readonly<Record<string, string | undefined>>): void {
  if ((env.OTEL_LOG_LEVEL ?? '').trim() !== '') return;
  diag.setLogger(diagnosticsLogger(log), { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
}
