// Where a later agent finds each captured stream's mark (capture-files.ts says what a mark is for).
// The state store has them: with the start, in the commit that records it (so a start the store
// took always has its marks, and one it refused has none), then one write per MARK_STEP_BYTES per
// stream, made before the stream takes in a byte past the last mark. A write that fails holds the
// stream at its mark (the pipe is not read on) and is retried, all held streams in one write a
// second, until the store takes it. STATE_DIR/capture/HANDLE.json follows each store write, best
// effort, for an older agent (a rollback, a handover to one), which reads only the file.
//
// An older agent keeps no mark for a stream without that file, and may read on past the store's:
// a handover marks such streams' rows 'handed-over' first (a successor that keeps marks in the
// store clears that once it has them), and a restarted agent trusts no flagged row. A stream whose
// offsets are so found uncertain is only drained, every byte lost ('unknown', for good): serving
// nothing, it can't serve an offset twice.
import type { HandleId } from '../lifecycle/handle.js';
import type { CaptureMark } from '../process-store.js';
import type { CapturedOutput, StreamName } from './captured-output.js';
import { MARK_SLACK_BYTES } from './captured-output.js';
import { MARK_STEP_BYTES, type CaptureFiles, type CaptureMeta } from './capture-files.js';
import type { ProcessStdio } from './process-pipes.js';

/** Commits the marks in one transaction; false when the store could not take them. */
export type MarkWriter = (marks: readonly (readonly [HandleId, CaptureMark])[]) => boolean;

/** How often marks the store refused are tried again. */
export const MARK_RETRY_MS = 1000;

interface Tracked {
  readonly handle: HandleId;
  /** The file's content; its marks are the ones the store has (or is being given). */
  readonly meta: CaptureMeta;
  /** The file is there (as far as this agent knows): what the store's rows say once synced. */
  filed: boolean;
  /** The streams read here with marks kept ahead of them (none for a drained one). */
  readonly outs: CapturedOutput[];
  /** Offsets uncertain: the streams are only drained, and the rows say so ('unknown'). */
  readonly drained: boolean;
}

/** What a restarted or succeeding agent goes on from, out of the store's marks and the file. */
export interface ResumedMarks {
  readonly meta: CaptureMeta;
  readonly filed: boolean;
  /**
   * False when the store's marks may be below offsets already handed out: the rows are flagged
   * (a handover to a successor that may have kept no mark; a stream already found uncertain), or
   * the file they say is there is gone (an older agent removed it, and may have read on past
   * them). Such a stream goes on only from an exact end (a saved ring, a handover snapshot).
   */
  readonly certain: boolean;
  /** The rows' flag: 'unknown' streams are only ever drained. */
  readonly uncertain?: CaptureMark['uncertain'];
}

/**
 * The marks to go on from: the store's, raised to the file's where the file (an older agent wrote
 * it since, say) is further on; the file's alone for a process an older agent started.
 */
export function resumeMarks(rows: readonly CaptureMark[] | undefined, file: CaptureMeta | undefined): ResumedMarks | undefined {
  if (rows === undefined || rows.length === 0) return file && { meta: file, filed: true, certain: true };
  const streams: CaptureMeta['streams'] = {};
  for (const r of rows) {
    const f = file?.streams[r.stream];
    streams[r.stream] = { ino: r.ino, capacity: r.capacity, mark: Math.max(r.mark, f !== undefined && f.ino === r.ino ? f.mark : 0) };
  }
  const meta = { outputEvents: rows[0]!.outputEvents, stdinPiped: rows[0]!.stdinPiped, streams };
  const uncertain = rows.some((r) => r.uncertain === 'unknown') ? 'unknown' : rows.some((r) => r.uncertain === 'handed-over') ? 'handed-over' : undefined;
  const certain = uncertain === undefined && (file !== undefined || !rows.some((r) => r.filed));
  return { meta, filed: file !== undefined, certain, ...(uncertain === undefined ? {} : { uncertain }) };
}

export class CaptureMarks {
  private readonly tracked = new Map<HandleId, Tracked>();
  /** Streams held at their mark until the store takes the next one. */
  private readonly held = new Map<CapturedOutput, Tracked>();
  /** Handles whose rows the store has yet to take (`filed` changed, a flag to set or clear). */
  private readonly unsynced = new Set<Tracked>();
  private timer: NodeJS.Timeout | null = null;
  /** Between a handover's flags and its outcome: no retry may write unflagged rows over them. */
  private handingOverNow = false;

  constructor(
    private readonly files: CaptureFiles,
    private readonly write: MarkWriter,
  ) {}

  /** The rows a start's commit writes: the file is written once the start is in the store. */
  startRows(meta: CaptureMeta): CaptureMark[] {
    return rowsOf(meta, true, false);
  }

  /** The start is in the store (with its marks): the file for an older agent, then the marks are kept ahead. */
  started(handle: HandleId, io: ProcessStdio, meta: CaptureMeta): void {
    const t: Tracked = { handle, meta, filed: true, outs: [], drained: false };
    if (!this.files.writeMeta(handle, meta)) this.refiled(t, false);
    this.track(t, io);
  }

  /**
   * A restored process's streams, from the marks resumeMarks found, with exact ends (a handover,
   * saved rings, or marks it could trust). Rows that were not to be trusted are replaced at once
   * (marks raised above what the streams hold, by flush), so a crash of this agent goes on from them.
   */
  resumed(handle: HandleId, io: ProcessStdio, marks: ResumedMarks): void {
    const t: Tracked = { handle, meta: marks.meta, filed: marks.filed, outs: [], drained: false };
    this.track(t, io);
    if (!marks.certain) this.unsynced.add(t);
  }

  /**
   * A restored process whose offsets are uncertain: its streams are only drained, not tracked.
   * `record`: its rows don't say so yet (written by flush, or retried).
   */
  drained(handle: HandleId, meta: CaptureMeta, record: boolean): void {
    const t: Tracked = { handle, meta, filed: false, outs: [], drained: true };
    this.tracked.set(handle, t);
    if (record) this.unsynced.add(t);
  }

  /** Once every restored process is in: the rows resumed and drained ones need, in one write. */
  flush(): void {
    if (this.unsynced.size > 0) this.sync([...this.unsynced]);
  }

  /**
   * Before a handover's snapshot: an older successor keeps no mark for a stream without a file
   * (and may serve past the store's), so such rows are flagged for a restarted agent not to
   * trust; a successor that keeps marks in the store clears the flag. False when the store
   * refused that (then the handover must not happen).
   */
  handingOver(): boolean {
    this.handingOverNow = true;
    this.stopTimer();
    const ts = [...this.tracked.values()].filter((t) => (!t.filed && !t.drained) || (t.drained && this.unsynced.has(t)));
    if (ts.length === 0) return true;
    return this.write(ts.flatMap((t) => rowsOf(t.meta, t.filed, t.drained ? 'unknown' : 'handed-over').map((r) => [t.handle, r] as const)));
  }

  /** The handover did not happen: this agent keeps the marks again (its next write clears the flags). */
  handoverAbandoned(): void {
    this.handingOverNow = false;
    this.schedule();
  }

  /** The handle is released (its rows go with the release) or handed over. */
  forget(handle: HandleId): void {
    const t = this.tracked.get(handle);
    if (t === undefined) return;
    this.tracked.delete(handle);
    this.unsynced.delete(t);
    for (const [out, held] of this.held) if (held === t) this.held.delete(out);
    if (this.held.size === 0 && this.unsynced.size === 0) this.stopTimer();
  }

  /** After a handover: the store is the successor's. */
  clear(): void {
    this.tracked.clear();
    this.held.clear();
    this.unsynced.clear();
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private track(t: Tracked, io: ProcessStdio): void {
    this.tracked.set(t.handle, t);
    for (const out of [io.stdout, io.stderr]) if (out !== null && t.meta.streams[out.stream] !== undefined) t.outs.push(out);
    for (const out of t.outs) out.trackMark(t.meta.streams[out.stream]!.mark, (end) => this.advance(t, out, end));
  }

  /** The stream's next mark in the store, then the file; undefined (held, retried) when the store refuses. */
  private advance(t: Tracked, out: CapturedOutput, end: number): number | undefined {
    if (!this.sync([t], { out, end })) {
      this.held.set(out, t);
      this.schedule();
      return undefined;
    }
    this.refile(t);
    return t.meta.streams[out.stream]!.mark;
  }

  /**
   * One write of the handles' rows, unflagged (or 'unknown' for drained ones), with every stream
   * near its mark (or past it) given its next one first: a row this writes is above every offset
   * its stream has handed out. Streams it moved go on (`caller` learns it from the return). False,
   * nothing changed here, when the store refuses; the handles are then retried.
   */
  private sync(ts: readonly Tracked[], caller?: { readonly out: CapturedOutput; readonly end: number }): boolean {
    const moved: { out: CapturedOutput; m: { mark: number }; was: number }[] = [];
    for (const t of ts) {
      for (const out of t.outs) {
        const m = t.meta.streams[out.stream]!;
        const end = out === caller?.out ? caller.end : out.readEnd;
        if (out !== caller?.out && !this.held.has(out) && end + MARK_SLACK_BYTES < m.mark) continue;
        moved.push({ out, m, was: m.mark });
        m.mark = Math.max(m.mark, end + MARK_STEP_BYTES);
      }
    }
    if (!this.write(ts.flatMap((t) => rowsOf(t.meta, t.filed, t.drained && 'unknown').map((r) => [t.handle, r] as const)))) {
      for (const { m, was } of moved) m.mark = was;
      for (const t of ts) this.unsynced.add(t);
      this.schedule();
      return false;
    }
    for (const t of ts) this.unsynced.delete(t);
    for (const { out, m } of moved) {
      this.held.delete(out);
      if (out !== caller?.out) out.markPersisted(m.mark);
    }
    return true;
  }

  /** Every held stream's next mark and every unsynced handle's rows in one write; the streams go on once it is in. */
  private readonly retry = (): void => {
    this.timer = null;
    const heldHandles = new Set(this.held.values());
    const ts = [...new Set([...heldHandles, ...this.unsynced])];
    if (ts.length === 0) return;
    if (this.sync(ts)) for (const t of heldHandles) this.refile(t);
  };

  /** The retry, while anything waits for it (nothing runs once all is released or written). */
  private schedule(): void {
    if (this.timer === null && !this.handingOverNow && (this.held.size > 0 || this.unsynced.size > 0)) this.timer = setTimeout(this.retry, MARK_RETRY_MS).unref();
  }

  /**
   * The file follows the store: rewritten, or removed when it cannot be (a stale mark left there
   * would let an older agent hand out offsets again).
   */
  private refile(t: Tracked): void {
    const written = this.files.writeMeta(t.handle, t.meta);
    if (written !== t.filed) this.refiled(t, written);
  }

  /** The store learns whether the file is there (retried with the held marks until it does). */
  private refiled(t: Tracked, filed: boolean): void {
    t.filed = filed;
    this.sync([t]);
  }
}

function rowsOf(meta: CaptureMeta, filed: boolean, uncertain: CaptureMark['uncertain'] | false): CaptureMark[] {
  return (Object.entries(meta.streams) as [StreamName, NonNullable<CaptureMeta['streams'][StreamName]>][]).map(([stream, m]) => ({
    stream,
    ino: m.ino,
    capacity: m.capacity,
    mark: m.mark,
    outputEvents: meta.outputEvents,
    stdinPiped: meta.stdinPiped,
    filed,
    ...(uncertain ? { uncertain } : {}),
  }));
}
