/**
 * The agent's structured log: an event name and its fields, written as one JSON line by the
 * composition root. Library layers take one as a parameter; they never pick where it goes.
 */
export type Logger = (event: string, fields: Record<string, unknown>) => void;

export type LogFormat = 'json' | 'text';

// Characters that a terminal or log viewer acts on instead of showing, and that JSON.stringify
// leaves as they are: DEL and the C1 controls (U+009B is a CSI), the line and paragraph
// separators, bidi marks and overrides. Callers name commands (argv[0]), and an operator reads the
// log in a terminal.
const UNSHOWN = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const UNSHOWN_ALL = new RegExp(UNSHOWN.source, 'g');
const escaped = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** JSON text with what would act on a terminal escaped too: the same value to a JSON reader. */
export const shownJson = (json: string): string => (UNSHOWN.test(json) ? json.replace(UNSHOWN_ALL, escaped) : json);

/** JSON.stringify, with what would act on a terminal escaped too (shownJson). */
export const logJson = (value: unknown): string => shownJson(JSON.stringify(value));

/** Printable ASCII but `"` and `=`: written bare in a text line; anything else is quoted as JSON. */
const BARE = /^[\x21\x23-\x3c\x3e-\x7e]+$/;

/** One log line: a JSON object, or `TIME EVENT key=value ...` with values as JSON. */
export function formatLogLine(format: LogFormat, time: Date, event: string, fields: Record<string, unknown>): string {
  if (format === 'json') return logJson({ time: time.toISOString(), event, ...fields });
  const pairs = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' && BARE.test(v) ? v : logJson(v)}`);
  return [time.toISOString(), event, ...pairs].join(' ');
}
