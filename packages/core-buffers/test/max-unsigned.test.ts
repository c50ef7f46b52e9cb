import { rng } from '@webinfer/reference';
import { describe, expect, it } from 'vitest';
import { maxUnsigned, maxUnsignedUsesSimd, validatePagedKVIndices } from '../src';

/** Plain reference: the unsigned max by sorting. */
function refMax(a: Int32Array, n: number): number {
  return n === 0 ? -1 : Math.max(...Array.from(a.subarray(0, n), (x) => x >>> 0));
}

describe('maxUnsigned (WebAssembly SIMD with a JS fallback)', () => {
  it('Node runs the SIMD loop', () => {
    expect(maxUnsignedUsesSimd()).toBe(true);
  });

  it('matches the reference at every length class, with the max at each end and negatives', () => {
    const r = rng(0x5eed);
    for (const n of [0, 1, 3, 511, 512, 513, 515, 1000, 4099, 16384, 70001]) {
      const a = Int32Array.from({ length: n + 5 }, () => Math.floor(r() * 100000));
      a.fill(2 ** 30, n); // beyond n: must be ignored
      for (const at of n > 0 ? [0, n - 1, n >> 1] : []) {
        const saved = a[at];
        a[at] = 3000000;
        for (const simd of [true, false]) expect(maxUnsigned(a, n, simd)).toBe(refMax(a, n));
        a[at] = -7; // reads as 2^32 - 7
        for (const simd of [true, false]) expect(maxUnsigned(a, n, simd)).toBe(2 ** 32 - 7);
        a[at] = saved;
      }
      for (const simd of [true, false]) expect(maxUnsigned(a, n, simd)).toBe(refMax(a, n));
    }
  });

  it('grows its memory for long tables (over 64 KiB of ids) and stays right after', () => {
    const a = Int32Array.from({ length: 300000 }, (_, i) => (i * 7919) % 65536);
    a[299999] = 70000;
    expect(maxUnsigned(a)).toBe(70000);
    const small = Int32Array.from({ length: 600 }, (_, i) => i);
    expect(maxUnsigned(small)).toBe(599);
  });

  it('page-table validation finds the offender in a long table', () => {
    const n = 4096;
    const indices = Int32Array.from({ length: n }, (_, i) => i % 100);
    indices[3001] = 100;
    const args = { indptr: [0, 2048, n], indices, lastPageLen: [1, 1], pageSize: 1 };
    expect(() => validatePagedKVIndices({ ...args, maxNumPages: 100 })).toThrow(/indices: page id 100 at position 3001/);
    indices[3001] = -4;
    expect(() => validatePagedKVIndices(args)).toThrow(/indices: page id -4 at position 3001/);
    indices[3001] = 5;
    expect(validatePagedKVIndices(args).maxPageId).toBe(99);
  });
});
