// The probe socket (--health-listen). A liveness probe on the callers' socket competes with them
// for its caps: root's clients holding --max-connections-per-identity connections (or everyone's
// holding --max-connections) would fail every probe, and the kubelet would restart a healthy
// agent each minute. Here the probe has connections of its own, counted against nobody else's; the
// socket is the agent's group's (0660, directory 0750), and in the DaemonSet in the container's own
// file system, so a caller on the node's socket cannot reach it to fill it.
import type { Server } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { listenUnix, type GrpcListener } from './listeners.js';
import { prepareSocket, socketGid } from './unix-socket.js';

/** A probe every few seconds, a person's `pidfdctl health` and a stuck one waiting out its timeout. */
export const PROBE_MAX_CONNECTIONS = 8;

export async function listenProbe(server: Server, address: string, handshakeTimeoutMs: number, log: Logger): Promise<GrpcListener> {
  const path = address.slice('unix://'.length);
  const gid = socketGid(undefined);
  await prepareSocket(path, gid);
  return listenUnix(server, path, gid, { maxConnections: PROBE_MAX_CONNECTIONS, maxConnectionsFrom: 'the --health-listen socket\'s own cap', handshakeTimeoutMs }, log);
}
