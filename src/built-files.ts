import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A file `make build` writes under dist/ (descriptor sets, the exec helper, the native libraries),
 * found by walking up from this module, so it works from src/ (tsx) and from dist/src/ alike.
 */
export function builtFile(relative: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, relative))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`${relative} not found: run make build`);
    dir = up;
  }
  return join(dir, relative);
}
