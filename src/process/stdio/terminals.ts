// The pty masters of processes spawned with a terminal, kept for ResizeTerminal. Output and input
// go through the process's stdio like pipes do (each with its own duplicate of the master); this
// one is for the window size only, and is closed at the exit or the release.
import { closeFd, type Fd } from '../../kernel/fd.js';
import { setWindowSize, type WindowSize } from '../../kernel/pty.js';
import { AgentError, fromKernel, processExited } from '../errors.js';
import type { ProcessRecord } from '../lifecycle/record.js';

export type { WindowSize };

export class Terminals {
  private readonly masters = new Map<ProcessRecord, Fd>();

  /** Takes ownership of master. */
  add(record: ProcessRecord, master: Fd): void {
    this.masters.set(record, master);
  }

  has(record: ProcessRecord): boolean {
    return this.masters.has(record);
  }

  resize(record: ProcessRecord, size: WindowSize): void {
    const master = this.masters.get(record);
    if (master === undefined) {
      if (record.state !== 'running') throw processExited(record.handle);
      throw new AgentError('FailedPrecondition', `${record.handle} has no terminal (spawn it with stdin and stdout STDIN_MODE_TTY / OUTPUT_MODE_TTY)`, { reason: 'NOT_A_TERMINAL', handle: record.handle });
    }
    try {
      setWindowSize(master, size);
    } catch (e) {
      throw fromKernel(e, { what: `resize the terminal of ${record.handle}`, handle: record.handle });
    }
  }

  /** Idempotent. */
  close(record: ProcessRecord): void {
    const master = this.masters.get(record);
    if (master === undefined) return;
    this.masters.delete(record);
    closeFd(master);
  }

  get size(): number {
    return this.masters.size;
  }
}
