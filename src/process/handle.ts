import { randomFillSync } from 'node:crypto';

/** An opaque handle: 128 random bits, meaningless outside this agent, never reused. */
export type HandleId = string & { readonly __brand: 'handle' };

const POOL_IDS = 256;
const pool = Buffer.alloc(16 * POOL_IDS);
let next = POOL_IDS;

export function newHandleId(): HandleId {
  if (next === POOL_IDS) {
    randomFillSync(pool);
    next = 0;
  }
  const id = pool.toString('base64url', next * 16, next * 16 + 16);
  next++;
  return id as HandleId;
}
