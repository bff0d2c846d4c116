import net from 'node:net';
import { closeFd, type Fd } from '../kernel/fd.js';

/** Takes ownership of fd: from here on the socket closes it. */
export function openPipe(fd: Fd, direction: 'read' | 'write'): net.Socket {
  try {
    const socket = new net.Socket({ fd, readable: direction === 'read', writable: direction === 'write' });
    // A child's pipe must not keep the agent's event loop alive: the reaper decides that.
    socket.unref();
    return socket;
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}
