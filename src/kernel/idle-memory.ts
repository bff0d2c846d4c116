// What a quiet agent gives back (issue 17: rss_idle_mib). V8 keeps its young generation at the
// size a burst grew it to (32 MiB committed after 1,000 Spawn+Wait cycles, from 1 MiB at start)
// and the old generation at up to 4x what survived; glibc keeps freed malloc pages; and the
// node binary's pages that start-up touched stay mapped (41 MiB of the 48 MiB file-backed RSS of
// an idle agent, ~8 MiB of which a running agent uses again). None of that comes back on its own
// while the agent is idle: an idle agent allocates too little to collect again.
import { readFileSync, readlinkSync } from 'node:fs';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { madvise, mallinfo2, malloc_trim } from './libc.js';

/** What the reducer watches, read once per tick. */
export interface IdleSignals {
  /** A number that changes whenever the agent did something (its event sequence). */
  activity(): number;
  /** The fraction of the time since the last call that the event loop was busy. */
  busy(): number;
  /** Bytes V8 has committed for its heap. */
  heapBytes(): number;
  now(): number;
}

export interface IdlePolicy {
  /** Quiet this long (no activity, loop all but idle) before reducing. */
  readonly quietMs: number;
  /** ...and the heap grew this much since the last reduction... */
  readonly growthBytes: number;
  /** ...or this many events happened since it (a churn of records frees without growing). */
  readonly events: number;
  /** A tick with the loop busier than this is not quiet (a health probe costs ~0.1 %). */
  readonly busyFraction: number;
  /** A reduction that left the young generation grown is tried again after another quiet spell, this often. */
  readonly retries: number;
}

export const IDLE_POLICY: IdlePolicy = {
  // V8 shrinks its young generation only when the allocation rate over its last 5 s of
  // collections is low: a collection within 5 s of the burst's last scavenge keeps all 32 MiB.
  // The settling scavenge comes at the first quiet tick, so the reduction is 6 s after it.
  quietMs: 7000,
  growthBytes: 8 << 20,
  events: 3000,
  busyFraction: 0.02,
  retries: 2,
};

/**
 * Decides when to reduce: after any activity that grew the heap (or churned records), once the
 * agent has been quiet a while. Once per burst, so it costs no CPU per operation; a quiet agent
 * that only answers probes never collects.
 */
export class IdleMemory {
  private seen: number;
  private quietSince: number;
  private reducedAt: number;
  private heapAfter = 0;
  private reductionCount = 0;
  private retried = 0;
  private settled = false;
  private releasePending = false;

  /**
   * `settle` runs at the first quiet tick of a spell that will end in a reduction; `reduce`
   * returns false when it could not give everything back (worth another try); `release` runs at
   * the tick after a reduction unless events happened since (what the collection's background
   * threads freed after it returned).
   */
  constructor(
    private readonly signals: IdleSignals,
    private readonly reduce: () => boolean,
    private readonly policy: IdlePolicy = IDLE_POLICY,
    private readonly settle: () => void = () => {},
    private readonly release: () => void = () => {},
  ) {
    this.seen = signals.activity();
    this.reducedAt = this.seen;
    this.quietSince = signals.now();
  }

  get reductions(): number {
    return this.reductionCount;
  }

  /** Call periodically; true when it reduced. */
  tick(): boolean {
    const now = this.signals.now();
    const activity = this.signals.activity();
    const busy = this.signals.busy() > this.policy.busyFraction;
    if (this.releasePending) {
      this.releasePending = false;
      // Events only: the reduction itself made the last second's loop busy.
      if (activity === this.seen) this.release();
    }
    if (activity !== this.seen || busy) {
      this.seen = activity;
      this.quietSince = now;
      this.settled = false;
      return false;
    }
    const grew = this.signals.heapBytes() - this.heapAfter >= this.policy.growthBytes;
    if (!grew && activity - this.reducedAt < this.policy.events) return false;
    if (!this.settled) {
      this.settled = true;
      this.settle();
    }
    if (now - this.quietSince < this.policy.quietMs) return false;
    this.settled = false;
    const complete = this.reduce();
    this.reductionCount++;
    this.releasePending = true;
    if (!complete && this.retried < this.policy.retries) {
      this.retried++;
      this.quietSince = now;
      return true;
    }
    this.retried = 0;
    this.reducedAt = activity;
    this.heapAfter = this.signals.heapBytes();
    return true;
  }
}

/** The signals of this process; the event sequence is the agent's. */
export function processSignals(activity: () => number): IdleSignals {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  return {
    activity,
    busy: () => {
      const elu = performance.eventLoopUtilization(last);
      last = performance.eventLoopUtilization();
      return elu.utilization;
    },
    heapBytes: () => getHeapStatistics().total_heap_size,
    now: () => Date.now(),
  };
}

/**
 * A scavenge that closes the burst's books: V8 judges the allocation rate by the collections of
 * the last 5 s, and without one at the burst's end it counted what the burst allocated against
 * the quiet spell too (the young generation stayed at 32 MiB in half the runs).
 */
export function settleYoungGeneration(): void {
  gc({ type: 'minor' });
}

/** What one reduction did, for the agent's log. */
export interface Reduction {
  /** The young generation is back at its smallest. */
  readonly complete: boolean;
  readonly heap_mib_before: number;
  readonly heap_mib_after: number;
  /** The young generation after it: it shrinks only if V8 saw no collection for 5 s. */
  readonly young_mib_after: number;
  /** Mappings of the executable unmapped. */
  readonly mappings: number;
}

/**
 * One compacting full collection, the malloc heap trimmed, and the node binary's start-up pages
 * unmapped.
 */
export function reduceProcessMemory(): Reduction {
  const before = getHeapStatistics().total_heap_size;
  // Compacting moves the survivors together, so the pages a burst left mostly empty are given
  // back (without it the old space stays at its peak size: 97 MiB for 34 MiB live after 20,000
  // churn cycles). Only for this collection: compacting every one costs CPU. A plain gc() is a
  // full collection that also shrinks the young generation when the allocation rate is low;
  // Node 20's gc({ flavor: 'last-resort' }) did neither.
  setFlagsFromString('--compact-on-every-full-gc');
  gc();
  setFlagsFromString('--no-compact-on-every-full-gc');
  // What the collection freed outside V8's own pages (buffers, the http2 and SQLite heaps).
  malloc_trim(0);
  const mappings = dropBinaryPages();
  const young = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
  return { complete: young <= YOUNG_AT_REST, heap_mib_before: mib(before), heap_mib_after: mib(getHeapStatistics().total_heap_size), young_mib_after: mib(young), mappings };
}

/** What the release step after a reduction did, for the agent's log. */
export interface Release {
  readonly malloc_mib_before: number;
  readonly malloc_mib_after: number;
  readonly rss_mib_before: number;
  readonly rss_mib_after: number;
}

/**
 * A second of quiet after the reduction: `caches` (the agent's: SQLite's page cache) let go,
 * then the malloc heap trimmed again. The compacting collection hands the memory of dead
 * buffers and its own bookkeeping to background threads, which free it after gc() returned:
 * after a full bench round the trim right after the collection left ~6 MiB of freed pages
 * resident that a trim a few seconds later gave back.
 */
export function releaseFreedMemory(caches: () => void): Release {
  const rss0 = rssBytes();
  const malloc0 = mallocInUse();
  caches();
  malloc_trim(0);
  return { malloc_mib_before: mib(malloc0), malloc_mib_after: mib(mallocInUse()), rss_mib_before: mib(rss0), rss_mib_after: mib(rssBytes()) };
}

/** Bytes glibc's malloc has handed out and not got back, all arenas and mmapped chunks. */
export function mallocInUse(): number {
  const info = mallinfo2();
  return Number(info.uordblks) + Number(info.hblkhd);
}

const rssBytes = (): number => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;

/** Two 1 MiB semi-spaces is where V8 starts, and what it shrinks to (Node 20, 64-bit). */
const YOUNG_AT_REST = 2 << 20;

const mib = (bytes: number) => Math.round(bytes / 104857.6) / 10;

let gcFunction: ((options?: { type: 'minor' | 'major' }) => void) | undefined;
function gc(options?: { type: 'minor' | 'major' }): void {
  if (!gcFunction) {
    setFlagsFromString('--expose-gc');
    gcFunction = runInNewContext('gc') as typeof gcFunction & object;
  }
  gcFunction(options);
}

const MADV_DONTNEED = 4;
const MADV_PAGEOUT = 21;

/**
 * Unmaps the executable's clean read-only pages (code, read-only data, symbol tables), which the
 * kernel maps back from the file on the next touch. PAGEOUT first frees the pages no other
 * process maps; DONTNEED then drops the rest from this process's tables (still cached, shared).
 */
function dropBinaryPages(): number {
  let smaps: string;
  let exe: string;
  try {
    smaps = readFileSync('/proc/self/smaps', 'utf8');
    exe = readlinkSync('/proc/self/exe');
  } catch {
    // Out of fds (EMFILE) this is skipped, not the agent's end: the pages only stay mapped.
    return 0;
  }
  let advised = 0;
  for (const m of cleanFileMappings(smaps, exe)) {
    madvise(m.start, m.length, MADV_PAGEOUT); // EINVAL before Linux 5.4: DONTNEED still unmaps
    if (madvise(m.start, m.length, MADV_DONTNEED) === 0) advised++;
  }
  return advised;
}

export interface Mapping {
  readonly start: bigint;
  readonly length: number;
}

/**
 * The mappings of `file` that hold nothing but the file's own bytes: private, never writable, no
 * copied-on-write (anonymous) page. A page relocated at load (RELRO) or written by a debugger is
 * anonymous and would be lost: such a mapping is left alone.
 */
export function cleanFileMappings(smaps: string, file: string): Mapping[] {
  const out: Mapping[] = [];
  let current: { start: bigint; end: bigint; ok: boolean } | undefined;
  const finish = (anonymousKb: number) => {
    if (current?.ok && anonymousKb === 0) out.push({ start: current.start, length: Number(current.end - current.start) });
    current = undefined;
  };
  for (const line of smaps.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) ([-rwxps]{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      current = { start: BigInt(`0x${head[1]}`), end: BigInt(`0x${head[2]}`), ok: head[4] === file && head[3]![1] === '-' && head[3]![3] === 'p' };
      continue;
    }
    const anon = /^Anonymous:\s+(\d+) kB$/.exec(line);
    if (anon) finish(Number(anon[1]));
  }
  return out;
}
