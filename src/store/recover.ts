// --recover: a store SQLite cannot read is moved aside, never deleted (it may still be worth
// reading by hand), and the agent starts with an empty table. A store that opens is left alone:
// the flag only ever acts on damage, so a supervisor may keep it set without losing a good table.
import { closeSync, existsSync, fsyncSync, openSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { STORE_FILE, STORE_SIDE_FILES, SqliteStore, StoreDamaged, StoreError, type StoreErrorSink } from './sqlite-store.js';

export type Recovery =
  | { readonly kind: 'not-asked' }
  | { readonly kind: 'healthy' }
  | { readonly kind: 'moved-aside'; readonly cause: string; readonly files: readonly string[] };

export function openStore(stateDir: string, bootId: string, onError: StoreErrorSink, recover: boolean, lockWaitMs?: number): { store: SqliteStore; recovery: Recovery } {
  try {
    return { store: new SqliteStore(stateDir, bootId, onError, lockWaitMs), recovery: { kind: recover ? 'healthy' : 'not-asked' } };
  } catch (e) {
    if (!recover || !(e instanceof StoreDamaged)) throw e;
    const files = moveAside(stateDir, new Date());
    const store = new SqliteStore(stateDir, bootId, onError, lockWaitMs);
    // Which event numbers the lost table had handed out is unknown; a client resuming a Watch
    // must never see one again. The wall clock in ms is far above any sequence a store reaches
    // (the events of every agent since, plus a block of 4096 per start): that would take more
    // than one event a millisecond since 1970.
    store.continueSequencesAbove(Date.now());
    return { store, recovery: { kind: 'moved-aside', cause: e.reason, files } };
  }
}

/**
 * Renames agent.db and its side files to agent.db.broken-<UTC time>[-wal|-shm|-journal]: kept
 * together under one name, SQLite opening the copy finds its WAL. The side files go first: a
 * crash half-way leaves the damaged agent.db in place (and --recover still to do), never a new
 * agent.db next to the old one's WAL.
 */
function moveAside(stateDir: string, now: Date): string[] {
  const file = join(stateDir, STORE_FILE);
  const aside = `${file}.broken-${now.toISOString().replace(/[-:]/g, '')}`;
  const moved: string[] = [];
  for (const suffix of [...STORE_SIDE_FILES, '']) {
    if (!existsSync(file + suffix)) continue;
    if (existsSync(aside + suffix)) throw new StoreError(`${aside + suffix}: exists already; start with --recover again`);
    renameSync(file + suffix, aside + suffix);
    moved.push(aside + suffix);
  }
  const dir = openSync(stateDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return moved;
}
