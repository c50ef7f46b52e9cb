import { defineConfig } from 'vitest/config';

// One vitest run covers every package: each package has its own vitest.config.ts (a project).
export default defineConfig({
  test: {
    projects: ['packages/*', 'apps/*'],
    // Skeleton packages have no tests yet.
    passWithNoTests: true,
    // Two test files at a time even on 2 cores: lavapipe compiles each shader on one thread, and
    // cold compiles dominate the GPU tests (vitest's default, cores - 1, is 1 here).
    maxWorkers: 2,
  },
});
