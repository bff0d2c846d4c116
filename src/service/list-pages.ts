// List a page at a time (AIP-158). A response must fit in gRPC's 4 MiB, and a spawn's argv and env
// alone may take 1 MiB (validate.ts LIMITS.totalBytes): five such processes, or 2,000 with 2 KiB
// of argv, did not fit, and the call failed with a RESOURCE_EXHAUSTED that said nothing of why.
//
// A page resumes after the table position (record.ts `position`) of the last process it showed:
// positions rise in the order the table iterates, so a process that stays from the first page to
// the last is on exactly one, whatever came or went between them; the table finds a page's first
// record by its position (table.ts `valuesAfter`), so a listing reads the table once, not once a
// page. The listing ends at the table's end as of its first page: what starts later is for the
// Watch from that page's sequence, and a caller paging through a table that grows as fast as it
// reads still comes to an end. The token carries both positions and a digest of the filters,
// sealed (AES-256-GCM) with a key of this agent's incarnation (positions are renumbered by a
// restart or a handover): a caller cannot read from its tokens how many processes others started
// between two of them, nor forge one. The caller's visibility is decided again on every page, too.
//
// A token of an earlier incarnation is PAGE_TOKEN_EXPIRED (list again from the first page), one
// the agent never issued INVALID_PAGE_TOKEN (the caller's bug). Telling them apart needs a key
// the incarnations share: the state dir's (store/page-token-key.ts), which signs the whole token
// (HMAC) but seals nothing, so even it cannot make a token that resumes anywhere: the positions
// stay under the key that dies with its incarnation.
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { ListResponse, Process } from '../api.js';
import { AgentError, invalidArgument } from '../process/errors.js';
import type { ProcessRecord } from '../process/lifecycle/record.js';
import { encodedReply } from './reply-encoding.js';
import { MAX_GRPC_MESSAGE_BYTES } from './server.js';

export const DEFAULT_PAGE_SIZE = 500;
export const MAX_PAGE_SIZE = 1000;
/** A page ends before it passes this many bytes of processes (or holds one, however large). */
export const PAGE_BYTES = 2 * 1024 * 1024;

const VERSION = 3;
const INCARNATION_BYTES = 6;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** The shared key's HMAC-SHA-256 of all before it, cut to 16 bytes. */
const SIGNATURE_BYTES = 16;
const FILTER_BYTES = 4;
const POSITION_BYTES = 6;
/** Sealed: the filters' digest, the position after which the page starts, the listing's end. */
const SEALED_BYTES = FILTER_BYTES + 2 * POSITION_BYTES;
const HEAD_BYTES = 1 + INCARNATION_BYTES + NONCE_BYTES;
const SIGNED_BYTES = HEAD_BYTES + SEALED_BYTES + TAG_BYTES;
const TOKEN_BYTES = SIGNED_BYTES + SIGNATURE_BYTES;

export interface ListFilters {
  readonly labels: Readonly<Record<string, string>>;
  readonly state: string | undefined;
}

/** Unpaged (neither field set: every process, or LIST_TOO_LARGE), or one page after a position. */
export type Paging = { readonly pageSize: number; readonly after: number; readonly end: number | undefined } | undefined;

const varintBytes = (n: number): number => {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    bytes++;
  }
  return bytes;
};

/** A length-delimited field of `n` bytes with a one-byte tag, as in ListResponse. */
const fieldBytes = (n: number): number => 1 + varintBytes(n) + n;

const listTooLarge = () =>
  new AgentError('ResourceExhausted', 'the processes do not fit in one 4 MiB response: list in pages, with page_size and page_token (see ListRequest)', {
    reason: 'LIST_TOO_LARGE',
  });

/** One writer measures every process: finish() leaves it empty for the next. */
let measuring = new BinaryWriter();

function encodedProcess(p: Process): Uint8Array {
  try {
    return Process.encode(p, measuring).finish();
  } catch (e) {
    // One that throws (grpc-js would answer INTERNAL) leaves its forks and position behind.
    measuring = new BinaryWriter();
    throw e;
  }
}

const badToken = (why: string) => invalidArgument('page_token', why, 'INVALID_PAGE_TOKEN');

/**
 * ABORTED, as google.rpc.Code has it for a call to be retried "at a higher level": nothing is wrong
 * with the request but the state it continued (FAILED_PRECONDITION would say to wait for a fix,
 * INVALID_ARGUMENT that the request is wrong whatever the state); the listing starts over.
 */
const expiredToken = () =>
  new AgentError('Aborted', 'page_token: issued before the agent restarted or handed over, its listing is gone: list again from the first page', {
    reason: 'PAGE_TOKEN_EXPIRED',
    field: 'page_token',
  });

export class ListPages {
  /** Positions are this agent's: a token from before a restart or handover is refused, not misread. */
  private readonly incarnation = randomBytes(INCARNATION_BYTES);
  private readonly key = randomBytes(32);

  /**
   * `sharedKey`: the key every incarnation on this state dir signs its tokens with, which tells an
   * earlier one's token from one never issued; without a state dir (--ephemeral) this run's own,
   * and a token from before a restart is INVALID_PAGE_TOKEN.
   */
  constructor(private readonly sharedKey: Buffer = randomBytes(32)) {}

  /** The request's paging, validated; throws INVALID_ARGUMENT, or ABORTED for an earlier incarnation's token. */
  paging(pageSize: number, pageToken: string, filters: ListFilters): Paging {
    if (pageSize < 0) throw invalidArgument('page_size', 'must not be negative');
    if (pageSize === 0 && pageToken === '') return undefined;
    const size = pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(pageSize, MAX_PAGE_SIZE);
    return { pageSize: size, ...(pageToken === '' ? { after: 0, end: undefined } : this.positionsOf(pageToken, filters)) };
  }

  /**
   * The processes of `recordsAfter` the page's position that `matches` lets through: all of
   * them unpaged (or LIST_TOO_LARGE), else up to the page's size and bytes. Each is measured by
   * encoding it, and the reply is sent as those bytes (reply-encoding.ts), not encoded again.
   */
  page(recordsAfter: (position: number) => Iterable<ProcessRecord>, positionsEnd: number, matches: (r: ProcessRecord) => boolean, toProcess: (r: ProcessRecord) => Process, sequence: number, paging: Paging, filters: ListFilters): ListResponse {
    const after = paging?.after ?? 0;
    const end = paging?.end ?? positionsEnd;
    // Unpaged, the whole response within the agent's limit, which is also every client's default.
    const limit = paging === undefined ? MAX_GRPC_MESSAGE_BYTES - (sequence === 0 ? 0 : 1 + varintBytes(sequence)) : PAGE_BYTES;
    const processes: Process[] = [];
    const encoded: Uint8Array[] = [];
    let bytes = 0;
    let last = 0;
    let more = false;
    for (const record of recordsAfter(after)) {
      if (record.position >= end) break;
      if (!matches(record)) continue;
      if (paging !== undefined && processes.length === paging.pageSize) {
        more = true;
        break;
      }
      const p = toProcess(record);
      const one = encodedProcess(p);
      const size = fieldBytes(one.length);
      if (bytes + size > limit && (paging === undefined || processes.length > 0)) {
        if (paging === undefined) throw listTooLarge();
        more = true;
        break;
      }
      processes.push(p);
      encoded.push(one);
      bytes += size;
      last = record.position;
    }
    const reply: ListResponse = { processes, sequence, nextPageToken: more ? this.token(last, end, filters) : '' };
    // The processes as field 1 each, then the other fields as the generated encoder writes them.
    const writer = new BinaryWriter();
    for (const one of encoded) writer.uint32(10).bytes(one);
    return encodedReply(reply, ListResponse.encode({ ...reply, processes: [] }, writer).finish());
  }

  private token(position: number, end: number, filters: ListFilters): string {
    const sealed = Buffer.alloc(SEALED_BYTES);
    filterDigest(filters).copy(sealed, 0);
    sealed.writeUIntBE(position, FILTER_BYTES, POSITION_BYTES);
    sealed.writeUIntBE(end, FILTER_BYTES + POSITION_BYTES, POSITION_BYTES);
    const head = Buffer.alloc(HEAD_BYTES);
    head[0] = VERSION;
    this.incarnation.copy(head, 1);
    const nonce = randomBytes(NONCE_BYTES);
    nonce.copy(head, 1 + INCARNATION_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(head);
    const signed = Buffer.concat([head, cipher.update(sealed), cipher.final(), cipher.getAuthTag()]);
    return Buffer.concat([signed, this.signature(signed)]).toString('base64url');
  }

  private positionsOf(token: string, filters: ListFilters): { after: number; end: number } {
    const b = Buffer.from(token, 'base64url');
    // Buffer.from skips what is not base64url: only a token that encodes back to itself is one.
    if (b.length !== TOKEN_BYTES || b[0] !== VERSION || b.toString('base64url') !== token) throw badToken('not a page token of this agent');
    // Signed first: an incarnation altered, or made up, is a token never issued, not an old one.
    if (!timingSafeEqual(b.subarray(SIGNED_BYTES), this.signature(b.subarray(0, SIGNED_BYTES)))) throw badToken('not a page token of this agent');
    if (!b.subarray(1, 1 + INCARNATION_BYTES).equals(this.incarnation)) throw expiredToken();
    let sealed: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, b.subarray(1 + INCARNATION_BYTES, HEAD_BYTES));
      decipher.setAAD(b.subarray(0, HEAD_BYTES));
      decipher.setAuthTag(b.subarray(HEAD_BYTES + SEALED_BYTES, SIGNED_BYTES));
      sealed = Buffer.concat([decipher.update(b.subarray(HEAD_BYTES, HEAD_BYTES + SEALED_BYTES)), decipher.final()]);
    } catch {
      throw badToken('not a page token of this agent');
    }
    if (!sealed.subarray(0, FILTER_BYTES).equals(filterDigest(filters))) {
      throw badToken('issued for other labels or state: page with the filters of the first page');
    }
    return { after: sealed.readUIntBE(FILTER_BYTES, POSITION_BYTES), end: sealed.readUIntBE(FILTER_BYTES + POSITION_BYTES, POSITION_BYTES) };
  }

  private signature(signed: Buffer): Buffer {
    return createHmac('sha256', this.sharedKey).update(signed).digest().subarray(0, SIGNATURE_BYTES);
  }
}

/** The filters, order aside (a map's order is the client's), as a few bytes of SHA-256. */
function filterDigest({ labels, state }: ListFilters): Buffer {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256')
    .update(JSON.stringify([state ?? '', entries]))
    .digest()
    .subarray(0, FILTER_BYTES);
}
