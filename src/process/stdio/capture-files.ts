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

export class CaptureFiles {
  constructor(private readonly dir: string) {
    // Captured output is as private as the store: forced back if an older agent left it wider.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }

  private path(handle: string, suffix: string): string {
    return join(this.dir, `${handle}${suffix}`);
  }

  /**
   * Durable against the agent's death (the page cache outlives it); false when it could not be
   * written. The first write goes straight to the file (one system call less per Spawn): torn by
   * a crash it does not parse, and the stream is then not resumed. Later ones replace it whole.
   */
  writeMeta(handle: string, meta: CaptureMeta, first = false): boolean {
    const path = this.path(handle, '.json');
    try {
      if (first) {
        writeFileSync(path, JSON.stringify(meta), { mode: 0o600 });
        return true;
      }
      writeFileSync(`${path}.tmp`, JSON.stringify(meta), { mode: 0o600 });
      renameSync(`${path}.tmp`, path);
      return true;
    } catch {
      // A stale mark would let a later agent hand out offsets again: better no resumption at all.
      rmSync(path, { force: true });
      rmSync(`${path}.tmp`, { force: true });
      return false;
    }
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
    try {
      writeFileSync(`${path}.tmp`, Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), ...held]), { mode: 0o600 });
      renameSync(`${path}.tmp`, path);
    } catch {
      rmSync(`${path}.tmp`, { force: true });
    }
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
    rmSync(path, { force: true });
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
    for (const suffix of ['.json', '.stdout.ring', '.stderr.ring']) rmSync(this.path(handle, suffix), { force: true });
  }

  /** Removes every saved ring (and any half-written one), of every handle. */
  removeRings(): void {
    for (const name of readdirSync(this.dir)) if (name.endsWith('.ring') || name.endsWith('.ring.tmp')) rmSync(join(this.dir, name), { force: true });
  }

  /** Removes the files of every handle not in `keep` (released while no agent ran, or lost). */
  sweep(keep: (handle: string) => boolean): void {
    for (const name of readdirSync(this.dir)) {
      const handle = name.slice(0, name.indexOf('.'));
      if (name.endsWith('.tmp') || !keep(handle)) rmSync(join(this.dir, name), { force: true });
      else chmodSync(join(this.dir, name), 0o600);
    }
  }
}
