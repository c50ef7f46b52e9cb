import { type GpuContext, createContext, decodeArray, encodeArray } from '@webinfer/core-buffers';
import { attentionRef, compareClose, permutation, randn, rng, testContextOptions, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { xqaMla } from '../src';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext(testContextOptions());
});
afterAll(() => ctx?.dispose());

const [H, DK, DV] = [128, 576, 512];

describe('xqaMla vs the float64 MLA reference', () => {
  it.each([
    { name: 'page 16, lengths 0/17/100, kvScale 0.5, one cache tensor', seqLens: [0, 17, 100], page: 16, qScale: 1 / Math.sqrt(192), kvScale: 0.5, spare: 0, separateV: false },
    { name: 'page 64, one long row split, spare table columns, separate V', seqLens: [600], page: 64, qScale: 0.05, kvScale: 1, spare: 1, separateV: true },
    { name: 'page 32, separate V', seqLens: [2, 15, 256], page: 32, qScale: 0.04, kvScale: 1, spare: 0, separateV: true },
    { name: 'fp8 e4m3 q and caches, bf16 out (as FlashInfer tests it)', seqLens: [15, 514], page: 64, qScale: 0.04, kvScale: 1, spare: 0, separateV: true, fp8: true },
  ] as { name: string; seqLens: number[]; page: number; qScale: number; kvScale: number; spare: number; separateV: boolean; fp8?: boolean }[])('$name', async (c) => {
    const inDtype = c.fp8 ? 'fp8_e4m3' : 'f16';
    const outDtype = c.fp8 ? 'bf16' : 'f16';
    const seed = testSeed();
    const r = rng(seed);
    const B = c.seqLens.length;
    const pps = Math.max(1, ...c.seqLens.map((l) => Math.ceil(l / c.page))) + c.spare;
    const numPages = B * pps + 1;
    const exact = (n: number, scale = 1) => decodeArray(encodeArray(randn(r, n, scale), inDtype), inDtype) as Float32Array;
    const cacheHost = exact(numPages * c.page * DK, c.fp8 ? 0.25 : 1);
    const vHost = c.separateV ? exact(numPages * c.page * DK, c.fp8 ? 0.25 : 1) : cacheHost;
    const qHost = exact(B * H * DK);
    const perm = permutation(r, numPages);
    const table = Int32Array.from({ length: B * pps }, (_, i) => perm[i]);
    const cache = ctx.tensor(cacheHost, [numPages, c.page, 1, DK], inDtype);
    const vCache = c.separateV ? ctx.tensor(vHost, [numPages, c.page, 1, DK], inDtype) : cache;
    const out = ctx.full([B, 1, H, DV], outDtype, Number.NaN);
    const ws = ctx.empty([16 << 20], 'u8');
    await ctx.checkErrors(() =>
      xqaMla(ctx.tensor(qHost, [B, 1, H, DK], inDtype), cache, vCache, ctx.tensor(table, [B, pps], 'i32'), ctx.tensor(Uint32Array.from(c.seqLens), [B, 1], 'u32'), out, ws, {
        pageSize: c.page,
        qScale: c.qScale,
        kvScale: c.kvScale,
      }),
    );
    const got = await out.toArray();
    for (let b = 0; b < B; b++) {
      const len = c.seqLens[b];
      const rows = (lo: number, width: number, host = cacheHost) => {
        const x = new Float64Array(len * width);
        for (let j = 0; j < len; j++) {
          const p = table[b * pps + Math.floor(j / c.page)];
          for (let d = 0; d < width; d++) x[j * width + d] = host[(p * c.page + (j % c.page)) * DK + lo + d];
        }
        return x;
      };
      const qRows = (lo: number, width: number) => Float64Array.from({ length: H * width }, (_, i) => qHost[(b * H + Math.floor(i / width)) * DK + lo + (i % width)]);
      // K = all 576 dims of the K cache, V = the first 512 of the V cache (FlashInfer's test_xqa_mla).
      const ref = attentionRef({ q: qRows(0, DK), k: rows(0, DK), v: rows(0, DV, vHost), qoLen: 1, kvLen: len, numQoHeads: H, numKvHeads: 1, headDimQk: DK, headDimVo: DV, smScale: c.qScale * c.kvScale });
      const want = ref.o.map((x) => x * c.kvScale);
      const tol = outDtype === 'bf16' ? 1e-2 : 2e-3;
      const res = compareClose(got.subarray(b * H * DV, (b + 1) * H * DV), want, { rtol: tol, atol: tol });
      expect(res.ok, `seed ${seed} request ${b}: ${JSON.stringify(res)}`).toBe(true);
    }
  });

  it('checks the shapes of q, the caches, the output and the page size', () => {
    const ws = ctx.empty([1 << 20], 'u8');
    const q = ctx.zeros([2, 1, H, DK], 'f16');
    const cache = ctx.zeros([4, 16, 1, DK], 'f16');
    const table = ctx.zeros([2, 2], 'i32');
    const lens = ctx.zeros([2], 'u32');
    const out = ctx.zeros([2, 1, H, DV], 'f16');
    expect(() => xqaMla(ctx.zeros([2, 1, 64, DK], 'f16'), cache, cache, table, lens, out, ws, { pageSize: 16 })).toThrow(/q: expected/);
    expect(() => xqaMla(q, cache, ctx.zeros([4, 16, 1, DV], 'f16'), table, lens, out, ws, { pageSize: 16 })).toThrow(/vCache/);
    expect(() => xqaMla(q, cache, cache, table, lens, ctx.zeros([2, 1, H, DK], 'f16'), ws, { pageSize: 16 })).toThrow(/output/);
    expect(() => xqaMla(q, cache, cache, table, lens, out, ws, { pageSize: 48 })).toThrow(/pageSize/);
  });
});
