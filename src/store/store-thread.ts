// The state store's own thread (a worker_threads Worker, loaded from dist/ by threaded-store.ts).
// It holds the one connection (the lock is EXCLUSIVE) and makes every write, so a file system that
// stalls (frozen, hung) stalls this thread, in uninterruptible sleep, and never the event loop.
// It serves one request at a time; between requests it sleeps on the control block, not on an
// event loop of its own: a request costs one wake-up each way (see the README on what they cost).
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { openStore } from './recover.js';
import { SqliteStore, StoreDamaged, StoreError, StoreInUse } from './sqlite-store.js';
import { ABANDONED, BUSY, CLOSING, DONE, GONE, POSTED, RECOVERED, STATE, type Late, type OpenError, type Opened, type Reply, type Request, type ThreadData } from './store-protocol.js';

const { stateDir, bootId, recover, control, port } = workerData as ThreadData;
const words = new Int32Array(control);
// Also run for an uncaught error; not for an out-of-memory end, which runs no JavaScript: the
// event loop then learns of it at its bound (a stall) and at the worker's exit event.
process.on('exit', () => {
  Atomics.store(words, GONE, 1);
  Atomics.notify(words, STATE);
});
/** What the store reported to its error sink during the request being served. */
let errors: (readonly [string, string])[] = [];

function describe(e: unknown): OpenError {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof StoreDamaged) return { kind: 'damaged', message, file: e.file, reason: e.reason };
  return { kind: e instanceof StoreInUse ? 'in-use' : e instanceof StoreError ? 'store' : 'other', message };
}

/** Opens the store and posts what it holds (read here: the connection is this thread's), or why not. */
function open(): SqliteStore | undefined {
  let store: SqliteStore | undefined;
  try {
    const opened = openStore(stateDir, bootId, (what, e) => void errors.push([what, String(e)]), recover);
    store = opened.store;
    parentPort!.postMessage({ ok: true, recovery: opened.recovery, saved: store.load(), intents: store.intents(), tombstones: store.tombstones(), released: store.runningReleased(), ceiling: store.sequenceCeiling } satisfies Opened);
    return store;
  } catch (e) {
    store?.close();
    parentPort!.postMessage({ ok: false, error: describe(e) } satisfies Opened);
    return undefined;
  }
}

function serve(store: SqliteStore, request: Request, id: number): Reply {
  errors = [];
  let ok = true;
  let error: string | undefined;
  try {
    switch (request.op) {
      case 'commit':
        store.commitRows(request.what, request.sequencesUpTo, request.rows);
        break;
      case 'inPlace':
        ok = store.inPlace();
        break;
      case 'releaseMemory':
        store.releaseMemory();
        collectGarbage();
        break;
      case 'close':
        store.close();
        break;
    }
  } catch (e) {
    ok = false;
    const cause = (e as Error).cause;
    error = cause instanceof Error ? cause.message : String(cause ?? e);
  }
  return { id, ok, error, ceiling: store.sequenceCeiling, errors };
}

let gc: (() => void) | undefined;

/**
 * This thread's own heap, at rest: what the requests of a burst left (the event loop's idle
 * reduction collects only its own). Nothing else would collect it while no request comes.
 */
function collectGarbage(): void {
  if (gc === undefined) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * The event loop stopped waiting for this request and told its caller it failed. A commit that
 * landed after all is written back (SqliteStore.undoLast) before any other request is served, so
 * the store holds what the caller was told; tried again every second until it can be written
 * (once only when the store is closing: the agent is waiting to end).
 */
function afterAbandoned(store: SqliteStore, request: Request, reply: Reply): Late {
  const what = request.op === 'commit' ? request.what : request.op;
  const landed = request.op === 'commit' && reply.ok;
  let undone = false;
  errors = [...reply.errors];
  // Tried at least once, also when the store is closing (an agent stopped while this thread was stuck).
  for (let tried = false; landed && !undone && (!tried || Atomics.load(words, CLOSING) === 0); tried = true) {
    if (tried) sleep(1000);
    try {
      store.undoLast();
      undone = true;
    } catch (e) {
      errors.push([`undo ${what}`, String(e)]);
    }
  }
  return { id: reply.id, late: true, landed, undone, ceiling: store.sequenceCeiling, errors };
}

function run(store: SqliteStore): void {
  let seen = 0;
  for (;;) {
    Atomics.wait(words, POSTED, seen);
    seen = Atomics.load(words, POSTED);
    // Every request queued, not one per wake-up: a thread that woke late (starved, or back from
    // a stall) may find a second one behind the first, the agent's close among them, and no
    // further post would wake it for that one.
    for (let message = receiveMessageOnPort(port); message !== undefined; message = receiveMessageOnPort(port)) {
      const { id, ...request } = message.message as Request & { id: number };
      if (DIE_WHEN !== undefined && request.op === 'commit') dieIfAsked(DIE_WHEN);
      const reply = serve(store, request, id);
      port.postMessage(reply);
      if (Atomics.compareExchange(words, STATE, BUSY, DONE) === BUSY) Atomics.notify(words, STATE);
      else if (Atomics.load(words, STATE) === ABANDONED) {
        port.postMessage(afterAbandoned(store, request, reply));
        Atomics.store(words, STATE, RECOVERED);
        Atomics.notify(words, STATE);
      }
      if (request.op === 'close') return;
    }
  }
}

/**
 * Tests only: while the file this names exists, the thread ends at its next commit, as its
 * content says: `throw` (an uncaught error) or `exit N` (process.exit(N) in this thread).
 */
const DIE_WHEN = process.env.PIDFD_AGENT_TEST_STORE_THREAD_DIES || undefined;

function dieIfAsked(file: string): void {
  if (!existsSync(file)) return;
  // Only a file that no one but the agent's own user could have written: a path left to others
  // (a world-writable /tmp file, say) must not let them stop the agent.
  const st = lstatSync(file);
  if (!st.isFile() || st.uid !== process.geteuid!() || (st.mode & 0o022) !== 0) return;
  const how = readFileSync(file, 'utf8').trim();
  if (how === 'throw') throw new Error('the store thread dies (PIDFD_AGENT_TEST_STORE_THREAD_DIES)');
  const code = /^exit (\d+)$/.exec(how);
  if (code !== null) process.exit(Number(code[1]));
}

const store = open();
if (store !== undefined) run(store);
