// A flood of refused connections must not become a flood of log lines (the disk is shared with
// the node): at most `perWindow` lines a window reach the log, the rest are only counted and
// reported as one `log_suppressed` line when the window ends.
import type { Logger } from '../log.js';

export const LOG_LINES_PER_SECOND = 10;

export class LogLimiter {
  private logged = 0;
  private readonly suppressed = new Map<string, number>();
  private window: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly perWindow = LOG_LINES_PER_SECOND,
    private readonly windowMs = 1000,
  ) {}

  event(event: string, fields: Record<string, unknown>): void {
    // The window opens with its first line: an idle agent keeps no timer.
    this.window ??= setTimeout(() => this.flush(), this.windowMs).unref();
    if (this.logged < this.perWindow) {
      this.logged++;
      this.log(event, fields);
      return;
    }
    this.suppressed.set(event, (this.suppressed.get(event) ?? 0) + 1);
  }

  /** Reports what is still counted; the next line opens a new window. */
  close(): void {
    this.flush();
  }

  private flush(): void {
    if (this.window !== null) clearTimeout(this.window);
    this.window = null;
    this.logged = 0;
    if (this.suppressed.size === 0) return;
    this.log('log_suppressed', { windowMs: this.windowMs, counts: Object.fromEntries(this.suppressed) });
    this.suppressed.clear();
  }
}
