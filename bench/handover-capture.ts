// The capture case of `make bench-handover`: a handover whose processes have full capture rings,
// so that the snapshot carries their bytes (one 64 KiB message each on handover.sock). Each
// process writes 1.5 rings to a captured stdout (the ring has wrapped) and sleeps; once every ring
// holds its last ring_bytes, a successor takes over while a prober polls Get. Measured: how long
// no agent answered (the prober, and the agents' own log lines: the old one's handover_started to
// the new one's serving), the old agent's request → handed over, and the successor's
// pidfd_agent_handover_duration_seconds (asking → taken over). Agents from several builds (--agent
// DIR) run interleaved, each handing over to one of its own build.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentCallError, type AgentClient, OutputMode, OutputStream, status } from '../clients/ts/src/index.js';
import { pool, range } from '../test/helpers/events.js';
import type { Subreaper } from '../test/helpers/subreaper.js';
import { probe, ready } from './handover-probe.js';

const MiB = 1024 * 1024;
/** --capture-bytes: its default, and the most a ring may be (Output.ring_bytes, the flag). */
export const DEFAULT_RING = 1 * MiB;
export const MAX_RING = 64 * MiB;
/** Node options for the agents, e.g. BENCH_AGENT_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof'. */
const NODE_ARGS = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

export interface CaptureCase {
  readonly processes: number;
  readonly ringBytes: number;
  /** What each process writes: 0 (an empty ring, the floor) or 1.5 rings (full and wrapped). */
  readonly written: number;
}

export interface CaptureResult {
  readonly agent: string;
  readonly processes: number;
  readonly ring_bytes: number;
  readonly snapshot_bytes: number;
  /** The prober's longest gap between two answers. */
  readonly unavailable_ms: number;
  /** The old agent's handover_started to the new agent's serving (log timestamps, ms resolution). */
  readonly no_agent_ms: number;
  readonly handed_over_ms: number;
  /** pidfd_agent_handover_duration_seconds on the successor, in ms. */
  readonly takeover_metric_ms: number;
  readonly restore_ms: number;
  /** The first process's ring read back on the successor: its last ring_bytes, the rest lost_bytes. */
  readonly ring_ok: boolean;
  /** The takeover failed (the successor exited): how, and what it said. */
  readonly failed?: string;
}

interface LogLine {
  readonly time: string;
  readonly event: string;
  readonly [field: string]: unknown;
}

const logLines = (text: string): LogLine[] =>
  text.split('\n').flatMap((l) => {
    if (!l.startsWith('{')) return [];
    try {
      return [JSON.parse(l) as LogLine];
    } catch {
      return [];
    }
  });

/** Waits until the stream has produced `bytes` (ReadOutput at that offset is not OFFSET_AHEAD). */
async function producedAll(client: AgentClient, handle: string, bytes: number): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      for await (const r of client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT, offset: bytes })) void r;
      return;
    } catch (e) {
      if (!(e instanceof AgentCallError && e.code === status.OUT_OF_RANGE) || i > 6000) throw e;
      await sleep(10);
    }
  }
}

async function ringReadBack(client: AgentClient, handle: string, c: CaptureCase): Promise<boolean> {
  let bytes = 0;
  let lost = 0;
  let first = -1;
  for await (const r of client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) {
    if (first < 0 && r.data.length > 0) first = Number(r.offset);
    bytes += r.data.length;
    lost += Number(r.lostBytes);
  }
  const held = Math.min(c.written, c.ringBytes);
  return bytes === held && lost === c.written - held && (held === 0 || first === c.written - held);
}

export async function captureScenario(reaper: Subreaper, agentDir: string, c: CaptureCase): Promise<CaptureResult> {
  const agent = join(agentDir, 'dist/src/main.js');
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-bench-handover-capture-'));
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir);
  const address = `unix://${join(dir, 'agent.sock')}`;
  const agentArgv = [process.execPath, ...NODE_ARGS, agent, '--listen', address, '--state-dir', stateDir];
  const logStart = reaper.stderr.length;
  const oldPid = await reaper.start(agentArgv);
  let client = await ready(address, reaper, oldPid);

  const handles = await pool(range(c.processes), 4, async () => {
    const { process } = await client.spawn({
      argv: ['/bin/sh', '-c', `head -c ${c.written} /dev/zero; exec sleep 3600`],
      stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes: c.ringBytes === DEFAULT_RING ? 0 : c.ringBytes },
    });
    return process!.handle;
  });
  await pool(handles, 4, (handle) => producedAll(client, handle, c.written));
  const prober = probe(address, handles[0]!);
  await sleep(200);
  const askedAt = Date.now();
  const newPid = await reaper.start([...agentArgv, '--takeover', 'required', '--metrics-listen', '127.0.0.1:0']);
  // Whichever ends first: the old agent (handed over) or the successor (the takeover failed).
  let failed: string | undefined;
  for (;;) {
    if ((await reaper.wait(oldPid, 200)) !== 'timeout') break;
    const ended = await reaper.wait(newPid, 0);
    if (ended !== 'timeout') {
      const said = reaper.stderr.slice(logStart).split('\n').findLast((l) => l.startsWith('pidfd-agent:'));
      failed = `successor ${ended} after ${Date.now() - askedAt} ms: ${said ?? '?'}`;
      break;
    }
  }
  if (failed !== undefined) {
    await prober.stop();
    client.close();
    // It serves again, unless it had already handed over (the successor failed after confirming):
    // then the processes, reparented to the subreaper, are killed when it closes.
    if ((await reaper.wait(oldPid, 1000)) === 'timeout') {
      client = await ready(address, reaper, oldPid);
      await pool(handles, 8, (handle) => client.signal({ handle, signal: 'SIGKILL' }));
      client.close();
      await reaper.kill(oldPid, 15);
      await reaper.wait(oldPid, 60_000);
    } else failed += ' (after the old agent handed over)';
    rmSync(dir, { recursive: true, force: true });
    const none = NaN;
    return { agent: agentDir, processes: c.processes, ring_bytes: c.ringBytes, snapshot_bytes: c.processes * Math.min(c.written, c.ringBytes), unavailable_ms: none, no_agent_ms: none, handed_over_ms: none, takeover_metric_ms: none, restore_ms: none, ring_ok: false, failed };
  }
  client.close();
  client = await ready(address, reaper, newPid);
  await sleep(200);
  const unavailable = await prober.stop();
  const ringOk = await ringReadBack(client, handles[0]!, c);

  const lines = logLines(reaper.stderr.slice(logStart));
  const started = lines.find((l) => l.event === 'handover_started');
  const handed = lines.find((l) => l.event === 'handed_over');
  const serving = lines.filter((l) => l.event === 'serving').at(-1);
  const taken = lines.find((l) => l.event === 'taken_over');
  const metricsUrl = lines.find((l) => l.event === 'telemetry' && typeof l.metrics_url === 'string')?.metrics_url as string | undefined;
  let metricMs = NaN;
  if (metricsUrl !== undefined) {
    const text = await (await fetch(metricsUrl)).text();
    const sum = /^pidfd_agent_handover_duration_seconds_sum(?:\{[^}]*\})? (\S+)$/m.exec(text);
    if (sum) metricMs = Number(sum[1]) * 1000;
  }

  await pool(handles, 8, (handle) => client.signal({ handle, signal: 'SIGKILL' }));
  await pool(handles, 8, (handle) => client.wait({ handle }, { deadline: 30_000 }));
  client.close();
  await reaper.kill(newPid, 15);
  await reaper.wait(newPid, 60_000);
  rmSync(dir, { recursive: true, force: true });
  return {
    agent: agentDir,
    processes: c.processes,
    ring_bytes: c.written === 0 ? 0 : c.ringBytes,
    snapshot_bytes: Number(handed?.bytes ?? NaN),
    unavailable_ms: Math.round(unavailable),
    no_agent_ms: started && serving ? Date.parse(serving.time) - Date.parse(started.time) : NaN,
    handed_over_ms: Number(handed?.ms ?? NaN),
    takeover_metric_ms: Math.round(metricMs),
    restore_ms: Number(taken?.ms ?? NaN),
    ring_ok: ringOk,
  };
}
