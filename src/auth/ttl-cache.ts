// NSS answers kept a few seconds: every question to NSS reads /etc/passwd or /etc/group (or asks a
// daemon), ~20 µs, and a decision asks on every call. A renamed or renumbered account is seen once
// its answer is ttlMs old; past `max` answers the cache starts over, so it stays bounded.

/** `get(key, answer)`: the answer kept for key if younger than ttlMs, else answer() (kept, even when undefined). */
export function ttlCache<K, V>(ttlMs: number, max: number, now: () => number = Date.now): (key: K, answer: () => V) => V {
  const answers = new Map<K, { readonly at: number; readonly value: V }>();
  return (key, answer) => {
    const t = now();
    const hit = answers.get(key);
    if (hit !== undefined && t - hit.at < ttlMs) return hit.value;
    const value = answer();
    if (answers.size >= max) answers.clear();
    answers.set(key, { at: t, value });
    return value;
  };
}
