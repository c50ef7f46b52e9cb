import { defineConfig } from 'tsup';

// Self-contained bundles: workspace packages are inlined, only `webgpu` (dawn.node) stays
// external, so dist/ runs on a bare GPU host with node and the webgpu package.
export default defineConfig({
  entry: { demo: 'src/demo.ts', cli: 'src/cli.ts' },
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  clean: true,
  noExternal: [/^@webinfer\//],
  // Each entry is one self-contained file (no shared chunks) for bare GPU hosts.
  splitting: false,
  external: ['webgpu'],
  banner: { js: '#!/usr/bin/env node' },
});
