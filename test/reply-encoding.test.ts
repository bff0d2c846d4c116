// Unary replies go out through one writer the server keeps (src/service/reply-encoding.ts): the
// bytes are the generated encoder's, reply after reply, and a reply whose encoding throws leaves
// nothing behind in the next one.
import test from 'ava';
import { AgentServiceService, ExitReason, GetResponse, State, WaitResponse, type Process } from '../src/api.js';
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
