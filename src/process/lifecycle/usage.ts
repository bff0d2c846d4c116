// Live resource use of a running process, from /proc/PID. /proc is addressed by number, so what
// is read counts only if the number was still our process's throughout: a pid is not reused
// before its process is reaped, and our pidfd still reaching an unreaped process after the reads
// (pidfd_send_signal(pidfd, 0)) proves it was. A process that has exited (or was reaped
// meanwhile) shows no usage.
//
// List reads this for every running process on the event loop, so it costs one small read and
// one stat: /proc/PID/stat holds CPU time, threads and RSS, and since Linux 6.2 the size of
// /proc/PID/fd is the number of open descriptors.
import { statSync } from 'node:fs';
import { PAGE_SIZE } from '../../kernel/files.js';
import { readStat } from './proc-fs.js';
import type { ProcessRecord } from './record.js';

export interface Usage {
  readonly userMicros: number;
  readonly systemMicros: number;
  readonly rssBytes: number;
  readonly threads: number;
  readonly openFds: number;
  /** ms since the epoch. */
  readonly sampledAt: number;
}

/** USER_HZ: the unit of utime and stime in /proc/PID/stat, 100 on every Linux ABI. */
const TICK_MICROS = 10_000;

/** The process's usage now, or undefined when it is not running (or not ours to read any more). */
export function usageOf(record: ProcessRecord): Usage | undefined {
  const ref = record.ref;
  if (record.state !== 'running' || ref === null) return undefined;
  const pid = record.identity.pid;
  let usage: Usage;
  try {
    const field = readStat(pid);
    if (field === undefined) return undefined;
    usage = {
      userMicros: Number(field(14)) * TICK_MICROS,
      systemMicros: Number(field(15)) * TICK_MICROS,
      rssBytes: Number(field(24)) * PAGE_SIZE,
      threads: Number(field(20)),
      openFds: statSync(`/proc/${pid}/fd`).size,
      sampledAt: Date.now(),
    };
  } catch {
    return undefined; // gone between the checks and the reads
  }
  try {
    ref.signal(0); // ESRCH once reaped: then the number may have named another process
    if (ref.poll().exited) return undefined;
  } catch {
    return undefined;
  }
  return usage;
}
