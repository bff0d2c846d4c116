import net from 'node:net';
import tty from 'node:tty';
import { closeFd, dupFd, type Fd } from '../../kernel/fd.js';
import { isTerminal } from '../../kernel/pty.js';

/**
 * A pty master (a process with a terminal) is a tty to libuv, not a pipe: net.Socket refuses it.
 * Node makes a tty it writes to blocking (for its own stdout), which would stall the event loop on
 * a child that does not read: that is undone at once. A master that the child side has closed
 * reads EIO rather than end-of-file; the stream ends with 'close' either way.
 */
function terminalEnd(fd: Fd, direction: 'read' | 'write'): net.Socket {
  if (direction === 'read') return new tty.ReadStream(fd);
  const out = new tty.WriteStream(fd);
  (out as unknown as { _handle: { setBlocking(blocking: boolean): number } })._handle.setBlocking(false);
  return out;
}

/** Takes ownership of fd: from here on the socket closes it. */
export function openPipe(fd: Fd, direction: 'read' | 'write'): net.Socket {
  try {
    const socket = isTerminal(fd) ? terminalEnd(fd, direction) : new net.Socket({ fd, readable: direction === 'read', writable: direction === 'write' });
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
 * null when the socket has been destroyed already (end-of-file, EPIPE): libuv closed its fd then,
 * and the number may be another's by now; its 'close' handler still runs.
 */
export function detachPipe(socket: net.Socket, fd: Fd): Fd | null {
  if (socket.destroyed) return null;
  const copy = dupFd(fd);
  socket.removeAllListeners('close');
  socket.removeAllListeners('data');
  socket.destroy();
  return copy;
}
