import type net from 'node:net';
import { closeFd, type Fd } from '../../kernel/fd.js';
import { detachPipe, openPipe } from './pipe-end.js';

/** The write end of the child's stdin: bounded pending bytes, EPIPE contained. */
export class StdinPipe {
  private socket: net.Socket | null = null;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private pending = 0;
  private brokenBy: string | undefined;
  /** The pipe while no socket writes it (during a handover); owned here. */
  private detached: Fd | null = null;
  /** Writes the kernel has not taken yet: destroy() fails them itself (see write). */
  private readonly unfinished = new Set<(e?: Error | null) => void>();

  /** fd null: a stdin that was already closed (for `why`) when a predecessor handed over. */
  constructor(
    private fd: Fd | null,
    private readonly onClose: () => void,
    why?: string,
  ) {
    if (fd !== null) this.open(fd);
    else {
      this.state = 'closed';
      this.brokenBy = why;
    }
  }

  private open(fd: Fd): void {
    this.fd = fd;
    const socket = openPipe(fd, 'write');
    // EPIPE when the child closed its end (or died): without this handler it would crash the agent.
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.brokenBy ??= e.code;
      this.state = 'closed';
    });
    socket.on('close', () => {
      this.state = 'closed';
      this.socket = null;
      this.onClose();
    });
    this.socket = socket;
  }

  get pipeOpen(): boolean {
    return this.socket !== null || this.detached !== null;
  }

  /**
   * Handover: an open stdin is kept as a duplicate for the successor; bytes still queued here
   * are dropped (their WriteStdin fails). A closing or closed one is not handed on.
   */
  detach(): void {
    if (this.state !== 'open' || this.socket === null || this.fd === null) return;
    this.failUnfinished('stdin is being handed over');
    this.detached = detachPipe(this.socket, this.fd);
    this.socket = null;
  }

  reattach(): void {
    const fd = this.detached;
    if (fd === null) return;
    this.detached = null;
    this.open(fd);
  }

  /** After detach: the pipe for the successor (null when stdin was not open). */
  get detachedPipe(): Fd | null {
    return this.detached;
  }

  closeDetached(): void {
    if (this.detached !== null) closeFd(this.detached);
    this.detached = null;
  }

  get pendingBytes(): number {
    return this.pending;
  }

  get accepting(): boolean {
    return this.state === 'open';
  }

  get why(): string {
    return this.brokenBy ?? 'STDIN_CLOSED';
  }

  /** Resolves once the kernel took all of data; rejects with the socket error (EPIPE, ...). */
  write(data: Buffer): Promise<void> {
    const socket = this.socket;
    if (socket === null) return Promise.reject(new Error('stdin is being handed over'));
    this.pending += data.length;
    return new Promise((resolve, reject) => {
      // Settled once: by the write's callback, or first by failUnfinished.
      const finish = (e?: Error | null) => {
        if (!this.unfinished.delete(finish)) return;
        this.pending -= data.length;
        if (e) reject(e);
        else resolve();
      };
      this.unfinished.add(finish);
      socket.write(data, finish);
    });
  }

  /** Queued bytes are still delivered, then the child reads end-of-file. */
  end(): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    this.socket?.end();
  }

  /** Closes now; queued bytes are dropped (their writes fail). */
  destroy(): void {
    this.state = 'closed';
    this.failUnfinished('stdin was closed before the process read it');
    this.socket?.destroy();
  }

  /** Node completes a destroyed stream's pending writes as if they had succeeded (callback(null)). */
  private failUnfinished(why: string): void {
    for (const fail of [...this.unfinished]) fail(new Error(why));
  }
}
