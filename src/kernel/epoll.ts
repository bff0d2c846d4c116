import * as libc from './libc.js';
import { check, closeFd, O_CLOEXEC, retryEintr, type Fd } from './fd.js';
import { Errno, KernelError } from './errors.js';

export const EPOLLIN = 0x1;
export const EPOLLHUP = 0x10;
export const EPOLLONESHOT = 0x40000000;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;

// struct epoll_event is packed on x86_64 (12 bytes, data at 4) and naturally aligned on arm64.
const EVENT_SIZE = process.arch === 'x64' ? 12 : 16;
const DATA_OFFSET = process.arch === 'x64' ? 4 : 8;

export interface ReadyEvent {
  readonly events: number;
  readonly data: number;
}

/** An epoll instance whose entries carry a 32-bit token. Owns its fd. */
export class Epoll {
  readonly fd: Fd;
  private readonly ctlBuf = Buffer.alloc(EVENT_SIZE);
  private readonly events: Buffer;
  #closed = false;

  constructor(readonly maxEvents = 256) {
    this.fd = check('epoll_create1', libc.epoll_create1(O_CLOEXEC)) as Fd;
    this.events = Buffer.alloc(EVENT_SIZE * maxEvents);
  }

  add(fd: Fd, events: number, token: number): void {
    this.ctl('epoll_ctl(ADD)', EPOLL_CTL_ADD, fd, events, token);
  }

  modify(fd: Fd, events: number, token: number): void {
    this.ctl('epoll_ctl(MOD)', EPOLL_CTL_MOD, fd, events, token);
  }

  remove(fd: Fd): void {
    if (this.#closed) throw new KernelError('epoll_ctl(DEL)', Errno.EBADF);
    check('epoll_ctl(DEL)', libc.epoll_ctl(this.fd, EPOLL_CTL_DEL, fd, null));
  }

  /** Collects up to maxEvents ready entries into out; returns their count. */
  wait(out: ReadyEvent[], timeoutMs = 0): number {
    const n = retryEintr('epoll_wait', () => libc.epoll_wait(this.fd, this.events, this.maxEvents, timeoutMs));
    for (let i = 0; i < n; i++) {
      const off = i * EVENT_SIZE;
      out[i] = { events: this.events.readUInt32LE(off), data: this.events.readUInt32LE(off + DATA_OFFSET) };
    }
    return n;
  }

  /** Closing drops every registration with it. */
  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.fd);
  }

  private ctl(name: string, op: number, fd: Fd, events: number, token: number): void {
    // The number of a closed instance may already be another descriptor's.
    if (this.#closed) throw new KernelError(name, Errno.EBADF);
    this.ctlBuf.fill(0);
    this.ctlBuf.writeUInt32LE(events >>> 0, 0);
    this.ctlBuf.writeUInt32LE(token >>> 0, DATA_OFFSET);
    check(name, libc.epoll_ctl(this.fd, op, fd, this.ctlBuf));
  }
}
