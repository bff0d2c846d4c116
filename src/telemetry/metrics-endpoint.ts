// /metrics on an HTTP server of our own (its listen errors fail the start, and port 0 works). It is
// served beside the agent's own sockets and pidfds, on an address a cluster can reach, so what a
// peer can make it hold is bounded: connections, slow requests, and collections under way.
import { createServer, type Server } from 'node:http';

/**
 * What /metrics lets a peer hold: connections (a scraper needs one), and the time a request may take
 * to arrive.
 */
export const METRICS_MAX_CONNECTIONS = 32;
const METRICS_REQUEST_TIMEOUT_MS = 10_000;
/** Collections under way at once; more scrapes are answered 503 (a Prometheus scrapes one at a time). */
export const METRICS_CONCURRENT_SCRAPES = 4;

/** The metrics as text, collected now. */
export type Collect = () => Promise<string>;

/**
 * One request per connection: node:http would otherwise take every request a peer pipelines,
 * collecting for each and holding each answer until the peer reads (640,000 pipelined GETs from 32
 * peers that never read took the agent from 94 to 873 MiB); past the first, node answers 503
 * without us. A scrape holds its slot until its collection ends, not until its peer goes: a peer
 * that asks and hangs up at once would otherwise start collections without bound.
 */
export async function serveMetrics(collect: Collect, host: string, port: number): Promise<Server> {
  let collecting = 0;
  // Node checks those timeouts every connectionsCheckingInterval (30 s by default): every second here.
  const server = createServer({ headersTimeout: METRICS_REQUEST_TIMEOUT_MS, requestTimeout: METRICS_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1_000, maxHeaderSize: 8192 }, (req, res) => {
    if (req.method !== 'GET' || !(req.url === '/metrics' || req.url?.startsWith('/metrics?'))) return void res.writeHead(404).end();
    if (collecting >= METRICS_CONCURRENT_SCRAPES) return void res.writeHead(503, { 'Retry-After': '1' }).end();
    collecting++;
    collect()
      .then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain' }).end(text),
        (e: unknown) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`# failed to export metrics: ${e instanceof Error ? e.message : String(e)}`),
      )
      .finally(() => collecting--);
  });
  server.maxRequestsPerSocket = 1;
  server.maxConnections = METRICS_MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server.unref();
}
