import type { ServerWritableStream } from '@grpc/grpc-js';
import type { EventLog, EventSubject, EventType } from '../process/events/event-log.js';
import { AgentError } from '../process/errors.js';
import { OutputChunk, type Event, type WatchRequest, type WatchResponse } from '../api.js';
import { toOutputChunk } from './convert.js';
import { EVENT_OUTPUT, RESPONSE_EVENT, varintLength, writeVarint } from './event-encoding.js';

export interface WatchFilter {
  readonly handles: ReadonlySet<string> | null;
  readonly labels: Readonly<Record<string, string>>;
  /** The events the watcher may see (the policy's tenancy and permissions); all when absent. */
  readonly visible?: (subject: EventSubject, type: EventType) => boolean;
  /**
   * Whose events `visible` can let through (a tenant's own), under the policy in force now;
   * everyone's when absent or undefined. The stream ends only when one of those was given up.
   */
  readonly owner?: () => string | undefined;
}

/** Periodic usage samples (WatchRequest.usage_interval): taken by `sample` when the stream can take them. */
export interface UsageSampling {
  readonly intervalMs: number;
  readonly sample: () => Event[];
}

/**
 * The shortest usage_interval and the most processes one sample reads: each costs two calls on
 * /proc on the event loop, for every stream that asks.
 */
export const MIN_USAGE_INTERVAL_MS = 1000;
export const MAX_USAGE_SAMPLES = 1024;

/** Events coalesced into one response at most. */
const BATCH = 128;
/** Output bytes per response at most (plus one event's): output events must not make responses huge. */
const BATCH_OUTPUT_BYTES = 64 * 1024;
/**
 * Bytes per response at most (plus one event's, itself at most about 1.1 MiB: argv and labels).
 * Each event carries its argv: coalesced by count alone, a burst of long command lines made a
 * response past the 4 MiB a message may have, which ended the stream, and every resume before it.
 */
const BATCH_BYTES = 1024 * 1024;
/** Responses a stream may have in flight before it waits for 'drain' (past the high-water mark). */
const WRITE_BUDGET = 17;

/** Nearly all of what a usage sample takes on the wire: its argv and labels, in UTF-8. */
function sizeOf(event: Event): number {
  const p = event.process;
  let bytes = 128;
  for (const arg of p?.argv ?? []) bytes += 3 + Buffer.byteLength(arg);
  for (const [k, v] of Object.entries(p?.labels ?? {})) bytes += 6 + Buffer.byteLength(k) + Buffer.byteLength(v);
  return bytes;
}

const matches = (f: WatchFilter, subject: EventSubject, type: EventType): boolean => {
  if (f.handles !== null && !f.handles.has(subject.handle)) return false;
  if (f.visible !== undefined && !f.visible(subject, type)) return false;
  const labels = subject.spec.labels;
  for (const k in f.labels) if (labels[k] !== f.labels[k]) return false;
  return true;
};

/**
 * One Watch stream: a cursor into the shared event log, advanced as fast as the client reads.
 * It holds no queue of its own, so a reader that stalls costs only the stream's small write
 * buffer; once it is more than `maxBacklog` events behind it ends with RESOURCE_EXHAUSTED.
 */
export class WatchStream {
  private cursor: number;
  /** visibleBehind's count: of the events after `countedFrom` (the cursor) up to `counted`, those it would send. */
  private countedFrom = -1;
  private counted = 0;
  private visible = 0;
  private blocked = false;
  private done = false;
  private unsubscribe: () => void = () => {};
  private sampler: NodeJS.Timeout | undefined;
  /** Scratch of nextResponse: the slots of the events it takes, and their output chunks. */
  private readonly slots: number[] = [];
  private readonly chunks: (Uint8Array | undefined)[] = [];

  constructor(
    private readonly log: EventLog,
    private readonly call: ServerWritableStream<WatchRequest, WatchResponse>,
    private readonly filter: WatchFilter,
    after: number,
    private readonly maxBacklog: number,
    /** Called once when the stream ends; with an error when the agent ends it. */
    private readonly onEnd: (error?: AgentError) => void,
    private readonly usage?: UsageSampling,
  ) {
    this.cursor = after;
  }

  /** A tick a reader is behind on is skipped, not queued: a slow reader gets fewer samples. */
  private sampleUsage(): void {
    if (this.done || this.blocked) return;
    const events = this.usage!.sample();
    for (let i = 0; i < events.length; ) {
      const from = i;
      for (let bytes = 0; i < events.length && i - from < BATCH && bytes < BATCH_BYTES; i++) bytes += sizeOf(events[i]!);
      this.call.write({ events: events.slice(from, i) });
    }
    if (this.call.writableLength >= WRITE_BUDGET) this.blocked = true;
  }

  start(): void {
    this.unsubscribe = this.log.subscribe(() => this.pump());
    if (this.usage) this.sampler = setInterval(() => this.sampleUsage(), this.usage.intervalMs);
    this.call.on('cancelled', () => this.finish());
    this.call.on('close', () => this.finish());
    this.call.on('drain', () => {
      this.blocked = false;
      this.pump();
    });
    this.pump();
  }

  get behind(): number {
    return this.log.lastSequence - this.cursor;
  }

  /**
   * Events past the cursor this watcher would be sent, counted only once it is more than
   * maxBacklog behind in all (the log is every owner's, and one tenant's flood must not drop
   * another's briefly blocked watcher), and then only the events new since the last count.
   * Infinity once an event it would see is no longer held: it cannot catch up.
   */
  private visibleBehind(): number {
    const log = this.log;
    if (this.countedFrom !== this.cursor) {
      this.countedFrom = this.counted = this.cursor;
      this.visible = 0;
    }
    if (!this.canCatchUp()) return Infinity;
    for (let slot = log.after(this.counted); slot >= 0; slot = log.nextSlot(slot)) {
      if (matches(this.filter, log.subjectAt(slot), log.typeAt(slot))) this.visible++;
    }
    this.counted = log.lastSequence;
    return this.visible;
  }

  /** Whether every event after the cursor this watcher may see is still held. */
  private canCatchUp(): boolean {
    return this.log.canReplayAfter(this.cursor, this.filter.owner?.());
  }

  /** Responses written but not yet taken by the transport (at most WRITE_BUDGET). */
  get buffered(): number {
    return this.call.writableLength;
  }

  private pump(): void {
    if (this.done) return;
    if (this.blocked) {
      if (this.behind > this.maxBacklog && this.visibleBehind() > this.maxBacklog) this.drop();
      return;
    }
    // Each response costs at least one turn of the event loop to be written, so events that
    // arrived meanwhile are coalesced into one response rather than queued one by one.
    while (this.cursor < this.log.lastSequence) {
      const response = this.nextResponse();
      if (response === null) return this.drop(); // one of its events was given up: it cannot catch up
      if (response === undefined) continue;
      // Past the stream's high-water mark write() has returned false, so 'drain' will come.
      // Bytes: encodedWatchResponses passes them through as they are.
      this.call.write(response as unknown as WatchResponse);
      if (this.call.writableLength >= WRITE_BUDGET) {
        this.blocked = true;
        return;
      }
    }
  }

  /**
   * The WatchResponse of the next events this watcher sees, as bytes: each event as the log
   * encoded it, with an output event's chunk read now. undefined when none of them matched; null
   * when an event it would see is no longer held.
   */
  private nextResponse(): Buffer | null | undefined {
    const log = this.log;
    if (!this.canCatchUp()) return null;
    const slots = this.slots;
    const chunks = this.chunks;
    slots.length = 0;
    chunks.length = 0;
    let bytes = 0;
    let output = 0;
    let slot = log.after(this.cursor);
    for (; slot >= 0 && slots.length < BATCH && output < BATCH_OUTPUT_BYTES && bytes < BATCH_BYTES; slot = log.nextSlot(slot)) {
      const sequence = log.sequenceAt(slot);
      this.cursor = sequence;
      const type = log.typeAt(slot);
      if (!matches(this.filter, log.subjectAt(slot), type)) continue;
      let length = log.encodedLength(slot);
      let chunk: Uint8Array | undefined;
      if (type === 'output') {
        chunk = OutputChunk.encode(toOutputChunk(log.outputOf(sequence)!)).finish();
        output += chunk.length;
        length += 1 + varintLength(chunk.length) + chunk.length;
      }
      slots.push(slot);
      chunks.push(chunk);
      bytes += 1 + varintLength(length) + length;
    }
    // Past the newest event held: what lies between went, and none of it was this watcher's.
    if (slot < 0) this.cursor = log.lastSequence;
    if (slots.length === 0) return undefined;
    const response = Buffer.allocUnsafe(bytes);
    let at = 0;
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      const chunk = chunks[i];
      response[at++] = RESPONSE_EVENT;
      at = writeVarint(response, at, log.encodedLength(slot) + (chunk === undefined ? 0 : 1 + varintLength(chunk.length) + chunk.length));
      at = log.writeEncoded(slot, response, at);
      if (chunk !== undefined) {
        response[at++] = EVENT_OUTPUT;
        at = writeVarint(response, at, chunk.length);
        response.set(chunk, at);
        at += chunk.length;
      }
    }
    return response;
  }

  /** Ends the stream with error (the agent is stopping). */
  abort(error: AgentError): void {
    this.finish(error);
  }

  private drop(): void {
    this.finish(new AgentError('ResourceExhausted', `watcher fell more than ${this.maxBacklog} events behind and was dropped; resume with after_sequence=${this.cursor}`, { reason: 'WATCH_BACKLOG' }));
  }

  private finish(error?: AgentError): void {
    if (this.done) return;
    this.done = true;
    this.unsubscribe();
    if (this.sampler) clearInterval(this.sampler);
    this.onEnd(error);
  }
}

export interface WatchStats {
  readonly behind: number;
  readonly buffered: number;
}

/** The set of open Watch streams, bounded in number. */
export class WatchHub {
  private readonly streams = new Set<WatchStream>();

  constructor(
    readonly log: EventLog,
    private readonly maxWatchers: number,
    private readonly maxBacklog: number,
  ) {}

  /** onEnd: once the stream has ended, however it ended (not when open throws). */
  open(call: ServerWritableStream<WatchRequest, WatchResponse>, filter: WatchFilter, after: number, onError: (e: AgentError) => void, onEnd: () => void = () => {}, usage?: UsageSampling): void {
    if (this.streams.size >= this.maxWatchers) {
      throw new AgentError('ResourceExhausted', `at most ${this.maxWatchers} watchers`, { reason: 'MAX_WATCHERS' });
    }
    const stream: WatchStream = new WatchStream(this.log, call, filter, after, this.maxBacklog, (error) => {
      this.streams.delete(stream);
      onEnd();
      if (error) onError(error);
    }, usage);
    this.streams.add(stream);
    stream.start();
  }

  stats(): WatchStats[] {
    return [...this.streams].map((s) => ({ behind: s.behind, buffered: s.buffered }));
  }

  /** Ends every stream with error. */
  endAll(error: AgentError): void {
    for (const stream of [...this.streams]) stream.abort(error);
  }
}
