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

/** argv of pid from /proc/PID/cmdline; empty for kernel threads or when gone. */
export function readCmdline(pid: number): string[] {
  const raw = readOrUndefined(`/proc/${pid}/cmdline`);
  if (!raw) return [];
  return raw.replace(/\0$/, '').split('\0');
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
