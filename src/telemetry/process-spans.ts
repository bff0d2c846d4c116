// The process side of telemetry: a child span per spawn stage, the OTel process attributes on the
// Spawn (or Adopt) span, and a span at each exit linked to the span that started the process.
import { basename } from 'node:path';
import { context, ROOT_CONTEXT, trace, SpanKind, type Context, type Link, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import { globalErrorHandler } from '@opentelemetry/core';
import { observing } from './observing.js';
import type { ProcessRecord } from '../process/lifecycle/record.js';
import type { ProcessTelemetry, SpawnStage, SpawnTrace } from '../process/telemetry-port.js';
import { signalName } from '../process/lifecycle/signalling.js';
import type { AgentMetrics, ExitHow } from './metrics.js';

const STAGE_SPANS: Record<SpawnStage, string> = {
  executable: 'pidfd.agent.resolve_executable',
  cgroup: 'pidfd.agent.cgroup',
  exec: 'pidfd.agent.exec',
  store: 'pidfd.agent.store_write',
};

export function howItEnded(record: ProcessRecord): ExitHow {
  const exit = record.exit;
  if (exit === undefined || exit.statusLost || exit.termination === undefined) return 'lost';
  if (exit.reason === 'timeout') return 'timeout';
  return exit.termination.signal !== undefined ? 'signal' : 'code';
}

/**
 * What --trace-argv puts on a span: argv can be up to 1 MiB and lands on two spans a process, held
 * in the export queue (2048 spans) while a collector is slow, so it is cut to COMMAND_ARGS_CHARS
 * in all, the cut argument ending `…`; a process with more arguments gets a last one saying how many.
 */
export const COMMAND_ARGS_CHARS = 4096;

export function commandArgs(argv: readonly string[]): string[] {
  const out: string[] = [];
  let left = COMMAND_ARGS_CHARS;
  for (const [i, arg] of argv.entries()) {
    if (left <= 0) {
      out.push(`…(${argv.length - i} more)`);
      break;
    }
    out.push(arg.length <= left ? arg : `${arg.slice(0, left)}…`);
    left -= arg.length;
  }
  return out;
}

/**
 * The OTel name of its executable, the basename of what was exec'd: a spawned process's argv[0] is
 * the path the agent ran. An adopted one's is whatever the process wrote into its own cmdline
 * (a title with its arguments, say), so it gets none.
 */
const executableName = (record: ProcessRecord): string | undefined => (record.spec.adopted ? undefined : basename(record.spec.argv[0] ?? ''));

export interface ProcessSpanOptions {
  readonly traces: boolean;
  /** argv on spans (process.command_args): it may hold secrets, so only with --trace-argv. */
  readonly traceArgv: boolean;
}

/** Ends a stage's span; a span that cannot end is reported, and the stage's own result stands. */
const endSpan = observing((span: Span) => span.end());

const executableOf = (started: { readonly executable: string | undefined } | undefined, record: ProcessRecord): string | undefined => (started !== undefined ? started.executable : executableName(record));

export function processTelemetry(agentMetrics: AgentMetrics, options: ProcessSpanOptions): ProcessTelemetry {
  const tracer: Tracer = trace.getTracer('pidfd-agent');
  /** The span that started each process, for the link from its exit, and its executable's name. */
  const startedBy = new WeakMap<ProcessRecord, { readonly context: SpanContext; readonly executable: string | undefined }>();

  /** A stage's span, a child of the call's span named by parent (never made active itself). */
  const stageIn = <T>(parent: Context, name: SpawnStage, fn: () => T): T => {
    let span: Span | undefined;
    try {
      span = tracer.startSpan(STAGE_SPANS[name], undefined, parent);
    } catch (e) {
      globalErrorHandler(e as Error);
      return fn();
    }
    let result: T;
    try {
      result = fn();
    } catch (e) {
      endSpan(span);
      throw e;
    }
    if (result instanceof Promise) {
      const end = () => endSpan(span);
      result.then(end, end);
    } else {
      endSpan(span);
    }
    return result;
  };

  const startedIn = observing((parent: Context, record: ProcessRecord, spawnSeconds: number | undefined) => {
    if (spawnSeconds !== undefined) agentMetrics.spawnDuration.record(spawnSeconds);
    if (!options.traces) return;
    const span = trace.getSpan(parent);
    if (span === undefined || !span.isRecording()) return;
    const executable = executableName(record);
    startedBy.set(record, { context: span.spanContext(), executable });
    span.setAttribute('process.pid', record.identity.pid).setAttribute('pidfd.agent.handle', record.handle);
    if (executable !== undefined) span.setAttribute('process.executable.name', executable);
    if (options.traceArgv) span.setAttribute('process.command_args', commandArgs(record.spec.argv));
  });

  /** Without traces a spawn only records its duration: one object for every spawn. */
  const untraced: SpawnTrace = { stage: (_name, fn) => fn(), started: (record, seconds) => startedIn(ROOT_CONTEXT, record, seconds) };

  return {
    stage: (name, fn) => (options.traces ? stageIn(context.active(), name, fn) : fn()),
    spawnTrace() {
      if (!options.traces) return untraced;
      const parent = context.active();
      return { stage: (name, fn) => stageIn(parent, name, fn), started: (record, seconds) => startedIn(parent, record, seconds) };
    },
    started: (record, spawnSeconds) => startedIn(context.active(), record, spawnSeconds),
    exited: observing((record: ProcessRecord) => {
      const how = howItEnded(record);
      agentMetrics.exited(1, how, record.spec.owner);
      if (!options.traces) return;
      const started = startedBy.get(record);
      const links: Link[] = started ? [{ context: started.context }] : [];
      const termination = record.exit?.termination;
      const exitedAt = record.exit?.exitedAt ?? Date.now();
      // Its own trace (the Spawn's may be long finished), joined to it by the link: started in the
      // root context, which is what `root: true` would make of the active one, without the copy.
      const executable = executableOf(started, record);
      const span = tracer.startSpan('pidfd.agent.process_exit', { kind: SpanKind.INTERNAL, links, startTime: exitedAt }, ROOT_CONTEXT);
      span.setAttributes({
        'process.pid': record.identity.pid,
        ...(executable !== undefined ? { 'process.executable.name': executable } : {}),
        'pidfd.agent.handle': record.handle,
        'pidfd.agent.exit.how': how,
        ...(termination?.exitCode !== undefined ? { 'process.exit.code': termination.exitCode } : {}),
        ...(termination?.signal !== undefined ? { 'pidfd.agent.exit.signal': signalName(termination.signal), 'pidfd.agent.exit.core_dumped': termination.coreDumped } : {}),
        ...(options.traceArgv ? { 'process.command_args': commandArgs(record.spec.argv) } : {}),
      });
      span.end(exitedAt);
    }),
    signalled: observing((signal: number) => agentMetrics.signalled(1, signalName(signal))),
  };
}
