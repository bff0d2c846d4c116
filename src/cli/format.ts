import { logJson } from '../log.js';
import { EventType, OutputStream, State, type Event, type Exit, type OutputChunk, type Process } from './client.js';

export function describeExit(exit: Exit | undefined): string {
  if (!exit) return 'running';
  if (exit.statusLost) return 'exited while no agent watched it (status lost)';
  if (exit.signal !== undefined) return `killed by ${exit.signalName} (signal ${exit.signal})${exit.coreDumped ? ', core dumped' : ''}`;
  return `exited with code ${exit.code}`;
}

/** The CLI's own exit status for a process exit: its code, or 128+signal like a shell; 255 when lost. */
export const exitStatusOf = (exit: Exit | undefined): number =>
  exit === undefined ? 0 : exit.statusLost ? 255 : exit.signal !== undefined ? 128 + exit.signal : (exit.code ?? 0);

/**
 * Text from the agent as a terminal may show it: control characters (C0, DEL, C1) as \xNN. Labels,
 * argv and owners are a caller's, maybe another tenant's, and an escape sequence in one would reach
 * the terminal of whoever lists them (retitle it, hide or rewrite lines).
 */
export const printable = (text: string): string =>
  text
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    // Bidirectional marks, overrides and isolates reorder what follows them on the line (Trojan
    // Source); the line and paragraph separators break it.
    .replace(/[\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);

/** JSON as a terminal may show it: what JSON.stringify leaves raw (DEL, C1, bidi controls) as \u escapes, still JSON. */
export const jsonText = logJson;

/** A quoted string, as JSON writes it, with what JSON leaves raw (DEL, C1) escaped too. */
export const quoted = (text: unknown): string => printable(JSON.stringify(text));

const stateName = (s: State) => State[s]?.replace('STATE_', '').toLowerCase() ?? String(s);
const eventName = (e: EventType) => EventType[e]?.replace('EVENT_TYPE_', '').toLowerCase() ?? String(e);
export const labelText = (labels: Record<string, string>): string =>
  Object.entries(labels)
    .map(([k, v]) => printable(`${k}=${v}`))
    .join(',');

export function processLine(p: Process): string {
  const status = p.state === State.STATE_EXITED ? describeExit(p.exit) : stateName(p.state);
  const labels = labelText(p.labels);
  return `${p.handle}  pid ${p.pid}  ${status}${labels ? `  [${labels}]` : ''}  ${quoted(p.argv.join(' '))}`;
}

export function processDetail(p: Process): string {
  const lines = [
    `handle:      ${p.handle}`,
    `pid:         ${p.pid}`,
    `state:       ${stateName(p.state)}`,
    `argv:        ${quoted(p.argv)}`,
    `labels:      ${labelText(p.labels) || '-'}`,
    `started:     ${p.startedAt?.toISOString() ?? '-'}`,
    `adopted:     ${p.adopted}`,
    `owner:       ${printable(p.owner) || '-'}`,
    `pidfs inode: ${p.pidfsInode}`,
  ];
  if (p.usage) lines.push(`usage:       ${usageText(p)}`);
  if (p.exit) {
    lines.push(`exit:        ${describeExit(p.exit)}`, `exited:      ${p.exit.exitedAt?.toISOString() ?? '-'}`);
    const r = p.exit.rusage;
    if (r) lines.push(`cpu:         user ${seconds(r.userCpu)}s system ${seconds(r.systemCpu)}s`);
    if (p.exit.reclaimTime) lines.push(`reclaimed:   memory freed ${millis(p.exit.reclaimTime)} ms after the SIGKILL`);
  }
  return lines.join('\n');
}

/** A Duration in milliseconds, to the tenth. */
export const millis = (d: { seconds: number; nanos: number }): string => (d.seconds * 1000 + d.nanos / 1e6).toFixed(1);

const seconds = (d: { seconds: number; nanos: number } | undefined) => (d ? (d.seconds + d.nanos / 1e9).toFixed(3) : '0');

/** CPU, RSS, threads and descriptors of a running process. */
export function usageText(p: Process): string {
  const u = p.usage!;
  return `cpu user ${seconds(u.userCpu)}s system ${seconds(u.systemCpu)}s, rss ${u.rssBytes} bytes, ${u.threads} threads, ${u.openFds} fds`;
}

export function eventLine(e: Event): string {
  const p = e.process!;
  const what = e.type === EventType.EVENT_TYPE_EXITED ? describeExit(p.exit) : e.output ? outputText(e.output) : e.type === EventType.EVENT_TYPE_USAGE && p.usage ? `usage ${usageText(p)}` : eventName(e.type);
  return `${e.sequence}  ${e.time?.toISOString() ?? ''}  ${p.handle}  pid ${p.pid}  ${what}`;
}

/** An output event: where the bytes are, and the start of them as text. */
function outputText(o: OutputChunk): string {
  const stream = o.stream === OutputStream.OUTPUT_STREAM_STDERR ? 'stderr' : 'stdout';
  const text = o.data.subarray(0, 40).toString('utf8');
  return `output ${stream} ${o.data.length} bytes at ${o.offset}: ${quoted(text)}${o.data.length > 40 ? '...' : ''}`;
}
