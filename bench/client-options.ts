// What the benches' clients send: no request id and no retries, as every figure before session 19
// was measured. A request id adds a durable record of the intent to each spawn;
// bench/request-id.ts measures what that costs.
import type { AgentClientOptions } from '../clients/ts/src/index.js';

export const BENCH_CLIENT: AgentClientOptions = { autoRequestId: false, retry: false };
