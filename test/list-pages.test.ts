// List in pages: a list that outgrows gRPC's 4 MiB (five processes with 900 KB of argv, or
// thousands with 2 KB: the same bytes) is refused unpaged with a reason that says to page, and pages through
// exactly once each, whatever is released between pages, reading the table once for a whole
// listing; a token shows a tenant nothing of another's, one the agent did not issue is refused,
// and a caller the policy refuses learns nothing of either. Real agent, real processes.
// (Tokens of an earlier agent: list-page-expiry.test.ts.)
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventType, ListResponse, State, status, type Event, type ListRequest, type Process } from '../clients/ts/src/index.js';
import { collect, pool, range } from './helpers/events.js';
import { refusal, startHarness, tempDir, type Harness } from './helpers/harness.js';
import { runCliText } from './helpers/cli.js';
import { asUser, shareSocket } from './helpers/tenant.js';

const A = 1001;
const B = 1002;
/** No rule names this uid. */
const STRANGER = 1003;
const policyFile = join(tempDir('pidfd-agent-list-policy-'), 'policy.yaml');
const tenant = (uid: number) => `
  - name: tenant-${uid}
    identities: ["unix:uid=${uid}"]
    role: tenant
    spawn:
      run_as: ["${uid}"]
      executables: ["/usr/bin/*", "/bin/*"]`;
writeFileSync(policyFile, `rules:\n  - name: root\n    identities: ["unix:uid=0"]\n    role: admin${tenant(A)}${tenant(B)}\n`);

const MANY = 1100;
let h: Harness;
test.before(async () => {
  h = await startHarness({ policyFile });
  shareSocket(h);
  // 1,100 short processes, kept as exited records: more than one page holds. (Too many bytes for
  // one response is the five big ones' test: so many processes would load the suite's machine.)
  const arg = 'x'.repeat(100);
  await pool(range(MANY / 220), 2, async () => {
    const { results } = await h.client.spawnBatch({ requests: Array.from({ length: 220 }, () => ({ argv: ['/bin/true', arg], labels: { set: 'many' } })) });
    if (!results.every((r) => r.spawned !== undefined)) throw new Error(`a spawn failed: ${JSON.stringify(results.find((r) => r.error)?.error)}`);
  });
});
test.after.always(async () => {
  await h?.close();
});

type Page = ListResponse & { readonly bytes: number };

/** Every page of a listing, with each page's encoded size. */
async function pages(req: Partial<ListRequest>): Promise<Page[]> {
  const out: Page[] = [];
  let pageToken = '';
  do {
    const page = await h.client.list({ ...req, pageToken });
    out.push({ ...page, bytes: ListResponse.encode(page).finish().length });
    pageToken = page.nextPageToken;
  } while (pageToken !== '' && out.length < 100);
  return out;
}

const handlesOf = (ps: readonly { processes: readonly Process[] }[]) => ps.flatMap((p) => p.processes.map((x) => x.handle));

test.serial('five processes with 900 KB of argv: unpaged List is LIST_TOO_LARGE, paged they come two to a page', async (t) => {
  // The kernel takes 128 KiB per argument at most, the agent 1 MiB of argv and env in all.
  const big = Array.from({ length: 8 }, (_, i) => String(i).repeat(112_500));
  const spawned = [];
  for (let i = 0; i < 5; i++) spawned.push((await h.client.spawn({ argv: ['/bin/sh', '-c', 'exec sleep 30', 'sh', ...big], labels: { set: 'big', n: String(i) } })).process!.handle);
  try {
    const e = await refusal(h.client.list({ labels: { set: 'big' } }));
    t.is(e.code, status.RESOURCE_EXHAUSTED);
    t.is(e.reason, 'LIST_TOO_LARGE');
    t.regex(e.details, /page_size and page_token/);
    const listed = await pages({ labels: { set: 'big' }, pageSize: 100 });
    t.deepEqual(
      listed.map((p) => p.processes.length),
      [2, 2, 1],
      'a page ends before it passes 2 MiB',
    );
    t.true(listed.every((p) => p.bytes <= 2 * 1024 * 1024));
    t.deepEqual(handlesOf(listed).sort(), [...spawned].sort());
    t.true(listed.every((p) => p.processes.every((x) => x.argv.length === 12 && x.argv[11] === big[7])));
    // One alone fits unpaged (a spawn's argv and env are at most 1 MiB), answered as before: no token.
    const one = await h.client.list({ labels: { set: 'big', n: '0' } });
    t.deepEqual(
      one.processes.map((p) => p.handle),
      [spawned[0]],
    );
    t.is(one.nextPageToken, '');
  } finally {
    await Promise.all(spawned.map((handle) => h.client.stop({ handle, signal: 'KILL' })));
  }
});

test.serial('1,100 processes: unpaged List answers them all as before; paged, pages of at most 1000 list each once', async (t) => {
  const unpaged = await h.client.list({ labels: { set: 'many' } });
  t.is(unpaged.processes.length, MANY);
  t.is(unpaged.nextPageToken, '', 'a client that does not page is not told of pages');
  const listed = await pages({ labels: { set: 'many' }, pageSize: 5000 });
  t.deepEqual(
    listed.map((p) => p.processes.length),
    [1000, 100],
    'a larger page_size is taken as 1000',
  );
  const handles = handlesOf(listed);
  t.is(handles.length, MANY);
  t.is(new Set(handles).size, MANY, 'none listed twice');
  t.is(listed.at(-1)!.nextPageToken, '');
  // page_size 0 with a token is the default size (500).
  const first = await h.client.list({ labels: { set: 'many' }, pageSize: 1 });
  const next = await h.client.list({ labels: { set: 'many' }, pageToken: first.nextPageToken });
  t.is(next.processes.length, 500);
  t.deepEqual(
    next.processes.map((p) => p.handle),
    listed[0]!.processes.slice(1, 501).map((p) => p.handle),
  );
});

test.serial('processes released between pages are not listed, and no other is skipped or repeated; one started after the first page is left to the Watch from it, which replays the changes', async (t) => {
  const labels = { set: 'released-between' };
  const spawned = (await h.client.spawnBatch({ requests: Array.from({ length: 30 }, () => ({ argv: ['/bin/true'], labels })) })).results.map((r) => r.spawned!.process!.handle);
  const first = await h.client.list({ labels, pageSize: 10 });
  t.is(first.processes.length, 10);
  const seen = first.processes.map((p) => p.handle);
  // The last one listed (where the token resumes), and three not yet listed.
  const later = spawned.filter((x) => !seen.includes(x));
  const released = [seen.at(-1)!, later[0]!, later[10]!, later.at(-1)!];
  for (const handle of released) await h.client.release({ handle });
  const added = (await h.client.spawn({ argv: ['/bin/true'], labels })).process!.handle;
  const rest = [];
  for (let pageToken = first.nextPageToken; pageToken !== ''; ) {
    const page = await h.client.list({ labels, pageSize: 10, pageToken });
    rest.push(...page.processes.map((p) => p.handle));
    pageToken = page.nextPageToken;
  }
  const all = [...seen, ...rest];
  t.is(new Set(all).size, all.length, 'none listed twice');
  t.deepEqual(all.sort(), spawned.filter((x) => !released.slice(1).includes(x)).sort());
  t.false(all.includes(added), 'one started after the first page is not listed: the listing ends where the table did then (the Watch tells it)');
  const addedSeen = (ev: Event[]) => ev.some((e) => e.type === EventType.EVENT_TYPE_SPAWNED && e.process!.handle === added);
  const events = await collect(h.client, { labels, afterSequence: first.sequence }, (ev) => addedSeen(ev) && ev.filter((e) => e.type === EventType.EVENT_TYPE_RELEASED).length >= 4);
  t.deepEqual(
    events
      .filter((e) => e.type === EventType.EVENT_TYPE_RELEASED)
      .map((e) => e.process!.handle)
      .sort(),
    [...released].sort(),
  );
});

test.serial('paging ends where the table ended at the first page, however fast processes start meanwhile', async (t) => {
  const labels = { set: 'growing' };
  await h.client.spawnBatch({ requests: Array.from({ length: 5 }, () => ({ argv: ['/bin/true'], labels })) });
  let page = await h.client.list({ labels, pageSize: 1 });
  const listed = [...page.processes];
  let pages = 1;
  // Each page read starts two more: without the end, this listing would never finish.
  while (page.nextPageToken !== '' && pages < 50) {
    await h.client.spawnBatch({ requests: Array.from({ length: 2 }, () => ({ argv: ['/bin/true'], labels })) });
    page = await h.client.list({ labels, pageSize: 1, pageToken: page.nextPageToken });
    listed.push(...page.processes);
    pages++;
  }
  t.is(listed.length, 5, 'the five there at the first page');
  t.is(pages, 5);
});

test.serial("a tenant paging with another's token sees only its own processes", async (t) => {
  const sleeper = (uid: number) => ({ op: 'spawn', req: { argv: ['/bin/sleep', '30'], user: String(uid), labels: { set: 'tenants' } } });
  // B's come after A's first process (where A's token resumes) and before A's first page (where
  // the listing ends).
  const [a1] = await asUser(A, h.address, [sleeper(A)]);
  const [b1, b2] = await asUser(B, h.address, [sleeper(B), sleeper(B)]);
  const [a2, a3, pageA] = await asUser(A, h.address, [sleeper(A), sleeper(A), { op: 'list', req: { pageSize: 1 } }]);
  const [pageB] = await asUser(B, h.address, [{ op: 'list', req: { pageSize: 1000, pageToken: pageA!.ok.nextPageToken } }]);
  const handle = (o: typeof a1) => o!.ok.process.handle as string;
  try {
    t.deepEqual(
      pageA!.ok.processes.map((p: Process) => p.handle),
      [handle(a1)],
    );
    t.not(pageA!.ok.nextPageToken, '');
    const seenByB = (pageB!.ok.processes as Process[]).map((p) => p.handle);
    t.deepEqual(seenByB.sort(), [handle(b1), handle(b2)].sort(), "B's own, none of A's");
  } finally {
    await Promise.all([a1, a2, a3, b1, b2].map((o) => h.client.stop({ handle: handle(o), signal: 'KILL' })));
  }
});

test.serial('a page token the agent did not issue or that was altered, or issued for other filters, is INVALID_ARGUMENT / INVALID_PAGE_TOKEN', async (t) => {
  const { nextPageToken } = await h.client.list({ labels: { set: 'many' }, pageSize: 1 });
  const refused = async (req: Partial<ListRequest>, field: string, reason: string, text: RegExp) => {
    const e = await refusal(h.client.list(req));
    t.is(e.code, status.INVALID_ARGUMENT);
    t.is(e.reason, reason);
    t.is(e.info['field'], field);
    t.regex(e.details, text);
  };
  await refused({ pageToken: 'garbage' }, 'page_token', 'INVALID_PAGE_TOKEN', /not a page token/);
  await refused({ pageToken: `${nextPageToken}=` }, 'page_token', 'INVALID_PAGE_TOKEN', /not a page token/);
  // Its incarnation changed: signed, so not taken for an earlier agent's (PAGE_TOKEN_EXPIRED).
  const forged = Buffer.from(nextPageToken, 'base64url');
  forged[3] = forged[3]! ^ 1;
  await refused({ labels: { set: 'many' }, pageToken: forged.toString('base64url') }, 'page_token', 'INVALID_PAGE_TOKEN', /not a page token/);
  // Its position read or changed: sealed, so refused as not issued.
  const altered = Buffer.from(nextPageToken, 'base64url');
  altered[20] = altered[20]! ^ 1;
  await refused({ labels: { set: 'many' }, pageToken: altered.toString('base64url') }, 'page_token', 'INVALID_PAGE_TOKEN', /not a page token/);
  await refused({ labels: { set: 'other' }, pageToken: nextPageToken }, 'page_token', 'INVALID_PAGE_TOKEN', /other labels or state/);
  await refused({ labels: { set: 'many' }, pageToken: nextPageToken, state: State.STATE_EXITED }, 'page_token', 'INVALID_PAGE_TOKEN', /other labels or state/);
  await refused({ pageSize: -1 }, 'page_size', 'INVALID_ARGUMENT', /negative/);
  t.is((await h.client.list({ labels: { set: 'many' }, pageToken: nextPageToken, pageSize: 3 })).processes.length, 3);
});

test.serial('a caller the policy refuses is PERMISSION_DENIED whatever its page_size and page_token: it learns nothing of them', async (t) => {
  const { nextPageToken } = await h.client.list({ labels: { set: 'many' }, pageSize: 1 });
  const reqs = [{ pageSize: -1 }, { pageToken: 'garbage' }, { labels: { set: 'other' }, pageToken: nextPageToken }, { labels: { set: 'many' }, pageToken: nextPageToken }];
  const outcomes = await asUser(
    STRANGER,
    h.address,
    reqs.map((req) => ({ op: 'list', req })),
  );
  t.deepEqual(
    outcomes.map((o) => [o.error?.code, o.error?.reason]),
    reqs.map(() => [status.PERMISSION_DENIED, 'POLICY_DENIED']),
  );
});

test.serial('a whole listing reads each record of the table a few times, not once per page', async (t) => {
  // Each record's position, counted as it is read (the table reads it to find where a page starts).
  let reads = 0;
  const records = [...h.agent.manager.records()];
  for (const r of records) {
    let position = r.position;
    Object.defineProperty(r, 'position', {
      get: () => (reads++, position),
      set: (p: number) => (position = p),
      configurable: true,
      enumerable: true,
    });
  }
  try {
    const listed = await pages({ labels: { set: 'many' }, pageSize: 20 });
    t.is(new Set(handlesOf(listed)).size, MANY);
    t.is(listed.length, MANY / 20);
    // Walking the table from its start for each of the 55 pages read about 60,000.
    t.log(`${reads} reads of ${records.length} records' positions`);
    t.true(reads <= 4 * records.length);
  } finally {
    for (const r of records) Object.defineProperty(r, 'position', { value: r.position, writable: true, configurable: true, enumerable: true });
  }
});

test.serial('pidfdctl list and top page through every process', async (t) => {
  const list = await runCliText(h.address, ['list', '--label', 'set=many']);
  t.is(list.code, 0, list.stderr);
  const lines = list.stdout.trim().split('\n');
  t.is(lines.length, MANY);
  t.is(new Set(lines.map((l) => l.split(/\s+/)[0])).size, MANY);
  const all = await h.client.listAll({});
  const exited = all.processes.filter((p) => p.state === State.STATE_EXITED).length;
  const top = await runCliText(h.address, ['top']);
  t.is(top.code, 0, top.stderr);
  t.regex(top.stdout.split('\n')[0]!, new RegExp(`exited ${exited}\\b`));
  t.true(exited >= MANY);
});
