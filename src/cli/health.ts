// `pidfdctl health`: grpc.health.v1.Health/Check, for probes (a DaemonSet's liveness probe runs it
// on the node's socket). Exit status 0 while the agent answers SERVING, 1 otherwise.
import { makeGenericClientConstructor, type ChannelCredentials, type ClientOptions } from '@grpc/grpc-js';
import { service } from 'grpc-health-check';

const Health = makeGenericClientConstructor(service, 'Health');

export function checkHealth(address: string, creds: ChannelCredentials, options: Partial<ClientOptions>, timeoutMs: number): Promise<string> {
  const client = new Health(address, creds, options);
  return new Promise<string>((resolve, reject) => {
    (client as unknown as { check: (req: object, opts: object, cb: (e: Error | null, res?: { status: string | number }) => void) => void }).check({ service: '' }, { deadline: Date.now() + timeoutMs }, (e, res) => {
      client.close();
      if (e) reject(e);
      else resolve(String(res!.status));
    });
  });
}
