// Turns a run (all rounds) into medians, ratios to the C loop of the same round, the summary and
// the Markdown tables of bench/README.md.
import { median, round, type LatencyStats } from './stats.js';

export type Peer = 'c' | 'c-clone' | 'node' | 'agent-wait' | 'agent-watch' | 'agent' | 'agent-get' | 'pm2';
/** tput: start → exit cycles; sig: SIGTERM → exit observed; rtt: a Get round trip after the same idle; get: bare Gets in flight. */
export type Kind = 'tput' | 'sig' | 'rtt' | 'get';

/** One measurement of one round. */
export interface Sample {
  readonly round: number;
  readonly peer: Peer;
  readonly kind: Kind;
  readonly conc: number;
  /** Sleeping processes already under the agent's management (0 for the peers). */
  readonly managed: number;
  readonly n: number;
  readonly wall_s: number;
  /** tput: cycles per second. */
  readonly cps?: number;
  readonly lat: LatencyStats;
  readonly bad: number;
  readonly agent_cpu_s?: number;
  readonly client_cpu_s?: number;
  /** sig on the agent: Signal sent → Signal reply. */
  readonly reply?: LatencyStats;
  readonly codes?: Readonly<Record<string, number>>;
}

/** The agent's footprint, measured per round on a fresh agent. */
export interface Footprint {
  readonly round: number;
  /** The first batch of sleepers (1,000), timed as start_1000_s, and the rest up to the maximum. */
  readonly first: number;
  readonly rest: number;
  /** VmRSS 500 ms after each burst (warm-up, 1,000 and all sleepers started). */
  readonly rss_kib: Readonly<Record<string, number>>;
  /** The same, 12 s after the burst: at rest, after the agent's idle memory reduction. */
  readonly rss_rest_kib?: Readonly<Record<string, number>>;
  readonly fds: Readonly<Record<string, number>>;
  readonly start_1000_s: number;
  /** The same 1,000 started again after the agent rested 12 s with nothing managed. */
  readonly start_1000_after_rest_s?: number;
  /** The C loop starting as many sleepers one after another (posix_spawn + pidfd_open), same round. */
  readonly c_start_1000_s?: number;
  readonly start_9000_s: number;
  readonly kill_9000_s: number;
  readonly per_handle_kib: number;
  readonly per_handle_rest_kib?: number;
}

export interface RunInfo {
  readonly date: string;
  readonly command: string;
  readonly machine: Readonly<Record<string, string>>;
  readonly notes: readonly string[];
  readonly options: Readonly<Record<string, unknown>>;
}

export interface Run extends RunInfo {
  readonly samples: readonly Sample[];
  readonly footprints: readonly Footprint[];
}

export interface Aggregate {
  readonly peer: Peer;
  readonly kind: Kind;
  readonly conc: number;
  readonly managed: number;
  readonly rounds: number;
  readonly cps: number;
  readonly cps_min: number;
  readonly cps_max: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  /** Median over rounds of (this / C of the same round): throughput for tput, p50 for sig. */
  readonly x_c: number;
  readonly agent_cpu_per_1000: number;
  readonly client_cpu_per_1000: number;
  readonly reply_p50_ms: number;
  readonly bad: number;
}

const key = (s: { peer: string; kind: string; conc: number; managed: number }) => `${s.peer}|${s.kind}|${s.conc}|${s.managed}`;

export function aggregate(samples: readonly Sample[]): Aggregate[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const k = key(s);
    const g = groups.get(k) ?? [];
    g.push(s);
    groups.set(k, g);
  }
  // The C loop of the same round, case, concurrency and table size (C holding as many sleepers).
  const cOf = (s: Sample) =>
    samples.find((c) => c.peer === 'c' && c.kind === (s.kind === 'rtt' ? 'sig' : s.kind) && c.conc === s.conc && c.round === s.round && c.managed === s.managed);
  const out: Aggregate[] = [];
  for (const g of groups.values()) {
    const first = g[0]!;
    const cps = g.map((s) => s.cps ?? Number.NaN);
    const ratios = g.map((s) => {
      const c = cOf(s);
      if (!c) return Number.NaN;
      return s.kind === 'tput' ? (s.cps ?? Number.NaN) / (c.cps ?? Number.NaN) : s.lat.p50_ms / c.lat.p50_ms;
    });
    out.push({
      peer: first.peer,
      kind: first.kind,
      conc: first.conc,
      managed: first.managed,
      rounds: g.length,
      cps: median(cps),
      cps_min: Math.min(...cps),
      cps_max: Math.max(...cps),
      p50_ms: median(g.map((s) => s.lat.p50_ms)),
      p99_ms: median(g.map((s) => s.lat.p99_ms)),
      x_c: median(ratios),
      agent_cpu_per_1000: median(g.map((s) => (s.agent_cpu_s === undefined ? Number.NaN : (s.agent_cpu_s * 1000) / s.n))),
      client_cpu_per_1000: median(g.map((s) => (s.client_cpu_s === undefined ? Number.NaN : (s.client_cpu_s * 1000) / s.n))),
      reply_p50_ms: median(g.map((s) => s.reply?.p50_ms ?? Number.NaN)),
      bad: g.reduce((a, s) => a + s.bad, 0),
    });
  }
  return out;
}

export interface Summary {
  readonly run_file: string;
  readonly date: string;
  readonly throughput_ratio_c16: number;
  readonly throughput_ratio_c16_watch: number;
  readonly throughput_c16_cps: number;
  /** Agent (Wait) c=16 at the largest table size, against C holding as many. */
  readonly throughput_ratio_c16_at_max: number;
  readonly signal_exit_p50_ms: number;
  readonly signal_exit_p99_ms: number;
  readonly signal_exit_10k_p50_ms: number;
  readonly signal_exit_10k_p99_ms: number;
  readonly start_1000_s: number;
  /** VmRSS with the maximum managed, at rest (12 s after the last start). */
  readonly rss_10k_mib: number;
  /** (RSS at the maximum − RSS at 0) / the maximum, both at rest. */
  readonly per_handle_kib: number;
  /** The same three 500 ms after each burst, before the agent gives memory back. */
  readonly rss_idle_busy_mib: number;
  readonly rss_10k_busy_mib: number;
  readonly per_handle_busy_kib: number;
  /** (RSS at the maximum − RSS at 1,000) / the difference: less sensitive to the heap's warm-up growth. */
  readonly per_handle_kib_1k_to_max: number;
  readonly fds_10k: number;
  readonly agent_cpu_s_per_1000_cycles_c16: number;
  readonly cpu_model: string;
  /** Agent CPU per Spawn+Wait cycle at c=16, in ms (the same figure as agent_cpu_s_per_1000_cycles_c16). */
  readonly agent_cpu_ms_per_cycle_c16: number;
  /** Per round: agent CPU per Spawn+Watch cycle ÷ agent CPU per bare Get, both c=16; median. */
  readonly agent_cpu_watch_cycle_vs_get: number;
  readonly agent_cpu_ms_per_get_c16: number;
  /** Per round: Signal→EXITED p50 ÷ (Get after idle p50 + C signal→exit p50); median. */
  readonly signal_exit_p50_vs_floor: number;
  /** Per round: the agent's start of 1,000 sleepers (16 in flight) ÷ the C loop's; median. */
  readonly start_1000_vs_c: number;
  /** The same after the agent rested 12 s (what giving memory back costs the next burst). */
  readonly start_1000_after_rest_vs_c: number;
  /** VmRSS with nothing managed, at rest 12 s after the warm-up and the first 1,000 starts. */
  readonly rss_idle_mib: number;
  readonly targets: Readonly<Record<string, { readonly goal: string; readonly met: boolean }>>;
}

export function summarize(run: Run, runFile: string): Summary {
  const agg = aggregate(run.samples);
  const find = (peer: Peer, kind: Kind, conc: number, managed = 0) => agg.find((a) => a.peer === peer && a.kind === kind && a.conc === conc && a.managed === managed);
  const maxManaged = Math.max(0, ...run.samples.filter((s) => s.peer === 'agent').map((s) => s.managed));
  const fp = run.footprints;
  // Runs written before the at-rest reads have only the reads 500 ms after each burst.
  const rest = (f: Footprint) => f.rss_rest_kib ?? f.rss_kib;
  const s = {
    throughput_ratio_c16: round(find('agent-wait', 'tput', 16)?.x_c ?? Number.NaN),
    throughput_ratio_c16_watch: round(find('agent-watch', 'tput', 16)?.x_c ?? Number.NaN),
    throughput_c16_cps: round(find('agent-wait', 'tput', 16)?.cps ?? Number.NaN, 0),
    throughput_ratio_c16_at_max: round(find('agent-wait', 'tput', 16, maxManaged)?.x_c ?? Number.NaN),
    signal_exit_p50_ms: round(find('agent', 'sig', 1)?.p50_ms ?? Number.NaN),
    signal_exit_p99_ms: round(find('agent', 'sig', 1)?.p99_ms ?? Number.NaN),
    signal_exit_10k_p50_ms: round(find('agent', 'sig', 1, maxManaged)?.p50_ms ?? Number.NaN),
    signal_exit_10k_p99_ms: round(find('agent', 'sig', 1, maxManaged)?.p99_ms ?? Number.NaN),
    start_1000_s: round(median(fp.map((f) => f.start_1000_s))),
    rss_10k_mib: round(median(fp.map((f) => (rest(f)[String(maxManaged)] ?? Number.NaN) / 1024)), 1),
    per_handle_kib: round(median(fp.map((f) => f.per_handle_rest_kib ?? f.per_handle_kib)), 2),
    rss_idle_busy_mib: round(median(fp.map((f) => (f.rss_kib['0'] ?? Number.NaN) / 1024)), 1),
    rss_10k_busy_mib: round(median(fp.map((f) => (f.rss_kib[String(maxManaged)] ?? Number.NaN) / 1024)), 1),
    per_handle_busy_kib: round(median(fp.map((f) => f.per_handle_kib)), 2),
    per_handle_kib_1k_to_max: round(median(fp.map((f) => ((f.rss_kib[String(maxManaged)] ?? NaN) - (f.rss_kib[String(f.first)] ?? NaN)) / f.rest)), 2),
    fds_10k: median(fp.map((f) => f.fds[String(maxManaged)] ?? Number.NaN)),
    agent_cpu_s_per_1000_cycles_c16: round(find('agent-wait', 'tput', 16)?.agent_cpu_per_1000 ?? Number.NaN),
    cpu_model: run.machine.cpu_model ?? run.machine.cpus?.replace(/^\d+ × /, '') ?? '?',
    agent_cpu_ms_per_cycle_c16: round(find('agent-wait', 'tput', 16)?.agent_cpu_per_1000 ?? Number.NaN),
    agent_cpu_watch_cycle_vs_get: round(perRound(run.samples, (one) => cpuPer(one('agent-watch', 'tput', 16)) / cpuPer(one('agent-get', 'get', 16)))),
    agent_cpu_ms_per_get_c16: round(find('agent-get', 'get', 16)?.agent_cpu_per_1000 ?? Number.NaN, 4),
    signal_exit_p50_vs_floor: round(perRound(run.samples, (one) => (one('agent', 'sig', 1)?.lat.p50_ms ?? NaN) / ((one('agent', 'rtt', 1)?.lat.p50_ms ?? NaN) + (one('c', 'sig', 1)?.lat.p50_ms ?? NaN)))),
    start_1000_vs_c: round(median(fp.map((f) => f.start_1000_s / (f.c_start_1000_s ?? NaN)))),
    start_1000_after_rest_vs_c: round(median(fp.map((f) => (f.start_1000_after_rest_s ?? NaN) / (f.c_start_1000_s ?? NaN)))),
    rss_idle_mib: round(median(fp.map((f) => (rest(f)['0'] ?? Number.NaN) / 1024)), 1),
  };
  const goal = (text: string, met: boolean) => ({ goal: text, met });
  return {
    run_file: runFile,
    date: run.date,
    ...s,
    // Issue 17's goals, restated against the floors measured in the same run.
    targets: {
      throughput_ratio_c16_watch: goal('>= 0.75', s.throughput_ratio_c16_watch >= 0.75),
      throughput_ratio_c16: goal('>= 0.6', s.throughput_ratio_c16 >= 0.6),
      agent_cpu_watch_cycle_vs_get: goal('<= 1.5', s.agent_cpu_watch_cycle_vs_get <= 1.5),
      signal_exit_p50_vs_floor: goal('<= 1.1', s.signal_exit_p50_vs_floor <= 1.1),
      start_1000_vs_c: goal('<= 1.25', s.start_1000_vs_c <= 1.25),
      rss_idle_mib: goal('<= 60', s.rss_idle_mib <= 60),
      rss_10k_mib: goal('<= 100', s.rss_10k_mib <= 100),
      per_handle_kib: goal('<= 3', s.per_handle_kib <= 3),
    },
  };
}

type One = (peer: Peer, kind: Kind, conc: number) => Sample | undefined;

/** The median over rounds of f, given each round's samples (nothing held). */
function perRound(samples: readonly Sample[], f: (one: One) => number): number {
  const rounds = [...new Set(samples.map((x) => x.round))];
  return median(rounds.map((r) => f((peer, kind, conc) => samples.find((x) => x.round === r && x.peer === peer && x.kind === kind && x.conc === conc && x.managed === 0))));
}

const cpuPer = (x: Sample | undefined): number => (x?.agent_cpu_s === undefined ? Number.NaN : x.agent_cpu_s / x.n);

// ---- Markdown -----------------------------------------------------------------------------

const NAMES: Record<Peer, string> = {
  c: 'C posix_spawn + pidfd + waitid (the limit)',
  'c-clone': 'C clone(CLONE_VFORK|CLONE_FILES) + close_range(UNSHARE)',
  node: 'Node child_process.spawn, in-process',
  'agent-wait': 'pidfd-agent: Spawn + Wait (gRPC, unix socket)',
  'agent-watch': 'pidfd-agent: Spawn + Watch event',
  'agent-get': 'pidfd-agent: Get',
  agent: 'pidfd-agent: Signal → EXITED on Watch',
  pm2: 'PM2 7.0.4 programmatic API',
};

const fmt = (v: number, digits = 2): string => (Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—');
const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const ms = (a: Aggregate | undefined): string => (a ? `${fmt(a.p50_ms, 3)} / ${fmt(a.p99_ms, 3)}` : '—');
const rate = (a: Aggregate | undefined): string => (a ? `${int(a.cps)} (×${fmt(a.x_c)})` : '—');

export function markdown(run: Run, summary: Summary): string {
  const agg = aggregate(run.samples);
  const find = (peer: Peer, kind: Kind, conc: number, managed = 0) => agg.find((a) => a.peer === peer && a.kind === kind && a.conc === conc && a.managed === managed);
  const rounds = Math.max(0, ...run.samples.map((s) => s.round));
  const L: string[] = [];
  L.push(`Generated by \`${run.command}\` on ${run.date}; ${rounds} rounds. Each number is the median over rounds of that round's value; ×C is the median of per-round ratios to the C loop run in the same round with the same number of processes held.`);
  L.push('');
  L.push('Machine: ' + Object.entries(run.machine).map(([k, v]) => `${k} ${v}`).join(' · '));
  for (const note of run.notes) L.push(`\n> ${note}`);
  L.push('');

  L.push('### Start → exit observed, /bin/true');
  L.push('| who | c=1 cycles/s | ×C | c=1 p50 / p99 ms | c=16 cycles/s (min–max) | ×C | c=16 p50 / p99 ms |');
  L.push('|---|---:|---:|---:|---:|---:|---:|');
  for (const peer of ['c', 'c-clone', 'node', 'agent-wait', 'agent-watch', 'pm2'] as const) {
    const a1 = find(peer, 'tput', 1);
    const a16 = find(peer, 'tput', 16);
    if (!a1 && !a16) continue;
    L.push(`| ${NAMES[peer]} | ${int(a1?.cps ?? NaN)} | ${fmt(a1?.x_c ?? NaN)} | ${ms(a1)} | ${int(a16?.cps ?? NaN)} (${int(a16?.cps_min ?? NaN)}–${int(a16?.cps_max ?? NaN)}) | ${fmt(a16?.x_c ?? NaN)} | ${ms(a16)} |`);
  }
  L.push('');

  L.push('### SIGTERM to a running `sleep` → exit observed');
  L.push('Batches of c sleepers, settled 20 ms, then all signalled at once; latency per process from its signal to its exit seen by the caller (C: pidfd_send_signal → poll + waitid; Node: kill → `exit`; agent: Signal RPC sent → EXITED event on the open Watch stream; PM2: sendSignalToProcessId → bus exit event).');
  L.push('');
  L.push('| who | c=1 p50 / p99 ms | ×C (p50) | c=16 p50 / p99 ms | ×C (p50) |');
  L.push('|---|---:|---:|---:|---:|');
  for (const peer of ['c', 'node', 'agent', 'pm2'] as const) {
    const a1 = find(peer, 'sig', 1);
    const a16 = find(peer, 'sig', 16);
    if (!a1 && !a16) continue;
    L.push(`| ${peer === 'c' ? 'C pidfd_send_signal + poll + waitid' : NAMES[peer]} | ${ms(a1)} | ${fmt(a1?.x_c ?? NaN)} | ${ms(a16)} | ${fmt(a16?.x_c ?? NaN)} |`);
  }
  const sig1 = find('agent', 'sig', 1);
  const rtt = find('agent', 'rtt', 1);
  if (sig1 || rtt) {
    L.push(`| of which: the agent's Signal RPC round trip | ${fmt(sig1?.reply_p50_ms ?? NaN, 3)} (p50) | | | |`);
    L.push(`| for scale: a Get RPC round trip after the same 20 ms idle | ${ms(rtt)} | ${fmt(rtt?.x_c ?? NaN)} | | |`);
  }
  L.push('');

  const levels = [...new Set(run.samples.filter((s) => s.peer.startsWith('agent')).map((s) => s.managed))].sort((a, b) => a - b);
  L.push('### With processes already held (`sleep 100000` each, each held by a pidfd)');
  L.push('The C loop holds as many sleepers (by pidfd) as the agent manages, so ×C compares at equal table size. cycles/s (×C) and p50 / p99 ms.');
  L.push('');
  L.push('| held | C c=16 | C clone c=16 | agent Wait c=1 | agent Wait c=16 | agent Watch c=16 | agent Wait c=16 p50 / p99 | agent CPU s / 1,000 (Wait c=16) |');
  L.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const m of levels) {
    const w16 = find('agent-wait', 'tput', 16, m);
    L.push(`| ${int(m)} | ${int(find('c', 'tput', 16, m)?.cps ?? NaN)} | ${rate(find('c-clone', 'tput', 16, m))} | ${rate(find('agent-wait', 'tput', 1, m))} | ${rate(w16)} | ${rate(find('agent-watch', 'tput', 16, m))} | ${ms(w16)} | ${fmt(w16?.agent_cpu_per_1000 ?? NaN, 3)} |`);
  }
  L.push('');
  L.push('| held | C signal c=1 p50 / p99 | agent Signal→exit c=1 p50 / p99 | C signal c=16 | agent Signal→exit c=16 |');
  L.push('|---:|---:|---:|---:|---:|');
  for (const m of levels) {
    L.push(`| ${int(m)} | ${ms(find('c', 'sig', 1, m))} | ${ms(find('agent', 'sig', 1, m))} | ${ms(find('c', 'sig', 16, m))} | ${ms(find('agent', 'sig', 16, m))} |`);
  }
  L.push('');

  L.push('### Agent CPU per 1,000 start→exit cycles (nothing held)');
  L.push('From /proc/AGENT/stat utime+stime around each run; the client is a separate process (its CPU shown for scale). The children\'s own exec + exit is in neither.');
  L.push('');
  L.push('| mode | agent CPU s, c=1 | agent CPU s, c=16 | client CPU s, c=1 | client CPU s, c=16 |');
  L.push('|---|---:|---:|---:|---:|');
  for (const peer of ['agent-wait', 'agent-watch'] as const) {
    const a1 = find(peer, 'tput', 1);
    const a16 = find(peer, 'tput', 16);
    L.push(`| ${peer === 'agent-wait' ? 'Spawn + Wait' : 'Spawn + Watch'} | ${fmt(a1?.agent_cpu_per_1000 ?? NaN, 3)} | ${fmt(a16?.agent_cpu_per_1000 ?? NaN, 3)} | ${fmt(a1?.client_cpu_per_1000 ?? NaN, 3)} | ${fmt(a16?.client_cpu_per_1000 ?? NaN, 3)} |`);
  }
  const get16 = find('agent-get', 'get', 16);
  if (get16) L.push(`| a bare Get (per call) | | ${fmt(get16.agent_cpu_per_1000, 3)} | | ${fmt(get16.client_cpu_per_1000, 3)} |`);
  L.push('');

  const fp = run.footprints;
  if (fp.length > 0) {
    const med = (f: (x: Footprint) => number) => median(fp.map(f));
    const keys = Object.keys(fp[0]!.rss_kib).sort((a, b) => Number(a) - Number(b));
    L.push(`### Agent footprint (a fresh agent each round, after ${int((run.options['counts'] as { warmup?: number } | undefined)?.warmup ?? 1000)} warm-up cycles${(run.options['counts'] as { warmup?: number } | undefined)?.warmup === 1000 ? '' : ' of each kind'})`);
    L.push('| | ' + keys.map((k) => `${int(Number(k))} managed`).join(' | ') + ' |');
    L.push('|---|' + keys.map(() => '---:').join('|') + '|');
    L.push('| VmRSS MiB | ' + keys.map((k) => fmt(med((f) => (f.rss_kib[k] ?? NaN) / 1024), 1)).join(' | ') + ' |');
    L.push('| open fds | ' + keys.map((k) => int(med((f) => f.fds[k] ?? NaN))).join(' | ') + ' |');
    L.push('');
    const max = Math.max(...keys.map(Number));
    L.push(`Per handle: ${fmt(summary.per_handle_kib, 2)} KiB ((RSS at ${int(max)} − RSS at 0) / ${int(max)}); ${fmt(summary.per_handle_kib_1k_to_max, 2)} KiB from ${int(fp[0]!.first)} to ${int(max)} (less sensitive to the heap's own growth; RSS moves with V8's heap state, so expect ±1 KiB between runs). ` +
      `Start the first ${int(fp[0]!.first)} sleepers (16 Spawn calls in flight): ${fmt(summary.start_1000_s, 3)} s (after the agent rested 12 s: ${fmt(med((f) => f.start_1000_after_rest_s ?? NaN), 3)} s, ×${fmt(summary.start_1000_after_rest_vs_c, 3)} the C loop); the next ${int(fp[0]!.rest)}: ${fmt(med((f) => f.start_9000_s), 2)} s; ` +
      `Signal KILL + Wait for those ${int(fp[0]!.rest)} (16 in flight): ${fmt(med((f) => f.kill_9000_s), 2)} s.`);
    L.push('');
  }

  L.push('### Against the project\'s goals');
  L.push('| goal | measured | met |');
  L.push('|---|---:|:---:|');
  const val: Record<string, number> = summary as unknown as Record<string, number>;
  for (const [k, t] of Object.entries(summary.targets)) L.push(`| \`${k}\` ${t.goal} | ${fmt(val[k] ?? NaN, 3)} | ${t.met ? 'yes' : 'no'} |`);
  L.push(`| \`agent_cpu_ms_per_cycle_c16\` halve it (same-run A/B: \`make bench-ab\`, below) | ${fmt(summary.agent_cpu_ms_per_cycle_c16, 3)} ms on ${summary.cpu_model} | |`);
  L.push('');
  const bad = agg.filter((a) => a.bad > 0);
  if (bad.length > 0) L.push(`Unexpected exits: ${bad.map((a) => `${a.peer} ${a.kind} c=${a.conc} managed=${a.managed}: ${a.bad}`).join('; ')}.`);
  return L.join('\n') + '\n';
}
