import * as libc from './libc.js';

export interface UserEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/** A passwd entry by name or by uid; undefined when NSS has none. */
export function lookupUser(nameOrUid: string | number): UserEntry | undefined {
  const ptr = typeof nameOrUid === 'number' ? libc.getpwuid(nameOrUid) : libc.getpwnam(nameOrUid);
  if (ptr === null) return undefined;
  const pw = libc.decodeStruct(ptr, libc.PasswdStruct) as { pw_name: string; pw_uid: number; pw_gid: number };
  return { name: pw.pw_name, uid: pw.pw_uid, gid: pw.pw_gid };
}

/** A group's gid by name; undefined when NSS has none. */
export function lookupGroup(name: string): number | undefined {
  const ptr = libc.getgrnam(name);
  if (ptr === null) return undefined;
  return (libc.decodeStruct(ptr, libc.GroupStruct) as { gr_gid: number }).gr_gid;
}

/** A group's name by gid; undefined when NSS has none. */
export function groupName(gid: number): string | undefined {
  const ptr = libc.getgrgid(gid);
  if (ptr === null) return undefined;
  return (libc.decodeStruct(ptr, libc.GroupStruct) as { gr_name: string }).gr_name;
}

/** The groups `user` belongs to (as initgroups would set them), including `gid`. */
export function userGroups(user: string, gid: number): number[] {
  for (let size = 64; size <= 65536; size *= 4) {
    const groups = new Uint32Array(size);
    const n = [size];
    if (libc.getgrouplist(user, gid, groups, n) >= 0) return [...groups.slice(0, n[0])];
  }
  return [gid];
}
