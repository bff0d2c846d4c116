// The successor's side of a handover: before it opens the store, a starting agent asks the one
// that may still run on the same state dir to hand over, and receives its snapshot.
import { join } from 'node:path';
import { isKernelError } from '../kernel/errors.js';
import { connectFdSocket, type FdSocket } from '../kernel/fd-passing.js';
import { HANDOVER_SOCKET } from './outgoing.js';
import { HANDOVER_PROTOCOL, SnapshotReader, type Snapshot } from './snapshot.js';
import { HandoverError, receiveSnapshot, receiveTagged, sendTagged, Tag } from './wire.js';
import { STORE_SCHEMA } from '../store/sqlite-store.js';

/** The running agent first lets its spawns in flight finish. */
const SNAPSHOT_TIMEOUT_MS = 60_000;
/**
 * Longer than the running agent waits for the confirmation (outgoing.ts, 30 s), which it began
 * before this one confirmed: so its B, abandoned, is always heard, and never a silence taken for
 * the store's release that its stop (a SIGTERM pending) then makes true.
 */
const RELEASE_TIMEOUT_MS = 45_000;

/**
 * A connection to the agent serving stateDir, or why none answers: ENOENT (no socket) or
 * ECONNREFUSED (a stale one, left by an agent that died).
 */
export function connectServing(stateDir: string): FdSocket | 'ENOENT' | 'ECONNREFUSED' {
  try {
    return connectFdSocket(join(stateDir, HANDOVER_SOCKET));
  } catch (e) {
    if (isKernelError(e) && (e.code === 'ENOENT' || e.code === 'ECONNREFUSED')) return e.code;
    throw e;
  }
}

/**
 * Without --takeover, a start must leave an agent serving stateDir alone: HandoverError naming it.
 * Connecting and closing without a request does not start a handover (the agent refuses the
 * empty connection and goes on serving); its pid comes from SO_PEERCRED, as of its listen.
 */
export function refuseIfServed(stateDir: string): void {
  const socket = connectServing(stateDir);
  if (typeof socket === 'string') return;
  const { pid } = socket.peer;
  socket.close();
  const who = pid === 0 ? 'an agent in another pid namespace' : `the agent with pid ${pid}`;
  throw new HandoverError(`${who} serves --state-dir ${stateDir}; start with --takeover if-serving to take over its processes, or use another --state-dir`);
}

/**
 * Takes over from the agent serving stateDir, if one answers: null when none does (then `required`
 * makes that an error). It runs before the agent serves anything, and waits on the event loop, so
 * that a stop asked for meanwhile (`stopping`, SIGTERM) is seen before this agent confirms: then
 * it closes the connection without confirming (the serving agent resumes, as after any successor
 * that failed halfway) and throws the stop's reason. Once it has confirmed, the serving agent lets
 * go of everything: from there a stop has to wait for the start to complete, then save the state.
 */
export async function requestHandover(stateDir: string, required: boolean, stopping?: AbortSignal): Promise<Snapshot | null> {
  const socket = connectServing(stateDir);
  if (typeof socket === 'string') {
    if (required) throw new HandoverError(`--takeover required: no agent answers on ${join(stateDir, HANDOVER_SOCKET)} (${socket})`);
    return null;
  }
  try {
    if (socket.peerUid !== process.geteuid!()) throw new HandoverError(`the agent on ${stateDir} runs as uid ${socket.peerUid}, not ${process.geteuid!()}`);
    sendTagged(socket, Tag.request, { protocol: HANDOVER_PROTOCOL, storeSchema: STORE_SCHEMA });
    const reader = new SnapshotReader();
    const { fds } = await receiveSnapshot(socket, SNAPSHOT_TIMEOUT_MS, (bytes) => reader.write(bytes));
    const snapshot = reader.finish(fds);
    if (stopping?.aborted) {
      snapshot.close();
      stopping.throwIfAborted();
    }
    let answer: Tag | undefined;
    try {
      sendTagged(socket, Tag.received);
    } catch {
      // gone, or gave up: what it said before it went is still to be read
    }
    try {
      // R, or the connection closing, says the store is free; B that it serves again. Alive but
      // silent, it keeps the store, so opening the store fails.
      if (await socket.readable(RELEASE_TIMEOUT_MS)) answer = receiveTagged(socket, [Tag.released, Tag.abandoned], 0).tag;
    } catch {
      // Gone after sending everything: the snapshot is still right.
    }
    if (answer === Tag.abandoned) {
      snapshot.close();
      throw new HandoverError('the serving agent gave up waiting for this one to confirm the handover and serves again: its snapshot is stale');
    }
    return snapshot;
  } finally {
    socket.close();
  }
}
