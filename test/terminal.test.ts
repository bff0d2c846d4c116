// Terminals: stdin/stdout TTY gives the process a pty as its controlling terminal, streamed over
// ReadOutput and WriteStdin, resized with ResizeTerminal; pidfdctl spawn --tty --attach is an
// interactive shell (driven here by tmux: send-keys to type, capture-pane to read the screen).
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { AgentCallError, OutputMode, OutputStream, StdinMode, status } from '../clients/ts/src/index.js';
import { CLI_BIN } from './helpers/agent-process.js';
import { eventually, startHarness, type Harness } from './helpers/harness.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

const tty = { stdin: StdinMode.STDIN_MODE_TTY, stdout: { mode: OutputMode.OUTPUT_MODE_TTY } };

/** Everything the process wrote to its terminal so far. */
async function screenOf(handle: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const r of h.client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) chunks.push(r.data);
  return Buffer.concat(chunks).toString('utf8');
}

test.serial('a TTY process has the pty as its controlling terminal, of the requested size, and ResizeTerminal changes it', async (t) => {
  // /dev/tty opens only for a process with a controlling terminal.
  const script = 'tty; stty size; echo ctty > /dev/tty; read line; stty size; echo "got $line"; exit 4';
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', script], ...tty, terminalSize: { rows: 33, cols: 111 } });
  await eventually('the first size', async () => (await screenOf(p!.handle)).includes('ctty'));
  const first = await screenOf(p!.handle);
  t.regex(first, /^\/dev\/pts\/\d+\r\n33 111\r\nctty\r\n/, 'a pts, with the size asked for, as the controlling terminal; the tty turns \\n into \\r\\n');
  await h.client.resizeTerminal({ handle: p!.handle, size: { rows: 50, cols: 132 } });
  await h.client.writeStdin({ handle: p!.handle, data: Buffer.from('hello\n') });
  const { process: done } = await h.client.wait({ handle: p!.handle });
  t.is(done!.exit!.code, 4);
  const all = await eventually('the rest of the output', async () => {
    const s = await screenOf(p!.handle);
    return s.includes('got hello') && s;
  });
  t.regex(all, /hello\r\n50 132\r\ngot hello\r\n/, 'the input echoed by the terminal, then the new size');
});

test.serial('CloseStdin on a terminal sends end-of-file (^D); a terminal needs stdin and stdout TTY and a new session', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['cat'], ...tty });
  await h.client.writeStdin({ handle: p!.handle, data: Buffer.from('abc\n') });
  await h.client.closeStdin({ handle: p!.handle });
  const { process: done } = await h.client.wait({ handle: p!.handle });
  t.is(done!.exit!.code, 0);
  for (const req of [
    { stdin: StdinMode.STDIN_MODE_TTY },
    { stdout: { mode: OutputMode.OUTPUT_MODE_TTY } },
    { ...tty, stderr: { mode: OutputMode.OUTPUT_MODE_CAPTURE } },
    { ...tty, newSession: false },
  ]) {
    const e = await t.throwsAsync(h.client.spawn({ argv: ['true'], ...req }), { instanceOf: AgentCallError });
    t.is(e.code, status.INVALID_ARGUMENT, JSON.stringify(req));
  }
  const { process: plain } = await h.client.spawn({ argv: ['sleep', '30'] });
  const e = await t.throwsAsync(h.client.resizeTerminal({ handle: plain!.handle, size: { rows: 10, cols: 10 } }), { instanceOf: AgentCallError });
  t.is(e.code, status.FAILED_PRECONDITION);
  t.is(e.reason, 'NOT_A_TERMINAL');
  await h.client.stop({ handle: plain!.handle });
});

test.serial('pidfdctl spawn --tty --attach -- bash under tmux: stty size prints the forwarded window size, a resize follows, exit returns the status', async (t) => {
  const server = `pidfd-agent-tty-${process.pid}`;
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', server, ...args], { encoding: 'utf8' });
  tmux('new-session', '-d', '-s', 'tty', '-x', '100', '-y', '30', `${process.execPath} ${CLI_BIN} --addr ${h.address} spawn --tty --attach -- bash --norc --noprofile; echo "attach exited $?"; sleep 60`);
  t.teardown(() => {
    try {
      tmux('kill-server');
    } catch {
      // already gone
    }
  });
  const screen = () => tmux('capture-pane', '-p', '-t', 'tty');
  const [rows, cols] = tmux('display', '-p', '-t', 'tty', '#{pane_height} #{pane_width}').trim().split(' ').map(Number);
  await eventually('the bash prompt', () => /bash-[\d.]+# *$/m.test(screen()), 20_000);
  tmux('send-keys', '-t', 'tty', 'stty size; tty', 'Enter');
  const sized = await eventually('stty size and tty', () => {
    const s = screen();
    return new RegExp(`^${rows} ${cols}$`, 'm').test(s) && /^\/dev\/pts\/\d+$/m.test(s) && s;
  });
  t.regex(sized, new RegExp(`^${rows} ${cols}\n/dev/pts/\\d+$`, 'm'), 'the size of this pane, on a pts of its own');
  tmux('resize-window', '-t', 'tty', '-x', '120', '-y', '40');
  const [rows2, cols2] = await eventually('the new size', () => {
    const [r, c] = tmux('display', '-p', '-t', 'tty', '#{pane_height} #{pane_width}').trim().split(' ').map(Number);
    return r !== rows && [r, c];
  });
  // The CLI forwards the resize when its SIGWINCH comes, which may be after this stty ran: ask again
  // until the size has arrived.
  const resized = new RegExp(`^${rows2} ${cols2}$`, 'm');
  let forwarded = false;
  for (let asked = 0; asked < 30 && !forwarded; asked++) {
    tmux('send-keys', '-t', 'tty', 'clear; stty size', 'Enter');
    forwarded = await eventually('stty size to print', () => resized.test(screen()), 1000).catch(() => false);
  }
  t.true(forwarded, `the forwarded resize (${rows2} ${cols2}): ${screen()}`);
  tmux('send-keys', '-t', 'tty', 'exit 5', 'Enter');
  await eventually('the attach to end with the status', () => screen().includes('attach exited 5'));
  t.pass();
});
