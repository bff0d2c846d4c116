import { connect as h2connect, constants } from 'node:http2';
import { connect as netConnect } from 'node:net';

export interface StalledStream {
  /** The grpc-status trailer, once the client reads again and the agent has sent it. */
  readonly status: Promise<number>;
  /** Starts reading: every response message is passed to onMessage (still encoded). */
  resume(onMessage: (message: Buffer) => void): void;
  close(): void;
}

/**
 * A server-streaming call whose client does not read: a raw HTTP/2 stream, paused from the start,
 * with a small flow-control window, so the agent's writes back up as they would for a stuck
 * remote client (grpc-js's own client keeps reading into memory when its stream is paused).
 */
export function stalledStream(socketPath: string, method: string, request: Uint8Array): StalledStream {
  const session = h2connect('http://localhost', {
    createConnection: () => netConnect(socketPath),
    settings: { initialWindowSize: 16 * 1024 },
  });
  session.on('error', () => {});
  const stream = session.request({
    [constants.HTTP2_HEADER_METHOD]: 'POST',
    [constants.HTTP2_HEADER_PATH]: `/pidfd.agent.v1.AgentService/${method}`,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  frame.set(request, 5);
  stream.end(frame);
  stream.pause();
  const status = new Promise<number>((resolve) => {
    stream.on('trailers', (t) => resolve(Number(t['grpc-status'])));
    stream.on('response', (h) => h['grpc-status'] !== undefined && resolve(Number(h['grpc-status'])));
  });
  return {
    status,
    resume: (onMessage) => {
      // gRPC length-prefixed messages: a flag byte, a 32-bit big-endian length, the message.
      let pending = Buffer.alloc(0);
      stream.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
          const length = pending.readUInt32BE(1);
          onMessage(pending.subarray(5, 5 + length));
          pending = pending.subarray(5 + length);
        }
      });
      stream.resume();
    },
    close: () => session.destroy(),
  };
}
