// A commit's writes as the column values the store binds: each StoreWrites call becomes a code
// and its values in one flat array of strings, numbers, bigints and nulls. The event loop builds
// it (with the JSON the columns hold) and posts it to the store's thread, where it is bound as
// is: a flat array of primitives costs a fraction of posting the records themselves.
import type { HandleId } from '../process/lifecycle/handle.js';
import type { CaptureMark, StoreWrites } from '../process/process-store.js';

export type Rows = (string | number | bigint | null)[];

const INTENDED = 0;
const SETTLED = 1;
const STARTED = 2;
const EXITED = 3;
const RELEASED = 4;
const TOMBSTONED = 5;
const UNTOMBSTONED = 6;
const CAPTURED = 7;
const RELEASED_RUNNING = 8;
const RELEASED_ENDED = 9;

/** The StoreWrites whose calls append their values to `rows`. */
export function rowEncoder(rows: Rows): StoreWrites {
  return {
    intended: (i) => void rows.push(INTENDED, i.owner ?? '', i.requestId, i.handle, JSON.stringify(i.argv), i.createdAt, i.createdStamp === undefined ? null : JSON.stringify(i.createdStamp)),
    settled: (owner, requestId) => void rows.push(SETTLED, owner ?? '', requestId),
    started: (r) =>
      void rows.push(
        STARTED,
        r.handle,
        r.identity.pid,
        // The column is a signed 64-bit integer; the inode unsigned.
        BigInt.asIntN(64, r.identity.pidfsInode),
        JSON.stringify(r.spec.argv),
        JSON.stringify(r.spec.labels),
        r.spec.adopted ? 1 : 0,
        r.spec.requestId ?? null,
        r.spec.owner ?? null,
        r.startedAt,
        r.ownedCgroup ?? null,
        r.deadline ? JSON.stringify(r.deadline) : null,
      ),
    exited: (handle, exit) => void rows.push(EXITED, handle, exit.exitedAt, JSON.stringify(exit)),
    released: (handle) => void rows.push(RELEASED, handle),
    tombstoned: (t) => void rows.push(TOMBSTONED, t.owner ?? '', t.requestId, t.handle, t.fingerprint, t.releasedAt, t.releasedStamp === undefined ? null : JSON.stringify(t.releasedStamp)),
    untombstoned: (owner, requestId) => void rows.push(UNTOMBSTONED, owner ?? '', requestId),
    captured: (handle, c) => void rows.push(CAPTURED, handle, c.stream, c.ino, c.capacity, c.mark, c.outputEvents ? 1 : 0, c.stdinPiped ? 1 : 0, filedColumn(c)),
    releasedRunning: (p) => void rows.push(RELEASED_RUNNING, p.handle, p.owner ?? '', p.pid, BigInt.asIntN(64, p.pidfsInode), p.ownedCgroup ?? null, p.releasedAt),
    releasedEnded: (handle) => void rows.push(RELEASED_ENDED, handle),
  };
}

/** What the store does with each write's values (owner '' for none). */
export interface RowWriter {
  intended(owner: string, requestId: string, handle: string, argv: string, createdAt: number, stamp: string | null): void;
  settled(owner: string, requestId: string): void;
  started(handle: HandleId, pid: number, inode: bigint, argv: string, labels: string, adopted: number, requestId: string | null, owner: string | null, startedAt: number, cgroup: string | null, deadline: string | null): void;
  exited(handle: HandleId, exitedAt: number, exit: string): void;
  released(handle: HandleId): void;
  tombstoned(owner: string, requestId: string, handle: string, fingerprint: string, releasedAt: number, stamp: string | null): void;
  untombstoned(owner: string, requestId: string): void;
  captured(handle: HandleId, stream: string, ino: number, capacity: number, mark: number, outputEvents: number, stdinPiped: number, filed: number): void;
  releasedRunning(handle: HandleId, owner: string, pid: number, inode: bigint, cgroup: string | null, releasedAt: number): void;
  releasedEnded(handle: HandleId): void;
}

/** Makes the writes `rows` holds, in order. */
export function applyRows(rows: Rows, w: RowWriter): void {
  const s = (i: number) => rows[i] as string;
  const n = (i: number) => rows[i] as number;
  for (let i = 0; i < rows.length; ) {
    switch (rows[i]) {
      case INTENDED:
        w.intended(s(i + 1), s(i + 2), s(i + 3), s(i + 4), n(i + 5), rows[i + 6] as string | null);
        i += 7;
        break;
      case SETTLED:
        w.settled(s(i + 1), s(i + 2));
        i += 3;
        break;
      case STARTED:
        w.started(s(i + 1) as HandleId, n(i + 2), rows[i + 3] as bigint, s(i + 4), s(i + 5), n(i + 6), rows[i + 7] as string | null, rows[i + 8] as string | null, n(i + 9), rows[i + 10] as string | null, rows[i + 11] as string | null);
        i += 12;
        break;
      case EXITED:
        w.exited(s(i + 1) as HandleId, n(i + 2), s(i + 3));
        i += 4;
        break;
      case RELEASED:
        w.released(s(i + 1) as HandleId);
        i += 2;
        break;
      case TOMBSTONED:
        w.tombstoned(s(i + 1), s(i + 2), s(i + 3), s(i + 4), n(i + 5), rows[i + 6] as string | null);
        i += 7;
        break;
      case UNTOMBSTONED:
        w.untombstoned(s(i + 1), s(i + 2));
        i += 3;
        break;
      case CAPTURED:
        w.captured(s(i + 1) as HandleId, s(i + 2), n(i + 3), n(i + 4), n(i + 5), n(i + 6), n(i + 7), n(i + 8));
        i += 9;
        break;
      case RELEASED_RUNNING:
        w.releasedRunning(s(i + 1) as HandleId, s(i + 2), n(i + 3), rows[i + 4] as bigint, rows[i + 5] as string | null, n(i + 6));
        i += 7;
        break;
      case RELEASED_ENDED:
        w.releasedEnded(s(i + 1) as HandleId);
        i += 2;
        break;
      default:
        throw new Error(`write ${i}: unknown code ${String(rows[i])}`);
    }
  }
}

/** The captures table's `filed` column: 0/1 whether the file is there, 2/3 an uncertain mark (CaptureMark.uncertain). */
export function filedColumn(c: CaptureMark): number {
  return c.uncertain === 'handed-over' ? 2 : c.uncertain === 'unknown' ? 3 : c.filed ? 1 : 0;
}
