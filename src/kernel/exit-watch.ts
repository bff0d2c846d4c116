// One process's exit, told on the event loop: a libuv poll handle on its pidfd, which is readable
// from the exit on (5.3+), whoever the process's parent is and whether or not it has been reaped.
import { watchReadable, type PollHandle } from './libc.js';
import { borrowPidfd, type PidRef } from './pid-ref.js';

export class ExitWatch {
  /** The pid the process had when the watch began (for logs: it addresses nothing). */
  readonly pid: number;
  readonly #ref: PidRef;
  #handle: PollHandle | null;

  /**
   * Takes ref over (it is closed with the watch). onExit runs once, from the event loop, with the
   * watch already closed; at once if the process has exited already. The watch does not keep the
   * loop alive. Throws when the descriptor cannot be polled; ref is closed then as well.
   */
  constructor(ref: PidRef, onExit: () => void) {
    this.pid = ref.pid;
    this.#ref = ref.take();
    try {
      // Borrowed for as long as the handle lives: close() ends the handle before the descriptor.
      this.#handle = watchReadable(borrowPidfd(this.#ref), () => {
        this.close();
        onExit();
      });
    } catch (e) {
      // libuv refused it (UV_EEXIST: the descriptor is polled already; EPERM): no watch, and the
      // descriptor taken is closed here, since the caller no longer holds it.
      this.#ref.close();
      throw e;
    }
    this.#handle.unref();
  }

  /** Stops watching and closes the pidfd; idempotent. */
  close(): void {
    if (this.#handle === null) return;
    this.#handle.close();
    this.#handle = null;
    this.#ref.close();
  }
}
