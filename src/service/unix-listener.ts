// The agent's gRPC unix sockets are accepted here rather than by grpc-js, so that each
// connection's peer credentials (SO_PEERCRED, taken by the kernel at connect) become the calls'
// peer: `unix:uid=U,gid=G,pid=P`. That is how the agent knows who started a process (its owner).
// Connections go to grpc-js through its connection injector; server shutdown closes their sessions
// like any other.
import { chmodSync } from 'node:fs';
import net from 'node:net';
import { ServerCredentials, type Server } from '@grpc/grpc-js';
import { closeFd } from '../kernel/fd.js';
import { UnixListener, type PeerCred } from '../kernel/fd-passing.js';
import { watchReadable, type PollHandle } from '../kernel/libc.js';
import type { Logger } from './status.js';

export const peerOf = (p: PeerCred): string => `unix:uid=${p.uid},gid=${p.gid},pid=${p.pid}`;

export class GrpcUnixListener {
  private readonly listener: UnixListener;
  private readonly poll: PollHandle;
  private readonly injector: ReturnType<Server['createConnectionInjector']>;
  private closed = false;

  /** path must be free (see prepareSocket); it is made group-accessible (0660). */
  constructor(
    server: Server,
    readonly path: string,
    private readonly log: Logger,
  ) {
    this.listener = new UnixListener(path, 'stream', 511);
    chmodSync(path, 0o660);
    this.injector = server.createConnectionInjector(ServerCredentials.createInsecure());
    this.poll = watchReadable(this.listener.fd, () => this.acceptAll());
  }

  /** Stops accepting and removes the path; open connections end with the server's shutdown. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll.close();
    this.listener.close();
  }

  private acceptAll(): void {
    for (;;) {
      let accepted;
      try {
        accepted = this.listener.accept();
      } catch (e) {
        this.log('accept_error', { path: this.path, error: String(e) }); // EMFILE: the client retries
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
      this.injector.injectConnection(socket);
    }
  }
}
