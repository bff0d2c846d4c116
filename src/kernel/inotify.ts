// inotify(7) on one file, for cgroup.events: the kernel sends IN_MODIFY on it when `populated`
// changes, so a tree's end is seen without polling.
import * as libc from './libc.js';
import { check, closeFd, O_CLOEXEC, O_NONBLOCK, type Fd } from './fd.js';

const IN_MODIFY = 0x2;

/** Calls onChange (on the main loop) after each modification of path, until closed. */
export class FileWatch {
  readonly #fd: Fd;
  readonly #poll: libc.PollHandle;
  readonly #buf = Buffer.alloc(4096);
  #closed = false;

  /** ENOENT: no such file; EMFILE/ENOSPC: out of descriptors or inotify watches. */
  constructor(path: string, onChange: () => void) {
    this.#fd = check('inotify_init1', libc.inotify_init1(O_NONBLOCK | O_CLOEXEC)) as Fd;
    try {
      check('inotify_add_watch', libc.inotify_add_watch(this.#fd, path, IN_MODIFY));
      this.#poll = libc.watchReadable(this.#fd, () => {
        if (this.#closed) return;
        while (Number(libc.read(this.#fd, this.#buf, this.#buf.length)) > 0);
        onChange();
      });
    } catch (e) {
      closeFd(this.#fd);
      throw e;
    }
  }

  /** Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#poll.close();
    closeFd(this.#fd);
  }
}
