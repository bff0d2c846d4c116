// Handle IDs (128 random bits in base32) and signal names and numbers as bash knows them.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { constants } from 'node:os';
import test from 'ava';
import { parseSignal, signalName } from '../src/kernel/signals.js';
import { newHandleId } from '../src/process/lifecycle/handle.js';
import { ROOT } from './helpers/agent-process.js';

// ---- handles ----

/** RFC 4648 base32 (lower case, no padding) → bytes; throws if the trailing bits are not zero. */
function base32Decode(text: string): Buffer {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes: number[] = [];
  let value = 0;
  let bits = 0;
  for (const c of text) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`not base32: ${c}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >>> bits) & 0xff);
      value &= (1 << bits) - 1;
    }
  }
  if (value !== 0) throw new Error(`non-zero padding bits in ${text}`);
  return Buffer.from(bytes);
}

test('handles are 26 lower-case base32 characters holding 128 bits, and 10,000 of them are all different', (t) => {
  const ids = Array.from({ length: 10_000 }, newHandleId);
  const malformed = ids.filter((id) => !/^[a-z2-7]{26}$/.test(id));
  t.deepEqual(malformed, []);
  const decoded = ids.map((id) => base32Decode(id));
  t.true(decoded.every((b) => b.length === 16));
  t.is(new Set(ids).size, ids.length);
  t.is(new Set(decoded.map((b) => b.toString('hex'))).size, ids.length);
});

test('a handle is one flat string: 50,000 kept cost the heap what their 26 characters do, not a chain of concatenations', (t) => {
  // Every record, tombstone and index keeps its handle for as long as it is retained (10,000 exited
  // records and as many tombstones by default), so bytes per handle are the table's footprint.
  const script = `
    const { newHandleId } = await import(${JSON.stringify(join(ROOT, 'src/process/lifecycle/handle.ts'))});
    const kept = [];
    newHandleId();
    gc(); gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 50000; i++) kept.push(newHandleId());
    gc(); gc();
    console.log((process.memoryUsage().heapUsed - before) / kept.length);`;
  const perHandle = Number(execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' }).trim());
  // A flat one-byte string of 26 characters is 44 bytes and its slot in the array 8; a chain of
  // cons strings was ~480.
  t.true(perHandle < 100, `${perHandle.toFixed(0)} bytes per handle`);
});

// ---- signals ----

const bashSignal = (name: string): number => Number(execFileSync('bash', ['-c', `kill -l ${name}`], { encoding: 'utf8' }).trim());

test('parseSignal takes names with or without SIG in any case, numbers and real-time names', (t) => {
  const term = constants.signals.SIGTERM;
  for (const text of ['TERM', 'SIGTERM', 'sigterm', 'Term', ` ${term} `, String(term)]) t.is(parseSignal(text), term, text);
  t.is(parseSignal('KILL'), constants.signals.SIGKILL);
  // glibc's SIGRTMIN as programs see it, asked of bash rather than assumed.
  t.is(parseSignal('SIGRTMIN+3'), bashSignal('SIGRTMIN+3'));
  t.is(parseSignal('rtmin+3'), bashSignal('SIGRTMIN+3'));
  t.is(parseSignal('SIGRTMIN'), bashSignal('SIGRTMIN'));
  t.is(parseSignal('SIGRTMAX'), bashSignal('SIGRTMAX'));
});

test('parseSignal rejects glibc\'s internal 32 and 33, 0, numbers past SIGRTMAX and junk', (t) => {
  for (const text of ['32', '33', '0', '65', String(bashSignal('SIGRTMAX') + 1), '-9', '+9', '9x', '1e1', '', 'SIG', 'SIGJUNK', 'SIG32', 'SIGRTMIN+31']) {
    t.is(parseSignal(text), undefined, JSON.stringify(text));
  }
});

test('signalName and parseSignal round-trip every deliverable signal', (t) => {
  const rtmin = bashSignal('SIGRTMIN');
  const rtmax = bashSignal('SIGRTMAX');
  t.is(signalName(constants.signals.SIGTERM), 'SIGTERM');
  t.is(signalName(constants.signals.SIGABRT), 'SIGABRT', 'the first name of an alias (SIGIOT)');
  t.is(signalName(rtmin + 3), 'SIGRTMIN+3');
  t.is(signalName(32), 'SIG32');
  for (let n = 1; n <= rtmax; n++) {
    if (n > constants.signals.SIGSYS && n < rtmin) continue;
    t.is(parseSignal(signalName(n)), n, signalName(n));
  }
});
