// The output ring as pure logic: absolute offsets, wrap-around, lost bytes, growth, seal, drop.
import test from 'ava';
import { OutputRing } from '../src/process/stdio/output-ring.js';

/** The stream 0, 1, 2, ... as bytes, so any slice says where it came from. */
const stream = (from: number, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (from + i) % 251));

/** Appends `total` bytes of the stream in chunks of the given sizes, cycling through them. */
function fill(ring: OutputRing, total: number, sizes: number[]): void {
  for (let at = 0, i = 0; at < total; i++) {
    const n = Math.min(sizes[i % sizes.length]!, total - at);
    ring.append(stream(at, n));
    at += n;
  }
}

test('an empty ring reads nothing at offset 0 and loses nothing', (t) => {
  const ring = new OutputRing(8);
  t.deepEqual(ring.read(0, 100), { offset: 0, data: Buffer.alloc(0), lost: 0 });
  t.is(ring.start, 0);
  t.is(ring.end, 0);
  t.is(ring.allocated, 0, 'no memory before the first byte');
});

test('whatever the chunking, the ring holds exactly the newest capacity bytes at their offsets', (t) => {
  for (const capacity of [1, 7, 64, 1000]) {
    for (const sizes of [[1], [3, 5], [capacity], [capacity + 1], [2 * capacity + 3, 1]]) {
      const ring = new OutputRing(capacity);
      fill(ring, 5 * capacity + 11, sizes);
      const end = 5 * capacity + 11;
      t.is(ring.end, end);
      t.is(ring.start, end - capacity);
      const all = ring.read(0, Infinity);
      t.is(all.offset, end - capacity, `capacity ${capacity}, chunks ${sizes}`);
      t.is(all.lost, end - capacity);
      t.true(all.data.equals(stream(end - capacity, capacity)), `capacity ${capacity}, chunks ${sizes}`);
      t.true(ring.allocated <= capacity);
    }
  }
});

test('reads are bounded by max and resume where they stopped, across the wrap', (t) => {
  const ring = new OutputRing(10);
  fill(ring, 26, [4]);
  const got: Buffer[] = [];
  let at = 16;
  for (;;) {
    const r = ring.read(at, 3);
    if (r.data.length === 0) break;
    t.is(r.offset, at);
    t.is(r.lost, 0);
    got.push(r.data);
    at += r.data.length;
  }
  t.true(Buffer.concat(got).equals(stream(16, 10)));
  t.deepEqual(ring.read(26, 5), { offset: 26, data: Buffer.alloc(0), lost: 0 }, 'at the end: nothing, nothing lost');
  t.is(ring.read(12, 1).lost, 4, 'an overwritten offset reports the gap up to the oldest byte held');
  t.is(ring.read(12, 1).offset, 16);
});

test('the ring grows with its content and never beyond its capacity', (t) => {
  const ring = new OutputRing(1024 * 1024);
  ring.append(Buffer.alloc(100));
  t.true(ring.allocated < 64 * 1024, `small output, small buffer (${ring.allocated})`);
  fill(ring, 3 * 1024 * 1024, [65536]);
  t.is(ring.allocated, 1024 * 1024);
});

test('seal keeps exactly what is held; drop frees it and only counts what follows', (t) => {
  const ring = new OutputRing(1000);
  fill(ring, 1500, [300]);
  ring.seal();
  t.is(ring.allocated, 1000);
  t.true(ring.read(0, Infinity).data.equals(stream(500, 1000)));
  t.is(ring.read(900, 10).offset, 900);
  t.true(ring.read(900, 10).data.equals(stream(900, 10)));

  const small = new OutputRing(1000);
  fill(small, 300, [100]);
  small.seal();
  t.is(small.allocated, 300, 'sealing returns what growth over-allocated');
  t.true(small.read(0, Infinity).data.equals(stream(0, 300)));

  const dropped = new OutputRing(1000);
  fill(dropped, 300, [100]);
  dropped.drop();
  dropped.append(Buffer.alloc(50));
  t.is(dropped.allocated, 0);
  t.is(dropped.end, 350);
  t.deepEqual(dropped.read(0, 10), { offset: 350, data: Buffer.alloc(0), lost: 350 });
});

test('a ring continued from a predecessor that held nothing starts empty at its offset, then appends', (t) => {
  const empty = new OutputRing(8);
  empty.continueAt(0, []);
  t.is(empty.end, 0);
  empty.append(Buffer.from('ab'));
  t.is(empty.read(0, 10).data.toString(), 'ab');
  const later = new OutputRing(4);
  later.continueAt(10, [Buffer.from('wxyz')]);
  later.append(Buffer.from('12'));
  t.deepEqual({ start: later.start, end: later.end, text: later.read(0, 10).data.toString() }, { start: 8, end: 12, text: 'yz12' });
});

test('a wrapped ring is held as two views in order, and a ring continued from them (or from its own whole buffer, taken) reads the same', (t) => {
  const ring = new OutputRing(6);
  ring.append(Buffer.from('abcdefgh')); // wraps: holds cdefgh, the buffer is ghcdef
  ring.append(Buffer.from('ij'));
  const held = ring.held();
  t.is(held.length, 2);
  t.is(Buffer.concat(held).toString(), 'efghij');
  t.deepEqual(ring.read(0, 100), { offset: 4, data: Buffer.from('efghij'), lost: 4 });

  const pieces = new OutputRing(6);
  pieces.continueAt(ring.end, held);
  const own = Buffer.allocUnsafeSlow(6);
  own.write('efghij');
  const taken = new OutputRing(6);
  taken.continueAt(ring.end, [own]);
  t.is(taken.allocated, 6);
  for (const r of [pieces, taken]) {
    t.deepEqual(r.read(0, 100), { offset: 4, data: Buffer.from('efghij'), lost: 4 });
    r.append(Buffer.from('klm'));
    t.deepEqual(r.read(0, 100), { offset: 7, data: Buffer.from('hijklm'), lost: 7 });
  }
  t.is(own.toString(), 'klmhij', 'the whole buffer became the ring (and wrapped in place)');

  const partial = new OutputRing(16);
  const short = Buffer.allocUnsafeSlow(3);
  short.write('xyz');
  partial.continueAt(3, [short]);
  partial.append(Buffer.from('0123456789'));
  t.deepEqual(partial.read(0, 100), { offset: 0, data: Buffer.from('xyz0123456789'), lost: 0 }, 'a ring taken below its capacity grows as before');
});
