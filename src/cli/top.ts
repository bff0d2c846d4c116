// `pidfdctl top`: running processes by CPU, with RSS, age, labels, and the latest exits. On a
// terminal it redraws in place every interval until q (or Ctrl-C); otherwise it prints one
// snapshot. CPU% is the share of one CPU since the previous refresh, or over the process's life
// for the first one.
import { AgentCallError, PAGE_TOKEN_EXPIRED, State, type AgentClient, type Process } from './client.js';
import { describeExit, labelText, printable, quoted } from './format.js';

const EXITS_SHOWN = 5;

const micros = (d: { seconds: number; nanos: number } | undefined) => (d ? d.seconds * 1e6 + d.nanos / 1e3 : 0);
const cpuMicros = (p: Process) => micros(p.usage?.userCpu) + micros(p.usage?.systemCpu);

export function bytes(n: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)}${units[i]}`;
}

export function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
const pad = (s: string, n: number) => cut(s, n).padEnd(n);

/** One frame of the table, as lines no wider than `width`. */
export function frame(processes: readonly Process[], previous: ReadonlyMap<string, { cpu: number; at: number }>, now: number, width: number): string[] {
  const running = processes.filter((p) => p.state === State.STATE_RUNNING);
  const exited = processes.filter((p) => p.state === State.STATE_EXITED && p.exit?.exitedAt).sort((a, b) => b.exit!.exitedAt!.getTime() - a.exit!.exitedAt!.getTime());
  const rows = running.map((p) => {
    const cpu = cpuMicros(p);
    const before = previous.get(p.handle);
    const since = before ? now - before.at : now - (p.startedAt?.getTime() ?? now);
    const pct = since > 0 ? ((cpu - (before?.cpu ?? 0)) / 1000 / since) * 100 : 0;
    return { p, pct };
  });
  rows.sort((a, b) => b.pct - a.pct);
  const labels = (p: Process) => labelText(p.labels) || '-';
  const lines = [
    `pidfd-agent top  ${new Date(now).toISOString().slice(11, 19)}  running ${running.length}  exited ${exited.length}  (q quits)`,
    '',
    `${pad('HANDLE', 26)} ${'PID'.padStart(7)} ${'CPU%'.padStart(6)} ${'RSS'.padStart(6)} ${'THR'.padStart(4)} ${'FDS'.padStart(4)} ${'AGE'.padStart(7)}  ${pad('LABELS', 20)} COMMAND`,
    ...rows.map(({ p, pct }) =>
      [
        pad(p.handle, 26),
        String(p.pid).padStart(7),
        pct.toFixed(1).padStart(6),
        (p.usage ? bytes(p.usage.rssBytes) : '-').padStart(6),
        String(p.usage?.threads ?? '-').padStart(4),
        String(p.usage?.openFds ?? '-').padStart(4),
        age(now - (p.startedAt?.getTime() ?? now)).padStart(7),
        ` ${pad(labels(p), 20)}`,
        printable(p.argv.join(' ')),
      ].join(' '),
    ),
  ];
  if (rows.length === 0) lines.push('(no running processes)');
  lines.push('', 'recent exits:');
  for (const p of exited.slice(0, EXITS_SHOWN)) {
    lines.push(`  ${p.exit!.exitedAt!.toISOString().slice(11, 19)}  ${p.handle}  pid ${p.pid}  ${describeExit(p.exit)}  ${quoted(p.argv.join(' '))}`);
  }
  if (exited.length === 0) lines.push('  (none)');
  return lines.map((l) => cut(l, width));
}

/** Runs top; resolves with the exit status once q is pressed (TTY) or the snapshot is printed. */
export async function top(client: AgentClient, intervalMs: number): Promise<number> {
  const out = process.stdout;
  const tty = out.isTTY === true;
  const previous = new Map<string, { cpu: number; at: number }>();
  const draw = async () => {
    // Every page each refresh: a table of thousands (or of long command lines) outgrows one response.
    const { processes } = await client.listAll({});
    const now = Date.now();
    const lines = frame(processes, previous, now, tty ? out.columns : 1000);
    previous.clear();
    for (const p of processes) if (p.usage) previous.set(p.handle, { cpu: cpuMicros(p), at: now });
    if (!tty) return out.write(`${lines.join('\n')}\n`);
    // Home, each line cleared to its end, then the rest of the screen: no flicker, no scrolling.
    const height = out.rows > 0 ? out.rows : lines.length;
    out.write(`\x1b[H${lines.slice(0, height).map((l) => `${l}\x1b[K`).join('\r\n')}\x1b[J`);
  };
  if (!tty) {
    await draw();
    return 0;
  }
  const stdin = process.stdin;
  out.write('\x1b[?1049h\x1b[?25l'); // the alternate screen, cursor hidden
  if (stdin.isTTY) stdin.setRawMode(true);
  try {
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const quit = (e?: unknown) => {
        if (timer) clearTimeout(timer);
        stdin.off('data', onKey);
        if (e) reject(e);
        else resolve();
      };
      const onKey = (b: Buffer) => {
        if (b.includes(0x71) || b.includes(0x51) || b.includes(0x03)) quit(); // q, Q, Ctrl-C
      };
      const next = () => (timer = setTimeout(tick, intervalMs));
      // listAll lists again once when the agent restarted or handed over between two pages; a
      // second time within one refresh, that refresh is skipped, not the whole of top.
      const tick = () => draw().then(next, (e: unknown) => (e instanceof AgentCallError && e.reason === PAGE_TOKEN_EXPIRED ? next() : quit(e)));
      stdin.on('data', onKey);
      stdin.resume();
      void tick();
    });
  } finally {
    if (stdin.isTTY) stdin.setRawMode(false);
    stdin.pause();
    out.write('\x1b[?25h\x1b[?1049l');
  }
  return 0;
}
