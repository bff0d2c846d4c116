// The audit trail: one JSON line per mutating call and per denial, to stderr or --audit-log.
import { closeSync, openSync, writeSync } from 'node:fs';

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

/**
 * Written synchronously, one write(2) per line on an O_APPEND file (lines of concurrent writers
 * never interleave), so the line is in the file before the reply is sent.
 */
export class AuditLog {
  private fd: number | null;

  /** file: appended to (created 0600); undefined: stderr. */
  constructor(file?: string) {
    this.fd = file === undefined ? null : openSync(file, 'a', 0o600);
  }

  private isoMs = Number.NaN;
  private iso = '';

  readonly write: AuditSink = (entry) => {
    // The entry's own JSON behind a prebuilt head (`time` and `event` first, as always): no copy
    // of the entry, and one date string per millisecond, for a line per mutating call.
    const now = Date.now();
    if (now !== this.isoMs) {
      this.isoMs = now;
      this.iso = `{"time":"${new Date(now).toISOString()}","event":"audit",`;
    }
    const line = this.iso + JSON.stringify(entry).slice(1) + '\n';
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
  };

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
