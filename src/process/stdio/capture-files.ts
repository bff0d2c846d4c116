// What a later agent needs to go on reading a process's captured output after this one is gone
// (STATE_DIR/capture/, one set of files per handle). The pipes themselves outlive the agent: the
// child's end is read-write (kernel/spawn.ts 'output-pipe'), so the pipe keeps a reader and
// buffers up to its size. A later agent takes a reader of it from the child by pidfd_getfd.
//
//   HANDLE.json           written at spawn, rewritten as a stream passes its mark: per stream the
//                         pipe's inode, the ring capacity and a mark above every offset handed out.
//                         The state store holds the same (capture-marks.ts), and a new agent goes
//                         on from it; the file is kept, best effort, for an older agent that reads
//                         only the file (a rollback, a handover to one)
//   HANDLE.STREAM.ring    written by a stop without successor: the ring's bytes and exact offsets
//
// Without a ring file (a crash) the stream resumes at its mark: bytes from the last ones read up
// to the mark read as lost, so an offset is never handed out twice for different bytes.
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../log.js';
import type { CaptureState, StreamName } from './captured-output.js';

/** How far ahead of the stream's end the persisted mark is set (one write per this many bytes). */
export const MARK_STEP_BYTES = 64 * 1024 * 1024;

export interface StreamMeta {
  /** The pipe's inode: a descriptor taken from the child must be this pipe. */
  readonly ino: number;
  readonly capacity: number;
  /** Above every offset handed out for this stream so far. */
  mark: number;
}

export interface CaptureMeta {
  readonly outputEvents: boolean;
  readonly stdinPiped: boolean;
  readonly streams: Partial<Record<StreamName, StreamMeta>>;
}

/** A ring saved by a stopping agent: CaptureState without the pipe. */
export type SavedRing = Omit<CaptureState, 'pipe'>;

/** A capture dir that refuses files (read-only, full, not ours) is logged at most this often. */
export const FILE_ERROR_LOG_MS = 60_000;

export class CaptureFiles {
  private lastLogged = -Infinity;
  private unlogged = 0;

  constructor(
    private readonly dir: string,
    private readonly log: Logger = () => {},
  ) {
    // Captured output is as private as the store: forced back if an older agent left it wider.
    // The files are optional (the store has the marks): a dir that can't be made or narrowed
    // (read-only, say) is logged, and the agent starts without them.
    this.attempt('prepare', () => {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
    });
  }

  /**
   * Runs a file operation that may fail without consequence for the agent: the marks are in the
   * store, the file is a copy for an older agent. A failure is logged, at most once a minute.
   */
  private attempt(what: string, op: () => void): boolean {
    try {
      op();
      return true;
    } catch (e) {
      const now = performance.now();
      if (now - this.lastLogged < FILE_ERROR_LOG_MS) {
        this.unlogged++;
        return false;
      }
      this.log('capture_file_error', { op: what, dir: this.dir, error: e instanceof Error ? e.message : String(e), ...(this.unlogged > 0 ? { unlogged: this.unlogged } : {}) });
      this.lastLogged = now;
      this.unlogged = 0;
      return false;
    }
  }

  private remove1(path: string): void {
    this.attempt('remove', () => rmSync(path, { force: true }));
  }

  private path(handle: string, suffix: string): string {
    return join(this.dir, `${handle}${suffix}`);
  }

  /**
   * Durable against the agent's death (the page cache outlives it); false when it could not be
   * written. Always replaced whole (tmp, then rename): a crash never leaves a torn or empty file.
   */
  writeMeta(handle: string, meta: CaptureMeta): boolean {
    const path = this.path(handle, '.json');
    const written = this.attempt('write', () => {
      writeFileSync(`${path}.tmp`, JSON.stringify(meta), { mode: 0o600 });
      renameSync(`${path}.tmp`, path);
    });
    if (written) return true;
    // A stale mark would let an older agent hand out offsets again: better no file at all. One
    // that can't be removed either (a read-only dir) keeps a mark below the store's, which a new
    // agent raises to the store's; only an older agent would go on from it (README).
    this.remove1(path);
    this.remove1(`${path}.tmp`);
    return false;
  }

  readMeta(handle: string): CaptureMeta | undefined {
    try {
      return JSON.parse(readFileSync(this.path(handle, '.json'), 'utf8')) as CaptureMeta;
    } catch {
      return undefined;
    }
  }

  saveRing(handle: string, ring: SavedRing): void {
    const { held, ...header } = ring;
    const path = this.path(handle, `.${ring.stream}.ring`);
    const saved = this.attempt('save a ring', () => {
      writeFileSync(`${path}.tmp`, Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), ...held]), { mode: 0o600 });
      renameSync(`${path}.tmp`, path);
    });
    if (!saved) this.remove1(`${path}.tmp`);
  }

  /** The ring a stopped agent saved, once (the file goes). */
  takeRing(handle: string, stream: StreamName): SavedRing | undefined {
    const path = this.path(handle, `.${stream}.ring`);
    let data: Buffer;
    try {
      data = readFileSync(path);
    } catch {
      return undefined;
    }
    this.remove1(path);
    const nl = data.indexOf(10);
    if (nl < 0) return undefined;
    try {
      const header = JSON.parse(data.subarray(0, nl).toString()) as Omit<SavedRing, 'held'>;
      return { ...header, held: [data.subarray(nl + 1)] };
    } catch {
      return undefined;
    }
  }

  remove(handle: string): void {
    for (const suffix of ['.json', '.stdout.ring', '.stderr.ring']) this.remove1(this.path(handle, suffix));
  }

  private names(): string[] {
    let names: string[] = [];
    this.attempt('list', () => void (names = readdirSync(this.dir)));
    return names;
  }

  /** Removes every saved ring (and any half-written one), of every handle. */
  removeRings(): void {
    for (const name of this.names()) if (name.endsWith('.ring') || name.endsWith('.ring.tmp')) this.remove1(join(this.dir, name));
  }

  /** Removes the files of every handle not in `keep` (released while no agent ran, or lost). */
  sweep(keep: (handle: string) => boolean): void {
    for (const name of this.names()) {
      const handle = name.slice(0, name.indexOf('.'));
      if (name.endsWith('.tmp') || !keep(handle)) this.remove1(join(this.dir, name));
      else this.attempt('narrow', () => chmodSync(join(this.dir, name), 0o600));
    }
  }
}
