import { readdirSync, readFileSync } from 'node:fs';

/**
 * The fields of /proc/PID/stat, numbered as in proc(5) (`field(22)` is the start time); undefined
 * if gone. comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
 */
export function readStat(pid: number): ((n: number) => string | undefined) | undefined {
  const stat = readOrUndefined(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (n) => rest[n - 3];
}

/** Start time of pid in clock ticks since boot (/proc/PID/stat field 22); undefined if gone. */
export function readStartTime(pid: number): bigint | undefined {
  const field = readStat(pid)?.(22);
  return field === undefined ? undefined : BigInt(field);
}

/** The kernel's per-task flags of pid (/proc/PID/stat field 9: PF_*); undefined if gone. */
export function readTaskFlags(pid: number): number | undefined {
  const field = readStat(pid)?.(9);
  return field === undefined ? undefined : Number(field);
}

/** argv of pid from /proc/PID/cmdline, as the agent keeps it (boundedArgv); empty for kernel threads or when gone. */
export function readCmdline(pid: number): string[] {
  const raw = readOrUndefined(`/proc/${pid}/cmdline`);
  if (!raw) return [];
  return boundedArgv(raw.replace(/\0$/, '').split('\0'));
}

/**
 * What of a command line the agent keeps: as much as a Spawn may carry (service/validate.ts's
 * LIMITS: 4,096 arguments, 1 MiB, 128 KiB each), since every event and List page about the process
 * repeats it and one response must stay under gRPC's 4 MiB. A process's own command line can be
 * 6 MiB (ARG_MAX with a raised stack limit), all of it empty arguments (two bytes each on the wire),
 * and each byte read as latin1 above 0x7f is two on the wire. A cut is marked with a last `…`.
 */
const ARGV_BYTES = 1024 * 1024;
const ARG_BYTES = 128 * 1024;
const ARGV_ITEMS = 4096;
const CUT = '…';

export function boundedArgv(argv: readonly string[]): string[] {
  const kept: string[] = [];
  let total = 0;
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    // Halved: a latin1 character is at most two bytes in UTF-8.
    if (Buffer.byteLength(arg) > ARG_BYTES) arg = arg.slice(0, ARG_BYTES / 2 - 2) + CUT;
    // What the argument costs in a Process message: its tag, its length, its bytes.
    total += 3 + Buffer.byteLength(arg);
    if (total > ARGV_BYTES || (i === ARGV_ITEMS - 1 && argv.length > ARGV_ITEMS)) {
      kept.push(CUT);
      return kept;
    }
    kept.push(arg);
  }
  return kept;
}

function readOrUndefined(path: string): string | undefined {
  // latin1 keeps every byte; field 22 and the NUL separators are ASCII either way.
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

/** Thread IDs from /proc/PID/task, the leader (tid == pid) first; empty when gone. */
export function readThreadIds(pid: number): number[] {
  try {
    const tids = readdirSync(`/proc/${pid}/task`).map(Number).filter(Number.isInteger);
    return tids.sort((a, b) => (a === pid ? -1 : b === pid ? 1 : a - b));
  } catch {
    return [];
  }
}

/** This boot's random id (/proc/sys/kernel/random/boot_id): pidfs inodes are unique only within it. */
export function readBootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
}
