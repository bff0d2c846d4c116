// Where a later agent finds each captured stream's mark (capture-files.ts says what a mark is for).
// The state store has them: with the start, in the commit that records it (so a start the store
// took always has its marks, and one it refused has none), then one write per MARK_STEP_BYTES per
// stream, made before the stream takes in a byte past the last mark. A write that fails holds the
// stream at its mark (the pipe is not read on) and is retried, all held streams in one write a
// second, until the store takes it. STATE_DIR/capture/HANDLE.json follows each store write, best
// effort, for an older agent (a rollback, a handover to one), which reads only the file.
import type { HandleId } from '../lifecycle/handle.js';
import type { CaptureMark } from '../process-store.js';
import type { CapturedOutput, StreamName } from './captured-output.js';
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
}

/** What a restarted or succeeding agent goes on from, out of the store's marks and the file. */
export interface ResumedMarks {
  readonly meta: CaptureMeta;
  readonly filed: boolean;
  /**
   * False when the store's marks may be below offsets already handed out: the file they say is
   * there is gone, so an older agent may have read on past them without a mark kept anywhere.
   * Such a stream is resumed only where its exact end is known (a saved ring, a handover).
   */
  readonly certain: boolean;
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
  return { meta, filed: file !== undefined, certain: file !== undefined || !rows.some((r) => r.filed) };
}

export class CaptureMarks {
  private readonly tracked = new Map<HandleId, Tracked>();
  /** Streams held at their mark until the store takes the next one. */
  private readonly held = new Map<CapturedOutput, Tracked>();
  /** Handles whose rows the store has yet to take (`filed` changed, the write failed). */
  private readonly unsynced = new Set<Tracked>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly files: CaptureFiles,
    private readonly write: MarkWriter,
  ) {}

  /** The rows a start's commit writes: the file is written once the start is in the store. */
  startRows(meta: CaptureMeta): CaptureMark[] {
    return rowsOf(meta, true);
  }

  /** The start is in the store (with its marks): the file for an older agent, then the marks are kept ahead. */
  started(handle: HandleId, io: ProcessStdio, meta: CaptureMeta): void {
    const t: Tracked = { handle, meta, filed: true };
    if (!this.files.writeMeta(handle, meta, true)) this.refiled(t, false);
    this.track(t, io);
  }

  /** A restored process's streams, from the marks resumeMarks found. */
  resumed(handle: HandleId, io: ProcessStdio, marks: ResumedMarks): void {
    this.track({ handle, meta: marks.meta, filed: marks.filed }, io);
  }

  /** The handle is released (its rows go with the release) or handed over. */
  forget(handle: HandleId): void {
    const t = this.tracked.get(handle);
    if (t === undefined) return;
    this.tracked.delete(handle);
    this.unsynced.delete(t);
    for (const [out, held] of this.held) if (held === t) this.held.delete(out);
  }

  /** After a handover: the store is the successor's. */
  clear(): void {
    this.tracked.clear();
    this.held.clear();
    this.unsynced.clear();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private track(t: Tracked, io: ProcessStdio): void {
    this.tracked.set(t.handle, t);
    for (const out of [io.stdout, io.stderr]) {
      const m = out === null ? undefined : t.meta.streams[out.stream];
      if (out !== null && m !== undefined) out.trackMark(m.mark, (end) => this.advance(t, out, end));
    }
  }

  /** One store write for the stream's next mark, then the file; undefined (held, retried) when the store refuses. */
  private advance(t: Tracked, out: CapturedOutput, end: number): number | undefined {
    const m = t.meta.streams[out.stream]!;
    const was = m.mark;
    m.mark = end + MARK_STEP_BYTES;
    if (!this.write(rowsOf(t.meta, t.filed).map((r) => [t.handle, r] as const))) {
      m.mark = was;
      this.held.set(out, t);
      this.schedule();
      return undefined;
    }
    this.held.delete(out);
    this.unsynced.delete(t);
    this.refile(t);
    return m.mark;
  }

  /** Every held stream's next mark and every unsynced handle's rows in one write; the streams go on once it is in. */
  private readonly retry = (): void => {
    this.timer = null;
    const held = [...this.held].map(([out, t]) => ({ out, t, m: t.meta.streams[out.stream]!, was: t.meta.streams[out.stream]!.mark }));
    for (const h of held) h.m.mark = h.out.readEnd + MARK_STEP_BYTES;
    const handles = new Set([...held.map((h) => h.t), ...this.unsynced]);
    if (!this.write([...handles].flatMap((t) => rowsOf(t.meta, t.filed).map((r) => [t.handle, r] as const)))) {
      for (const h of held) h.m.mark = h.was;
      return this.schedule();
    }
    this.held.clear();
    this.unsynced.clear();
    for (const t of new Set(held.map((h) => h.t))) this.refile(t);
    for (const h of held) h.out.markPersisted(h.m.mark);
  };

  private schedule(): void {
    if (this.timer === null) this.timer = setTimeout(this.retry, MARK_RETRY_MS).unref();
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
    if (this.write(rowsOf(t.meta, filed).map((r) => [t.handle, r] as const))) return;
    this.unsynced.add(t);
    this.schedule();
  }
}

function rowsOf(meta: CaptureMeta, filed: boolean): CaptureMark[] {
  return (Object.entries(meta.streams) as [StreamName, NonNullable<CaptureMeta['streams'][StreamName]>][]).map(([stream, m]) => ({
    stream,
    ino: m.ino,
    capacity: m.capacity,
    mark: m.mark,
    outputEvents: meta.outputEvents,
    stdinPiped: meta.stdinPiped,
    filed,
  }));
}
