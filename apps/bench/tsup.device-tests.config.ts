import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'tsup';

// Package test files bundled to run on the lent GPU host, where there is no node_modules: vitest
// is replaced by a small shim, workspace packages are inlined, `webgpu` stays external.
// Build: pnpm --filter @webinfer/bench build:device-tests; run: node dist-tests/<name>.js
const dir = 'src/device-tests/entries';
export default defineConfig({
  entry: Object.fromEntries(readdirSync(dir).map((f) => [f.replace(/\.ts$/, ''), `${dir}/${f}`])),
  outDir: 'dist-tests',
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  clean: true,
  noExternal: [/^@webinfer\//],
  splitting: false,
  external: ['webgpu'],
  esbuildOptions(o) {
    // The packages say "sideEffects": false; a test file is nothing but side effects.
    o.ignoreAnnotations = true;
    o.alias = { vitest: fileURLToPath(new URL('./src/device-tests/vitest-shim.ts', import.meta.url)) };
  },
});
