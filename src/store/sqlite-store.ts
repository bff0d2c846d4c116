// The handle table on disk: SQLite (better-sqlite3, synchronous) in WAL mode under --state-dir.
// synchronous=NORMAL: a commit survives the agent's crash (it is in the kernel's page cache);
// only a power loss can drop the last commits, and that also ends every process, so the boot id
// marks them lost anyway. locking_mode=EXCLUSIVE makes the file lock the agent's lock: a second
// agent on the same state dir is refused, and no shared-memory index is needed.
import { chmodSync, closeSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import { constants as os } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { SequenceOrigin } from '../process/events/event-log.js';
import type { Stamp } from '../process/lifecycle/clock.js';
import type { HandleId } from '../process/lifecycle/handle.js';
import type { ExitInfo } from '../process/lifecycle/record.js';
import { StoreWriteFailed, type CaptureMark, type ProcessStore, type SavedProcess, type SavedReleased, type SpawnIntent, type StoreWrites } from '../process/process-store.js';
import type { Tombstone } from '../process/lifecycle/tombstones.js';
import { applyRows, rowEncoder, type RowWriter, type Rows } from './row-writes.js';

/**
 * One change of a transaction, with what it replaced: enough to restore `rows` when the
 * transaction rolls back, and to write the table back as it was when a caller was told a commit
 * failed that then landed (undoLast). Exits and the sequence ceiling are not in it: see undoLast.
 */
type Change =
  | { readonly kind: 'started'; readonly handle: HandleId }
  | { readonly kind: 'released'; readonly handle: HandleId; readonly id: number; readonly row: unknown[] | undefined; readonly captures: unknown[][] }
  | { readonly kind: 'intended'; readonly owner: string; readonly requestId: string }
  | { readonly kind: 'settled'; readonly row: unknown[] | undefined }
  | { readonly kind: 'tombstoned'; readonly owner: string; readonly requestId: string }
  | { readonly kind: 'untombstoned'; readonly row: unknown[] | undefined }
  | { readonly kind: 'tombstones-created' }
  | { readonly kind: 'captures-created' }
  | { readonly kind: 'released-running'; readonly handle: HandleId }
  | { readonly kind: 'released-ended'; readonly row: unknown[] | undefined }
  | { readonly kind: 'released-table-created' };

export const STORE_FILE = 'agent.db';
const SCHEMA_VERSION = 4;
/** The schema this build writes (and the oldest a successor taking over must know). */
export const STORE_SCHEMA = SCHEMA_VERSION;
/** Sequences reserved per write: a restarted agent continues above every number handed out. */
const SEQUENCE_BLOCK = 4096;

// Spawns with a request_id between their intent and their outcome (owner '' for none).
const INTENTS = `
CREATE TABLE intents (
  owner        TEXT NOT NULL,
  request_id   TEXT NOT NULL,
  handle       TEXT NOT NULL,
  argv         TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  created_stamp TEXT,
  PRIMARY KEY (owner, request_id)
) WITHOUT ROWID;
`;

// The request_ids of released records, kept (process/lifecycle/tombstones.ts) so that a retry
// after the release starts nothing. A table added without a schema version, as intents'
// created_stamp was: an agent of schema 4 that does not know it (a rollback, an older successor
// taking over) opens the store as before and leaves the table alone.
const TOMBSTONES = `
CREATE TABLE IF NOT EXISTS tombstones (
  owner          TEXT NOT NULL,
  request_id     TEXT NOT NULL,
  handle         TEXT NOT NULL,
  fingerprint    TEXT NOT NULL,
  released_at    INTEGER NOT NULL,
  released_stamp TEXT,
  PRIMARY KEY (owner, request_id)
) WITHOUT ROWID;
`;

// The marks of captured streams (process/stdio/capture-marks.ts), written in the commit of their
// process's start and rewritten as each stream passes its mark; they go with the release. Added
// without a schema version, as tombstones were: an older agent of schema 4 opens the store, leaves
// the table alone and goes on with HANDLE.json (which this agent also writes, for it). Rows an
// older agent's releases left behind are swept at open.
const CAPTURES = `
CREATE TABLE IF NOT EXISTS captures (
  handle        TEXT NOT NULL,
  stream        TEXT NOT NULL,
  pipe_inode    INTEGER NOT NULL,
  capacity      INTEGER NOT NULL,
  mark          INTEGER NOT NULL,
  output_events INTEGER NOT NULL,
  stdin_piped   INTEGER NOT NULL,
  filed         INTEGER NOT NULL,
  PRIMARY KEY (handle, stream)
) WITHOUT ROWID;
`;

interface CaptureStatements {
  readonly upsert: Database.Statement;
  /** Returns what it deleted, for an undo. */
  readonly take: Database.Statement;
  readonly remove: Database.Statement;
  readonly reinsert: Database.Statement;
}

// Processes released while they ran, until an agent finds them gone (process-store.ts
// ReleasedProcess): they count against their owner's max_processes across agents. Added without
// a schema version, as tombstones: an agent that does not know the table opens the store as
// before, and what it releases no longer counts after it, as nothing released did before.
const RELEASED_RUNNING = `
CREATE TABLE IF NOT EXISTS released_running (
  handle       TEXT NOT NULL PRIMARY KEY,
  owner        TEXT NOT NULL,
  pid          INTEGER NOT NULL,
  pidfs_inode  INTEGER NOT NULL,
  boot_id      TEXT NOT NULL,
  owned_cgroup TEXT,
  released_at  INTEGER NOT NULL
) WITHOUT ROWID;
`;

interface ReleasedStatements {
  readonly insert: Database.Statement;
  /** Returns what it deleted, for an undo. */
  readonly take: Database.Statement;
  readonly remove: Database.Statement;
  readonly reinsert: Database.Statement;
}

interface CaptureRow {
  handle: string;
  stream: 'stdout' | 'stderr';
  pipe_inode: number;
  capacity: number;
  mark: number;
  output_events: number;
  stdin_piped: number;
  filed: number;
}

interface TombstoneStatements {
  readonly insert: Database.Statement;
  /** Returns what it deleted, for an undo. */
  readonly take: Database.Statement;
  readonly remove: Database.Statement;
  readonly reinsert: Database.Statement;
}

// Rows in insertion order under a rowid the store hands out (schema 4): a group commit's inserts,
// and the exits of the processes it started last, dirty the table's last page or two instead of a
// random page each (a random 128-bit handle as the key did). The store keeps handle → rowid in
// memory and refuses a second row for a handle itself, so the handle needs no index.
const PROCESSES = `
CREATE TABLE processes (
  id           INTEGER PRIMARY KEY,
  handle       TEXT NOT NULL,
  pid          INTEGER NOT NULL,
  pidfs_inode  INTEGER NOT NULL,
  boot_id      TEXT NOT NULL,
  argv         TEXT NOT NULL,
  labels       TEXT NOT NULL,
  adopted      INTEGER NOT NULL,
  request_id   TEXT,
  owner        TEXT,
  started_at   INTEGER NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('running', 'exited')),
  exited_at    INTEGER,
  exit         TEXT,
  owned_cgroup TEXT,
  deadline     TEXT
);
`;

const COLUMNS = 'handle, pid, pidfs_inode, boot_id, argv, labels, adopted, request_id, owner, started_at, state, exited_at, exit, owned_cgroup, deadline';

const SCHEMA = `${PROCESSES}
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('sequence_ceiling', 0);
${INTENTS}`;

interface Row {
  handle: string;
  pid: bigint;
  pidfs_inode: bigint;
  boot_id: string;
  argv: string;
  labels: string;
  adopted: bigint;
  request_id: string | null;
  owner: string | null;
  started_at: bigint;
  state: 'running' | 'exited';
  exit: string | null;
  owned_cgroup: string | null;
  deadline: string | null;
}

export const STORE_SIDE_FILES = ['-wal', '-shm', '-journal'];

/**
 * The store holds every argv and label, so its directory is the agent's alone, whatever mode an
 * existing one had (mkdir leaves that as it is): 0700, and the database 0600 before SQLite opens
 * it, which gives its -wal and -shm files the database file's mode.
 */
function privateStateDir(stateDir: string, file: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  chmodSync(stateDir, 0o700);
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
  // SQLite reports a side file it cannot write as SQLITE_CANTOPEN or READONLY, without the errno:
  // opening them here first names the file and the errno instead.
  for (const suffix of STORE_SIDE_FILES) {
    try {
      closeSync(openSync(file + suffix, 'r+'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

const DB_MAGIC = Buffer.from('SQLite format 3\0');
const WAL_MAGICS = [0x377f0682, 0x377f0683];

/**
 * Looks at the headers before SQLite does: SQLite closing a database it found unreadable
 * checkpoints and deletes the WAL, which may hold the newest table, and a WAL it cannot read it
 * ignores, which would silently start an empty table. Neither file is changed here.
 */
function checkHeaders(file: string): void {
  const head = (path: string, bytes: number): Buffer | undefined => {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      const buf = Buffer.alloc(bytes);
      return buf.subarray(0, readSync(fd, buf, 0, bytes, 0));
    } finally {
      closeSync(fd);
    }
  };
  const db = head(file, DB_MAGIC.length);
  if (db !== undefined && db.length > 0 && !db.equals(DB_MAGIC)) throw new StoreDamaged(file, `${STORE_FILE} does not start with the SQLite header`);
  const wal = head(file + '-wal', 32);
  if (wal !== undefined && wal.length === 32 && !WAL_MAGICS.includes(wal.readUInt32BE(0))) throw new StoreDamaged(file, `${STORE_FILE}-wal does not start with a WAL header`);
}

function chmodIfPresent(path: string, mode: number): void {
  try {
    chmodSync(path, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

export type StoreErrorSink = (what: string, e: unknown) => void;

export class StoreError extends Error {}

/** Another agent has the store open (its lock was still held after the wait). */
export class StoreInUse extends StoreError {}

/** The file is not a database SQLite can read, or fails its check: only --recover gets past it. */
export class StoreDamaged extends StoreError {
  constructor(
    readonly file: string,
    /** What is wrong with it, for the log line of a recovery. */
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`${file}: the state store is damaged (${reason}); start the agent once with --recover to move it aside (kept, under a timestamped name) and start with an empty table`, options);
  }
}

const DAMAGED = new Set(['SQLITE_NOTADB', 'SQLITE_CORRUPT', 'SQLITE_CORRUPT_VTAB', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_INDEX']);

/** Errors of a stat that mean the path no longer leads to a file (removed, replaced, its mount gone). */
const GONE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ESTALE']);

const idOf = (file: string): string | undefined => {
  try {
    const st = statSync(file);
    return `${st.dev}:${st.ino}`;
  } catch (e) {
    if (GONE.has((e as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw e;
  }
};

/** One line naming the file and why it failed: the errno for a file the agent cannot open or write. */
function openFailure(file: string, e: unknown): Error {
  if (e instanceof StoreError) return e;
  const errno = (e as NodeJS.ErrnoException).code;
  if (errno !== undefined && errno in os.errno) {
    const { syscall, path } = e as NodeJS.ErrnoException;
    return new StoreError(`${file}: cannot open the state store: ${errno} (${syscall ?? 'open'} ${path ?? file})`, { cause: e });
  }
  const message = e instanceof Error ? e.message : String(e);
  if (errno !== undefined && DAMAGED.has(errno)) return new StoreDamaged(file, message, { cause: e });
  return new StoreError(`${file}: cannot open the state store: ${message}${errno === undefined ? '' : ` (${errno})`}`, { cause: e });
}

/** A rollback that fails too leaves the transaction open: every later BEGIN then fails, as it should. */
function rollback(statement: Database.Statement): void {
  try {
    statement.run();
  } catch {
    // the commit's own error is the one to report
  }
}

export class SqliteStore implements ProcessStore {
  private origin: SequenceOrigin;
  private readonly db: Database.Database;
  private readonly file: string;
  /** The file's device and inode when opened: the lock SQLite holds is on that inode, not the path. */
  private readonly fileId: string | undefined;
  private lost = false;
  /** intents has its created_stamp column (see addStampColumn). */
  private readonly stamped: boolean;
  private readonly setCeiling: Database.Statement;
  // Prepared once: db.exec parses its SQL on every call, twice per commit.
  private readonly begin: Database.Statement;
  private readonly end: Database.Statement;
  private readonly undo: Database.Statement;
  /** The highest sequence reserved durably: every number handed out is at most this. */
  private ceiling: number;
  private readonly writer: RowWriter;
  /** The rowid of each handle's row (every row is in it). */
  private readonly rows = new Map<HandleId, number>();
  private lastRow: number;
  /** The changes of the open transaction, or of the last one committed (oldest first). */
  private readonly changes: Change[] = [];
  private readonly reinsertRow: Database.Statement;
  private readonly reinsertIntent: Database.Statement;
  private readonly removeIntent: Database.Statement;
  private readonly removeRow: Database.Statement;
  /** Prepared once the tombstones table exists (see tombstoneStatements). */
  private tomb: TombstoneStatements | undefined;
  /** Prepared once the captures table exists (see captureStatements). */
  private capt: CaptureStatements | undefined;
  /** Prepared once the released_running table exists (see releasedStatements). */
  private releasedRows: ReleasedStatements | undefined;

  /**
   * Opens (creating) STATE_DIR/agent.db; throws StoreError when it is damaged, or still locked
   * by another agent after `lockWaitMs` (a previous agent may still be shutting down).
   */
  constructor(
    stateDir: string,
    private readonly bootId: string,
    private readonly onError: StoreErrorSink,
    lockWaitMs = 5000,
  ) {
    const file = join(stateDir, STORE_FILE);
    try {
      privateStateDir(stateDir, file);
      checkHeaders(file);
      this.db = new Database(file, { timeout: lockWaitMs });
    } catch (e) {
      throw openFailure(file, e);
    }
    try {
      this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      for (const suffix of STORE_SIDE_FILES) chmodIfPresent(file + suffix, 0o600);
      this.migrate(file);
      this.stamped = this.addStampColumn();
      this.tomb = this.tryTombstoneTable();
      this.capt = this.tryCaptureTable();
      this.releasedRows = this.tryReleasedTable();
    } catch (e) {
      this.db.close();
      const code = (e as { code?: string }).code;
      if (code === 'SQLITE_BUSY') throw new StoreInUse(`${stateDir}: the state store is in use by another agent`, { cause: e });
      throw openFailure(file, e);
    }
    this.file = file;
    this.fileId = idOf(file);
    const insert = this.db.prepare(
      `INSERT INTO processes (id, handle, pid, pidfs_inode, boot_id, argv, labels, adopted, request_id, owner, started_at, state, owned_cgroup, deadline)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)`,
    );
    const exited = this.db.prepare(`UPDATE processes SET state = 'exited', exited_at = ?, exit = ? WHERE id = ?`);
    // What a delete removes comes back with it (safe integers: the pidfs inode is 64 bits), kept
    // until the next commit in case this one must be undone.
    const remove = this.db.prepare('DELETE FROM processes WHERE id = ? RETURNING *').raw().safeIntegers(true);
    this.removeRow = this.db.prepare('DELETE FROM processes WHERE id = ?');
    const columns = (table: string) => (this.db.prepare('SELECT count(*) FROM pragma_table_info(?)').pluck().get(table) as number);
    const placeholders = (n: number) => Array.from({ length: n }, () => '?').join(', ');
    for (const [id, handle] of this.db.prepare('SELECT id, handle FROM processes').raw().all() as [number, HandleId][]) this.rows.set(handle, id);
    this.lastRow = Number(this.db.prepare('SELECT max(id) FROM processes').pluck().get() ?? 0);
    const intend = this.stamped
      ? this.db.prepare('INSERT OR REPLACE INTO intents (owner, request_id, handle, argv, created_at, created_stamp) VALUES (?, ?, ?, ?, ?, ?)')
      : this.db.prepare('INSERT OR REPLACE INTO intents (owner, request_id, handle, argv, created_at) VALUES (?, ?, ?, ?, ?)');
    const settle = this.db.prepare('DELETE FROM intents WHERE owner = ? AND request_id = ? RETURNING *').raw().safeIntegers(true);
    this.removeIntent = this.db.prepare('DELETE FROM intents WHERE owner = ? AND request_id = ?');
    this.reinsertRow = this.db.prepare(`INSERT INTO processes VALUES (${placeholders(columns('processes'))})`);
    this.reinsertIntent = this.db.prepare(`INSERT OR REPLACE INTO intents VALUES (${placeholders(columns('intents'))})`);
    this.begin = this.db.prepare('BEGIN');
    this.end = this.db.prepare('COMMIT');
    this.undo = this.db.prepare('ROLLBACK');
    this.setCeiling = this.db.prepare(`UPDATE meta SET value = ? WHERE key = 'sequence_ceiling'`);
    this.ceiling = Number(this.db.prepare(`SELECT value FROM meta WHERE key = 'sequence_ceiling'`).pluck().get());
    this.origin = { after: this.ceiling, reserve: (sequence) => this.reserve(sequence) };
    this.writer = {
      intended: (owner, requestId, handle, argv, createdAt, stamp) => {
        if (this.stamped) intend.run(owner, requestId, handle, argv, createdAt, stamp);
        else intend.run(owner, requestId, handle, argv, createdAt);
        this.changes.push({ kind: 'intended', owner, requestId });
      },
      settled: (owner, requestId) => void this.changes.push({ kind: 'settled', row: settle.get(owner, requestId) as unknown[] | undefined }),
      started: (handle, pid, inode, argv, labels, adopted, requestId, owner, startedAt, cgroup, deadline) => {
        if (this.rows.has(handle)) throw new StoreError(`the handle ${handle} has a row already`);
        const id = ++this.lastRow;
        insert.run(id, handle, pid, inode, this.bootId, argv, labels, adopted, requestId, owner, startedAt, cgroup, deadline);
        this.changes.push({ kind: 'started', handle });
        this.rows.set(handle, id);
      },
      exited: (handle, exitedAt, exit) => {
        const id = this.rows.get(handle);
        if (id !== undefined) exited.run(exitedAt, exit, id);
      },
      released: (handle) => {
        const id = this.rows.get(handle);
        if (id === undefined) return;
        const captures = this.capt === undefined ? [] : (this.capt.take.all(handle) as unknown[][]);
        this.changes.push({ kind: 'released', handle, id, row: remove.get(id) as unknown[] | undefined, captures });
        this.rows.delete(handle);
      },
      tombstoned: (owner, requestId, handle, fingerprint, releasedAt, stamp) => {
        this.tombstoneStatements().insert.run(owner, requestId, handle, fingerprint, releasedAt, stamp);
        this.changes.push({ kind: 'tombstoned', owner, requestId });
      },
      untombstoned: (owner, requestId) => {
        const row = this.tombstoneStatements().take.get(owner, requestId) as unknown[] | undefined;
        this.changes.push({ kind: 'untombstoned', row });
      },
      // Not undone by undoLast: a mark only grows, and one higher than callers were told is still
      // above every offset handed out (the stream is held until a write of it succeeds).
      captured: (handle, stream, ino, capacity, mark, outputEvents, stdinPiped, filed) => void this.captureStatements().upsert.run(handle, stream, ino, capacity, mark, outputEvents, stdinPiped, filed),
      releasedRunning: (handle, owner, pid, inode, cgroup, releasedAt) => {
        this.releasedStatements().insert.run(handle, owner, pid, inode, this.bootId, cgroup, releasedAt);
        this.changes.push({ kind: 'released-running', handle });
      },
      releasedEnded: (handle) => {
        // Not there at all when the table is not (nothing was released into it).
        if (this.releasedRows === undefined) return;
        this.changes.push({ kind: 'released-ended', row: this.releasedRows.take.get(handle) as unknown[] | undefined });
      },
    };
  }

  get sequences(): SequenceOrigin {
    return this.origin;
  }

  /**
   * Continues the event sequence above `after` (before any event is numbered): for a table that
   * replaces a lost one, whose numbers must not be handed out again. Throws when it cannot.
   */
  continueSequencesAbove(after: number): void {
    if (after <= this.ceiling) return;
    this.commit('the sequence ceiling', after, () => {}, after);
    this.origin = { after, reserve: this.origin.reserve };
  }

  /**
   * One transaction, all or nothing: SQLite rolls back what a failed statement or commit began
   * (a full disk: SQLITE_FULL; a read-only remount: SQLITE_IOERR/READONLY), and the ceiling
   * this object remembers moves only once the commit has succeeded.
   */
  commit(what: string, sequencesUpTo: number, writes: (w: StoreWrites) => void, ceiling = sequencesUpTo + SEQUENCE_BLOCK): void {
    const rows: Rows = [];
    writes(rowEncoder(rows));
    this.commitRows(what, sequencesUpTo, rows, ceiling);
  }

  /** commit, of writes already encoded (row-writes.ts): what the store's thread is posted. */
  commitRows(what: string, sequencesUpTo: number, rows: Rows, ceiling = sequencesUpTo + SEQUENCE_BLOCK): void {
    const raise = sequencesUpTo > this.ceiling;
    this.changes.length = 0;
    try {
      if (this.lost) throw new StoreError(`${this.file} is no longer the file the agent opened (its state dir was deleted or replaced): nothing more is recorded`);
      this.begin.run();
      try {
        applyRows(rows, this.writer);
        if (raise) this.setCeiling.run(ceiling);
        this.end.run();
      } catch (e) {
        if (this.db.inTransaction) rollback(this.undo);
        this.forgetRows();
        throw e;
      }
    } catch (e) {
      this.onError(`record ${what}`, e);
      throw new StoreWriteFailed(what, { cause: e });
    }
    if (raise) this.ceiling = ceiling;
  }

  /** The highest sequence reserved durably. */
  get sequenceCeiling(): number {
    return this.ceiling;
  }

  /**
   * Writes back what the last commit changed, for a commit whose caller was told it failed (it
   * ran past its bound: threaded-store.ts) and that then landed, so that what a later agent reads
   * is what callers were told: a start refused is not recorded, a release or an intent's
   * settlement refused is not done. Exits are left recorded: a caller told that an exit could not
   * be recorded writes the same exit again before telling anyone, and a restarted agent reading
   * it reports a real exit rather than a lost one. A raised sequence ceiling stays raised:
   * numbers only grow. Throws (all or nothing) when it cannot be written; it may be tried again.
   */
  undoLast(): void {
    const changes = this.changes;
    if (changes.length === 0) return;
    this.db.transaction(() => {
      for (let i = changes.length - 1; i >= 0; i--) {
        const c = changes[i]!;
        if (c.kind === 'started') {
          this.removeRow.run(this.rows.get(c.handle));
          this.capt?.remove.run(c.handle);
        } else if (c.kind === 'released' && c.row !== undefined) {
          this.reinsertRow.run(c.row);
          for (const row of c.captures) this.capt?.reinsert.run(row);
        }
        else if (c.kind === 'intended') this.removeIntent.run(c.owner, c.requestId);
        else if (c.kind === 'settled' && c.row !== undefined) this.reinsertIntent.run(c.row);
        else if (c.kind === 'tombstoned') this.tombstoneStatements().remove.run(c.owner, c.requestId);
        else if (c.kind === 'untombstoned' && c.row !== undefined) this.tombstoneStatements().reinsert.run(c.row);
        else if (c.kind === 'released-running') this.releasedStatements().remove.run(c.handle);
        else if (c.kind === 'released-ended' && c.row !== undefined) this.releasedStatements().reinsert.run(c.row);
      }
    })();
    this.forgetRows();
  }
  inPlace(): boolean {
    if (!this.lost && idOf(this.file) !== this.fileId) this.lost = true;
    return !this.lost;
  }

  load(): SavedProcess[] {
    const rows = this.db
      .prepare(`SELECT * FROM processes ORDER BY state = 'exited', exited_at, started_at, id`)
      .safeIntegers(true)
      .all() as Row[];
    const captures = this.captures();
    return rows.map((r) => ({
      handle: r.handle as HandleId,
      pid: Number(r.pid),
      pidfsInode: BigInt.asUintN(64, r.pidfs_inode),
      bootId: r.boot_id,
      argv: JSON.parse(r.argv) as string[],
      labels: JSON.parse(r.labels) as Record<string, string>,
      adopted: r.adopted !== 0n,
      requestId: r.request_id ?? undefined,
      owner: r.owner ?? undefined,
      startedAt: Number(r.started_at),
      state: r.state,
      exit: r.exit === null ? undefined : (JSON.parse(r.exit) as ExitInfo),
      ownedCgroup: r.owned_cgroup ?? undefined,
      deadline: r.deadline === null ? undefined : JSON.parse(r.deadline),
      ...(captures.has(r.handle) ? { captures: captures.get(r.handle) } : {}),
    }));
  }

  /** Each handle's capture marks (none before the table exists). */
  private captures(): Map<string, CaptureMark[]> {
    const byHandle = new Map<string, CaptureMark[]>();
    if (this.capt === undefined) return byHandle;
    for (const r of this.db.prepare('SELECT * FROM captures').all() as CaptureRow[]) {
      const mark: CaptureMark = { stream: r.stream, ino: r.pipe_inode, capacity: r.capacity, mark: r.mark, outputEvents: r.output_events !== 0, stdinPiped: r.stdin_piped !== 0, filed: r.filed === 1, ...(r.filed === 2 ? { uncertain: 'handed-over' } : r.filed === 3 ? { uncertain: 'unknown' } : {}) };
      byHandle.set(r.handle, [...(byHandle.get(r.handle) ?? []), mark]);
    }
    return byHandle;
  }

  intents(): SpawnIntent[] {
    const rows = this.db.prepare('SELECT * FROM intents ORDER BY created_at').all() as { owner: string; request_id: string; handle: string; argv: string; created_at: number; created_stamp?: string | null }[];
    return rows.map((r) => ({
      owner: r.owner === '' ? undefined : r.owner,
      requestId: r.request_id,
      handle: r.handle as HandleId,
      argv: JSON.parse(r.argv) as string[],
      createdAt: r.created_at,
      ...(r.created_stamp == null ? {} : { createdStamp: JSON.parse(r.created_stamp) as Stamp }),
    }));
  }

  tombstones(): Tombstone[] {
    if (this.tomb === undefined) return [];
    const rows = this.db.prepare('SELECT * FROM tombstones ORDER BY released_at').all() as { owner: string; request_id: string; handle: string; fingerprint: string; released_at: number; released_stamp: string | null }[];
    return rows.map((r) => ({
      owner: r.owner === '' ? undefined : r.owner,
      requestId: r.request_id,
      handle: r.handle as HandleId,
      fingerprint: r.fingerprint,
      releasedAt: r.released_at,
      ...(r.released_stamp === null ? {} : { releasedStamp: JSON.parse(r.released_stamp) as Stamp }),
    }));
  }

  runningReleased(): SavedReleased[] {
    if (this.releasedRows === undefined) return [];
    const rows = this.db.prepare('SELECT * FROM released_running ORDER BY released_at').safeIntegers(true).all() as { handle: string; owner: string; pid: bigint; pidfs_inode: bigint; boot_id: string; owned_cgroup: string | null; released_at: bigint }[];
    return rows.map((r) => ({
      handle: r.handle as HandleId,
      ...(r.owner === '' ? {} : { owner: r.owner }),
      pid: Number(r.pid),
      pidfsInode: BigInt.asUintN(64, r.pidfs_inode),
      bootId: r.boot_id,
      ...(r.owned_cgroup === null ? {} : { ownedCgroup: r.owned_cgroup }),
      releasedAt: Number(r.released_at),
    }));
  }

  stalled(): boolean {
    return false;
  }

  releaseMemory(): void {
    // sqlite3_db_release_memory: every page cache page no statement holds. The next reads come
    // from the kernel's page cache (the file is small and was just written).
    if (this.db.open) this.db.pragma('shrink_memory');
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** The transaction rolled back or was undone: `rows` as it was before it (newest change first). */
  private forgetRows(): void {
    for (let i = this.changes.length - 1; i >= 0; i--) {
      const c = this.changes[i]!;
      if (c.kind === 'started') this.rows.delete(c.handle);
      else if (c.kind === 'released') this.rows.set(c.handle, c.id);
      else if (c.kind === 'tombstones-created') this.tomb = undefined;
      else if (c.kind === 'captures-created') this.capt = undefined;
      else if (c.kind === 'released-table-created') this.releasedRows = undefined;
    }
    this.changes.length = 0;
  }

  private migrate(file: string): void {
    const version = Number(this.db.pragma('user_version', { simple: true }));
    if (version > SCHEMA_VERSION) throw new StoreError(`${file}: the state store has schema ${version}; this agent knows ${SCHEMA_VERSION} (downgrade?)`);
    if (version > 0) {
      const check = this.db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new StoreDamaged(file, `quick_check: ${String(check).split('\n')[0]}`);
    }
    if (version === SCHEMA_VERSION) return;
    this.db.transaction(() => {
      if (version === 0) this.db.exec(SCHEMA);
      // 1 → 2: who spawned or adopted each process (unknown for the records already there).
      if (version === 1) this.db.exec('ALTER TABLE processes ADD COLUMN owner TEXT');
      // 2 → 3: spawn intents, recorded before the exec (none before).
      if (version >= 1 && version < 3) this.db.exec(INTENTS);
      // 3 → 4: rows under a rowid in start order instead of keyed by handle.
      if (version >= 1 && version < 4) {
        this.db.exec(`ALTER TABLE processes RENAME TO processes_v3; ${PROCESSES}`);
        this.db.exec(`INSERT INTO processes (${COLUMNS}) SELECT ${COLUMNS} FROM processes_v3 ORDER BY started_at; DROP TABLE processes_v3;`);
      }
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  /**
   * intents.created_stamp (what an intent's age is measured by) came without a schema version: a
   * column an older agent of schema 4 neither names nor reads, so it can still open the store (a
   * rollback) and its intents are measured by the wall clock, as it measured them.
   */
  private addStampColumn(): boolean {
    const columns = this.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all('intents') as string[];
    if (columns.includes('created_stamp')) return true;
    try {
      this.db.exec('ALTER TABLE intents ADD COLUMN created_stamp TEXT');
      return true;
    } catch {
      // A store it can read but not write (full, read-only) still starts and serves; its intents
      // are then measured by the wall clock until an agent can add the column.
      return false;
    }
  }

  /** The tombstones table, created at open when the store can be written then; else undefined. */
  private tryTombstoneTable(): TombstoneStatements | undefined {
    try {
      this.db.exec(TOMBSTONES);
    } catch {
      // A store it can read but not write (full, read-only): the first transaction that keeps a
      // tombstone creates the table (tombstoneStatements), once the store takes writes again.
      return undefined;
    }
    return this.prepareTombstones();
  }

  /** Creates the table in the open transaction if it was not there at open (a rollback undoes both). */
  private tombstoneStatements(): TombstoneStatements {
    if (this.tomb !== undefined) return this.tomb;
    this.db.exec(TOMBSTONES);
    this.changes.push({ kind: 'tombstones-created' });
    return (this.tomb = this.prepareTombstones());
  }

  /**
   * The captures table, created at open when the store can be written then (else by the first
   * transaction that writes a mark); rows of handles no longer in the table go (an older agent
   * released them without knowing of the table).
   */
  private tryCaptureTable(): CaptureStatements | undefined {
    try {
      this.db.exec(CAPTURES);
      this.db.exec('DELETE FROM captures WHERE handle NOT IN (SELECT handle FROM processes)');
    } catch {
      const exists = this.db.prepare(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'captures'`).pluck().get() as number;
      if (exists === 0) return undefined;
    }
    return this.prepareCaptures();
  }

  private captureStatements(): CaptureStatements {
    if (this.capt !== undefined) return this.capt;
    this.db.exec(CAPTURES);
    this.changes.push({ kind: 'captures-created' });
    return (this.capt = this.prepareCaptures());
  }

  private prepareCaptures(): CaptureStatements {
    return {
      upsert: this.db.prepare('INSERT OR REPLACE INTO captures (handle, stream, pipe_inode, capacity, mark, output_events, stdin_piped, filed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      take: this.db.prepare('DELETE FROM captures WHERE handle = ? RETURNING handle, stream, pipe_inode, capacity, mark, output_events, stdin_piped, filed').raw(),
      remove: this.db.prepare('DELETE FROM captures WHERE handle = ?'),
      reinsert: this.db.prepare('INSERT OR REPLACE INTO captures (handle, stream, pipe_inode, capacity, mark, output_events, stdin_piped, filed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
    };
  }

  private prepareTombstones(): TombstoneStatements {
    return {
      insert: this.db.prepare('INSERT OR REPLACE INTO tombstones (owner, request_id, handle, fingerprint, released_at, released_stamp) VALUES (?, ?, ?, ?, ?, ?)'),
      take: this.db.prepare('DELETE FROM tombstones WHERE owner = ? AND request_id = ? RETURNING owner, request_id, handle, fingerprint, released_at, released_stamp').raw(),
      remove: this.db.prepare('DELETE FROM tombstones WHERE owner = ? AND request_id = ?'),
      reinsert: this.db.prepare('INSERT OR REPLACE INTO tombstones (owner, request_id, handle, fingerprint, released_at, released_stamp) VALUES (?, ?, ?, ?, ?, ?)'),
    };
  }

  /** The released_running table, created at open when the store can be written then (as tombstones). */
  private tryReleasedTable(): ReleasedStatements | undefined {
    try {
      this.db.exec(RELEASED_RUNNING);
    } catch {
      return undefined;
    }
    return this.prepareReleased();
  }

  /** Creates the table in the open transaction if it was not there at open (a rollback undoes both). */
  private releasedStatements(): ReleasedStatements {
    if (this.releasedRows !== undefined) return this.releasedRows;
    this.db.exec(RELEASED_RUNNING);
    this.changes.push({ kind: 'released-table-created' });
    return (this.releasedRows = this.prepareReleased());
  }

  private prepareReleased(): ReleasedStatements {
    return {
      insert: this.db.prepare('INSERT OR REPLACE INTO released_running (handle, owner, pid, pidfs_inode, boot_id, owned_cgroup, released_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      take: this.db.prepare('DELETE FROM released_running WHERE handle = ? RETURNING handle, owner, pid, pidfs_inode, boot_id, owned_cgroup, released_at').raw().safeIntegers(true),
      remove: this.db.prepare('DELETE FROM released_running WHERE handle = ?'),
      reinsert: this.db.prepare('INSERT OR REPLACE INTO released_running (handle, owner, pid, pidfs_inode, boot_id, owned_cgroup, released_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    };
  }

  private reserve(sequence: number): boolean {
    if (sequence <= this.ceiling) return true;
    try {
      this.commit('a block of event sequences', sequence, () => {});
      return true;
    } catch {
      return false;
    }
  }
}
