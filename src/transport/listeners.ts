// The agent accepts its gRPC connections itself and hands them to grpc-js through its connection
// injector. On the unix socket that gives each connection's peer credentials (SO_PEERCRED, taken
// by the kernel at connect) as the calls' peer, `unix:uid=U,gid=G,pid=P`: the process owner. And it
// gives shutdown a handle on every session: grpc-js 1.14's forceShutdown destroys sessions only
// when channelz is on, which costs on every call, so an open stream (a health Watch, say) would
// otherwise hold a stopping agent, or a handover, forever.
import net from 'node:net';
import { ServerCredentials, type Server } from '@grpc/grpc-js';
import { KernelError } from '../kernel/errors.js';
import { closeFd } from '../kernel/fd.js';
import { UnixListener, type PeerCred } from '../kernel/fd-passing.js';
import { watchReadable, type PollHandle } from '../kernel/libc.js';
import type { Logger } from '../log.js';
import { SOCKET_MODE } from './unix-socket.js';

export const peerOf = (p: PeerCred): string => `unix:uid=${p.uid},gid=${p.gid},pid=${p.pid}`;

/** After a failed accept (EMFILE...) the listener rests this long instead of spinning. */
const ACCEPT_BACKOFF_MS = 100;

export interface GrpcListener {
  /** As clients address it (with the real port when 0 was asked for). */
  readonly address: string;
  /** Stops accepting (a unix socket's path is removed). */
  close(): void;
  /** Ends its connections: GOAWAY now, destroyed after graceMs. */
  drain(graceMs: number): void;
}

export type Injector = ReturnType<Server['createConnectionInjector']>;

export function inject(injector: Injector, socket: net.Socket, log: Logger): void {
  try {
    injector.injectConnection(socket);
  } catch (e) {
    socket.destroy();
    log('accept_error', { error: String(e) });
  }
}

class UnixGrpcListener implements GrpcListener {
  private readonly listener: UnixListener;
  private readonly poll: PollHandle;
  private readonly injector: Injector;
  private closed = false;

  constructor(
    server: Server,
    private readonly path: string,
    gid: number,
    private readonly log: Logger,
  ) {
    this.listener = new UnixListener(path, 'stream', 511, { mode: SOCKET_MODE, gid });
    this.injector = server.createConnectionInjector(ServerCredentials.createInsecure());
    this.poll = watchReadable(this.listener.fd, () => this.acceptAll());
  }

  get address(): string {
    return `unix://${this.path}`;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll.close();
    this.listener.close();
  }

  drain(graceMs: number): void {
    this.injector.drain(graceMs);
  }

  private acceptAll(): void {
    for (;;) {
      let accepted;
      try {
        accepted = this.listener.accept();
      } catch (e) {
        this.log('accept_error', { path: this.path, error: String(e) });
        this.poll.stop();
        setTimeout(() => this.closed || this.poll.start({ readable: true, writable: false, disconnect: false }, () => this.acceptAll()), ACCEPT_BACKOFF_MS).unref();
        return;
      }
      if (accepted === null) return;
      let socket: net.Socket;
      try {
        socket = new net.Socket({ fd: accepted.fd, readable: true, writable: true });
      } catch (e) {
        closeFd(accepted.fd);
        this.log('accept_error', { path: this.path, error: String(e) });
        continue;
      }
      // grpc-js reports a call's peer from its session socket's remoteAddress.
      Object.defineProperty(socket, 'remoteAddress', { value: peerOf(accepted.peer) });
      inject(this.injector, socket, this.log);
    }
  }
}

/** path must be free (see prepareSocket); the socket is 0660, of group gid, before it listens. */
export function listenUnix(server: Server, path: string, gid: number, log: Logger): GrpcListener {
  try {
    return new UnixGrpcListener(server, path, gid, log);
  } catch (e) {
    // A startup error is one line: `bind: EADDRINUSE` alone would not say which socket.
    throw e instanceof KernelError ? new Error(`${path}: ${e.message}`, { cause: e }) : e;
  }
}
