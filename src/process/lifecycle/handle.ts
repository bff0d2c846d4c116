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

/** The handle's characters, made into one flat string at the end (see newHandleId). */
const chars = new Uint8Array(Math.ceil((BYTES * 8) / 5));
const CODES = Uint8Array.from(ALPHABET, (c) => c.charCodeAt(0));

export function newHandleId(): HandleId {
  if (next === POOL_IDS) {
    randomFillSync(pool);
    next = 0;
  }
  let n = 0;
  let bits = 0;
  let value = 0;
  for (let i = next * BYTES; i < (next + 1) * BYTES; i++) {
    value = (value << 8) | pool[i]!;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      chars[n++] = CODES[(value >>> bits) & 31]!;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) chars[n++] = CODES[(value << (5 - bits)) & 31]!;
  next++;
  // One flat string: appended a character at a time it was a chain of 14 cons cells past the
  // first 13 characters, ~400 bytes more for every record the table keeps.
  return String.fromCharCode.apply(null, chars as unknown as number[]) as HandleId;
}
