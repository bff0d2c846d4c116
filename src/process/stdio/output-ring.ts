/** A piece of a stream read from a ring: `lost` bytes before `offset` were overwritten. */
export interface RingRead {
  /** Absolute offset of data[0]: bytes the stream produced before it. */
  readonly offset: number;
  readonly data: Buffer;
  /** Bytes between the requested offset and `offset` that the ring no longer holds. */
  readonly lost: number;
}

/**
 * Since the agent started, over every ring: bytes of output captured, and bytes no ring holds any
 * more (overwritten by newer output, or freed by retention). Read by telemetry as counters.
 */
export const ringTally = { captured: 0, lost: 0 };

/** The smallest buffer a ring starts with; it doubles up to its capacity as output arrives. */
const INITIAL_BYTES = 16 * 1024;

/**
 * The newest `capacity` bytes of a stream, addressed by absolute offset (bytes since the stream
 * began). Memory grows with the output up to `capacity` and never beyond: older bytes are
 * overwritten and reported as lost to a reader that asks for them. Offsets are plain numbers:
 * exact up to 2^53 bytes (8 PiB) per stream.
 */
export class OutputRing {
  private buf: Buffer | null = null;
  /** Offset (from base) that maps to buf[0] (0 until sealed, then the oldest byte held). */
  private origin = 0;
  /** Bytes appended to this ring; `base` bytes of the stream came before it (continueAt). */
  private total = 0;
  private base = 0;
  private dropped = false;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`ring capacity ${capacity}`);
  }

  /** Offset one past the newest byte: everything the stream has produced. */
  get end(): number {
    return this.base + this.total;
  }

  /** Offset of the oldest byte still held (equal to end when nothing is held). */
  get start(): number {
    return this.base + (this.dropped ? this.total : Math.max(0, this.total - this.capacity));
  }

  get isDropped(): boolean {
    return this.dropped;
  }

  /**
   * Continues a stream whose newest bytes `held` (in pieces, oldest first) end at `end` (a
   * handed-over or saved ring); only when empty. A single piece that is a whole buffer of its own
   * (the handover's reader made it for this ring) becomes the ring's buffer instead of being copied.
   */
  continueAt(end: number, held: readonly Uint8Array[]): void {
    if (this.total !== 0 || this.buf !== null) throw new Error('continueAt on a used ring');
    const length = held.reduce((sum, piece) => sum + piece.length, 0);
    this.base = end - length;
    const [only] = held;
    if (held.length === 1 && only instanceof Buffer && length <= this.capacity && only.byteOffset === 0 && only.buffer.byteLength === length) {
      // Its bytes sit at [0, total), as in a ring that has not grown to its capacity or has just reached it.
      this.buf = only;
      this.total = length;
      return;
    }
    for (const piece of held) this.append(piece);
    ringTally.captured -= length; // the predecessor counted these
  }

  /** Bytes of memory the ring holds now. */
  get allocated(): number {
    return this.buf?.length ?? 0;
  }

  append(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    ringTally.captured += chunk.length;
    if (this.dropped) {
      this.total += chunk.length;
      ringTally.lost += chunk.length;
      return;
    }
    const start = this.start;
    if (this.origin !== 0) throw new Error('append to a sealed ring');
    const keep = chunk.length > this.capacity ? chunk.subarray(chunk.length - this.capacity) : chunk;
    const end = this.total + chunk.length;
    this.reserve(Math.min(this.capacity, end));
    const buf = this.buf!;
    // Until the buffer reaches capacity nothing wraps (end <= buf.length), so o % length is o.
    let at = (end - keep.length) % buf.length;
    const first = Math.min(keep.length, buf.length - at);
    buf.set(keep.subarray(0, first), at);
    if (first < keep.length) buf.set(keep.subarray(first), 0);
    this.total = end;
    ringTally.lost += this.start - start;
  }

  /** Up to `max` bytes from `from` (clamped to what is held), copied out of the ring. */
  read(from: number, max: number): RingRead {
    const start = this.start;
    const end = this.end;
    const offset = Math.min(Math.max(from, start), end);
    const lost = Math.max(0, Math.min(start, end) - from);
    const n = Math.max(0, Math.min(max, end - offset));
    const data = Buffer.allocUnsafe(n);
    if (n > 0) {
      const buf = this.buf!;
      const at = (offset - this.base - this.origin) % buf.length;
      const first = Math.min(n, buf.length - at);
      buf.copy(data, 0, at, at + first);
      if (first < n) buf.copy(data, first, 0, n - first);
    }
    return { offset, data, lost };
  }

  /** The bytes held, oldest first: views of the ring (at most two), valid until it changes. */
  held(): Buffer[] {
    const n = this.end - this.start;
    if (n === 0) return [];
    const buf = this.buf!;
    const at = (this.start - this.base - this.origin) % buf.length;
    const first = Math.min(n, buf.length - at);
    return first < n ? [buf.subarray(at, at + first), buf.subarray(0, n - first)] : [buf.subarray(at, at + n)];
  }

  /** No more output will come: keep exactly the bytes held, in order, and release the rest. */
  seal(): void {
    if (this.dropped || this.buf === null || this.origin !== 0) return;
    const held = this.read(this.start, this.capacity).data;
    this.origin = this.start - this.base;
    this.buf = held.length > 0 ? Buffer.from(held) : null;
  }

  /** Frees the memory; later output is only counted (end keeps moving, nothing is held). */
  drop(): void {
    if (!this.dropped) ringTally.lost += this.total - this.start;
    this.dropped = true;
    this.buf = null;
  }

  private reserve(size: number): void {
    const have = this.buf?.length ?? 0;
    if (have >= size) return;
    let next = Math.max(have * 2, INITIAL_BYTES);
    while (next < size) next *= 2;
    const grown = Buffer.alloc(Math.min(next, this.capacity));
    // Before it reaches capacity the ring has never wrapped: its bytes sit at [0, total).
    if (this.buf !== null) this.buf.copy(grown, 0, 0, this.total);
    this.buf = grown;
  }
}
