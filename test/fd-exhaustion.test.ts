// Fault injection by the kernel itself: an agent with 96 descriptors (prlimit; with 64, Node, which
// opens many module files at once, can no longer load the agent) is asked to spawn processes with
// pipes until it runs out. Every failure must be a clear status, every child it
// started must be one it manages, and once everything is released it holds what it held before.
import { readdirSync, readFileSync } from 'node:fs';
import test from 'ava';
import { AgentCallError, OutputMode, StdinMode, status, type AgentClient } from '../clients/ts/src/index.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { eventually } from './helpers/harness.js';

const CAPTURE = { mode: OutputMode.OUTPUT_MODE_CAPTURE };
// Shapes that take 1 to 4 descriptors while starting (pipes, the exec helper's report pipe, the
// pidfd), so the descriptor that runs out is now one taken before the spawn, now one after.
type Shape = Omit<Parameters<AgentClient['spawn']>[0], 'argv'>;
const SHAPES: Shape[] = [
  { stdout: CAPTURE },
  { stdout: CAPTURE, stderr: CAPTURE },
  { stdin: StdinMode.STDIN_MODE_PIPE, stdout: CAPTURE, stderr: CAPTURE },
  { stdout: CAPTURE, rlimits: [{ resource: 'NOFILE', soft: 64, hard: 64 }] },
  {},
];

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

function childrenOf(pid: number): number[] {
  const pids: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    for (const p of readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1').trim().split(/\s+/)) if (p !== '') pids.push(Number(p));
  }
  return pids.sort((a, b) => a - b);
}

test('an agent out of descriptors refuses spawns with RESOURCE_EXHAUSTED and an errno, leaks nothing and leaves no child unmanaged', async (t) => {
  const agent = await startAgentProcess(['--ephemeral'], ['prlimit', '--nofile=96', '--']);
  t.teardown(() => agent.stop());
  const pid = agent.child.pid!;
  const { client } = agent;
  await client.list({});
  const baseline = fdCount(pid);

  const handles: string[] = [];
  const failures: AgentCallError[] = [];
  const spawnOne = async (shape: Shape) => {
    try {
      const { process: p } = await client.spawn({ argv: ['sleep', '600'], ...shape });
      handles.push(p!.handle);
    } catch (e) {
      if (!(e instanceof AgentCallError)) throw e;
      failures.push(e);
    }
  };
  // Fill the table until every shape fails, then free a few descriptors at a time and fill again,
  // so the limit is hit at each point of a start.
  for (let round = 0; round < 6; round++) {
    for (let streak = 0, i = 0; streak < SHAPES.length && i < 200; i++) {
      const before = failures.length;
      await spawnOne(SHAPES[(i + round) % SHAPES.length]!);
      streak = failures.length > before ? streak + 1 : 0;
    }
    for (const handle of handles.splice(0, round + 1)) {
      await client.signal({ handle, signal: 'KILL' });
      await client.wait({ handle });
      await client.release({ handle });
    }
  }

  t.true(failures.length > 0, 'the limit was reached');
  for (const e of failures) {
    t.is(e.code, status.RESOURCE_EXHAUSTED, e.message);
    t.regex(e.reason, /^E(MFILE|NFILE)$/, e.message);
    t.not(e.info['field'], 'argv[0]', 'the executable is not blamed');
  }
  const syscalls = new Set(failures.map((e) => e.info['syscall']));
  t.log([...new Set(failures.map((e) => e.message))].join(' / '));
  t.log(`${handles.length} running, ${failures.length} refused, at: ${[...syscalls].join(', ')}`);
  t.true(syscalls.has('pidfd_open'), 'some ran out after their child had started (pidfd_open of the started child)');

  // Every child of the agent is one it manages, and each managed process is its child.
  const listed = (await client.list({})).processes.filter((p) => p.state === 1).map((p) => p.pid).sort((a, b) => a - b);
  t.deepEqual(childrenOf(pid), listed);
  t.is(listed.length, handles.length);

  for (const handle of handles.splice(0)) {
    await client.signal({ handle, signal: 'KILL' });
    await client.wait({ handle });
    await client.release({ handle });
  }
  t.deepEqual(childrenOf(pid), []);
  // Released pipes are drained to end-of-file on the event loop: the count settles shortly after.
  await eventually(`the agent's fd count back at ${baseline}`, () => fdCount(pid) === baseline, 5000).catch(() => undefined);
  t.is(fdCount(pid), baseline, readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1').split('\n')[1]; } catch { return ''; } }).join(' | '));
  // Still serving, and able to spawn again.
  const { process: p } = await client.spawn({ argv: ['true'], stdout: CAPTURE });
  t.is((await client.wait({ handle: p!.handle })).process!.exit!.code, 0);
});
