// The persisted table on its own: round trips, sequence reservation, one agent per state dir.
import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventLog } from '../src/process/events/event-log.js';
import { eventEncoding } from '../src/service/event-encoding.js';
import { newHandleId } from '../src/process/lifecycle/handle.js';
import { ProcessRecord } from '../src/process/lifecycle/record.js';
import { SqliteStore, STORE_FILE, StoreError } from '../src/store/sqlite-store.js';

const dirs: string[] = [];
test.after.always(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-store-'));
  dirs.push(dir);
  return join(dir, 'state');
}

const errors: unknown[] = [];
const open = (dir: string, bootId = 'boot-a') => new SqliteStore(dir, bootId, (_what, e) => errors.push(e), 100);

function record(i: number, inode = BigInt(1000 + i)): ProcessRecord {
  const spec = { argv: ['sleep', String(i)], labels: { n: String(i) }, adopted: i % 2 === 1, requestId: i === 0 ? 'key' : undefined, owner: i === 0 ? 'unix:uid=0,gid=0,pid=1' : undefined };
  return new ProcessRecord(newHandleId(), { pid: 100 + i, pidfsInode: inode }, spec, 1_700_000_000_000 + i, null);
}

test('what is written comes back: identity, spec, exits, deadlines; released records are gone', (t) => {
  const dir = stateDir();
  const store = open(dir);
  const running = record(0, 2n ** 63n + 5n); // inodes are unsigned 64-bit
  running.armDeadline({ at: 1_800_000_000_000, killSignal: 15, graceMs: 500 }, () => undefined);
  running.pauseDeadline();
  running.ownCgroup('/sys/fs/cgroup/pidfd-agent/x');
  const exited = record(1);
  const released = record(2);
  for (const r of [running, exited, released]) store.commit('test', 0, (w) => w.started(r));
  exited.markExited({ termination: { signal: 9, coreDumped: false }, reason: 'timeout', exitedAt: 1_700_000_000_500, rusage: { userMicros: 1, systemMicros: 2, maxRssKib: 3, minorFaults: 4, majorFaults: 5, voluntaryContextSwitches: 6, involuntaryContextSwitches: 7 } });
  store.commit('test', 0, (w) => {
    w.exited(exited.handle, exited.exit!);
    w.released(released.handle);
  });
  store.close();
  const loaded = open(dir).load();
  t.deepEqual(loaded.map((s) => s.handle), [running.handle, exited.handle], 'running first, then exited; released gone');
  const [r, e] = loaded;
  t.like(r, { pid: 100, pidfsInode: 2n ** 63n + 5n, bootId: 'boot-a', argv: ['sleep', '0'], labels: { n: '0' }, adopted: false, requestId: 'key', owner: 'unix:uid=0,gid=0,pid=1', startedAt: 1_700_000_000_000, state: 'running' });
  t.deepEqual(r!.deadline, running.deadline);
  t.is(r!.ownedCgroup, running.ownedCgroup);
  t.is(r!.exit, undefined);
  t.like(e, { state: 'exited', adopted: true, requestId: undefined, owner: undefined });
  t.deepEqual(e!.exit, exited.exit);
  t.deepEqual(errors, []);
});

test('sequences continue above every number a previous agent could have used', (t) => {
  const dir = stateDir();
  const store = open(dir);
  const log = new EventLog(16, eventEncoding, Date.now, store.sequences);
  t.is(log.lastSequence, 0);
  const r = record(0);
  for (let i = 0; i < 5000; i++) log.append('spawned', r);
  store.close();
  const reopened = open(dir);
  const next = new EventLog(16, eventEncoding, Date.now, reopened.sequences);
  t.true(next.lastSequence >= 5000, `starts at ${next.lastSequence}`);
  t.false(next.canReplayAfter(4999), 'an older cursor is out of range');
  t.false(next.canReplayAfter(0));
  t.true(next.canReplayAfter(next.lastSequence), 'the current position is fine');
  t.is(next.append('exited', r), next.lastSequence);
  t.is(next.slotOf(next.lastSequence - 1), -1, 'nothing before the restart is held');
  t.is(next.firstSequence, next.lastSequence);
  reopened.close();
});

test('one agent per state dir: a second open is refused while the first holds it', (t) => {
  const dir = stateDir();
  const first = open(dir);
  const started = Date.now();
  t.throws(() => open(dir), { instanceOf: StoreError, message: /in use by another agent/ });
  t.true(Date.now() - started >= 100, 'after waiting for the lock');
  first.close();
  open(dir).close();
  t.pass();
});

test('a store written by schema 1 (no owners) opens, keeps its records and records owners from then on', (t) => {
  const dir = stateDir();
  mkdirSync(dir, { recursive: true });
  const v1 = new Database(join(dir, STORE_FILE));
  v1.exec(`
    CREATE TABLE processes (handle TEXT PRIMARY KEY, pid INTEGER NOT NULL, pidfs_inode INTEGER NOT NULL, boot_id TEXT NOT NULL,
      argv TEXT NOT NULL, labels TEXT NOT NULL, adopted INTEGER NOT NULL, request_id TEXT, started_at INTEGER NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('running', 'exited')), exited_at INTEGER, exit TEXT, owned_cgroup TEXT, deadline TEXT) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('sequence_ceiling', 4096);
    INSERT INTO processes VALUES ('old', 7, 8, 'boot-a', '["sleep"]', '{}', 0, NULL, 1, 'running', NULL, NULL, NULL, NULL);
    PRAGMA user_version = 1;`);
  v1.close();
  const store = open(dir);
  const fresh = record(0);
  store.commit('test', 0, (w) => w.started(fresh));
  store.close();
  const loaded = open(dir).load();
  t.like(loaded.find((s) => s.handle === 'old'), { pid: 7, pidfsInode: 8n, owner: undefined, state: 'running' });
  t.is(loaded.find((s) => s.handle === fresh.handle)?.owner, 'unix:uid=0,gid=0,pid=1');
  t.deepEqual(errors, []);
});

test('a transaction that fails writes nothing and reserves nothing; intents round-trip', (t) => {
  const dir = stateDir();
  const store = open(dir);
  const kept = record(0);
  store.commit('test', 1, (w) => w.started(kept));
  const log = new EventLog(16, eventEncoding, Date.now, store.sequences);
  const ceiling = () => {
    const db = new Database(join(dir, STORE_FILE), { readonly: true, fileMustExist: true });
    try {
      return Number(db.prepare(`SELECT value FROM meta WHERE key = 'sequence_ceiling'`).pluck().get());
    } catch {
      return undefined;
    } finally {
      db.close();
    }
  };
  const failing = record(1);
  const before = errors.length;
  t.throws(() => store.commit('test', 1_000_000, (w) => {
    w.started(failing);
    w.intended({ owner: 'o', requestId: 'r', handle: failing.handle, argv: ['x'], createdAt: 1 });
    w.started(failing); // the same handle twice: the second insert fails, and with it the whole
  }), { name: 'StoreWriteFailed' });
  t.is(errors.length, before + 1, 'reported to the error sink');
  t.is(log.append('spawned', kept), 1, 'numbering is unchanged: the ceiling did not move');
  store.commit('test', 0, (w) => w.intended({ owner: undefined, requestId: 'k', handle: kept.handle, argv: ['sleep', '1'], createdAt: 5 }));
  store.close();
  t.true((ceiling() ?? Infinity) < 1_000_000, 'the failed reservation is not on disk');
  const reopened = open(dir);
  t.deepEqual(reopened.load().map((s) => s.handle), [kept.handle]);
  t.deepEqual(reopened.intents(), [{ owner: undefined, requestId: 'k', handle: kept.handle, argv: ['sleep', '1'], createdAt: 5 }]);
  reopened.commit('test', 0, (w) => w.settled(undefined, 'k'));
  t.deepEqual(reopened.intents(), []);
  reopened.close();
});

test('a store written by schema 3 (rows keyed by handle) opens in start order; its rows take exits and releases', (t) => {
  const dir = stateDir();
  mkdirSync(dir, { recursive: true });
  const v3 = new Database(join(dir, STORE_FILE));
  v3.exec(`
    CREATE TABLE processes (handle TEXT PRIMARY KEY, pid INTEGER NOT NULL, pidfs_inode INTEGER NOT NULL, boot_id TEXT NOT NULL,
      argv TEXT NOT NULL, labels TEXT NOT NULL, adopted INTEGER NOT NULL, request_id TEXT, owner TEXT, started_at INTEGER NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('running', 'exited')), exited_at INTEGER, exit TEXT, owned_cgroup TEXT, deadline TEXT) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('sequence_ceiling', 4096);
    CREATE TABLE intents (owner TEXT NOT NULL, request_id TEXT NOT NULL, handle TEXT NOT NULL, argv TEXT NOT NULL, created_at INTEGER NOT NULL,
      PRIMARY KEY (owner, request_id)) WITHOUT ROWID;
    INSERT INTO processes VALUES ('zz-first', 7, 8, 'boot-a', '["sleep"]', '{}', 0, NULL, 'me', 1, 'running', NULL, NULL, NULL, NULL);
    INSERT INTO processes VALUES ('aa-second', 9, 10, 'boot-a', '["sleep"]', '{}', 0, NULL, 'me', 2, 'running', NULL, NULL, NULL, NULL);
    PRAGMA user_version = 3;`);
  v3.close();
  const mine: unknown[] = [];
  const store = new SqliteStore(dir, 'boot-a', (_what, e) => mine.push(e), 100);
  t.deepEqual(store.load().map((s) => s.handle), ['zz-first', 'aa-second'], 'start order, not handle order');
  const exit = { termination: { exitCode: 3 }, reason: 'exited' as const, exitedAt: 50 };
  store.commit('test', 0, (w) => {
    w.exited('zz-first' as never, exit);
    w.released('aa-second' as never);
  });
  const fresh = record(0);
  store.commit('test', 0, (w) => w.started(fresh));
  store.close();
  const loaded = open(dir).load();
  t.deepEqual(loaded.map((s) => [s.handle, s.state]), [[fresh.handle, 'running'], ['zz-first', 'exited']]);
  t.deepEqual(loaded[1]!.exit, exit);
  t.deepEqual(mine, []);
});

test('a rolled-back transaction leaves the rows it released or started as they were', (t) => {
  const dir = stateDir();
  const mine: unknown[] = [];
  const store = new SqliteStore(dir, 'boot-a', (_what, e) => mine.push(e), 100);
  const kept = record(0);
  const other = record(1);
  store.commit('test', 0, (w) => w.started(kept));
  t.throws(() => store.commit('test', 0, (w) => {
    w.released(kept.handle);
    w.started(other);
    w.started(other); // a handle that has a row: refused, and the whole transaction with it
  }), { name: 'StoreWriteFailed' });
  const exit = { termination: { exitCode: 0 }, reason: 'exited' as const, exitedAt: 60 };
  // Both as if the failed transaction never happened: kept's row takes its exit, other can start.
  store.commit('test', 0, (w) => {
    w.exited(kept.handle, exit);
    w.started(other);
  });
  store.close();
  const loaded = open(dir).load();
  t.deepEqual(loaded.map((s) => [s.handle, s.state]), [[other.handle, 'running'], [kept.handle, 'exited']]);
  t.deepEqual(loaded[1]!.exit, exit);
  t.is(mine.length, 1, 'the refused transaction, reported once');
});

test('a commit undone after it landed leaves the table as before it, but for its exits: rows and intents come back, starts go', (t) => {
  const dir = stateDir();
  const store = open(dir);
  const running = record(0, 2n ** 63n + 9n);
  const exited = record(1);
  const started = record(2);
  const intent = (requestId: string, handle = started.handle) => ({ owner: 'unix:uid=7', requestId, handle, argv: ['sleep', '1'], createdAt: 5, createdStamp: { boot: 'b', ms: 9 } });
  store.commit('before', 0, (w) => {
    w.started(running);
    w.started(exited);
    w.exited(exited.handle, { termination: { exitCode: 2 }, reason: 'exited', exitedAt: 50 });
    w.intended(intent('settled'));
  });
  const exit = { termination: { signal: 9, coreDumped: false }, reason: 'exited' as const, exitedAt: 60 };
  store.commit('undone', 1_000, (w) => {
    w.started(started);
    w.released(exited.handle);
    w.settled('unix:uid=7', 'settled');
    w.intended(intent('intended'));
    w.exited(running.handle, exit);
  });
  store.undoLast();
  // The rows it knows are as before: the released handle takes an exit again, the started one can start again.
  store.commit('after', 0, (w) => w.started(started));
  store.undoLast();
  store.close();
  const reopened = open(dir);
  const loaded = reopened.load();
  t.deepEqual(loaded.map((s) => [s.handle, s.state]), [[exited.handle, 'exited'], [running.handle, 'exited']], 'in exit order; the start undone twice is gone');
  t.like(loaded.find((s) => s.handle === exited.handle), { pid: 101, argv: ['sleep', '1'], labels: { n: '1' }, adopted: true, exit: { termination: { exitCode: 2 }, reason: 'exited', exitedAt: 50 } });
  t.is(loaded.find((s) => s.handle === running.handle)?.pidfsInode, 2n ** 63n + 9n, 'the 64-bit inode unchanged');
  t.deepEqual(loaded.find((s) => s.handle === running.handle)?.exit, exit, 'the exit stays recorded');
  t.deepEqual(reopened.intents(), [intent('settled')], 'the settled intent is back, the new one gone');
  t.true(reopened.sequences.after >= 1_000, 'the sequence ceiling only grows');
  reopened.close();
});

test('tombstones come back oldest first, with their stamps; an undone commit takes its tombstones back and returns those it deleted', (t) => {
  const dir = stateDir();
  const store = open(dir);
  const tombstone = (requestId: string, releasedAt: number, owner?: string) => ({ owner, requestId, handle: newHandleId(), fingerprint: `spawn:${requestId}`, releasedAt, releasedStamp: { boot: 'boot-a', ms: releasedAt } });
  const [a, b, c] = [tombstone('a', 20, 'unix:uid=7'), tombstone('b', 10), tombstone('c', 30)];
  store.commit('kept', 0, (w) => {
    w.tombstoned(a);
    w.tombstoned(b);
  });
  store.commit('undone', 0, (w) => {
    w.untombstoned(a.owner, a.requestId);
    w.tombstoned(c);
  });
  t.deepEqual(store.tombstones(), [b, c]);
  store.undoLast();
  t.deepEqual(store.tombstones(), [b, a]);
  // A transaction that fails keeps none of its tombstones.
  const before = store.tombstones();
  const started = record(3);
  store.commit('a start', 0, (w) => w.started(started));
  t.throws(() =>
    store.commit('refused', 0, (w) => {
      w.tombstoned(c);
      w.untombstoned(b.owner, b.requestId);
      w.started(started); // a second row for the handle: the transaction fails here
    }),
  );
  t.deepEqual(store.tombstones(), before);
  store.close();
  const reopened = open(dir);
  t.deepEqual(reopened.tombstones(), [b, a], 'oldest release first, owner and stamp as written');
  reopened.close();
});

test('capture marks come back with their records, are replaced as they move, go with the release, and an undone start or release takes them along', (t) => {
  const dir = stateDir();
  const mine: unknown[] = [];
  const mineOpen = () => new SqliteStore(dir, 'boot-a', (_what, e) => mine.push(e), 100);
  const store = mineOpen();
  const mark = (stream: 'stdout' | 'stderr', at: number, filed = true) => ({ stream, ino: 77, capacity: 1024, mark: at, outputEvents: true, stdinPiped: false, filed });
  const [kept, released, undone] = [record(0), record(1), record(2)];
  store.commit('starts', 0, (w) => {
    for (const r of [kept, released]) {
      w.started(r);
      w.captured(r.handle, mark('stdout', 64));
      w.captured(r.handle, mark('stderr', 64));
    }
  });
  store.commit('a mark', 0, (w) => w.captured(kept.handle, mark('stdout', 2 ** 40, false)));
  store.commit('a release', 0, (w) => w.released(released.handle));
  store.undoLast();
  store.commit('a start', 0, (w) => {
    w.started(undone);
    w.captured(undone.handle, mark('stdout', 64));
  });
  store.undoLast();
  store.close();
  // An older agent's release left a row behind: it goes when a newer agent opens the store.
  const raw = new Database(join(dir, STORE_FILE));
  raw.prepare('INSERT INTO captures VALUES (?, ?, 1, 1, 1, 0, 0, 1)').run('gone', 'stdout');
  raw.close();
  const reopened = mineOpen();
  const loaded = new Map(reopened.load().map((s) => [s.handle, s.captures]));
  t.deepEqual(loaded.get(kept.handle)?.slice().sort((a, b) => a.stream.localeCompare(b.stream)), [mark('stderr', 64), mark('stdout', 2 ** 40, false)]);
  t.is(loaded.get(released.handle)?.length, 2, 'an undone release keeps its marks');
  t.false(loaded.has(undone.handle), 'an undone start takes its marks along');
  reopened.close();
  const check = new Database(join(dir, STORE_FILE), { readonly: true });
  t.is(check.prepare('SELECT count(*) FROM captures').pluck().get(), 4, 'the orphaned row is gone');
  check.close();
  t.deepEqual(mine, []);
});

test('released processes that still run come back with their owner and identity until their end is written; an undone commit takes them back', (t) => {
  const dir = stateDir();
  const store = open(dir);
  const released = (i: number, owner?: string) => ({ handle: newHandleId(), pid: 200 + i, pidfsInode: 2n ** 63n + BigInt(i), releasedAt: 1_700_000_000_000 + i, ...(owner === undefined ? {} : { owner }), ...(i === 1 ? { ownedCgroup: '/sys/fs/cgroup/pidfd-agent/r' } : {}) });
  const [a, b, c] = [released(1, 'unix:uid=7'), released(2), released(3, 'unix:uid=8')];
  store.commit('kept', 0, (w) => {
    w.releasedRunning(a);
    w.releasedRunning(b);
  });
  store.commit('undone', 0, (w) => {
    w.releasedEnded(a.handle);
    w.releasedRunning(c);
  });
  t.deepEqual(store.runningReleased().map((r) => r.handle), [b.handle, c.handle]);
  store.undoLast();
  t.deepEqual(store.runningReleased(), [a, b].map((r) => ({ ...r, bootId: 'boot-a' })), 'oldest release first, as written, in the boot of the store');
  store.close();
  // An older store (the table never created): nothing counts, and the first release creates it.
  const older = stateDir();
  const before = open(older);
  before.close();
  const db = new Database(join(older, STORE_FILE));
  db.exec('DROP TABLE released_running');
  db.close();
  const reopened = open(older);
  t.deepEqual(reopened.runningReleased(), []);
  reopened.commit('an end of a row never written', 0, (w) => w.releasedEnded(a.handle));
  reopened.commit('a release', 0, (w) => w.releasedRunning(c));
  t.deepEqual(reopened.runningReleased().map((r) => r.handle), [c.handle]);
  reopened.close();
});
