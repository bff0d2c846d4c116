// One trial of bench/capture.ts --in-process: the agent of REPO (its built dist/) runs in this
// process, spawns `yes` with --stdout capture, and a live reader inside the agent takes the ring as
// ReadOutput would (it holds the pipe back while a ring behind, reads 256 KiB at a time), without
// gRPC in between: the capture path itself, pipe → ring → reader. Prints {"bytes","seconds"}.
// Plain JavaScript: it imports the compiled dist/ of whichever checkout it is given.
//   node bench/capture-ring.mjs REPO SECONDS
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [repo, secondsText = '3'] = process.argv.slice(2);
const { startAgent } = await import(join(repo, 'dist/src/agent.js'));
const { DEFAULTS } = await import(join(repo, 'dist/src/config/config.js'));
const { AgentClient, OutputMode } = await import(join(repo, 'clients/ts/dist/index.js'));
const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-capture-ring-'));
const address = `unix://${join(dir, 'agent.sock')}`;
const agent = await startAgent({ ...DEFAULTS, listen: [address], stateDir: join(dir, 'state'), auditLog: join(dir, 'audit.log'), agentEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, () => {});
const client = new AgentClient(address);
const { process: p } = await client.spawn({ argv: ['yes', 'y'.repeat(63)], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
const { output } = agent.manager.output(agent.manager.get(p.handle), 'stdout');
const reader = { position: 0, stalled: false };
let bytes = 0;
const take = () => {
  for (;;) {
    const r = output.ring.read(reader.position, 256 * 1024);
    if (r.data.length === 0) break;
    bytes += r.data.length;
    reader.position = r.offset + r.data.length;
  }
  output.regulate();
};
const started = performance.now();
const unhold = output.hold(reader);
const unsubscribe = output.subscribe(take);
take();
await new Promise((resolve) => setTimeout(resolve, Number(secondsText) * 1000));
const seconds = (performance.now() - started) / 1000;
unsubscribe();
unhold();
await client.signal({ handle: p.handle, signal: 'KILL' });
await client.wait({ handle: p.handle });
client.close();
await agent.stop();
rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ bytes, seconds }));
process.exit(0);
