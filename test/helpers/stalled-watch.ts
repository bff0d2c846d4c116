import { connect as h2connect, constants } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { WatchRequest } from '../../clients/ts/src/index.js';

export interface StalledWatch {
  /** The grpc-status trailer, once the client finally reads and the agent has sent it. */
  readonly status: Promise<number>;
  resume(): void;
  close(): void;
}

/**
 * A Watch whose client never reads: a raw HTTP/2 stream, paused from the start, with a small
 * flow-control window, so the agent's writes back up as they would for a stuck remote client.
 * (grpc-js's own client keeps reading into memory when its stream is paused.)
 */
export function stalledWatch(socketPath: string, req: Partial<WatchRequest>): StalledWatch {
  const session = h2connect('http://localhost', {
    createConnection: () => netConnect(socketPath),
    settings: { initialWindowSize: 16 * 1024 },
  });
  session.on('error', () => {});
  const stream = session.request({
    [constants.HTTP2_HEADER_METHOD]: 'POST',
    [constants.HTTP2_HEADER_PATH]: '/pidfd.agent.v1.AgentService/Watch',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  const body = WatchRequest.encode(WatchRequest.fromPartial(req)).finish();
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  stream.end(frame);
  stream.pause();
  const status = new Promise<number>((resolve) => {
    stream.on('trailers', (t) => resolve(Number(t['grpc-status'])));
    stream.on('response', (h) => h['grpc-status'] !== undefined && resolve(Number(h['grpc-status'])));
  });
  return {
    status,
    resume: () => {
      stream.on('data', () => {});
      stream.resume();
    },
    close: () => session.destroy(),
  };
}
