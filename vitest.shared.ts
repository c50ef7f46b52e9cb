import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineProject } from 'vitest/config';

const root = dirname(fileURLToPath(import.meta.url));

/** Tests import workspace packages from source, so `pnpm test` needs no build of dependencies. */
function workspaceAliases(): Record<string, string> {
  const aliases: Record<string, string> = {};
  for (const dir of readdirSync(join(root, 'packages'))) {
    aliases[`@webinfer/${dir}`] = join(root, 'packages', dir, 'src', 'index.ts');
  }
  return aliases;
}

/** The vitest project every package uses. GPU tests run in forked processes, one file at a time
 * per fork, because Dawn's event loop is per process and lavapipe already uses every core. */
export function webinferProject(name: string) {
  return defineProject({
    resolve: { alias: workspaceAliases() },
    test: {
      name,
      include: ['test/**/*.test.ts'],
      pool: 'forks',
      // Cold shader caches make lavapipe compile the unrolled kernels slowly on 2 cores.
      testTimeout: 300_000,
      hookTimeout: 300_000,
    },
  });
}
