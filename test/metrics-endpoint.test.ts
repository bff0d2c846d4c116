// /metrics bounds the collections under way, not only the peers waiting for them: a peer that asks
// and hangs up at once keeps its collection's slot until the collection ends.
import { get } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import test from 'ava';
import { METRICS_CONCURRENT_SCRAPES, serveMetrics } from '../src/telemetry/metrics-endpoint.js';
import { eventually } from './helpers/harness.js';

const fetchStatus = (port: number): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });

test('peers that ask and hang up start no more collections than the limit; scrapes answer once they end', async (t) => {
  const pending: ((text: string) => void)[] = [];
  const server = await serveMetrics(() => new Promise<string>((resolve) => pending.push(resolve)), '127.0.0.1', 0);
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  let requests = 0;
  server.on('request', () => requests++);

  const peers = 12;
  for (let i = 0; i < peers; i++) {
    const socket = net.connect(port, '127.0.0.1', () => socket.end('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n', () => socket.destroy()));
    socket.on('error', () => {});
  }
  await eventually('every request read', () => requests === peers);
  t.is(pending.length, METRICS_CONCURRENT_SCRAPES, 'collections under way');

  t.is((await fetchStatus(port)).status, 503, 'a scrape while the slots are held is refused');
  for (const resolve of pending.splice(0)) resolve('# gone\n');
  const scrape = fetchStatus(port);
  await eventually('the scrape collecting', () => pending.length === 1);
  pending[0]!('pidfd_agent_watchers 0\n');
  t.deepEqual(await scrape, { status: 200, body: 'pidfd_agent_watchers 0\n' });
});
