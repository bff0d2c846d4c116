// A page token outlives neither a restart nor a handover: its positions were the earlier agent's.
// The agent serving then answers it ABORTED / PAGE_TOKEN_EXPIRED (list again from the first
// page), which a token no agent issued never gets (INVALID_PAGE_TOKEN: the caller's bug); and the
// clients' list-all helpers (TS, Go, Python) list again from the first page, once.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { AgentClient, PAGE_TOKEN_EXPIRED, status, type ListRequest, type ListResponse } from '../clients/ts/src/index.js';
import { PAGE_TOKEN_KEY_FILE } from '../src/store/page-token-key.js';
import { ROOT } from './helpers/agent-process.js';
import { agentDir, refusal, tempDir } from './helpers/harness.js';
import { ExpiringPages, type Expiry } from './helpers/expiring-pages.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const run = promisify(execFile);
const reaper = Subreaper.start();
test.after.always(() => reaper.close());

const PROCESSES = 5;

interface Node {
  readonly dir: string;
  readonly stateDir: string;
  readonly address: string;
  agent: RestartableAgent;
  readonly handles: readonly string[];
}

/** An agent with five exited processes, kept in its store for the next agent. */
async function node(t: ExecutionContext): Promise<Node> {
  const { dir, stateDir, address } = agentDir('pidfd-agent-page-expiry-');
  const agent = await RestartableAgent.start(reaper, dir, stateDir);
  const { results } = await agent.client.spawnBatch({ requests: Array.from({ length: PROCESSES }, () => ({ argv: ['/bin/true'], labels: { set: 'expiry' } })) });
  const handles = results.map((r) => r.spawned!.process!.handle);
  const n: Node = { dir, stateDir, address, agent, handles };
  t.teardown(async () => {
    await n.agent.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await Promise.all(handles.map((handle) => agent.client.wait({ handle })));
  return n;
}

async function handOver(n: Node): Promise<void> {
  n.agent = (await RestartableAgent.takeOver(reaper, n.dir, n.stateDir, n.agent, ['--quiet'])).agent;
}

async function restart(n: Node): Promise<void> {
  await n.agent.crash();
  n.agent = await RestartableAgent.start(reaper, n.dir, n.stateDir);
}

const REQUEST: Partial<ListRequest> = { labels: { set: 'expiry' }, pageSize: 2 };

for (const [what, change] of [
  ['a handover', handOver],
  ['a restart (SIGKILL)', restart],
] as const) {
  test.serial(`the next page after ${what} is ABORTED / PAGE_TOKEN_EXPIRED; a token altered or made up is still INVALID_PAGE_TOKEN`, async (t) => {
    const n = await node(t);
    const first = await n.agent.client.list(REQUEST);
    t.is(first.processes.length, 2);
    await change(n);
    const e = await refusal(n.agent.client.list({ ...REQUEST, pageToken: first.nextPageToken }));
    t.is(e.code, status.ABORTED);
    t.is(e.reason, PAGE_TOKEN_EXPIRED);
    t.is(e.info['field'], 'page_token');
    t.regex(e.details, /restarted or handed over.*list again from the first page/);
    // Any byte changed, the incarnation's too, is a token no agent issued.
    const token = Buffer.from(first.nextPageToken, 'base64url');
    for (const at of [0, 3, 10, 30, token.length - 1]) {
      const altered = Buffer.from(token);
      altered[at] = altered[at]! ^ 1;
      const bad = await refusal(n.agent.client.list({ ...REQUEST, pageToken: altered.toString('base64url') }));
      t.deepEqual([bad.code, bad.reason], [status.INVALID_ARGUMENT, 'INVALID_PAGE_TOKEN'], `byte ${at}`);
    }
    // Listed again from the first page: every process once.
    const again = await n.agent.client.listAll(REQUEST);
    t.deepEqual(again.processes.map((p) => p.handle).sort(), [...n.handles].sort());
    // The key that tells the two apart stays in the state dir, the agent's alone.
    t.is(statSync(join(n.stateDir, PAGE_TOKEN_KEY_FILE)).mode & 0o777, 0o600);
    t.false(existsSync(join(n.stateDir, `${PAGE_TOKEN_KEY_FILE}.${n.agent.pid}`)));
  });
}

test.serial("listAll lists again from the first page when the agent hands over between two pages: each process once, the new first page's sequence", async (t) => {
  const n = await node(t);
  const client = new AgentClient(n.address);
  t.teardown(() => client.close());
  // The handover lands right after the first page's reply, before the second page is asked.
  const asked: string[] = [];
  const list = client.list.bind(client);
  client.list = async (req, opts) => {
    asked.push(req?.pageToken ?? '');
    const page = await list(req, opts);
    if (asked.length === 1) await handOver(n);
    return page;
  };
  const all: ListResponse = await client.listAll(REQUEST);
  t.deepEqual(all.processes.map((p) => p.handle).sort(), [...n.handles].sort());
  t.is(all.nextPageToken, '');
  t.is(all.sequence, (await n.agent.client.list({ pageSize: 1 })).sequence, "the new agent's sequence");
  t.is(asked.length, 1 + 1 + 3, 'the first page, the expired second, then three pages again');
  t.deepEqual(
    asked.map((token) => token === ''),
    [true, false, true, false, false],
  );
});

/** What each client's list-all made of a server's answers: the handles and sequence, or the error. */
interface Outcome {
  readonly result: string;
  readonly asked: readonly string[];
}

const EXPECTED: Readonly<Record<Expiry, { result: string; asked: string[] }>> = {
  'first-listing': { result: '2-first 2-second 20', asked: ['', '1', '', '2'] },
  'every-listing': { result: 'error ABORTED PAGE_TOKEN_EXPIRED', asked: ['', '1', '', '2'] },
  invalid: { result: 'error INVALID_ARGUMENT INVALID_PAGE_TOKEN', asked: ['', '1'] },
};

async function withServer(t: ExecutionContext, expire: Expiry, list: (address: string) => Promise<string>): Promise<Outcome> {
  const server = await ExpiringPages.start(join(tempDir('pidfd-agent-expiring-'), 'agent.sock'), expire);
  t.teardown(() => server.close());
  return { result: await list(server.address), asked: server.asked };
}

const EXPIRIES = Object.keys(EXPECTED) as Expiry[];

test.serial('TS listAll: lists again once on PAGE_TOKEN_EXPIRED, a second time throws it, and INVALID_PAGE_TOKEN at once', async (t) => {
  for (const expire of EXPIRIES) {
    const outcome = await withServer(t, expire, async (address) => {
      const client = new AgentClient(address);
      try {
        const all = await client.listAll({ pageSize: 1 });
        return `${all.processes.map((p) => p.handle).join(' ')} ${all.sequence}`;
      } catch (e) {
        const { code, reason } = await refusal(Promise.reject(e));
        return `error ${status[code]} ${reason}`;
      } finally {
        client.close();
      }
    });
    t.deepEqual(outcome, EXPECTED[expire], expire);
  }
});

test.serial('Go ListAll: lists again once on PAGE_TOKEN_EXPIRED, a second time returns it, and INVALID_PAGE_TOKEN at once', async (t) => {
  await run('make', ['-s', '--no-print-directory', 'go-client'], { cwd: ROOT });
  const env = { ...process.env, GO111MODULE: 'off', GOFLAGS: '', GOPROXY: 'off', GOPATH: `${ROOT}dist/gopath:/usr/share/gocode`, GOCACHE: `${ROOT}dist/gocache` };
  const bin = join(ROOT, 'dist/bin/go-list-all');
  await run('go', ['build', '-o', bin, './test/fixtures/go-list-all/main.go'], { cwd: ROOT, env });
  for (const expire of EXPIRIES) {
    const outcome = await withServer(t, expire, async (address) => {
      const { stdout } = await run(bin, [address, '1', 'set=any']);
      const [counts, handles] = stdout.trim().split('\n');
      // On success: "count distinct sequence ...", then the handles.
      return counts!.startsWith('error') ? counts! : `${handles} ${counts!.split(' ')[2]}`;
    });
    t.deepEqual(outcome, EXPECTED[expire], expire);
  }
});

test.serial('Python list_all (sync and asyncio): lists again once on PAGE_TOKEN_EXPIRED, a second time raises it, and INVALID_PAGE_TOKEN at once', async (t) => {
  const script = [
    'import asyncio, sys; sys.path.insert(0, sys.argv[2])',
    'from pidfd_agent import Agent, AgentError, pb',
    'from pidfd_agent import aio',
    'def show(r): return " ".join(p.handle for p in r.processes) + " " + str(r.sequence)',
    'def failed(e): return f"error {e.code.name} {e.reason}"',
    'if sys.argv[3] == "sync":',
    '    with Agent(sys.argv[1]) as agent:',
    '        try: print(show(agent.list_all(pb.ListRequest(page_size=1))))',
    '        except AgentError as e: print(failed(e))',
    'else:',
    '    async def main():',
    '        async with aio.Agent(sys.argv[1]) as agent:',
    '            try: print(show(await agent.list_all(pb.ListRequest(page_size=1))))',
    '            except AgentError as e: print(failed(e))',
    '    asyncio.run(main())',
  ].join('\n');
  for (const mode of ['sync', 'asyncio']) {
    for (const expire of EXPIRIES) {
      const outcome = await withServer(t, expire, async (address) => (await run('/usr/bin/python3', ['-B', '-c', script, address, join(ROOT, 'clients/python'), mode])).stdout.trim());
      t.deepEqual(outcome, EXPECTED[expire], `${mode} ${expire}`);
    }
  }
});

test('a page-token.key that is a directory, a FIFO or a link to /dev/zero costs only the expired reason: the successor takes over and serves', async (t) => {
  const n = await node(t);
  const key = join(n.stateDir, PAGE_TOKEN_KEY_FILE);
  const makers: [string, () => void][] = [
    ['directory', () => mkdirSync(key)],
    ['FIFO', () => execFileSync('mkfifo', [key])],
    ['link to /dev/zero', () => symlinkSync('/dev/zero', key)],
  ];
  for (const [kind, make] of makers) {
    rmSync(key, { recursive: true, force: true });
    make();
    // Review rlist M1: the key was read after the handover was taken, and threw (EISDIR), hung
    // (a FIFO) or read without end (/dev/zero): the old agent had handed over, nothing served.
    const said = reaper.stderr.split('"event":"page_token_key_unusable"').length;
    n.agent = (await RestartableAgent.takeOver(reaper, n.dir, n.stateDir, n.agent)).agent;
    const listed = await n.agent.client.list({ labels: { set: 'expiry' } });
    t.is(listed.processes.length, PROCESSES, `${kind}: the successor serves what it took over`);
    t.is(reaper.stderr.split('"event":"page_token_key_unusable"').length, said + 1, `${kind}: said once`);
  }
});
