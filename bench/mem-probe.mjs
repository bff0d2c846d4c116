// A debug hook for bench/mem-ab.ts, preloaded into the agent under test with
// `node --import=bench/mem-probe.mjs` (no agent code involved, so it works on any checkout): on
// SIGUSR2 it writes what the agent's memory is made of to $MEM_PROBE_DIR/probe-PID-N.json: V8's
// heap spaces, process.memoryUsage(), glibc's mallinfo2 and malloc_info (per arena), VmRSS before and after a malloc_trim of its own, and with
// $MEM_PROBE_DIR/snapshot-PID present a heap snapshot beside it (read it with bench/heap-summary.mjs).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import v8 from 'node:v8';

const dir = process.env.MEM_PROBE_DIR ?? '/tmp';
// koffi from the agent's own node_modules.
const koffi = createRequire(process.argv[1] ?? import.meta.url)('koffi');
const libc = koffi.load('libc.so.6');
const mallinfo2Struct = koffi.struct('mallinfo2_probe', {
  arena: 'size_t', ordblks: 'size_t', smblks: 'size_t', hblks: 'size_t', hblkhd: 'size_t',
  usmblks: 'size_t', fsmblks: 'size_t', uordblks: 'size_t', fordblks: 'size_t', keepcost: 'size_t',
});
const mallinfo2 = libc.func('mallinfo2', mallinfo2Struct, []);
const fopen = libc.func('void *fopen(const char *path, const char *mode)');
const fclose = libc.func('int fclose(void *f)');
const mallocInfo = libc.func('int malloc_info(int options, void *f)');
const malloc_trim = libc.func('int malloc_trim(size_t pad)');

let n = 0;
process.on('SIGUSR2', () => {
  n++;
  const base = join(dir, `probe-${process.pid}-${n}`);
  const f = fopen(`${base}.malloc.xml`, 'w');
  if (f) {
    mallocInfo(0, f);
    fclose(f);
  }
  const mi = mallinfo2();
  // What a trim now (long after the reducer's) would give back: malloc memory freed late.
  const rssKib = () => Number(readFileSync('/proc/self/status', 'utf8').match(/^VmRSS:\s+(\d+)/m)?.[1]);
  const rssBeforeTrim = rssKib();
  malloc_trim(0);
  const rssAfterTrim = rssKib();
  const mib = (b) => Math.round(Number(b) / 104857.6) / 10;
  const out = {
    memory_usage: Object.fromEntries(Object.entries(process.memoryUsage()).map(([k, v]) => [k, mib(v)])),
    heap: Object.fromEntries(Object.entries(v8.getHeapStatistics()).map(([k, v]) => [k, mib(v)])),
    spaces: Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: mib(s.space_size), used: mib(s.space_used_size), physical: mib(s.physical_space_size) }])),
    mallinfo2_mib: Object.fromEntries(Object.entries(mi).map(([k, v]) => [k, mib(v)])),
    rss_mib_before_trim: Math.round(rssBeforeTrim / 102.4) / 10,
    rss_mib_after_trim: Math.round(rssAfterTrim / 102.4) / 10,
    fds: readFileSync('/proc/self/status', 'utf8').match(/^FDSize:\s+(\d+)/m)?.[1],
  };
  writeFileSync(`${base}.json`, JSON.stringify(out, null, 1) + '\n');
  if (existsSync(join(dir, `snapshot-${process.pid}`))) v8.writeHeapSnapshot(`${base}.heapsnapshot`);
  writeFileSync(`${base}.done`, '');
});
