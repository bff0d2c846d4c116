// --after-handover linger: the old agent serves nothing, but it is still the parent of the
// processes it spawned. Reaping them as they exit makes each exit readable to the successor
// (PIDFD_INFO_EXIT, on its HUP) at once rather than when this agent exits, and leaves no zombies.
import type { PidRef } from '../kernel/pid-ref.js';
import { EpollReaper } from '../reaper/reaper.js';
import type { Logger } from '../log.js';

/** Watches a duplicate of each child (the manager keeps its own references), closed once reaped. */
export function reapWhileLingering(children: Iterable<PidRef>, log: Logger): EpollReaper {
  const reaper = new EpollReaper(
    (exits) => {
      for (const exit of exits) exit.ref.close();
    },
    (e) => log('reaper_error', { error: String(e) }),
  );
  for (const ref of children) reaper.watch(ref.dup(), 'child');
  return reaper;
}
