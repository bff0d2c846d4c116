/**
 * The agent's structured log: an event name and its fields, written as one JSON line by the
 * composition root. Library layers take one as a parameter; they never pick where it goes.
 */
export type Logger = (event: string, fields: Record<string, unknown>) => void;

export type LogFormat = 'json' | 'text';

/** One log line: a JSON object, or `TIME EVENT key=value ...` with values as JSON. */
export function formatLogLine(format: LogFormat, time: Date, event: string, fields: Record<string, unknown>): string {
  if (format === 'json') return JSON.stringify({ time: time.toISOString(), event, ...fields });
  const pairs = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)}`);
  return [time.toISOString(), event, ...pairs].join(' ');
}
