// Spawn's terminal (stdin STDIN_MODE_TTY with stdout OUTPUT_MODE_TTY) and ResizeTerminal's size.
import { invalidArgument } from '../process/errors.js';
import type { SpawnOptions } from '../process/options.js';
import { OutputMode, StdinMode, type SpawnRequest, type TerminalSize } from '../api.js';

const DEFAULT_SIZE = { rows: 24, cols: 80 };

/** A window size within what struct winsize holds. */
export function windowSize(field: string, size: TerminalSize | undefined): { rows: number; cols: number } {
  if (size === undefined) throw invalidArgument(field, 'rows and cols are required');
  for (const k of ['rows', 'cols'] as const) {
    if (!Number.isInteger(size[k]) || size[k] < 1 || size[k] > 0xffff) throw invalidArgument(`${field}.${k}`, 'must be 1..65535');
  }
  return { rows: size.rows, cols: size.cols };
}

/**
 * The terminal a Spawn asks for, or undefined. A terminal is stdin and stdout together (stderr
 * goes there too), in a session of its own: the pty becomes its controlling terminal.
 */
export function terminal(req: SpawnRequest): SpawnOptions['terminal'] {
  const stdin = req.stdin === StdinMode.STDIN_MODE_TTY;
  const stdout = req.stdout?.mode === OutputMode.OUTPUT_MODE_TTY;
  const stderr = req.stderr?.mode === OutputMode.OUTPUT_MODE_TTY;
  if (!stdin && !stdout && !stderr) {
    if (req.terminalSize !== undefined) throw invalidArgument('terminal_size', 'only with stdin STDIN_MODE_TTY');
    return undefined;
  }
  if (!stdin) throw invalidArgument('stdin', 'a terminal is stdin and stdout together: STDIN_MODE_TTY with OUTPUT_MODE_TTY');
  if (!stdout) throw invalidArgument('stdout.mode', 'a terminal is stdin and stdout together: OUTPUT_MODE_TTY with STDIN_MODE_TTY');
  if (!stderr && (req.stderr?.mode ?? OutputMode.OUTPUT_MODE_UNSPECIFIED) !== OutputMode.OUTPUT_MODE_UNSPECIFIED) {
    throw invalidArgument('stderr.mode', 'with a terminal stderr goes to it too: OUTPUT_MODE_TTY or unspecified');
  }
  if (req.newSession === false) throw invalidArgument('new_session', 'a terminal needs a session of its own (its controlling terminal)');
  return req.terminalSize === undefined ? DEFAULT_SIZE : windowSize('terminal_size', req.terminalSize);
}
