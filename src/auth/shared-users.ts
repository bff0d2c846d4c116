// Tenants are kept apart by the agent's API only; the kernel keeps apart only different uids. Two
// tenants whose processes may run as the same uid can read each other's /proc (environ, cmdline)
// and signal each other's processes without asking the agent, so a policy that lets them is
// reported when it is loaded.
import type { Policy } from './policy.js';

export interface SharedUser {
  /** The rules' names. */
  readonly rules: readonly [string, string];
  /** The uid both may run as, or `*` when one of them may run as anyone. */
  readonly uid: string;
}

/** Pairs of tenant rules whose run_as overlap (names resolved with uidOf; a prefix pattern is taken as its literal text). */
export function sharedUsers(policy: Policy, uidOf: (name: string) => number | undefined): SharedUser[] {
  const tenants = policy.rules
    .filter((r) => r.role === 'tenant' && r.allow.has('spawn') && r.spawn.runAs.length > 0)
    .map((r) => ({ name: r.name, uids: new Set(r.spawn.runAs.map((p) => (p === '*' ? '*' : /^\d+$/.test(p) ? p : String(uidOf(p) ?? p)))) }));
  const shared: SharedUser[] = [];
  for (let i = 0; i < tenants.length; i++) {
    for (let j = i + 1; j < tenants.length; j++) {
      const [a, b] = [tenants[i]!, tenants[j]!];
      const uid = a.uids.has('*') || b.uids.has('*') ? '*' : [...a.uids].find((u) => b.uids.has(u));
      if (uid !== undefined) shared.push({ rules: [a.name, b.name], uid });
    }
  }
  return shared;
}
