import { isKernelError } from './errors.js';
import { closeFd, type Pidfd } from './fd.js';
import { PIDFD_INFO_EXIT, pidfdGetInfo, pidfdPoll, waitidPidfd } from './pidfd.js';
import { hasPidfdSpawn, spawn } from './spawn.js';

/** What this kernel and libc support, decided once at startup. */
export interface Features {
  /** glibc >= 2.39 pidfd_spawn; otherwise posix_spawn + pidfd_open. */
  readonly pidfdSpawn: boolean;
  /** PIDFD_GET_INFO (6.13+). */
  readonly pidfdGetInfo: boolean;
  /** PIDFD_INFO_EXIT (6.15+): the exit status of processes we did not start, needed by Adopt. */
  readonly pidfdInfoExit: boolean;
}

/** Runs /bin/true, reaps it and asks its pidfd for the exit status: the real test of support. */
export function probeFeatures(): Features {
  using child = spawn({
    path: '/bin/true',
    argv: ['true'],
    envp: [],
    stdio: [{ kind: 'null' }, { kind: 'null' }, { kind: 'null' }],
    newSession: true,
  }).ref;
  child.reap(PROBE_EXIT_TIMEOUT_MS);
  try {
    const info = child.info(PIDFD_INFO_EXIT);
    return { pidfdSpawn: hasPidfdSpawn, pidfdGetInfo: true, pidfdInfoExit: info.termination?.exitCode === 0 };
  } catch (e) {
    if (!isKernelError(e)) throw e;
    return { pidfdSpawn: hasPidfdSpawn, pidfdGetInfo: false, pidfdInfoExit: false };
  }
}

const PROBE_EXIT_TIMEOUT_MS = 5000;
