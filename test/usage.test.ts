// Live usage: Get, List and Watch samples read /proc/PID while the pidfd proves the process is
// still ours; pidfdctl get --json and pidfdctl top show it (top under tmux, as on a terminal).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { AgentCallError, EventType, status, type Event } from '../clients/ts/src/index.js';
import { CLI_BIN, ROOT } from './helpers/agent-process.js';
import { runCliText } from './helpers/cli.js';
import { eventually, startHarness, tempDir, type Harness } from './helpers/harness.js';

const MIB = 1 << 20;
let h: Harness;
let hog: string;
test.before(async () => {
  hog = join(tempDir('pidfd-agent-usage-'), 'hog');
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', hog, join(ROOT, 'test/fixtures/hog.c')]);
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

/** VmRSS of a pid in bytes, as the test reads /proc itself. */
const vmRss = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))![1]) * 1024;

async function hog256() {
  const { process: p } = await h.client.spawn({ argv: [hog, '256', 'lock'], labels: { role: 'hog' } });
  await eventually('256 MiB to be touched', () => vmRss(p!.pid) >= 256 * MIB);
  return p!;
}

test.serial('Get returns usage within 10% of /proc for a process holding 256 MiB', async (t) => {
  const p = await hog256();
  const { process: got } = await h.client.get({ handle: p.handle });
  const proc = vmRss(p.pid);
  const u = got!.usage!;
  t.log(`usage.rssBytes ${u.rssBytes}, /proc VmRSS ${proc}`);
  t.true(Math.abs(u.rssBytes - proc) <= proc * 0.1, `${u.rssBytes} vs ${proc}`);
  t.true(u.rssBytes >= 256 * MIB);
  t.is(u.threads, 1);
  t.is(u.openFds, readdirSync(`/proc/${p.pid}/fd`).length);
  t.true(u.systemCpu!.seconds * 1e9 + u.systemCpu!.nanos + u.userCpu!.seconds * 1e9 + u.userCpu!.nanos > 0, 'touching 256 MiB took CPU time');
  t.truthy(u.sampledAt);
  await h.client.stop({ handle: p.handle, signal: 'KILL' });
  const { process: after } = await h.client.get({ handle: p.handle });
  t.is(after!.usage, undefined, 'an exited process has no usage');
});

test.serial('List returns usage for running processes only', async (t) => {
  const p = await hog256();
  const { process: done } = await h.client.spawn({ argv: ['true'], labels: { role: 'hog' } });
  await h.client.wait({ handle: done!.handle });
  const { processes } = await h.client.list({ labels: { role: 'hog' } });
  const running = processes.find((x) => x.handle === p.handle)!;
  t.true(running.usage!.rssBytes >= 256 * MIB);
  t.is(processes.find((x) => x.handle === done!.handle)!.usage, undefined);
  await h.client.stop({ handle: p.handle, signal: 'KILL' });
});

test.serial('Watch with usage_interval sends samples (sequence 0) for the chosen handles only', async (t) => {
  const p = await hog256();
  const { process: other } = await h.client.spawn({ argv: ['sleep', '30'] });
  const samples: Event[] = [];
  const abort = new AbortController();
  try {
    for await (const e of h.client.watch({ handles: [p.handle], usageInterval: { seconds: 1, nanos: 0 } }, { signal: abort.signal })) {
      samples.push(e);
      if (samples.length === 2) break;
    }
  } finally {
    abort.abort();
  }
  t.is(samples.length, 2);
  for (const e of samples) {
    t.is(e.type, EventType.EVENT_TYPE_USAGE);
    t.is(e.sequence, 0);
    t.is(e.process!.handle, p.handle);
    t.true(e.process!.usage!.rssBytes >= 256 * MIB);
  }
  const e = await t.throwsAsync(
    (async () => {
      for await (const _ of h.client.watch({ usageInterval: { seconds: 0, nanos: 500e6 } })) break;
    })(),
    { instanceOf: AgentCallError },
  );
  t.is(e.code, status.INVALID_ARGUMENT);
  await h.client.stop({ handle: p.handle, signal: 'KILL' });
  await h.client.stop({ handle: other!.handle, signal: 'KILL' });
});

test.serial('pidfdctl get --json shows usage.rssBytes; top prints one snapshot when not on a terminal', async (t) => {
  const p = await hog256();
  const r = await runCliText(h.address, ['get', p.handle, '--json']);
  t.is(r.code, 0, r.stderr);
  const rss = Number(JSON.parse(r.stdout).process.usage.rssBytes);
  t.true(rss >= 256 * MIB, r.stdout);
  const snap = await runCliText(h.address, ['top']);
  t.is(snap.code, 0, snap.stderr);
  t.regex(snap.stdout, /^pidfd-agent top {2}\d\d:\d\d:\d\d {2}running \d+/);
  t.regex(snap.stdout, new RegExp(`${p.handle} +${p.pid} +[\\d.]+ +2\\d\\dM +1 `));
  t.regex(snap.stdout, /recent exits:/);
  await h.client.stop({ handle: p.handle, signal: 'KILL' });
});

test.serial('pidfdctl top renders under tmux, redraws, lists exits and quits on q', async (t) => {
  const server = `pidfd-agent-test-${process.pid}`;
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', server, ...args], { encoding: 'utf8' });
  const p = await hog256();
  const { process: quick } = await h.client.spawn({ argv: ['sh', '-c', 'exit 7'] });
  await h.client.wait({ handle: quick!.handle });
  tmux('new-session', '-d', '-s', 'top', '-x', '160', '-y', '40', `${process.execPath} ${CLI_BIN} --addr ${h.address} top --interval 200ms; echo "top exited $?"; sleep 60`);
  t.teardown(() => {
    try {
      tmux('kill-server');
    } catch {
      // already gone
    }
  });
  const screen = () => tmux('capture-pane', '-p', '-t', 'top');
  const first = await eventually('top to draw the hog', () => (screen().includes(p.handle) ? screen() : false), 20_000);
  t.regex(first, /^pidfd-agent top {2}(\d\d:\d\d:\d\d)/);
  t.regex(first, new RegExp(`${quick!.handle} +pid ${quick!.pid} +exited with code 7`), 'the exit ticker');
  const clock = /top {2}(\d\d:\d\d:\d\d)/.exec(first)![1];
  await eventually('a redraw in place', () => {
    const s = screen();
    const now = /top {2}(\d\d:\d\d:\d\d)/.exec(s)?.[1];
    return now !== undefined && now !== clock && s.split('\n').filter((l) => l.startsWith('pidfd-agent top')).length === 1;
  });
  tmux('send-keys', '-t', 'top', 'q');
  await eventually('top to quit on q', () => screen().includes('top exited 0'));
  t.pass();
  await h.client.stop({ handle: p.handle, signal: 'KILL' });
});
