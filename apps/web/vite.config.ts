import { defineConfig } from 'vite';

// The page imports the packages as a browser app would: through their package.json exports
// (the built ESM in dist/). `webgpu` is Node-only and never bundled (core-buffers imports it
// lazily, and only when navigator.gpu is missing).
export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: { external: ['webgpu'] },
  },
});
