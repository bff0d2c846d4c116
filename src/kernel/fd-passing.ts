// Unix SOCK_SEQPACKET connections that carry descriptors (SCM_RIGHTS): each message arrives whole,
// with the descriptors sent along with it, already close-on-exec. The C side is fdpass.c.
import { lstatSync, unlinkSync } from 'node:fs';
import * as libc from './libc.js';
import { closeFd, pollOne, POLLHUP, POLLRDHUP, type Fd } from './fd.js';
import { borrowPidfd, PidRef } from './pid-ref.js';
import { Errno, isKernelError, KernelError } from './errors.js';

type FdPassing = ReturnType<typeof libc.loadFdPassing>;
let native: FdPassing | null = null;

/** Loads the library once (the composition root knows where make put it). */
export function useFdPassing(path: string): void {
  native ??= libc.loadFdPassing(path);
}

function lib(): FdPassing {
  if (native === null) throw new Error('fd passing is not loaded (useFdPassing)');
  return native;
}

const checked = (call: string, r: number | bigint): number => {
  const n = Number(r);
  if (n < 0) throw new KernelError(call, -n);
  return n;
};

/** The largest message (bytes) and descriptor count one send may carry. */
export const MAX_FD_MESSAGE_BYTES = 64 * 1024;
export const maxFdsPerMessage = (): number => lib().maxFds();

export interface Message {
  readonly data: Buffer;
  /** Owned by the receiver from here on. */
  readonly fds: readonly Fd[];
}

export class FdSocket {
  private readonly buf = Buffer.alloc(MAX_FD_MESSAGE_BYTES);
  private readonly fdBuf: Int32Array;
  private readonly count = new Int32Array(1);

  constructor(
    readonly fd: Fd,
    /** Who is at the other end (SO_PEERCRED: as of its connect, or of its listen for ours). */
    readonly peer: PeerCred,
  ) {
    this.fdBuf = new Int32Array(lib().maxFds());
  }

  get peerUid(): number {
    return this.peer.uid;
  }

  /** Blocks up to timeoutMs for room in the socket buffer. The fds (and references) stay the caller's. */
  send(data: Buffer, fds: readonly (Fd | PidRef)[] = [], timeoutMs = 5000): void {
    if (data.length === 0 || data.length > MAX_FD_MESSAGE_BYTES) throw new RangeError(`message of ${data.length} bytes`);
    const list = Int32Array.from(fds, (f) => (f instanceof PidRef ? borrowPidfd(f) : f));
    checked('sendmsg', lib().send(this.fd, data, data.length, list, list.length, timeoutMs));
  }

  /** The next message, or null once the peer has closed; ETIMEDOUT after timeoutMs. */
  receive(timeoutMs = 5000): Message | null {
    const message = this.receiveBorrowed(timeoutMs);
    return message && { data: Buffer.from(message.data), fds: message.fds };
  }

  /**
   * A message already queued, or undefined when none is (null once the peer has closed). Its data
   * is this socket's own buffer, valid until the next receive: a snapshot's megabytes go straight
   * to where they are kept, never through a copy per message.
   */
  receiveQueued(): Message | null | undefined {
    try {
      return this.receiveBorrowed(0);
    } catch (e) {
      if (isKernelError(e, Errno.ETIMEDOUT)) return undefined;
      throw e;
    }
  }

  private receiveBorrowed(timeoutMs: number): Message | null {
    const n = checked('recvmsg', lib().recv(this.fd, this.buf, this.buf.length, this.fdBuf, this.fdBuf.length, this.count, timeoutMs));
    const fds = Array.from(this.fdBuf.subarray(0, this.count[0]!), (fd) => fd as Fd);
    if (n === 0) {
      for (const fd of fds) closeFd(fd);
      return null;
    }
    return { data: this.buf.subarray(0, n), fds };
  }

  /** Resolves true once a message (or the end) can be received, false after timeoutMs. */
  readable(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        handle.close();
        resolve(ok);
      };
      const handle = libc.watchReadable(this.fd, () => finish(true));
      const timer = setTimeout(() => finish(false), timeoutMs);
    });
  }

  /** The other end has closed (or shut down its side): nothing more can come from it. */
  peerClosed(): boolean {
    return (pollOne(this.fd, POLLRDHUP, 0) & (POLLHUP | POLLRDHUP)) !== 0;
  }

  /**
   * A pidfd for the process at the other end, or null when none can be had: its pid is 0 (another
   * PID namespace), it has exited (ESRCH), or the connection has closed. SO_PEERCRED's pid is as of
   * the connect (or the listen), so it could have been recycled since; the connection still open
   * once the pidfd is, proves it was not: the peer's end closes when that process exits, and
   * nobody else holds it (close-on-exec, never passed on).
   */
  peerProcess(): PidRef | null {
    if (this.peer.pid <= 0) return null;
    let ref: PidRef;
    try {
      ref = PidRef.open(this.peer.pid);
    } catch (e) {
      if (isKernelError(e, Errno.ESRCH)) return null;
      throw e;
    }
    if (this.peerClosed()) {
      ref.close();
      return null;
    }
    return ref;
  }

  close(): void {
    closeFd(this.fd);
  }
}

/** Connects to a listening path; ENOENT or ECONNREFUSED when nobody listens there. */
export function connectFdSocket(path: string, timeoutMs = 5000): FdSocket {
  const cred = new Int32Array(3);
  const fd = checked('connect', lib().connect(path, cred, timeoutMs)) as Fd;
  const [pid, uid, gid] = cred;
  return new FdSocket(fd, { pid: pid!, uid: uid!, gid: gid! });
}

/**
 * Who is at the other end of a unix connection, as the kernel recorded it (SO_PEERCRED). pid is 0
 * when that process is not in our pid namespace.
 */
export interface PeerCred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

const SOCK_STREAM = 1;
const SOCK_SEQPACKET = 5;

/** Who may connect to a listening socket's file (omitted: as bind and the umask make it). */
export interface SocketAccess {
  readonly mode?: number;
  readonly gid?: number;
}

/** A non-blocking unix socket listening at path (which must not exist); accepted ones are close-on-exec. */
export class UnixListener {
  readonly fd: Fd;
  private readonly cred = new Int32Array(3);
  /** Of the socket file we bound, to remove only that one. */
  private readonly inode: number;

  /** The file's mode and group are set before it listens, never through a symlink (fdpass.c). */
  constructor(
    readonly path: string,
    type: 'stream' | 'seqpacket',
    backlog: number,
    access: SocketAccess = {},
  ) {
    this.fd = checked('bind', lib().listen(path, backlog, type === 'stream' ? SOCK_STREAM : SOCK_SEQPACKET, access.mode ?? -1, access.gid ?? -1)) as Fd;
    this.inode = lstatSync(path).ino;
  }

  /** A pending connection (the caller owns its fd), or null when there is none. */
  accept(): { fd: Fd; peer: PeerCred } | null {
    const r = Number(lib().accept(this.fd, this.cred));
    if (r === -libc.errnoNumbers.EAGAIN!) return null;
    const [pid, uid, gid] = this.cred;
    return { fd: checked('accept4', r) as Fd, peer: { pid: pid!, uid: uid!, gid: gid! } };
  }

  /** Stops listening and removes the path (unless a successor already replaced it). */
  close(): void {
    // While we still listen, a newcomer cannot have bound the path (it finds it answered), so the
    // file checked is the file removed.
    try {
      if (lstatSync(this.path).ino === this.inode) unlinkSync(this.path);
    } catch {
      // already gone
    }
    closeFd(this.fd);
  }
}

/** The handover's listening socket: SOCK_SEQPACKET connections that carry descriptors. */
export class FdListener {
  private readonly listener: UnixListener;

  constructor(readonly path: string) {
    this.listener = new UnixListener(path, 'seqpacket', 4);
  }

  get fd(): Fd {
    return this.listener.fd;
  }

  /** A pending connection, or null when there is none. */
  accept(): FdSocket | null {
    const accepted = this.listener.accept();
    return accepted && new FdSocket(accepted.fd, accepted.peer);
  }

  close(): void {
    this.listener.close();
  }
}
