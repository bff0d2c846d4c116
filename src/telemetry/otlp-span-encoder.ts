// ExportTraceServiceRequest bytes for the SDK's own OTLP/HTTP exporter, written in one pass. The
// SDK's serializer walks every span twice through a writer interface (a size pass, then a write
// pass) and copies each id out of its hex string first; in the agent that is half of what a span
// costs from start to export (bench/FINDINGS.md "Session 14: telemetry cost"). The bytes are the
// SDK serializer's, field for field and in the same order (test/otlp-span-encoder.test.ts
// compares them), so a collector cannot tell the two apart.
import type { HrTime, Link, SpanContext } from '@opentelemetry/api';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';

type Resource = ReadableSpan['resource'];
type Scope = ReadableSpan['instrumentationScope'];
type Attributes = Readonly<Record<string, unknown>>;

const LENGTH_DELIMITED = 2;
const VARINT = 0;
const FIXED64 = 1;
const FIXED32 = 5;
const SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE = 0x100;
const SPAN_FLAGS_CONTEXT_IS_REMOTE = 0x200;
const MIN_INT64 = -(2 ** 63);
const MAX_INT64 = 2 ** 63;

const varintSize = (v: number): number => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);

/** The value of each hex digit, by its char code. */
const NIBBLE = new Uint8Array(128);
for (let i = 0; i < 10; i++) NIBBLE[48 + i] = i;
for (let i = 0; i < 6; i++) NIBBLE[97 + i] = NIBBLE[65 + i] = 10 + i;

/** A growing buffer with protobuf's wire primitives; lengths are reserved and written at close. */
class Out {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  varint(value: number): void {
    this.ensure(10);
    const buf = this.buf;
    if (value >= 0 && value <= 0xffffffff) {
      let v = value >>> 0;
      while (v > 0x7f) {
        buf[this.pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      buf[this.pos++] = v;
      return;
    }
    // 64-bit, negative as two's complement (ten bytes), as protobuf writes an int64
    let low: number;
    let high: number;
    if (value >= 0) {
      low = value >>> 0;
      high = (value / 0x100000000) >>> 0;
    } else {
      const abs = Math.abs(value);
      low = ~(abs >>> 0) >>> 0;
      high = ~((abs / 0x100000000) >>> 0) >>> 0;
      low = (low + 1) >>> 0;
      if (low === 0) high = (high + 1) >>> 0;
    }
    while (high > 0 || low > 0x7f) {
      buf[this.pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    buf[this.pos++] = low & 0x7f;
  }

  fixed32(value: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(value >>> 0, this.pos);
    this.pos += 4;
  }

  /** OTLP's fixed64 nanoseconds from an HrTime, exactly (no float rounding past 2^53). */
  time(t: HrTime): void {
    const seconds = t[0];
    const lowSeconds = (seconds & 0xffff) * 1e9;
    const highSeconds = ((seconds / 0x10000) >>> 0) * 1e9;
    const low = (lowSeconds >>> 0) + (((highSeconds & 0xffff) * 0x10000) >>> 0) + t[1];
    const high = Math.floor(lowSeconds / 0x100000000) + ((highSeconds / 0x10000) >>> 0) + Math.floor(low / 0x100000000);
    this.ensure(8);
    this.buf.writeUInt32LE(low >>> 0, this.pos);
    this.buf.writeUInt32LE(high >>> 0, this.pos + 4);
    this.pos += 8;
  }

  double(value: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(value, this.pos);
    this.pos += 8;
  }

  /** A trace or span id, from its hex string straight into the buffer. */
  id(hex: string): void {
    const n = hex.length >>> 1;
    this.varint(n);
    this.ensure(n);
    const buf = this.buf;
    for (let i = 0, j = 0; i < n; i++, j += 2) buf[this.pos++] = (NIBBLE[hex.charCodeAt(j)]! << 4) | NIBBLE[hex.charCodeAt(j + 1)]!;
  }

  /** Bytes already encoded, copied as they are (a key's few bytes by hand, cheaper than a set() call). */
  raw(bytes: Uint8Array): void {
    const n = bytes.length;
    this.ensure(n);
    if (n < 16) {
      const buf = this.buf;
      for (let i = 0; i < n; i++) buf[this.pos++] = bytes[i]!;
      return;
    }
    this.buf.set(bytes, this.pos);
    this.pos += n;
  }

  bytes(bytes: Uint8Array): void {
    this.varint(bytes.length);
    this.raw(bytes);
  }

  string(s: string): void {
    const n = s.length;
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if (s.charCodeAt(i) > 127) {
        ascii = false;
        break;
      }
    }
    if (!ascii) {
      this.bytes(Buffer.from(s, 'utf8'));
      return;
    }
    this.varint(n);
    this.ensure(n);
    const buf = this.buf;
    for (let i = 0; i < n; i++) buf[this.pos++] = s.charCodeAt(i);
  }

  /** Reserves `hint` bytes for a length and returns where its message starts. */
  open(hint: number): number {
    this.ensure(hint);
    this.pos += hint;
    return this.pos;
  }

  /** Writes the length of the message started at `start`, moving it if the length took more or fewer bytes than reserved. */
  close(start: number, hint: number): void {
    const length = this.pos - start;
    const size = varintSize(length);
    if (size !== hint) {
      this.ensure(size - hint);
      this.buf.copyWithin(start + size - hint, start, this.pos);
      this.pos += size - hint;
    }
    let at = start - hint;
    let v = length;
    while (v > 0x7f) {
      this.buf[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[at] = v;
  }
}

function anyValue(out: Out, value: unknown): void {
  switch (typeof value) {
    case 'string':
      out.tag(1, LENGTH_DELIMITED);
      out.string(value);
      return;
    case 'boolean':
      out.tag(2, VARINT);
      out.varint(value ? 1 : 0);
      return;
    case 'number':
      if (Number.isInteger(value) && value >= MIN_INT64 && value < MAX_INT64) {
        out.tag(3, VARINT);
        out.varint(value);
      } else {
        out.tag(4, FIXED64);
        out.double(value);
      }
      return;
    default:
  }
  if (value instanceof Uint8Array) {
    out.tag(7, LENGTH_DELIMITED);
    out.bytes(value);
  } else if (Array.isArray(value)) {
    out.tag(5, LENGTH_DELIMITED);
    const array = out.open(1);
    for (const item of value) {
      out.tag(1, LENGTH_DELIMITED);
      const start = out.open(1);
      anyValue(out, item);
      out.close(start, 1);
    }
    out.close(array, 1);
  } else if (typeof value === 'object' && value !== null) {
    out.tag(6, LENGTH_DELIMITED);
    const list = out.open(1);
    keyValues(out, value as Attributes, 1);
    out.close(list, 1);
  }
}

/**
 * Attribute keys come from a small set: each is encoded (as KeyValue.key) once. So do most string
 * values (a method, a status, an executable's name): a key's whole KeyValue, length first, is kept
 * for its first few values, and a key whose values keep changing (a handle) stops being kept.
 */
interface Key {
  readonly bytes: Buffer;
  values: Map<string, Buffer> | undefined;
}
const keys = new Map<string, Key>();
const MAX_KEYS = 1024;
const MAX_KEYS_WITH_VALUES = 256;
const MAX_VALUES_PER_KEY = 32;
const MAX_VALUE_LENGTH = 128;
const MAX_KEY_LENGTH_WITH_VALUES = 64;

/** A copy of its own: a small Buffer.from() is cut from Node's shared 8 KiB pool, and would keep a whole block alive. */
function own(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  copy.set(bytes);
  return copy;
}

function keyOf(name: string): Key {
  let key = keys.get(name);
  if (key !== undefined) return key;
  const out = new Out(name.length * 3 + 8);
  out.tag(1, LENGTH_DELIMITED);
  out.string(name);
  key = { bytes: own(out.buf.subarray(0, out.pos)), values: keys.size < MAX_KEYS_WITH_VALUES && name.length <= MAX_KEY_LENGTH_WITH_VALUES ? new Map() : undefined };
  if (keys.size < MAX_KEYS) keys.set(name, key);
  return key;
}

/** A KeyValue's body after its field tag: its length, the key, the value. */
function keyValue(out: Out, key: Key, value: unknown): void {
  const kv = out.open(1);
  out.raw(key.bytes);
  out.tag(2, LENGTH_DELIMITED);
  const start = out.open(1);
  anyValue(out, value);
  out.close(start, 1);
  out.close(kv, 1);
}

function keyValues(out: Out, attributes: Attributes, field: number): void {
  for (const name in attributes) {
    if (!Object.prototype.hasOwnProperty.call(attributes, name)) continue;
    const key = keyOf(name);
    const value = attributes[name];
    out.tag(field, LENGTH_DELIMITED);
    const values = key.values;
    if (values === undefined || typeof value !== 'string' || value.length > MAX_VALUE_LENGTH) {
      keyValue(out, key, value);
      continue;
    }
    const known = values.get(value);
    if (known !== undefined) {
      out.raw(known);
      continue;
    }
    const from = out.pos;
    keyValue(out, key, value);
    if (values.size < MAX_VALUES_PER_KEY) values.set(value, own(out.buf.subarray(from, out.pos)));
    else key.values = undefined;
  }
}

const spanFlags = (traceFlags: number, isRemote: boolean | undefined): number =>
  (traceFlags & 0xff) | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE | (isRemote ? SPAN_FLAGS_CONTEXT_IS_REMOTE : 0);

function event(out: Out, e: TimedEvent): void {
  out.tag(11, LENGTH_DELIMITED);
  const start = out.open(1);
  out.tag(1, FIXED64);
  out.time(e.time);
  out.tag(2, LENGTH_DELIMITED);
  out.string(e.name);
  if (e.attributes) keyValues(out, e.attributes, 3);
  out.tag(4, VARINT);
  out.varint(e.droppedAttributesCount || 0);
  out.close(start, 1);
}

function link(out: Out, l: Link): void {
  out.tag(13, LENGTH_DELIMITED);
  const start = out.open(1);
  const ctx = l.context;
  out.tag(1, LENGTH_DELIMITED);
  out.id(ctx.traceId);
  out.tag(2, LENGTH_DELIMITED);
  out.id(ctx.spanId);
  traceState(out, ctx, 3);
  if (l.attributes) keyValues(out, l.attributes, 4);
  out.tag(5, VARINT);
  out.varint(l.droppedAttributesCount || 0);
  out.tag(6, FIXED32);
  out.fixed32(spanFlags(ctx.traceFlags, ctx.isRemote));
  out.close(start, 1);
}

function traceState(out: Out, ctx: SpanContext, field: number): void {
  const state = ctx.traceState?.serialize();
  if (!state) return;
  out.tag(field, LENGTH_DELIMITED);
  out.string(state);
}

/** Most spans of the agent are 128 bytes to 16 KiB: their length takes two bytes. */
const SPAN_HINT = 2;

function span(out: Out, s: ReadableSpan): void {
  out.tag(2, LENGTH_DELIMITED);
  const start = out.open(SPAN_HINT);
  const ctx = s.spanContext();
  out.tag(1, LENGTH_DELIMITED);
  out.id(ctx.traceId);
  out.tag(2, LENGTH_DELIMITED);
  out.id(ctx.spanId);
  traceState(out, ctx, 3);
  const parent = s.parentSpanContext;
  if (parent?.spanId) {
    out.tag(4, LENGTH_DELIMITED);
    out.id(parent.spanId);
  }
  out.tag(5, LENGTH_DELIMITED);
  out.string(s.name);
  // OTLP's kinds are the API's plus one (0 is "unspecified")
  if (s.kind != null) {
    out.tag(6, VARINT);
    out.varint(s.kind + 1);
  }
  out.tag(7, FIXED64);
  out.time(s.startTime);
  out.tag(8, FIXED64);
  out.time(s.endTime);
  if (s.attributes) keyValues(out, s.attributes, 9);
  out.tag(10, VARINT);
  out.varint(s.droppedAttributesCount);
  for (const e of s.events) event(out, e);
  out.tag(12, VARINT);
  out.varint(s.droppedEventsCount);
  for (const l of s.links) link(out, l);
  out.tag(14, VARINT);
  out.varint(s.droppedLinksCount);
  out.tag(15, LENGTH_DELIMITED);
  const status = out.open(1);
  if (s.status.message) {
    out.tag(2, LENGTH_DELIMITED);
    out.string(s.status.message);
  }
  out.tag(3, VARINT);
  out.varint(s.status.code);
  out.close(status, 1);
  out.tag(16, FIXED32);
  out.fixed32(spanFlags(ctx.traceFlags, parent?.isRemote));
  out.close(start, SPAN_HINT);
}

function scopeSpans(out: Out, scope: Scope, spans: readonly ReadableSpan[]): void {
  out.tag(2, LENGTH_DELIMITED);
  const start = out.open(3);
  out.tag(1, LENGTH_DELIMITED);
  const scopeStart = out.open(1);
  out.tag(1, LENGTH_DELIMITED);
  out.string(scope.name);
  if (scope.version) {
    out.tag(2, LENGTH_DELIMITED);
    out.string(scope.version);
  }
  const scopeAttributes = (scope as { attributes?: Attributes }).attributes;
  if (scopeAttributes) keyValues(out, scopeAttributes, 3);
  const dropped = (scope as { droppedAttributesCount?: number }).droppedAttributesCount;
  if (dropped) {
    out.tag(4, VARINT);
    out.varint(dropped);
  }
  out.close(scopeStart, 1);
  for (const s of spans) span(out, s);
  if (scope.schemaUrl) {
    out.tag(3, LENGTH_DELIMITED);
    out.string(scope.schemaUrl);
  }
  out.close(start, 3);
}

function resourceSpans(out: Out, resource: Resource, scopes: Map<Scope, ReadableSpan[]>): void {
  out.tag(1, LENGTH_DELIMITED);
  const start = out.open(3);
  out.tag(1, LENGTH_DELIMITED);
  const resourceStart = out.open(2);
  if (resource.attributes) keyValues(out, resource.attributes, 1);
  out.tag(2, VARINT);
  out.varint(0);
  out.close(resourceStart, 2);
  for (const spans of scopes.values()) scopeSpans(out, spans[0]!.instrumentationScope, spans);
  if (resource.schemaUrl) {
    out.tag(3, LENGTH_DELIMITED);
    out.string(resource.schemaUrl);
  }
  out.close(start, 3);
}

/** Room for the next request: what the last one took, so a steady stream of batches allocates once each. */
let lastSize = 64 * 1024;

export function encodeTraceRequest(spans: readonly ReadableSpan[]): Uint8Array {
  const byResource = new Map<Resource, Map<Scope, ReadableSpan[]>>();
  for (const s of spans) {
    let scopes = byResource.get(s.resource);
    if (scopes === undefined) byResource.set(s.resource, (scopes = new Map()));
    const same = scopes.get(s.instrumentationScope);
    if (same === undefined) scopes.set(s.instrumentationScope, [s]);
    else same.push(s);
  }
  const out = new Out(lastSize);
  for (const [resource, scopes] of byResource) resourceSpans(out, resource, scopes);
  lastSize = Math.max(1024, out.pos + (out.pos >>> 3));
  return out.buf.subarray(0, out.pos);
}

/** The SDK's serializer with this encoder in place of its request side; responses are read as the SDK reads them. */
export const OtlpSpanSerializer: typeof ProtobufTraceSerializer = {
  serializeRequest: (spans) => encodeTraceRequest(spans),
  deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
};
