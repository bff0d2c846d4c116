// The agent's spawner threads (src/native/pidfd-spawn.c): started once, they take spawn requests
// on a SOCK_SEQPACKET socketpair and answer each with the child's pidfd (or the errno and step
// that failed). A spawn then costs the main thread one send and one recv of plain bytes, where
// a koffi .async call cost it a threadpool round trip and its marshalling (~50 µs of CPU each).
import * as libc from './libc.js';
import { Errno, KernelError } from './errors.js';
import type { Fd } from './fd.js';

export interface SpawnerRequest {
  readonly path: string;
  readonly argv: readonly string[];
  readonly envp: readonly string[];
  readonly cwd: string | undefined;
  /** Per target: the agent's fd of that number (inherit), or -1 for /dev/null. */
  readonly stdio: readonly [number, number, number];
  readonly newSession: boolean;
  /** An open cgroup.procs the child moves itself into first, or -1. */
  readonly cgroupProcs: number;
}

export interface SpawnerAnswer {
  /** The pidfd, the receiver's to own, or -errno. */
  readonly result: number;
  /** The failed step when result < 0 (see the shim's steps). */
  readonly step: number;
  readonly pid: number;
  readonly inode: bigint;
}

// struct request and struct answer of pidfd-spawn.c.
const HEADER_BYTES = 36;
const ANSWER_BYTES = 24;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
// As many as libuv's threadpool had for spawns: under load a thread waits long for its child's
// exec (vfork), and spawns queue behind it.
const SPAWNER_THREADS = 4;

export class Spawner {
  private readonly request: Buffer;
  private readonly answer = Buffer.alloc(ANSWER_BYTES);
  private readonly waiting = new Map<number, (a: SpawnerAnswer) => void>();
  private readonly poll: libc.PollHandle;
  private nextId = 1;

  private constructor(
    private readonly fd: Fd,
    maxRequest: number,
    /** A child nobody asked for (no id is sent without a waiter): killed, reaped and closed. */
    private readonly abandon: (pidfd: Fd, pid: number) => void,
  ) {
    this.request = Buffer.allocUnsafe(maxRequest);
    this.poll = libc.watchReadable(fd, () => this.drain());
    // Only a spawn in flight keeps the event loop alive.
    this.poll.unref();
  }

  /** Starts the threads from the shim's library at `path`. */
  static start(path: string, abandon: (pidfd: Fd, pid: number) => void): Spawner {
    const lib = libc.loadSpawner(path);
    const fd = lib.start(SPAWNER_THREADS) as number;
    if (fd < 0) throw new KernelError('pidfd_spawner_start', -fd);
    return new Spawner(fd as Fd, lib.maxRequest() as number, abandon);
  }

  /**
   * Hands the spawn to a thread; null when it cannot take it now (too large a request, or the
   * socket's queue is full): the caller spawns another way then, nothing was started.
   */
  spawn(r: SpawnerRequest): Promise<SpawnerAnswer> | null {
    const length = this.encode(r);
    if (length < 0) return null;
    const sent = Number(libc.send(this.fd, this.request, length, MSG_DONTWAIT | MSG_NOSIGNAL));
    if (sent !== length) return null;
    const id = this.request.readUInt32LE(0);
    if (this.waiting.size === 0) this.poll.ref();
    return new Promise((resolve) => this.waiting.set(id, resolve));
  }

  /** Requests waiting for their answer. */
  get inFlight(): number {
    return this.waiting.size;
  }

  private encode(r: SpawnerRequest): number {
    const buf = this.request;
    const id = this.nextId;
    this.nextId = id === 0xffffffff ? 1 : id + 1;
    buf.writeUInt32LE(id, 0);
    buf.writeInt32LE(r.stdio[0], 4);
    buf.writeInt32LE(r.stdio[1], 8);
    buf.writeInt32LE(r.stdio[2], 12);
    buf.writeInt32LE(r.newSession ? 1 : 0, 16);
    buf.writeInt32LE(r.cgroupProcs, 20);
    buf.writeUInt32LE(r.argv.length, 24);
    buf.writeUInt32LE(r.envp.length, 28);
    buf.writeUInt32LE(r.cwd === undefined ? 0 : 1, 32);
    let at = HEADER_BYTES;
    const put = (s: string): boolean => {
      // A UTF-8 byte per UTF-16 unit is at most 3: only a long string needs its exact length.
      if (at + s.length * 3 + 1 > buf.length && at + Buffer.byteLength(s) + 1 > buf.length) return false;
      at += buf.write(s, at, 'utf8');
      buf[at++] = 0;
      return true;
    };
    if (!put(r.path) || (r.cwd !== undefined && !put(r.cwd))) return -1;
    for (const s of r.argv) if (!put(s)) return -1;
    for (const s of r.envp) if (!put(s)) return -1;
    return at;
  }

  /** Reads every answer there is; an answer nobody waits for has its child ended here. */
  private drain(): void {
    const buf = this.answer;
    for (;;) {
      const n = Number(libc.recv(this.fd, buf, ANSWER_BYTES, MSG_DONTWAIT));
      if (n < 0 && libc.errno() === Errno.EINTR) continue;
      if (n !== ANSWER_BYTES) break;
      const id = buf.readUInt32LE(0);
      const answer = { result: buf.readInt32LE(4), step: buf.readInt32LE(8), pid: buf.readInt32LE(12), inode: buf.readBigUInt64LE(16) };
      const resolve = this.waiting.get(id);
      this.waiting.delete(id);
      if (resolve !== undefined) resolve(answer);
      else if (answer.result >= 0) this.abandon(answer.result as Fd, answer.pid);
    }
    if (this.waiting.size === 0) this.poll.unref();
  }
}
