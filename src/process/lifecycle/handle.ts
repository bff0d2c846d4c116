import { randomFillSync } from 'node:crypto';

/** An opaque handle: 128 random bits, meaningless outside this agent, never reused. */
export type HandleId = string & { readonly __brand: 'handle' };

// Lower-case base32 (RFC 4648 alphabet): 26 characters that survive shells, URLs, file names and
// argument parsers (a base64url handle may start with '-').
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const BYTES = 16;
const POOL_IDS = 256;
const pool = Buffer.alloc(BYTES * POOL_IDS);
let next = POOL_IDS;

export function newHandleId(): HandleId {
  if (next === POOL_IDS) {
    randomFillSync(pool);
    next = 0;
  }
  let id = '';
  let bits = 0;
  let value = 0;
  for (let i = next * BYTES; i < (next + 1) * BYTES; i++) {
    value = (value << 8) | pool[i]!;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      id += ALPHABET[(value >>> bits) & 31];
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) id += ALPHABET[(value << (5 - bits)) & 31];
  next++;
  return id as HandleId;
}
