import { compareClose, mergeStateRef, mergeStatesRef, randn, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GpuContext, createContext, decodeArray, encodeArray, mergeState, mergeStateInPlace, mergeStates } from '../src';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

const NEG_INF = Number.NEGATIVE_INFINITY;

describe('merging attention states on the GPU', () => {
  it.each(['f32', 'f16', 'bf16'] as const)('mergeStates over S states (%s), empty states included', async (dtype) => {
    const seed = testSeed();
    const r = rng(seed);
    const [n, S, H, D] = [3, 4, 2, 8];
    const v = decodeArray(encodeArray(randn(r, n * S * H * D), dtype), dtype) as Float32Array;
    const s = Float32Array.from(randn(r, n * S * H, 3));
    s[0] = NEG_INF; // one empty state in row 0
    for (let k = 0; k < S; k++) s[(2 * S + k) * H + 1] = NEG_INF; // row 2, head 1: all empty
    const [outV, outS] = await ctx.checkErrors(() => mergeStates(ctx, ctx.tensor(v, [n, S, H, D], dtype), ctx.tensor(s, [n, S, H], 'f32')));
    const ref = mergeStatesRef(v, s, n, S, H, D);
    const tol = dtype === 'f32' ? { rtol: 1e-5, atol: 1e-5 } : { rtol: 1e-2, atol: 1e-2 };
    const gotV = await outV.toArray();
    const gotS = await outS.toArray();
    expect(compareClose(gotV, ref.v, tol).ok, `seed ${seed}`).toBe(true);
    expect(compareClose(gotS, ref.s, { rtol: 1e-5, atol: 1e-5 }).ok, `seed ${seed}`).toBe(true);
    expect(gotS[2 * H + 1]).toBe(NEG_INF);
    expect(Array.from(gotV.slice((2 * H + 1) * D, (2 * H + 2) * D))).toEqual(new Array(D).fill(0));
  });

  it('mergeState and mergeStateInPlace (with a mask)', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const [n, H, D] = [5, 3, 4];
    const va = randn(r, n * H * D);
    const vb = randn(r, n * H * D);
    const sa = randn(r, n * H, 2);
    const sb = randn(r, n * H, 2);
    const ref = mergeStateRef(va, sa, vb, sb, D);
    const [v, s] = await ctx.checkErrors(() => mergeState(ctx, ctx.tensor(va, [n, H, D], 'f32'), ctx.tensor(sa, [n, H], 'f32'), ctx.tensor(vb, [n, H, D], 'f32'), ctx.tensor(sb, [n, H], 'f32')));
    expect(compareClose(await v.toArray(), ref.v, { rtol: 1e-5, atol: 1e-5 }).ok, `seed ${seed}`).toBe(true);
    expect(compareClose(await s.toArray(), ref.s, { rtol: 1e-5, atol: 1e-5 }).ok, `seed ${seed}`).toBe(true);

    const vt = ctx.tensor(va, [n, H, D], 'f32');
    const st = ctx.tensor(sa, [n, H], 'f32');
    const mask = [1, 0, 1, 0, 0];
    mergeStateInPlace(ctx, vt, st, ctx.tensor(vb, [n, H, D], 'f32'), ctx.tensor(sb, [n, H], 'f32'), mask);
    const gotV = await vt.toArray();
    for (let row = 0; row < n; row++) {
      const want = mask[row] ? ref.v : va;
      const sl = (a: ArrayLike<number>) => Array.from(a).slice(row * H * D, (row + 1) * H * D);
      expect(compareClose(sl(gotV), sl(want), { rtol: 1e-5, atol: 1e-5 }).ok, `row ${row}`).toBe(true);
    }
  });

  it('rejects mismatched shapes', () => {
    const v = ctx.empty([2, 3, 1, 8], 'f16');
    expect(() => mergeStates(ctx, v, ctx.empty([2, 3, 2], 'f32'))).toThrow(/s: shape/);
    expect(() => mergeStates(ctx, ctx.empty([2, 3, 1, 6], 'f16'), ctx.empty([2, 3, 1], 'f32'))).toThrow(/multiple of 4/);
    expect(() => mergeStates(ctx, ctx.empty([2, 3, 1, 8], 'i32'), ctx.empty([2, 3, 1], 'f32'))).toThrow(/expected a float dtype/);
  });
});
