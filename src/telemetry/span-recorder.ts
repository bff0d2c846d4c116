// The agent's tracer: the SDK's sampler, span limits, resource and span processors (built from the
// OTEL_* environment by the SDK's own functions), with a span object of our own between them. The
// SDK's span cost ~4 µs to make and end in the agent, five times a Spawn+Wait cycle (a context
// check and a regex per parent, attribute objects copied twice, a noop self-metric with its own
// attribute objects, HrTime arithmetic at start and end); this one does what a span must do and
// nothing else (bench/FINDINGS.md "Session 15"). What reaches a processor is a ReadableSpan like
// the SDK's, so every exporter works with it unchanged; test/span-recorder.test.ts holds it to
// what the SDK's tracer records for the same calls.
import { randomFillSync } from 'node:crypto';
import {
  context as apiContext,
  diag,
  INVALID_SPANID,
  INVALID_TRACEID,
  SamplingDecision,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type AttributeValue,
  type Context,
  type Exception,
  type HrTime,
  type Link,
  type Span,
  type SpanContext,
  type SpanOptions,
  type SpanStatus,
  type TimeInput,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { globalErrorHandler, isAttributeValue, isTracingSuppressed, sanitizeAttributes, type InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, Sampler, SpanLimits, SpanProcessor, TimedEvent } from '@opentelemetry/sdk-trace-base';

export interface RecorderConfig {
  readonly resource: Resource;
  readonly sampler: Sampler;
  readonly limits: SpanLimits;
  readonly processors: readonly SpanProcessor[];
}

/**
 * Random ids cut from one hex string per 4 KiB of randomness: one `randomFillSync` and one hex
 * conversion per 256 spans, where the SDK made a buffer and a hex string for each id.
 */
class IdSource {
  private readonly bytes = Buffer.allocUnsafe(4096);
  private hex = '';
  private at = 0;

  private next(chars: number, invalid: string): string {
    for (;;) {
      if (this.at + chars > this.hex.length) {
        randomFillSync(this.bytes);
        this.hex = this.bytes.toString('hex');
        this.at = 0;
      }
      const id = this.hex.slice(this.at, (this.at += chars));
      if (id !== invalid) return id;
    }
  }

  traceId = (): string => this.next(32, INVALID_TRACEID);
  spanId = (): string => this.next(16, INVALID_SPANID);
}

const NO_OPTIONS: SpanOptions = Object.freeze({});
const NO_ATTRIBUTES: Attributes = Object.freeze({});
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });
const NO_LINKS: Link[] = Object.freeze([]) as unknown as Link[];
const NO_EVENTS: TimedEvent[] = Object.freeze([]) as unknown as TimedEvent[];
const NOT_ENDED: HrTime = Object.freeze([0, 0]) as unknown as HrTime;

const hrTime = (epochMs: number): HrTime => {
  const seconds = Math.floor(epochMs / 1000);
  const nanos = Math.round((epochMs - seconds * 1000) * 1e6);
  return nanos >= 1e9 ? [seconds + 1, nanos - 1e9] : [seconds, nanos];
};

const before = (a: HrTime, b: HrTime): boolean => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

/** `t` plus whole nanoseconds, exactly (a float of epoch milliseconds moves in steps of 244 ns). */
function plusNanos(t: HrTime, nanos: number): HrTime {
  const sum = t[1] + nanos;
  return [t[0] + Math.floor(sum / 1e9), sum % 1e9];
}

/** Room for one more in a list bounded by `limit`, the oldest dropped as the SDK drops it; false when the limit is 0. */
function makeRoom(list: unknown[], limit: number): boolean {
  if (list.length < limit) return true;
  if (limit === 0) return false;
  // A negative limit (from the environment) keeps the newest, as in the SDK.
  if (list.length > 0) list.shift();
  return true;
}

const NOT_ENDED_DURATION: HrTime = Object.freeze([-1, -1]) as unknown as HrTime;

class RecordedSpan implements Span, ReadableSpan {
  readonly attributes: Attributes = {};
  links: Link[] = NO_LINKS;
  events: TimedEvent[] = NO_EVENTS;
  status: SpanStatus = UNSET;
  readonly startTime: HrTime;
  endTime: HrTime = NOT_ENDED;
  duration: HrTime = NOT_ENDED_DURATION;
  ended = false;
  droppedAttributesCount = 0;
  droppedEventsCount = 0;
  droppedLinksCount = 0;
  private attributeCount = 0;
  /** The wall and monotonic clocks when the span was made: later times are the start plus monotonic time. */
  private readonly madeMs: number;
  private readonly madePerf: number;
  /** A span started in the past (an exit seen late) ends, by default, now, as the SDK's does. */
  private readonly startGiven: boolean;

  constructor(
    private readonly recorder: SpanRecorder,
    private readonly context: SpanContext,
    public name: string,
    readonly kind: SpanKind,
    readonly parentSpanContext: SpanContext | undefined,
    startTime: TimeInput | undefined,
  ) {
    this.madePerf = performance.now();
    this.madeMs = Date.now();
    this.startGiven = startTime !== undefined;
    this.startTime = startTime === undefined ? hrTime(this.madeMs) : this.toHrTime(startTime);
  }

  /** A TimeInput read as the SDK reads it: a number not past performance.now() is performance time, an HrTime is kept. */
  private toHrTime(input: TimeInput): HrTime {
    if (typeof input === 'number') return hrTime(input <= performance.now() ? this.madeMs + (input - this.madePerf) : input);
    if (input instanceof Date) return hrTime(input.getTime());
    return input;
  }

  private now(): HrTime {
    return this.startGiven ? hrTime(Date.now()) : plusNanos(this.startTime, Math.round((performance.now() - this.madePerf) * 1e6));
  }

  get resource(): Resource {
    return this.recorder.resource;
  }

  get instrumentationScope(): InstrumentationScope {
    return this.recorder.scope;
  }

  spanContext(): SpanContext {
    return this.context;
  }

  setAttribute(key: string, value?: AttributeValue): this {
    if (value == null || this.ended) return this;
    const type = typeof value;
    if (key.length === 0 || (type !== 'string' && type !== 'number' && type !== 'boolean' && !isAttributeValue(value))) {
      diag.warn(`Invalid attribute for key: ${key}`);
      return this;
    }
    const attributes = this.attributes as Record<string, AttributeValue>;
    if (!Object.prototype.hasOwnProperty.call(attributes, key)) {
      if (this.attributeCount >= this.recorder.attributeCountLimit) {
        this.droppedAttributesCount++;
        return this;
      }
      this.attributeCount++;
    }
    attributes[key] = this.recorder.truncate(value);
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key in attributes) if (Object.prototype.hasOwnProperty.call(attributes, key)) this.setAttribute(key, attributes[key]);
    return this;
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this;
    const limit = this.recorder.limits.eventCountLimit ?? 128;
    if (this.events.length >= limit) this.droppedEventsCount++;
    if (!makeRoom(this.events, limit)) return this;
    const timeFirst = isTimeInput(attributesOrTime);
    const at = timeFirst && !isTimeInput(time) ? attributesOrTime : time;
    const { kept, dropped } = this.recorder.limited(timeFirst ? {} : sanitizeAttributes(attributesOrTime), this.recorder.limits.attributePerEventCountLimit);
    if (this.events === NO_EVENTS) this.events = [];
    this.events.push({ name, attributes: kept, droppedAttributesCount: dropped, time: at === undefined ? this.now() : this.toHrTime(at) });
    return this;
  }

  addLink(link: Link): this {
    if (this.ended) return this;
    const limit = this.recorder.limits.linkCountLimit ?? 128;
    if (this.links.length >= limit) this.droppedLinksCount++;
    if (!makeRoom(this.links, limit)) return this;
    if (this.links === NO_LINKS) this.links = [];
    const { kept, dropped } = this.recorder.limited(sanitizeAttributes(link.attributes), this.recorder.limits.attributePerLinkCountLimit);
    this.links.push({ context: link.context, ...(Object.keys(kept).length > 0 ? { attributes: kept } : {}), ...(dropped > 0 ? { droppedAttributesCount: dropped } : {}) });
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    if (this.ended || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this;
    this.status = status.code === SpanStatusCode.ERROR && typeof status.message === 'string' ? { code: status.code, message: status.message } : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.ended) this.name = name;
    return this;
  }

  end(endTime?: TimeInput): void {
    if (this.ended) {
      diag.error(`${this.name} ${this.context.traceId}-${this.context.spanId} - You can only call end() on a span once.`);
      return;
    }
    const end = endTime === undefined ? this.now() : this.toHrTime(endTime);
    this.endTime = before(end, this.startTime) ? [this.startTime[0], this.startTime[1]] : end;
    const [seconds, nanos] = [this.endTime[0] - this.startTime[0], this.endTime[1] - this.startTime[1]];
    this.duration = nanos < 0 ? [seconds - 1, nanos + 1e9] : [seconds, nanos];
    this.ended = true;
    this.recorder.ended(this);
  }

  isRecording(): boolean {
    return !this.ended;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === 'string') attributes['exception.message'] = exception;
    else if (exception) {
      const type = exception.code ? String(exception.code) : exception.name;
      if (type) attributes['exception.type'] = type;
      if (exception.message) attributes['exception.message'] = exception.message;
      if (exception.stack) attributes['exception.stacktrace'] = exception.stack;
    }
    if (attributes['exception.type'] !== undefined || attributes['exception.message'] !== undefined) this.addEvent('exception', attributes, time);
  }

}

const isTimeInput = (v: unknown): v is TimeInput =>
  typeof v === 'number' || v instanceof Date || (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number' && typeof v[1] === 'number');

/** Spans in one instrumentation scope, handed to the processors when they end. */
export class SpanRecorder implements Tracer {
  private readonly ids: IdSource;
  readonly resource: Resource;
  readonly limits: SpanLimits;
  readonly attributeCountLimit: number;
  private readonly valueLengthLimit: number;
  private readonly sampler: Sampler;
  private readonly processors: readonly SpanProcessor[];

  constructor(
    config: RecorderConfig,
    readonly scope: InstrumentationScope,
    ids = new IdSource(),
  ) {
    this.ids = ids;
    this.resource = config.resource;
    this.limits = config.limits;
    this.attributeCountLimit = config.limits.attributeCountLimit ?? 128;
    // The SDK leaves values whole under a limit of 0 or less.
    const lengthLimit = config.limits.attributeValueLengthLimit ?? Infinity;
    this.valueLengthLimit = lengthLimit > 0 ? lengthLimit : Infinity;
    this.sampler = config.sampler;
    this.processors = config.processors;
  }

  startSpan(name: string, options: SpanOptions = NO_OPTIONS, ctx?: Context): Span {
    let parentContext = ctx ?? contextActive();
    if (options.root) parentContext = trace.deleteSpan(parentContext);
    if (isTracingSuppressed(parentContext)) return trace.wrapSpanContext({ traceId: INVALID_TRACEID, spanId: INVALID_SPANID, traceFlags: TraceFlags.NONE });
    const parentSpan = trace.getSpan(parentContext);
    let parent = parentSpan?.spanContext();
    // A parent of ours is valid by construction; a remote one was checked by the propagator that made it.
    if (parent !== undefined && !(parentSpan instanceof RecordedSpan) && !trace.isSpanContextValid(parent)) parent = undefined;
    const traceId = parent?.traceId ?? this.ids.traceId();
    const spanId = this.ids.spanId();
    const kind = options.kind ?? SpanKind.INTERNAL;
    const links = options.links ?? NO_LINKS;
    // The SDK hands the sampler a sanitized copy; a span's own attributes are checked one by one as
    // they are set, and the samplers the environment can name read none of them.
    const attributes = options.attributes ?? NO_ATTRIBUTES;
    const sampling = this.sampler.shouldSample(parentContext, traceId, name, kind, attributes, links);
    const traceState = sampling.traceState ?? parent?.traceState;
    const context: SpanContext = { traceId, spanId, traceFlags: sampling.decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE, traceState };
    if (sampling.decision === SamplingDecision.NOT_RECORD) return trace.wrapSpanContext(context);
    const span = new RecordedSpan(this, context, name, kind, parent, options.startTime);
    if (links.length > 0) span.addLinks(links);
    if (attributes !== NO_ATTRIBUTES) span.setAttributes(attributes);
    if (sampling.attributes !== undefined) span.setAttributes(sampling.attributes);
    for (const p of this.processors) {
      try {
        p.onStart(span as never, parentContext);
      } catch (e) {
        globalErrorHandler(e as Error);
      }
    }
    return span;
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: [F] | [SpanOptions, F] | [SpanOptions, Context, F]): ReturnType<F> {
    const fn = rest[rest.length - 1] as F;
    const options = rest.length > 1 ? (rest[0] as SpanOptions) : undefined;
    const parentContext = (rest.length > 2 ? (rest[1] as Context | undefined) : undefined) ?? contextActive();
    const span = this.startSpan(name, options, parentContext);
    return contextWith(trace.setSpan(parentContext, span), () => fn(span)) as ReturnType<F>;
  }

  /** @internal */
  ended(span: RecordedSpan): void {
    for (const p of this.processors) {
      try {
        p.onEnd(span as never);
      } catch (e) {
        globalErrorHandler(e as Error);
      }
    }
  }

  /** @internal */
  truncate(value: AttributeValue): AttributeValue {
    const limit = this.valueLengthLimit;
    // An array is copied, as the SDK copies it: the caller may change its own afterwards.
    if (limit === Infinity) return Array.isArray(value) ? (value.slice() as AttributeValue) : value;
    if (typeof value === 'string') return value.length <= limit ? value : value.slice(0, limit);
    if (Array.isArray(value)) return value.map((v) => (typeof v === 'string' && v.length > limit ? v.slice(0, limit) : v)) as AttributeValue;
    return value;
  }

  /** @internal */
  limited(attributes: Attributes, countLimit: number | undefined): { kept: Attributes; dropped: number } {
    const kept: Record<string, AttributeValue> = {};
    let count = 0;
    let dropped = 0;
    for (const key in attributes) {
      if (!Object.prototype.hasOwnProperty.call(attributes, key)) continue;
      if (countLimit !== undefined && count >= countLimit) {
        dropped++;
        continue;
      }
      kept[key] = this.truncate(attributes[key]!);
      count++;
    }
    return { kept, dropped };
  }
}

const contextActive = (): Context => apiContext.active();
const contextWith = <T>(ctx: Context, fn: () => T): T => apiContext.with(ctx, fn);

/** Tracers by scope over one recorder configuration, and the processors' flush and shutdown. */
export class SpanRecorderProvider implements TracerProvider {
  private readonly tracers = new Map<string, SpanRecorder>();
  private readonly ids = new IdSource();

  constructor(private readonly config: RecorderConfig) {}

  getTracer(name: string, version?: string, options?: { schemaUrl?: string }): Tracer {
    const key = `${name}@${version ?? ''}:${options?.schemaUrl ?? ''}`;
    let tracer = this.tracers.get(key);
    if (tracer === undefined) {
      tracer = new SpanRecorder(this.config, { name, version, schemaUrl: options?.schemaUrl }, this.ids);
      this.tracers.set(key, tracer);
    }
    return tracer;
  }

  async forceFlush(): Promise<void> {
    await Promise.all(this.config.processors.map((p) => p.forceFlush()));
  }

  async shutdown(): Promise<void> {
    await Promise.all(this.config.processors.map((p) => p.shutdown()));
  }
}
