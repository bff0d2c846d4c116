// Pseudo-terminals for processes spawned with a terminal: the agent keeps the master side, the
// child gets the slave as stdin, stdout and stderr and as its controlling terminal. The slave is
// opened by the child itself, by path, after its setsid (posix_spawn runs POSIX_SPAWN_SETSID
// before the file actions): a session leader without a terminal that opens a tty without
// O_NOCTTY acquires it, which is what TIOCSCTTY would do, with no code in the child.
import * as libc from './libc.js';
import { check, closeFd, O_CLOEXEC, type Fd } from './fd.js';
import { KernelError } from './errors.js';

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const TIOCSWINSZ = 0x5414;

export interface WindowSize {
  readonly rows: number;
  readonly cols: number;
}

export interface Pty {
  /** The master side, owned by the caller. */
  readonly master: Fd;
  /** /dev/pts/N: the child opens it. */
  readonly slavePath: string;
}

/** A new pty pair with the given window size. EMFILE/ENFILE, ENOSPC (kernel.pty.max reached). */
export function openPty(size: WindowSize): Pty {
  const master = check('posix_openpt', libc.posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)) as Fd;
  try {
    check('grantpt', libc.grantpt(master));
    check('unlockpt', libc.unlockpt(master));
    const name = Buffer.alloc(128);
    const rc = libc.ptsname_r(master, name, name.length);
    if (rc !== 0) throw new KernelError('ptsname_r', rc);
    setWindowSize(master, size);
    return { master, slavePath: name.toString('latin1', 0, name.indexOf(0)) };
  } catch (e) {
    closeFd(master);
    throw e;
  }
}

/** TIOCSWINSZ: the terminal's size; the kernel sends SIGWINCH to its foreground process group. */
export function setWindowSize(master: Fd, size: WindowSize): void {
  const ws = Buffer.alloc(8); // struct winsize: ws_row, ws_col, ws_xpixel, ws_ypixel (unsigned short)
  ws.writeUInt16LE(size.rows, 0);
  ws.writeUInt16LE(size.cols, 2);
  check('ioctl(TIOCSWINSZ)', libc.ioctlPtr(master, TIOCSWINSZ, ws));
}

/** Whether fd is a terminal (a pty master is one). */
export const isTerminal = (fd: Fd): boolean => libc.isatty(fd) === 1;
