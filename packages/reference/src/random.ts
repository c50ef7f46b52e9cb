/** Seeded random numbers for tests: reproducible when a seed is given, fresh otherwise. */

/** mulberry32: a small, fast 32-bit generator; returns uniforms in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The seed for a test run: `WEBINFER_SEED` when set (to replay a failure), else a fresh one.
 * Tests print it in their failure messages.
 */
export function testSeed(): number {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const fixed = env?.WEBINFER_SEED;
  if (fixed !== undefined && fixed !== '') return Number(fixed) >>> 0;
  return (Math.random() * 2 ** 32) >>> 0;
}

/** Uniform values in [lo, hi). */
export function uniform(random: () => number, n: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * random();
  return out;
}

/** Standard normal values (Box-Muller), times `scale`. */
export function randn(random: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(random(), 1e-12);
    const v = random();
    const r = Math.sqrt(-2 * Math.log(u)) * scale;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/** Integers in [lo, hi). */
export function randint(random: () => number, n: number, lo: number, hi: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + Math.floor((hi - lo) * random());
  return out;
}

/** A random permutation of 0..n-1 (e.g. scattered page ids). */
export function permutation(random: () => number, n: number): Int32Array {
  const out = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
