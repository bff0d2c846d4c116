// The handover conversation on STATE_DIR/handover.sock (SOCK_SEQPACKET, one message per record):
//   successor → agent   T {protocol}               asks to take over
//   agent → successor   F* (descriptors) D* (bytes) E {fds, bytes}   the snapshot
//                       or X {error}                refused
//   successor → agent   A                          received: the agent commits and stops serving
//   agent → successor   R                          store closed, socket gone: the successor serves
// The first byte of each message is its tag.
import { closeFd, type Fd } from '../kernel/fd.js';
import type { PidRef } from '../kernel/pid-ref.js';
import { MAX_FD_MESSAGE_BYTES, maxFdsPerMessage, type FdSocket } from '../kernel/fd-passing.js';

/**
 * The first byte of each message. The letters are the wire format agents of different versions
 * share during an upgrade, so they stay; the code says what they mean.
 */
export const Tag = {
  request: 'T',
  descriptors: 'F',
  data: 'D',
  end: 'E',
  refused: 'X',
  received: 'A',
  released: 'R',
  /** The old agent gave up waiting for the confirmation and serves again: the snapshot is stale. */
  abandoned: 'B',
} as const;
export type Tag = (typeof Tag)[keyof typeof Tag];

export class HandoverError extends Error {}

export function sendTagged(socket: FdSocket, tag: Tag, body?: unknown, timeoutMs?: number): void {
  const payload = body === undefined ? '' : JSON.stringify(body);
  socket.send(Buffer.from(tag + payload), [], timeoutMs);
}

/** The next message's tag and JSON body; HandoverError on end-of-stream or a message it did not expect. */
export function receiveTagged(socket: FdSocket, expected: readonly Tag[], timeoutMs: number): { tag: Tag; body: unknown } {
  const message = socket.receive(timeoutMs);
  if (message === null) throw new HandoverError('the other agent closed the handover connection');
  for (const fd of message.fds) closeFd(fd);
  const tag = message.data.toString('latin1', 0, 1) as Tag;
  if (!expected.includes(tag)) throw new HandoverError(`unexpected handover message ${JSON.stringify(tag)} (expected ${expected.join('|')})`);
  const text = message.data.toString('utf8', 1);
  return { tag, body: text === '' ? undefined : JSON.parse(text) };
}

/**
 * Sends data (the concatenation of its pieces, which are not copied into one) and descriptors
 * (which stay the caller's) as F, D and E messages. Each D message is put together in one buffer
 * used again for the next: a snapshot of large rings costs no second copy of them.
 */
export function sendSnapshot(socket: FdSocket, data: readonly Uint8Array[], fds: readonly (Fd | PidRef)[], timeoutMs: number): void {
  const perMessage = maxFdsPerMessage();
  const tagF = Buffer.from(Tag.descriptors);
  for (let i = 0; i < fds.length; i += perMessage) socket.send(tagF, fds.slice(i, i + perMessage), timeoutMs);
  const message = Buffer.allocUnsafe(MAX_FD_MESSAGE_BYTES);
  message.write(Tag.data, 0, 'latin1');
  let used = 1;
  let bytes = 0;
  for (const piece of data) {
    for (let at = 0; at < piece.length; ) {
      const n = Math.min(piece.length - at, message.length - used);
      message.set(piece.subarray(at, at + n), used);
      used += n;
      at += n;
      if (used === message.length) {
        socket.send(message, [], timeoutMs);
        used = 1;
      }
    }
    bytes += piece.length;
  }
  if (used > 1) socket.send(message.subarray(0, used), [], timeoutMs);
  sendTagged(socket, Tag.end, { fds: fds.length, bytes }, timeoutMs);
}

/**
 * At most this many messages (4 MiB) are taken per turn of the event loop: the sender refills the
 * socket as fast as they are taken, and a SIGTERM's handler must still run while a large snapshot
 * arrives. One turn per message made the turns, not the bytes, the cost.
 */
const MESSAGES_PER_TURN = 64;

/**
 * Receives what sendSnapshot sent: each D message's bytes go to `onData` as they arrive (a view
 * valid only during the call: copy what is kept), the descriptors are returned with the byte
 * count. It waits up to timeoutMs for each batch of messages on the event loop (so that a signal's
 * handler runs meanwhile); a refusal (X), a silence, anything malformed or an error of onData
 * rejects (HandoverError for the first three), and every descriptor received so far is closed.
 */
export async function receiveSnapshot(socket: FdSocket, timeoutMs: number, onData: (bytes: Uint8Array) => void = () => {}): Promise<{ bytes: number; fds: Fd[] }> {
  const fds: Fd[] = [];
  let bytes = 0;
  try {
    for (;;) {
      if (!(await socket.readable(timeoutMs))) throw new HandoverError(`the agent sent no handover message for ${timeoutMs} ms`);
      for (let k = 0; k < MESSAGES_PER_TURN; k++) {
        const message = socket.receiveQueued();
        if (message === undefined) break;
        if (message === null) throw new HandoverError('the agent closed the handover connection before the snapshot was complete');
        fds.push(...message.fds);
        const tag = message.data.toString('latin1', 0, 1);
        if (tag === Tag.data) {
          bytes += message.data.length - 1;
          onData(message.data.subarray(1));
        } else if (tag === Tag.descriptors) continue;
        else if (tag === Tag.refused) throw new HandoverError(`the agent refused the handover: ${message.data.toString('utf8', 1)}`);
        else if (tag === Tag.end) {
          const end = JSON.parse(message.data.toString('utf8', 1)) as { fds: number; bytes: number };
          if (end.fds !== fds.length || end.bytes !== bytes) {
            throw new HandoverError(`incomplete snapshot: ${fds.length}/${end.fds} descriptors, ${bytes}/${end.bytes} bytes`);
          }
          return { bytes, fds };
        } else throw new HandoverError(`unexpected handover message ${JSON.stringify(tag)}`);
      }
    }
  } catch (e) {
    for (const fd of fds) closeFd(fd);
    throw e;
  }
}
