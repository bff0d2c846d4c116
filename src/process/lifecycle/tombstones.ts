// What is kept of a released record that had a request_id: enough to refuse a retry of its
// request after the record itself is gone. Without it a retry that came after the release (a
// release_on_exit process that exited before the lost reply's retry arrived, say) started the
// command a second time. A fingerprint stands for the argv: argvs may be large, and a tombstone
// only has to tell the same request from another one under the same key.
import { createHash } from 'node:crypto';
import { elapsedSince, instantNow, type Instant, type Stamp } from './clock.js';
import type { HandleId } from './handle.js';
import type { ProcessRecord } from './record.js';
import { requestKey, takeFromFullest, type Group, type RetentionPolicy } from './table.js';

export interface Tombstone {
  readonly owner: string | undefined;
  readonly requestId: string;
  /** The handle the released record had. */
  readonly handle: HandleId;
  /** What a retry must match (spawnFingerprint, adoptFingerprint). */
  readonly fingerprint: string;
  readonly releasedAt: number;
  /** releasedAt on the clock that does not step (clock.ts): what its age is measured by. */
  readonly releasedStamp?: Stamp;
}

/**
 * 128 bits of SHA-256 over the argv as JSON (unambiguous: no two argvs encode alike), in base64url:
 * 22 characters, none a ':' (so never an adoption's). A string of its own, not a slice of a longer
 * one, which would keep the longer one alive: up to --retention-max of these are held.
 */
export const spawnFingerprint = (argv: readonly string[]): string => createHash('sha256').update(JSON.stringify(argv)).digest().toString('base64url', 0, 16);

/** An adoption is of one process: its pid and pidfs inode. */
export const adoptFingerprint = (pid: number, inode: bigint): string => `adopt:${pid}:${inode}`;

/** Whether a retry of an Adopt of `pid` (and `inode`, when the request named it) is the adoption `t` was. */
export function sameAdoption(t: Tombstone, pid: number, inode: bigint | undefined): boolean {
  const [kind, p, i] = t.fingerprint.split(':');
  return kind === 'adopt' && p === String(pid) && (inode === undefined || i === String(inode));
}

/** The tombstones to write with a release, and those they replace or push out (deleted in the same transaction). */
export interface TombstonePlan {
  readonly add: readonly Tombstone[];
  readonly drop: readonly Tombstone[];
}

export const NO_TOMBSTONES: TombstonePlan = { add: [], drop: [] };

/**
 * Tombstones by owner and request_id, in release order. Bounded as exited records are: each goes
 * --retention-ttl after its release, and past --retention-max the oldest of the owner keeping the
 * most go first, so one tenant's stream of releases cannot free another's keys early.
 */
export class Tombstones {
  private readonly byKey = new Map<string, Tombstone>();
  /** By owner, then request_id: whose tombstones the cap takes. */
  private readonly byOwner = new Map<string, Map<string, Tombstone>>();

  constructor(private readonly retention: RetentionPolicy) {}

  get size(): number {
    return this.byKey.size;
  }

  /** The tombstone of a key (requestKey), or undefined: one Map lookup. */
  find(key: string): Tombstone | undefined {
    return this.byKey.get(key);
  }

  values(): IterableIterator<Tombstone> {
    return this.byKey.values();
  }

  /**
   * plan, for a release: nothing at all when no record has a request_id (the release of one
   * without costs nothing here; tombstones past their TTL wait for the next expiry).
   */
  planRelease(records: readonly ProcessRecord[]): TombstonePlan {
    return records.some((r) => r.spec.requestId !== undefined) ? this.plan(records) : NO_TOMBSTONES;
  }

  /**
   * What releasing `records` does to the tombstones, changing nothing yet (the store commits it
   * first): one for each record with a request_id, and dropped those past their TTL, those a new
   * one replaces, and, over the cap, the oldest of whoever keeps the most (new ones included).
   */
  plan(records: readonly ProcessRecord[], now: Instant = instantNow()): TombstonePlan {
    const add: Tombstone[] = [];
    for (const r of records) {
      if (r.spec.requestId === undefined) continue;
      const fingerprint = r.spec.adopted ? adoptFingerprint(r.identity.pid, r.identity.pidfsInode) : spawnFingerprint(r.spec.argv);
      add.push({ owner: r.spec.owner, requestId: r.spec.requestId, handle: r.handle, fingerprint, releasedAt: now.wall, releasedStamp: now.stamp });
    }
    const drop = new Set<Tombstone>();
    for (const t of this.byKey.values()) {
      if (elapsedSince(t.releasedAt, t.releasedStamp, now) < this.retention.ttlMs) break;
      drop.add(t);
    }
    for (const t of add) {
      const replaced = this.byKey.get(keyOf(t));
      if (replaced !== undefined) drop.add(replaced);
    }
    const over = this.byKey.size - drop.size + add.length - this.retention.maxExited;
    if (over <= 0) return drop.size === 0 && add.length === 0 ? NO_TOMBSTONES : { add, drop: [...drop] };
    const fresh = new Map<string, Tombstone[]>();
    for (const t of add) {
      const o = t.owner ?? '';
      const mine = fresh.get(o);
      if (mine === undefined) fresh.set(o, [t]);
      else mine.push(t);
    }
    // Lazily, past what is dropped anyway: at the cap every release comes here.
    const droppedBy = new Map<string, number>();
    for (const t of drop) droppedBy.set(t.owner ?? '', (droppedBy.get(t.owner ?? '') ?? 0) + 1);
    const groups: Group<Tombstone>[] = [];
    for (const o of new Set([...this.byOwner.keys(), ...fresh.keys()])) {
      const kept = this.byOwner.get(o);
      const mine = fresh.get(o) ?? [];
      groups.push({ next: oldestFirst(kept?.values(), drop, mine), count: (kept?.size ?? 0) - (droppedBy.get(o) ?? 0) + mine.length });
    }
    const taken: Tombstone[] = [];
    takeFromFullest(groups, over, taken);
    const skipped = new Set(taken);
    for (const t of taken) if (this.byKey.get(keyOf(t)) === t) drop.add(t);
    return { add: add.filter((t) => !skipped.has(t)), drop: [...drop] };
  }

  /** The plan, once the store has it. */
  apply(plan: TombstonePlan): void {
    for (const t of plan.drop) this.remove(t);
    for (const t of plan.add) this.put(t);
  }

  /** At start: the store's tombstones, oldest first. */
  restore(tombstones: readonly Tombstone[]): void {
    for (const t of tombstones) this.put(t);
  }

  private put(t: Tombstone): void {
    const key = keyOf(t);
    const old = this.byKey.get(key);
    if (old !== undefined) this.remove(old);
    this.byKey.set(key, t);
    const o = t.owner ?? '';
    let mine = this.byOwner.get(o);
    if (mine === undefined) this.byOwner.set(o, (mine = new Map()));
    mine.set(t.requestId, t);
  }

  private remove(t: Tombstone): void {
    const key = keyOf(t);
    if (this.byKey.get(key) !== t) return;
    this.byKey.delete(key);
    const o = t.owner ?? '';
    const mine = this.byOwner.get(o);
    mine?.delete(t.requestId);
    if (mine?.size === 0) this.byOwner.delete(o);
  }
}

function* oldestFirst(kept: Iterable<Tombstone> | undefined, dropped: ReadonlySet<Tombstone>, fresh: readonly Tombstone[]): Generator<Tombstone> {
  for (const t of kept ?? []) if (!dropped.has(t)) yield t;
  yield* fresh;
}

const keyOf = (t: Tombstone): string => requestKey(t.owner, t.requestId);
