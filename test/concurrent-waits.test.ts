// Many calls waiting at once each listen on the service gate's signal (a handover ends them): Node
// must not take that for a leak and print MaxListenersExceededWarning on the agent's stderr.
import test from 'ava';
import { startAgentProcess } from './helpers/agent-process.js';

test('twenty Waits in flight at once: every one returns its exit, and the agent prints no warning', async (t) => {
  const agent = await startAgentProcess(['--ephemeral', '--quiet']);
  t.teardown(() => agent.stop());
  const spawned = await Promise.all(Array.from({ length: 20 }, () => agent.client.spawn({ argv: ['sleep', '1'] })));
  const waited = await Promise.all(spawned.map(({ process: p }) => agent.client.wait({ handle: p!.handle })));
  t.deepEqual(
    waited.map((w) => w.process!.exit!.code),
    spawned.map(() => 0),
  );
  t.notRegex(agent.stderr(), /Warning/);
});
