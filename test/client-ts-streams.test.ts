// The TypeScript client's streams and signals: a stream the agent ends is an error, never a quiet
// end a follower would take for the end of the output; only the caller's own cancel (its signal,
// close()) ends one quietly. Listeners on a shared signal do not pile up.
import { getEventListeners } from 'node:events';
import test from 'ava';
import { AgentCallError, AgentClient, OutputMode, OutputStream } from '../clients/ts/src/index.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { eventually } from './helpers/harness.js';

const drain = async (it: AsyncIterable<unknown>): Promise<number> => {
  let n = 0;
  for await (const _ of it) n++;
  return n;
};

test('an agent that stops ends its Watch and a followed ReadOutput with an error, not quietly', async (t) => {
  const agent = await startAgentProcess(['--ephemeral']);
  t.teardown(() => agent.stop());
  const { process: p } = await agent.client.spawn({ argv: ['sh', '-c', 'echo hi; exec sleep 600'], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  t.teardown(() => process.kill(p!.pid, 'SIGKILL'));
  const client = new AgentClient(agent.address);
  t.teardown(() => client.close());
  // Each stream has delivered something, so it is open on the agent before it stops.
  const watch = client.watch({ afterSequence: 0 })[Symbol.asyncIterator]();
  const output = client.readOutput({ handle: p!.handle, stream: OutputStream.OUTPUT_STREAM_STDOUT, follow: true })[Symbol.asyncIterator]();
  t.false((await watch.next()).done);
  t.is(Buffer.from((await output.next()).value!.data).toString(), 'hi\n');
  agent.child.kill('SIGTERM');
  const rest = async (it: AsyncIterator<unknown>) => {
    while (!(await it.next()).done);
  };
  const watching = rest(watch);
  const following = rest(output);
  await t.throwsAsync(watching, { instanceOf: AgentCallError });
  await t.throwsAsync(following, { instanceOf: AgentCallError });
});

test('a signal already aborted ends a stream at once; close() ends the open ones quietly; shared signals keep no listeners', async (t) => {
  const agent = await startAgentProcess(['--ephemeral']);
  t.teardown(() => agent.stop());
  const client = new AgentClient(agent.address);
  const aborted = new AbortController();
  aborted.abort();
  t.is(await drain(client.watch({ afterSequence: 0 }, { signal: aborted.signal })), 0);
  const shared = new AbortController();
  for (let i = 0; i < 50; i++) await client.list({}, { signal: shared.signal });
  t.is(getEventListeners(shared.signal, 'abort').length, 0, 'each call took its listener back');
  const open = drain(client.watch({ afterSequence: 0 }, { signal: shared.signal }));
  await eventually('the watch open', () => getEventListeners(shared.signal, 'abort').length === 1);
  client.close();
  await t.notThrowsAsync(open);
  t.is(getEventListeners(shared.signal, 'abort').length, 0);
});
