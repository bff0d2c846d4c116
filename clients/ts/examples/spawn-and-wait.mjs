// Spawns a process through pidfd-agent, follows it on Watch, waits for its exit.
//   node examples/spawn-and-wait.mjs [unix:///run/pidfd-agent/agent.sock]
import { AgentClient, EventType } from '@pidfd-agent/client';

const agent = new AgentClient(process.argv[2] ?? 'unix:///run/pidfd-agent/agent.sock');
try {
  const { sequence } = await agent.list();
  const { process: p } = await agent.spawn({ argv: ['sh', '-c', 'exit 3'], labels: { example: 'spawn-and-wait' } });
  console.log(`spawned ${p.handle} (pid ${p.pid})`);
  for await (const event of agent.watch({ handles: [p.handle], afterSequence: sequence })) {
    console.log(`event ${event.sequence}: ${EventType[event.type]}`);
    if (event.type === EventType.EVENT_TYPE_EXITED) break;
  }
  const { process: done } = await agent.wait({ handle: p.handle });
  console.log(`exit code ${done.exit.code}`);
  try {
    await agent.signal({ handle: p.handle, signal: 'KILL' });
  } catch (e) {
    console.log(`signal after exit: ${e.message} (${e.reason})`);
  }
} finally {
  agent.close();
}
