import { createContext, type GpuContext, pagedKVToBlockTables } from '@webinfer/core-buffers';
import { compareClose, makePagedFixture, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cudnnBatchPrefillWithKVCache, trtllmBatchContextWithKVCache } from '../src';
import { exactRandn, expectedBatch, type RequestData, tolerance } from './helpers';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

const cumsum = (xs: number[]) => {
  const out = [0];
  for (const x of xs) out.push(out[out.length - 1] + x);
  return out;
};

describe('block-table prefill entry points', () => {
  it('trtllmBatchContextWithKVCache: HND pages, causal by default, bmm scales, sinks, split KV', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const [hq, hkv, d, page] = [8, 2, 64, 16];
    const qoLens = [20, 5, 1];
    const kvLens = [37, 300, 16];
    const f = makePagedFixture(r, kvLens, page, hkv, d, 'HND', (n) => exactRandn(r, n, 'f16'));
    const { blockTables } = pagedKVToBlockTables({ indptr: f.indptr, indices: f.indices, lastPageLen: f.lastPageLen, pageSize: page, pad: 0 });
    const rows = qoLens.reduce((a, b) => a + b);
    const qHost = exactRandn(r, rows * hq * d, 'f16');
    const sinks = Float32Array.from({ length: hq }, () => r() * 3 - 1);
    const [bmm1, bmm2] = [0.1, 0.7];
    const cache = { k: ctx.tensor(f.kCache, [f.maxPages, hkv, page, d], 'f16'), v: ctx.tensor(f.vCache, [f.maxPages, hkv, page, d], 'f16') };
    const qo = cumsum(qoLens);
    const [o, lse] = (await ctx.checkErrors(() =>
      trtllmBatchContextWithKVCache(ctx.tensor(qHost, [rows, hq, d], 'f16'), cache, ctx.empty([8 << 20], 'u8'), blockTables, kvLens, 32, 512, bmm1, bmm2, 3, qo, cumsum(kvLens), {
        sinks: ctx.tensor(sinks, [hq], 'f32'),
        // Poisoned outputs: an element the kernels never write stays NaN and fails.
        out: ctx.full([rows, hq, d], 'f16', Number.NaN),
        lse: ctx.full([rows, hq], 'f32', Number.NaN),
        returnLse: true,
      }),
    )) as [import('@webinfer/core-buffers').Tensor, import('@webinfer/core-buffers').Tensor];
    const reqs: RequestData[] = qoLens.map((l, b) => ({ q: qHost.subarray(qo[b] * hq * d, qo[b + 1] * hq * d), k: f.k[b], v: f.v[b], qoLen: l, kvLen: kvLens[b] }));
    const want = expectedBatch(reqs, { numQoHeads: hq, numKvHeads: hkv, headDimQk: d, headDimVo: d }, { causal: true, smScale: bmm1, vScale: bmm2, sinks });
    const ro = compareClose(await o.toArray(), want.o, tolerance('f16'));
    const rl = compareClose(await lse.toArray(), want.lse, { rtol: 1e-3, atol: 2e-3 });
    expect(ro.ok, `seed ${seed}: ${JSON.stringify(ro)}`).toBe(true);
    expect(rl.ok, `seed ${seed}: ${JSON.stringify(rl)}`).toBe(true);
    expect(() =>
      trtllmBatchContextWithKVCache(ctx.empty([rows, hq, d], 'f16'), cache, ctx.empty([1 << 20], 'u8'), blockTables, kvLens, 32, 512, bmm1, bmm2, 3, qo, [0, 1, 2, 3]),
    ).toThrow(/cumSeqLensKv: request 0/);
  });

  it.each([true, false])('cudnnBatchPrefillWithKVCache (paged %s): explicit scale, causal, LSE padded per request in natural log', async (paged) => {
    const seed = testSeed();
    const r = rng(seed);
    const [hq, hkv, d, page] = [4, 1, 128, 8];
    const qoLens = [17, 8];
    const kvLens = [32, 70];
    const maxT = 20;
    const rows = qoLens.reduce((a, b) => a + b);
    const qHost = exactRandn(r, rows * hq * d, 'f16');
    const f = makePagedFixture(r, kvLens, page, hkv, d, 'HND', (n) => exactRandn(r, n, 'f16'));
    const scale = 0.07;
    let k: import('@webinfer/core-buffers').Tensor;
    let v: import('@webinfer/core-buffers').Tensor;
    let blockTables: Int32Array | undefined;
    if (paged) {
      k = ctx.tensor(f.kCache, [f.maxPages, hkv, page, d], 'f16');
      v = ctx.tensor(f.vCache, [f.maxPages, hkv, page, d], 'f16');
      blockTables = pagedKVToBlockTables({ indptr: f.indptr, indices: f.indices, lastPageLen: f.lastPageLen, pageSize: page, pad: 0 }).blockTables;
    } else {
      k = ctx.tensor(Float32Array.from([...f.k[0], ...f.k[1]]), [kvLens[0] + kvLens[1], hkv, d], 'f16');
      v = ctx.tensor(Float32Array.from([...f.v[0], ...f.v[1]]), [kvLens[0] + kvLens[1], hkv, d], 'f16');
    }
    const [o, lse] = await ctx.checkErrors(() =>
      cudnnBatchPrefillWithKVCache(ctx.tensor(qHost, [rows, hq, d], 'f16'), k, v, scale, ctx.empty([8 << 20], 'u8'), {
        maxTokenPerSequence: maxT,
        maxSequenceKv: 128,
        actualSeqLensQ: qoLens,
        actualSeqLensKv: kvLens,
        blockTables,
        causal: true,
        returnLse: true,
        out: ctx.full([rows, hq, d], 'f16', Number.NaN),
      }),
    );
    const qo = cumsum(qoLens);
    const reqs: RequestData[] = qoLens.map((l, b) => ({ q: qHost.subarray(qo[b] * hq * d, qo[b + 1] * hq * d), k: f.k[b], v: f.v[b], qoLen: l, kvLen: kvLens[b] }));
    const want = expectedBatch(reqs, { numQoHeads: hq, numKvHeads: hkv, headDimQk: d, headDimVo: d }, { causal: true, smScale: scale });
    expect(compareClose(await o.toArray(), want.o, tolerance('f16')).ok).toBe(true);
    expect(lse!.shape).toEqual([2, maxT, hq]);
    const padded = new Float64Array(2 * maxT * hq).fill(Number.NEGATIVE_INFINITY);
    for (let b = 0; b < 2; b++) {
      for (let i = 0; i < qoLens[b]; i++) {
        for (let h = 0; h < hq; h++) padded[(b * maxT + i) * hq + h] = want.lse[(qo[b] + i) * hq + h] * Math.LN2;
      }
    }
    const rl = compareClose(await lse!.toArray(), padded, { rtol: 1e-3, atol: 2e-3 });
    expect(rl.ok, `seed ${seed}: ${JSON.stringify(rl)}`).toBe(true);
  });
});
