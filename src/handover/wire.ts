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

/** Sends data and descriptors (which stay the caller's) as F, D and E messages. */
export function sendSnapshot(socket: FdSocket, data: Buffer, fds: readonly (Fd | PidRef)[], timeoutMs: number): void {
  const perMessage = maxFdsPerMessage();
  const tagF = Buffer.from(Tag.descriptors);
  for (let i = 0; i < fds.length; i += perMessage) socket.send(tagF, fds.slice(i, i + perMessage), timeoutMs);
  const chunk = MAX_FD_MESSAGE_BYTES - 1;
  for (let i = 0; i < data.length; i += chunk) socket.send(Buffer.concat([Buffer.from(Tag.data), data.subarray(i, i + chunk)]), [], timeoutMs);
  sendTagged(socket, Tag.end, { fds: fds.length, bytes: data.length }, timeoutMs);
}

/**
 * Receives what sendSnapshot sent, waiting up to timeoutMs for each message on the event loop (so
 * that a signal's handler runs meanwhile); a refusal (X), a silence or anything malformed is a
 * HandoverError, and every descriptor received so far is closed.
 */
export async function receiveSnapshot(socket: FdSocket, timeoutMs: number): Promise<{ data: Buffer; fds: Fd[] }> {
  const fds: Fd[] = [];
  const chunks: Buffer[] = [];
  try {
    for (;;) {
      if (!(await socket.readable(timeoutMs))) throw new HandoverError(`the agent sent no handover message for ${timeoutMs} ms`);
      const message = socket.receive(0);
      if (message === null) throw new HandoverError('the agent closed the handover connection before the snapshot was complete');
      fds.push(...message.fds);
      const tag = message.data.toString('latin1', 0, 1);
      if (tag === Tag.data) chunks.push(message.data.subarray(1));
      else if (tag === Tag.descriptors) continue;
      else if (tag === Tag.refused) throw new HandoverError(`the agent refused the handover: ${message.data.toString('utf8', 1)}`);
      else if (tag === Tag.end) {
        const data = Buffer.concat(chunks);
        const end = JSON.parse(message.data.toString('utf8', 1)) as { fds: number; bytes: number };
        if (end.fds !== fds.length || end.bytes !== data.length) {
          throw new HandoverError(`incomplete snapshot: ${fds.length}/${end.fds} descriptors, ${data.length}/${end.bytes} bytes`);
        }
        return { data, fds };
      } else throw new HandoverError(`unexpected handover message ${JSON.stringify(tag)}`);
    }
  } catch (e) {
    for (const fd of fds) closeFd(fd);
    throw e;
  }
}
