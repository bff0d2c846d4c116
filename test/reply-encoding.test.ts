// Unary replies go out through one writer the server keeps (src/service/reply-encoding.ts): the
// bytes are the generated encoder's, reply after reply, and a reply whose encoding throws leaves
// nothing behind in the next one.
import test from 'ava';
import { AgentServiceService, ExitReason, GetResponse, ListResponse, State, WaitResponse, type Process } from '../src/api.js';
import type { ProcessRecord } from '../src/process/lifecycle/record.js';
import { ListPages } from '../src/service/list-pages.js';
import { sharedWriterReplies } from '../src/service/reply-encoding.js';

const shared = sharedWriterReplies(AgentServiceService);

const exited: Process = {
  handle: 'revnj2jp7rp5jmy2za3ncjmce4',
  pid: 4242,
  state: State.STATE_EXITED,
  argv: ['/bin/sh', '-c', 'exit 3', 'é'.repeat(200)],
  labels: { job: 'build', shard: '7' },
  startedAt: new Date(1_764_000_000_123),
  exit: { code: 3, signal: undefined, signalName: '', coreDumped: false, exitedAt: new Date(1_764_000_001_456), rusage: undefined, reason: ExitReason.EXIT_REASON_EXITED, statusLost: false, reclaimTime: undefined },
  adopted: false,
  pidfsInode: 2 ** 40 + 7,
  owner: 'unix:uid=0',
  usage: undefined,
};

test('replies are the generated encoding, one after another through the shared writer', (t) => {
  const small: WaitResponse = { process: { ...exited, argv: ['/bin/true'], labels: {} } };
  for (const reply of [{ process: exited }, small, { process: exited }, {}]) {
    t.deepEqual(shared.wait.responseSerialize(reply), Buffer.from(WaitResponse.encode(reply).finish()));
  }
  t.deepEqual(WaitResponse.decode(shared.wait.responseSerialize({ process: exited })), { process: exited });
});

test('a reply whose encoding throws leaves the next reply whole', (t) => {
  // An enum value must be an int32: the encoder refuses 1.5 after it has begun the message.
  const bad = { process: { ...exited, state: 1.5 as State } } satisfies GetResponse;
  t.throws(() => shared.get.responseSerialize(bad));
  t.deepEqual(shared.get.responseSerialize({ process: exited }), Buffer.from(GetResponse.encode({ process: exited }).finish()));
});

test('a List page, encoded as it is measured, goes out as the generated encoding of the same reply', (t) => {
  const processes = Array.from({ length: 5 }, (_, i) => ({ ...exited, pid: 100 + i, argv: [...exited.argv, 'x'.repeat(i * 100)] }));
  const records = processes.map((p, i) => ({ position: i + 1, process: p }) as unknown as ProcessRecord & { process: Process });
  const pages = new ListPages();
  const filters = { labels: {}, state: undefined };
  const toProcess = (r: ProcessRecord) => (r as ProcessRecord & { process: Process }).process;
  const after = (position: number) => records.filter((r) => r.position > position);
  const unpaged = pages.page(after, 6, () => true, toProcess, 2 ** 40, undefined, filters);
  const first = pages.page(after, 6, (r) => r.position !== 2, toProcess, 7, { pageSize: 2, after: 0, end: undefined }, filters);
  const emptyLast = pages.page(after, 6, () => true, toProcess, 0, { pageSize: 9, after: 5, end: 6 }, filters);
  t.is(unpaged.processes.length, 5);
  t.deepEqual(first.processes, [processes[0], processes[2]]);
  t.not(first.nextPageToken, '');
  t.deepEqual(emptyLast, { processes: [], sequence: 0, nextPageToken: '' });
  for (const reply of [unpaged, first, emptyLast]) {
    t.deepEqual(shared.list.responseSerialize(reply), Buffer.from(ListResponse.encode(reply).finish()));
  }
  // A reply no handler encoded is encoded as before.
  const copy = { ...first };
  t.deepEqual(shared.list.responseSerialize(copy), Buffer.from(ListResponse.encode(first).finish()));
});
