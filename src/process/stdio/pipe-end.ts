import net from 'node:net';
import { closeFd, dupFd, type Fd } from '../../kernel/fd.js';

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

/**
 * Takes a pipe back from its socket without closing the pipe (handover): the socket goes with its
 * fd, and without running its 'close' or 'data' handlers; the returned duplicate is the caller's.
 */
export function detachPipe(socket: net.Socket, fd: Fd): Fd {
  const copy = dupFd(fd);
  socket.removeAllListeners('close');
  socket.removeAllListeners('data');
  socket.destroy();
  return copy;
}
