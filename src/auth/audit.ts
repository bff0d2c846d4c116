// The audit trail: one JSON line per mutating call and per denial, to stderr or --audit-log.
import { closeSync, openSync, writeSync } from 'node:fs';
import { logJson, shownJson } from '../log.js';

export type Decision = 'allow' | 'deny';

export interface AuditEntry {
  readonly identity: string;
  readonly peer: string;
  readonly rpc: string;
  readonly handle?: string;
  /** Spawns: argv[0] as requested (and `executable`, as resolved, once known). */
  readonly argv0?: string;
  readonly executable?: string;
  readonly pid?: number;
  readonly decision: Decision;
  /** The rule that decided (its name, else `rules[i]`); null when no rule names the caller. */
  readonly rule: string | null;
  /** Denials: the reason (POLICY_DENIED, UNKNOWN_HANDLE, POLICY_QUOTA) and the field refused. */
  readonly reason?: string;
  readonly field?: string;
  readonly message?: string;
  /** Allowed calls: `ok`, or the reason the call failed after it was allowed. */
  readonly result?: string;
}

export type AuditSink = (entry: AuditEntry) => void;

/** Denial lines an identity gets a second; beyond, its denials are counted in one `audit_suppressed` line. */
export const DENIALS_PER_SECOND = 20;
/** Identities counted by name in one window; the rest are summed under `(others)`. */
const COUNTED_IDENTITIES = 1024;
/** A string field longer than this is cut to it and says how much was cut: a line stays a few KiB. */
export const AUDIT_FIELD_CHARS = 512;

/**
 * Written synchronously, one write(2) per line on an O_APPEND file (lines of concurrent writers
 * never interleave), so the line is in the file before the reply is sent. A caller that is refused
 * costs the agent nothing else, so its denials are what could fill the disk: each identity gets
 * DENIALS_PER_SECOND lines a second, and what it is refused beyond that is counted, by identity,
 * in one line when the second ends. Allowed calls are always written.
 */
export class AuditLog {
  private fd: number | null;
  private readonly denials = new Map<string, number>();
  private readonly suppressed = new Map<string, number>();
  private window: NodeJS.Timeout | null = null;

  /** file: appended to (created 0600); undefined: stderr. */
  constructor(file?: string) {
    this.fd = file === undefined ? null : openSync(file, 'a', 0o600);
  }

  private isoMs = Number.NaN;
  private iso = '';

  readonly write: AuditSink = (entry) => {
    if (entry.decision === 'deny' && !this.admitDenial(entry.identity)) return;
    // The entry's own JSON behind a prebuilt head (`time` and `event` first, as always): no copy
    // of the entry, and one date string per millisecond, for a line per mutating call.
    const now = Date.now();
    if (now !== this.isoMs) {
      this.isoMs = now;
      this.iso = `{"time":"${new Date(now).toISOString()}","event":"audit",`;
    }
    let json = JSON.stringify(entry);
    // Escaped once it is the line: a refused caller's 100 KB argv[0] is not scanned for nothing.
    json = shownJson(json.length > 4 * AUDIT_FIELD_CHARS ? JSON.stringify(bounded(entry)) : json);
    this.append(this.iso + json.slice(1) + '\n');
  };

  private append(line: string): void {
    if (this.fd !== null) {
      try {
        writeSync(this.fd, line);
        return;
      } catch (e) {
        // A full or failing disk must neither lose the line nor fail a call that already happened.
        process.stderr.write(JSON.stringify({ time: new Date().toISOString(), event: 'audit_write_failed', error: String(e) }) + '\n');
      }
    }
    process.stderr.write(line);
  }

  private admitDenial(identity: string): boolean {
    // The window opens with its first denial: an agent nobody is refused keeps no timer.
    this.window ??= setTimeout(() => this.flush(), 1000).unref();
    const written = this.denials.get(identity) ?? 0;
    if (written < DENIALS_PER_SECOND) {
      if (written > 0 || this.denials.size < COUNTED_IDENTITIES) {
        this.denials.set(identity, written + 1);
        return true;
      }
    }
    const key = this.suppressed.has(identity) || this.suppressed.size < COUNTED_IDENTITIES ? identity : '(others)';
    this.suppressed.set(key, (this.suppressed.get(key) ?? 0) + 1);
    return false;
  }

  private flush(): void {
    if (this.window !== null) clearTimeout(this.window);
    this.window = null;
    this.denials.clear();
    if (this.suppressed.size === 0) return;
    const denials = Object.fromEntries(this.suppressed);
    this.suppressed.clear();
    this.append(logJson({ time: new Date().toISOString(), event: 'audit_suppressed', window_ms: 1000, denials }) + '\n');
  }

  close(): void {
    this.flush();
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** The entry with each long string cut to AUDIT_FIELD_CHARS, saying how many characters were cut. */
function bounded(entry: AuditEntry): AuditEntry {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entry)) {
    out[key] = typeof value === 'string' && value.length > AUDIT_FIELD_CHARS ? `${value.slice(0, AUDIT_FIELD_CHARS)}…(${value.length - AUDIT_FIELD_CHARS} more)` : value;
  }
  return out as unknown as AuditEntry;
}
