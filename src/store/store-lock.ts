// Whether an agent has the state dir's store open, asked without opening it. An agent holds the
// store's lock from the moment it opens it (locking_mode=EXCLUSIVE in WAL mode, before its
// quick_check, migration and restore), so long before it listens on handover.sock.
import { join } from 'node:path';
import { lockHolder, type LockHolder } from '../kernel/file-locks.js';
import { STORE_FILE } from './sqlite-store.js';

// SQLite's unix VFS locks bytes of the database file from 2^30 on: PENDING_BYTE, RESERVED_BYTE,
// then the 510 bytes of the SHARED range. In EXCLUSIVE mode an agent holds one POSIX write lock
// over all 512 (/proc/locks: 1073741824 1073742335); a reader holds a read lock in the SHARED range.
const PENDING_BYTE = 0x40000000;
const LOCK_BYTES = 2 + 510;

/** Who holds STATE_DIR/agent.db's lock (an agent that has the store open), or null: nobody. */
export const storeLockHolder = (stateDir: string): LockHolder | null => lockHolder(join(stateDir, STORE_FILE), PENDING_BYTE, LOCK_BYTES);
