// A connection is handed to grpc-js only once it has started HTTP/2: the 24-byte client preface
// and a whole first frame (RFC 9113 §3.4: a SETTINGS frame). nghttp2 would wait for a preface
// forever, with no timer of its own, so a client that connects (or completes TLS) and then says
// nothing, or a byte a minute, is bounded here. What was read is put back (unshift) for node:http2,
// which feeds a socket's buffered bytes to its session when it takes the socket over.
import type { Duplex } from 'node:stream';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER = 9;
/** SETTINGS_MAX_FRAME_SIZE's initial value: a first frame can't be longer. */
const MAX_FIRST_FRAME = 16_384;

export type PrefaceOutcome = 'started' | 'timeout' | 'closed';

/** How many more bytes the first bytes need to hold a preface and a whole frame (0: enough). */
function missing(head: Buffer): number {
  const n = Math.min(head.length, PREFACE.length);
  // Not HTTP/2 at all: nghttp2 answers that itself (a GOAWAY) and closes.
  if (!head.subarray(0, n).equals(PREFACE.subarray(0, n))) return 0;
  if (head.length < PREFACE.length + FRAME_HEADER) return PREFACE.length + FRAME_HEADER - head.length;
  const length = head.readUIntBE(PREFACE.length, 3);
  if (length > MAX_FIRST_FRAME) return 0;
  return Math.max(0, PREFACE.length + FRAME_HEADER + length - head.length);
}

/** Calls done once: started (the bytes read are back in the socket), timed out, or closed first. */
export function awaitPreface(socket: Duplex, timeoutMs: number, done: (outcome: PrefaceOutcome) => void): void {
  let head = Buffer.alloc(0);
  const finish = (outcome: PrefaceOutcome) => {
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('end', onEnd);
    socket.off('close', onEnd);
    if (outcome === 'started' && head.length > 0) socket.unshift(head);
    done(outcome);
  };
  const onReadable = () => {
    for (let chunk: Buffer | null; (chunk = socket.read() as Buffer | null) !== null; ) head = Buffer.concat([head, chunk]);
    if (missing(head) === 0) finish('started');
  };
  const onEnd = () => finish('closed');
  const timer = setTimeout(() => finish('timeout'), timeoutMs);
  socket.on('readable', onReadable);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
}
