import { credentials, makeGenericClientConstructor, type Client } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

/** grpc.health.v1.Health/Check of one service name: its status, or the call's error code. */
export function healthCheck(address: string, service: string): Promise<string | number> {
  const Health = makeGenericClientConstructor(healthService, 'Health');
  const client = new Health(address, credentials.createInsecure()) as unknown as Client & { check: (r: object, o: object, cb: (e: { code: number } | null, r?: { status: string }) => void) => void };
  return new Promise((resolve) =>
    client.check({ service }, { deadline: Date.now() + 3000 }, (e, r) => {
      client.close();
      resolve(e ? e.code : r!.status);
    }),
  );
}
