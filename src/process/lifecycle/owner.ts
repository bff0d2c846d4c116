/**
 * A process's owner as this agent names callers. Agents before the policy recorded a unix
 * caller's whole peer, `unix:uid=U,gid=G,pid=P`; what owns a process is the uid alone, so owners
 * read back from a store or a handover in that form become `unix:uid=U`.
 */
export function ownerIdentity(owner: string | undefined): string | undefined {
  const old = owner === undefined ? null : /^(unix:uid=\d+),gid=\d+,pid=\d+$/.exec(owner);
  return old ? old[1] : owner;
}
