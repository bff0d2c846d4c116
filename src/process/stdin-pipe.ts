import type net from 'node:net';
import type { Fd } from '../kernel/fd.js';
import { openPipe } from './pipe-end.js';

/** The write end of the child's stdin: bounded pending bytes, EPIPE contained. */
export class StdinPipe {
  private socket: net.Socket | null;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private pending = 0;
  private brokenBy: string | undefined;

  constructor(fd: Fd, private readonly onClose: () => void) {
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
    return this.socket !== null;
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
    this.pending += data.length;
    return new Promise((resolve, reject) => {
      this.socket!.write(data, (e) => {
        this.pending -= data.length;
        if (e) reject(e);
        else resolve();
      });
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
    this.socket?.destroy();
  }
}
