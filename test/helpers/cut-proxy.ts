// A unix-socket proxy between a client and an agent that can lose a reply on purpose: hold()
// stops passing what the agent sends on the connections open now (the client's requests still
// go through), and drop() then closes them. So a test can let a Spawn run on the agent and cut
// the connection before its reply arrives: the worst moment for a retry.
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

interface Pair {
  readonly client: Socket;
  readonly agent: Socket;
  held: boolean;
}

export class CutProxy {
  private readonly pairs = new Set<Pair>();

  private constructor(
    readonly path: string,
    private readonly server: Server,
  ) {}

  /** Listens on `path`, connecting each client to the agent's socket at `upstream`. */
  static async start(path: string, upstream: string): Promise<CutProxy> {
    const server = createServer();
    const proxy = new CutProxy(path, server);
    server.on('connection', (client) => proxy.pass(client, createConnection(upstream)));
    server.listen(path);
    await once(server, 'listening');
    return proxy;
  }

  get address(): string {
    return `unix://${this.path}`;
  }

  /** What the agent sends on the connections open now is swallowed, and their end is not passed on. */
  hold(): void {
    for (const p of this.pairs) p.held = true;
  }

  /** Closes every connection open now; later ones pass through. */
  drop(): void {
    for (const p of this.pairs) this.end(p);
  }

  async close(): Promise<void> {
    this.drop();
    this.server.close();
    await once(this.server, 'close');
  }

  private pass(client: Socket, agent: Socket): void {
    const pair: Pair = { client, agent, held: false };
    this.pairs.add(pair);
    client.on('data', (d: Buffer) => agent.write(d));
    agent.on('data', (d: Buffer) => {
      if (!pair.held) client.write(d);
    });
    // An agent killed while held must not look like a dropped connection before drop() says so.
    agent.on('close', () => {
      if (!pair.held) this.end(pair);
    });
    client.on('close', () => this.end(pair));
    client.on('error', () => this.end(pair));
    agent.on('error', () => {
      if (!pair.held) this.end(pair);
    });
  }

  private end(pair: Pair): void {
    this.pairs.delete(pair);
    pair.client.destroy();
    pair.agent.destroy();
  }
}
