// Spawns a process through pidfd-agent, follows it on Watch, waits for its exit, then signals one.
//   node examples/spawn-and-wait.mjs [unix:///run/pidfd-agent/agent.sock]
import { AgentClient, EventType, describeExit } from '@pidfd-agent/client';

const agent = new AgentClient(process.argv[2] ?? 'unix:///run/pidfd-agent/agent.sock');
try {
  const { sequence } = await agent.listAll();
  const { process: p } = await agent.spawn({ argv: ['sh', '-c', 'exit 3'], labels: { example: 'spawn-and-wait' } });
  console.log(`spawned ${p.handle} (pid ${p.pid})`);
  for await (const event of agent.watch({ handles: [p.handle], afterSequence: sequence })) {
    console.log(`event ${event.sequence}: ${EventType[event.type]}`);
    if (event.type === EventType.EVENT_TYPE_EXITED) break;
  }
  const { process: done } = await agent.wait({ handle: p.handle });
  console.log(describeExit(done.exit));
  try {
    await agent.signal({ handle: p.handle, signal: 'KILL' });
  } catch (e) {
    console.log(`signal after exit: ${e.message} (${e.reason})`);
  }
  const { process: sleeper } = await agent.spawn({ argv: ['sleep', '60'] });
  await agent.signal({ handle: sleeper.handle, signal: 'TERM' });
  console.log(`sleep 60: ${describeExit((await agent.wait({ handle: sleeper.handle })).process.exit)}`);
  await agent.release({ handle: sleeper.handle });
} finally {
  agent.close();
}
