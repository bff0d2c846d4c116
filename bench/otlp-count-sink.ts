// What the telemetry benches share: an OTLP/HTTP receiver in a process of its own (as a collector
// would be) that takes every export and counts it, decoding nothing, and reports its counts on
// GET /stats (in the driver's process it would take the load generator's time whenever a batch of
// spans arrived, counted against the agent); a free loopback port; the environment without OTEL_*.
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';

const SINK = `
import { createServer } from 'node:http';
const received = {};
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') return res.end(JSON.stringify(received));
  let bytes = 0;
  req.on('data', (c) => (bytes += c.length));
  req.on('end', () => {
    const r = received[req.url] ?? { requests: 0, bytes: 0 };
    received[req.url] = { requests: r.requests + 1, bytes: r.bytes + bytes };
    res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

export type Received = Record<string, { requests: number; bytes: number }>;

export interface CountingSink {
  readonly endpoint: string;
  /** The sink's process, for its CPU time (a collector's share of the machine). */
  readonly pid: number;
  received(): Promise<Received>;
  close(): void;
}

export async function startCountingSink(): Promise<CountingSink> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SINK], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', () => reject(new Error('the OTLP sink exited')));
  });
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    pid: child.pid!,
    received: async () => (await (await fetch(`${endpoint}/stats`)).json()) as Received,
    close: () => child.kill(),
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

export const withoutOtel = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
