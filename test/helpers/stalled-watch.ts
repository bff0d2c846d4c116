import { WatchRequest } from '../../clients/ts/src/index.js';
import { stalledStream } from './stalled-stream.js';

export interface StalledWatch {
  /** The grpc-status trailer, once the client finally reads and the agent has sent it. */
  readonly status: Promise<number>;
  resume(): void;
  close(): void;
}

/** A Watch whose client never reads (see stalledStream). */
export function stalledWatch(socketPath: string, req: Partial<WatchRequest>): StalledWatch {
  const stream = stalledStream(socketPath, 'Watch', WatchRequest.encode(WatchRequest.fromPartial(req)).finish());
  return { status: stream.status, resume: () => stream.resume(() => {}), close: () => stream.close() };
}
