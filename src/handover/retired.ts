// --after-handover linger: the old agent serves nothing, but it is still the parent of the
// processes it spawned. Reaping them as they exit makes each exit readable to the successor
// (PIDFD_INFO_EXIT, on its HUP) at once rather than when this agent exits, and leaves no zombies.
import { closeFd, dupFd, type Pidfd } from '../kernel/fd.js';
import { EpollReaper } from '../reaper/reaper.js';
import type { Logger } from '../service/status.js';

export function reapWhileLingering(children: Iterable<Pidfd>, log: Logger): EpollReaper {
  const reaper = new EpollReaper(
    (exits) => {
      for (const exit of exits) closeFd(exit.pidfd);
    },
    (e) => log('reaper_error', { error: String(e) }),
  );
  for (const pidfd of children) reaper.watch(dupFd(pidfd), 'child');
  return reaper;
}
