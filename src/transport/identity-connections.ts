// Connections per caller: the cap per listening address is for everyone together, so one caller
// (one certificate, one uid) that opens them all would lock every other caller out. Each caller
// gets at most `perIdentity` of them; more are closed as they are proved to be its.
export class IdentityConnections {
  private readonly open = new Map<string, number>();

  constructor(readonly perIdentity: number) {}

  /** Takes a connection for `who`; the release to call when it closes, or undefined when `who` holds its cap. */
  take(who: string): (() => void) | undefined {
    const held = this.open.get(who) ?? 0;
    if (held >= this.perIdentity) return undefined;
    this.open.set(who, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(who) ?? 1) - 1;
      if (left > 0) this.open.set(who, left);
      else this.open.delete(who);
    };
  }
}
