// The probe socket (--health-listen). A liveness probe on the callers' socket competes with them
// for its caps: root's clients holding --max-connections-per-identity connections (or everyone's
// holding --max-connections) would fail every probe, and the kubelet would restart a healthy
// agent each minute. Here the probe has connections of its own, counted against nobody else's; the
// socket is the agent's group's (0660, directory 0750), and in the DaemonSet in the container's own
// file system, so a caller on the node's socket cannot reach it to fill it. Who can (root and the
// agent's group, on the node through /proc/PID/root) cannot hold its slots by connecting and
// saying nothing either: a newcomer takes the slot of one quiet for PROBE_QUIET_MS (quiet-connections.ts).
// No shorter deadline for the preface, and no idle timeout: they would not let a probe in sooner,
// and a peer that reconnects whenever it is closed would then hold slots that are all young (not
// yet quiet) together, for a moment in each deadline, instead of slots that only grow quieter.
import type { Server } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { listenUnix, type GrpcListener } from './listeners.js';
import { prepareSocket, socketGid } from './unix-socket.js';

/** A probe every few seconds, a person's `pidfdctl health` and a stuck one waiting out its timeout. */
export const PROBE_MAX_CONNECTIONS = 8;
/** A probe starts its call within milliseconds of connecting: this leaves it a loaded node's margin. */
export const PROBE_QUIET_MS = 1000;

export async function listenProbe(server: Server, address: string, handshakeTimeoutMs: number, log: Logger): Promise<GrpcListener> {
  const path = address.slice('unix://'.length);
  const gid = socketGid(undefined);
  await prepareSocket(path, gid);
  return listenUnix(server, path, gid, { maxConnections: PROBE_MAX_CONNECTIONS, maxConnectionsFrom: 'the --health-listen socket\'s own cap', handshakeTimeoutMs, evictQuietAfterMs: PROBE_QUIET_MS }, log);
}
