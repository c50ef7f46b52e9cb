import { type FloatDType, type GpuContext, type KVLayout, blockTablesToPagedKV, createContext, pagedKVToBlockTables } from '@webinfer/core-buffers';
import { type PosEncodingMode, attentionRef, compareClose, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cudnnBatchDecodeWithKVCache, singleDecodeWithKVCache, trtllmBatchDecodeWithKVCache } from '../src';
import { exactRandn, expectedDecode, makePagedFixture, tolerance, uploadCache } from './helpers';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

interface SingleCase {
  kvLen: number;
  numQoHeads: number;
  numKvHeads: number;
  headDim: number;
  layout: KVLayout;
  dtype: FloatDType;
  posEncodingMode?: PosEncodingMode;
  windowLeft?: number;
  logitsSoftCap?: number;
}

const singleCases: SingleCase[] = [
  { kvLen: 1, numQoHeads: 4, numKvHeads: 4, headDim: 64, layout: 'NHD', dtype: 'f16' },
  { kvLen: 54, numQoHeads: 8, numKvHeads: 2, headDim: 128, layout: 'HND', dtype: 'f16', posEncodingMode: 'ROPE_LLAMA' },
  { kvLen: 99, numQoHeads: 4, numKvHeads: 1, headDim: 64, layout: 'NHD', dtype: 'bf16', windowLeft: 23 },
  { kvLen: 81, numQoHeads: 4, numKvHeads: 4, headDim: 128, layout: 'NHD', dtype: 'f16', logitsSoftCap: 1 },
  { kvLen: 40, numQoHeads: 2, numKvHeads: 1, headDim: 512, layout: 'HND', dtype: 'f16', posEncodingMode: 'ALIBI' },
  { kvLen: 1177, numQoHeads: 4, numKvHeads: 4, headDim: 64, layout: 'NHD', dtype: 'f16', windowLeft: 533 }, // splits
];

describe('singleDecodeWithKVCache', () => {
  it.each(singleCases)('kv $kvLen Hq $numQoHeads Hkv $numKvHeads D $headDim $layout $dtype $posEncodingMode w$windowLeft cap$logitsSoftCap', async (c) => {
    const seed = testSeed();
    const r = rng(seed);
    const { kvLen, numQoHeads: hq, numKvHeads: hkv, headDim: d } = c;
    const qHost = exactRandn(r, hq * d, c.dtype);
    const kNhd = exactRandn(r, kvLen * hkv * d, c.dtype);
    const vNhd = exactRandn(r, kvLen * hkv * d, c.dtype);
    const toHnd = (x: Float32Array) => {
      const y = new Float32Array(x.length);
      for (let j = 0; j < kvLen; j++) for (let h = 0; h < hkv; h++) y.set(x.subarray((j * hkv + h) * d, (j * hkv + h + 1) * d), (h * kvLen + j) * d);
      return y;
    };
    const shape = c.layout === 'NHD' ? [kvLen, hkv, d] : [hkv, kvLen, d];
    const k = ctx.tensor(c.layout === 'NHD' ? kNhd : toHnd(kNhd), shape, c.dtype);
    const v = ctx.tensor(c.layout === 'NHD' ? vNhd : toHnd(vNhd), shape, c.dtype);
    const q = ctx.tensor(qHost, [hq, d], c.dtype);
    // Poisoned output: an element the kernel never writes stays NaN and fails the comparison.
    const poisoned = ctx.full([hq, d], c.dtype, Number.NaN);
    const [o, lse] = await ctx.checkErrors(() =>
      singleDecodeWithKVCache(q, k, v, {
        out: poisoned,
        kvLayout: c.layout,
        posEncodingMode: c.posEncodingMode,
        windowLeft: c.windowLeft,
        logitsSoftCap: c.logitsSoftCap,
        returnLse: true,
      }),
    );
    expect(o.shape).toEqual([hq, d]);
    expect(o.buffer).toBe(poisoned.buffer);
    expect(lse.shape).toEqual([hq]);
    const want = attentionRef({
      q: qHost,
      k: kNhd,
      v: vNhd,
      qoLen: 1,
      kvLen,
      numQoHeads: hq,
      numKvHeads: hkv,
      headDimQk: d,
      posEncodingMode: c.posEncodingMode,
      windowLeft: c.windowLeft,
      logitsSoftCap: c.logitsSoftCap,
    });
    const ro = compareClose(await o.toArray(), want.o, tolerance(c.dtype));
    const rl = compareClose(await lse.toArray(), want.lse, { rtol: 1e-3, atol: 1e-3 });
    expect(ro.ok, `seed ${seed}: ${JSON.stringify(ro)}`).toBe(true);
    expect(rl.ok, `seed ${seed}: ${JSON.stringify(rl)}`).toBe(true);
  });

  it('returns just o by default, and rejects bad shapes', () => {
    const q = ctx.empty([4, 64], 'f16');
    const k = ctx.empty([3, 2, 64], 'f16');
    expect(singleDecodeWithKVCache(q, k, k).shape).toEqual([4, 64]);
    expect(() => singleDecodeWithKVCache(q, k, ctx.empty([3, 2, 64], 'bf16'))).toThrow(/v: dtype bf16/);
    expect(() => singleDecodeWithKVCache(q, ctx.empty([3, 3, 64], 'f16'), ctx.empty([3, 3, 64], 'f16'))).toThrow(/numQoHeads: 4 query heads are not a multiple of 3/);
    expect(() => singleDecodeWithKVCache(ctx.empty([4, 96], 'f16'), ctx.empty([3, 2, 96], 'f16'), ctx.empty([3, 2, 96], 'f16'))).toThrow(/head_dim 96 is not supported/);
  });
});

describe('block-table entry points', () => {
  it('trtllmBatchDecodeWithKVCache: bmm scales, sinks, HND, two query rows per request', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const [hq, hkv, d, page] = [8, 2, 64, 16];
    const kvLens = [37, 16, 70];
    const qLen = 2;
    const f = makePagedFixture(r, kvLens, page, hkv, d, 'HND', 'f16');
    const cache = uploadCache(ctx, f, 'one', [hkv, page, d], 'f16');
    const { blockTables } = pagedKVToBlockTables({ indptr: f.indptr, indices: f.indices, lastPageLen: f.lastPageLen, pageSize: page, pad: 0 });
    const qHost = exactRandn(r, kvLens.length * qLen * hq * d, 'f16');
    const sinks = Float32Array.from({ length: hq }, () => r() * 3);
    const [bmm1, bmm2] = [0.1, 0.7];
    const [o, lse] = (await ctx.checkErrors(() =>
      trtllmBatchDecodeWithKVCache(ctx.tensor(qHost, [kvLens.length * qLen, hq, d], 'f16'), cache, ctx.empty([1 << 20], 'u8'), blockTables, kvLens, 128, {
        bmm1Scale: bmm1,
        bmm2Scale: bmm2,
        sinks: ctx.tensor(sinks, [hq], 'f32'),
        qLenPerReq: qLen,
        returnLse: true,
        out: ctx.full([kvLens.length * qLen, hq, d], 'f16', Number.NaN),
        lse: ctx.full([kvLens.length * qLen, hq], 'f32', Number.NaN),
      }),
    )) as [ReturnType<typeof ctx.empty>, ReturnType<typeof ctx.empty>];
    const want = expectedDecode({ q: qHost, f, kvLens, qLenPerReq: qLen, numQoHeads: hq, numKvHeads: hkv, headDim: d, smScale: bmm1, posEncodingMode: 'NONE', windowLeft: -1, logitsSoftCap: 0, vScale: bmm2, sinks });
    expect(compareClose(await o.toArray(), want.o, tolerance('f16')).ok, `seed ${seed}`).toBe(true);
    expect(compareClose(await lse.toArray(), want.lse, { rtol: 1e-3, atol: 1e-3 }).ok, `seed ${seed}`).toBe(true);
  });

  it('cudnnBatchDecodeWithKVCache: logical HND caches and an explicit scale', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const [hq, hkv, d, page] = [8, 2, 128, 8];
    const kvLens = [9, 30];
    const f = makePagedFixture(r, kvLens, page, hkv, d, 'HND', 'bf16');
    const { blockTables } = pagedKVToBlockTables({ indptr: f.indptr, indices: f.indices, lastPageLen: f.lastPageLen, pageSize: page });
    const back = blockTablesToPagedKV({ blockTables, batchSize: 2, seqLens: kvLens, pageSize: page });
    expect(Array.from(back.indices)).toEqual(f.indices);
    const qHost = exactRandn(r, kvLens.length * hq * d, 'bf16');
    const o = await ctx.checkErrors(() =>
      cudnnBatchDecodeWithKVCache(
        ctx.tensor(qHost, [2, hq, d], 'bf16'),
        ctx.tensor(f.kCache, [f.maxPages, hkv, page, d], 'bf16'),
        ctx.tensor(f.vCache, [f.maxPages, hkv, page, d], 'bf16'),
        0.05,
        ctx.empty([1 << 20], 'u8'),
        { maxSequenceKv: 64, actualSeqLensKv: kvLens, blockTables, out: ctx.full([2, hq, d], 'bf16', Number.NaN) },
      ),
    );
    const want = expectedDecode({ q: qHost, f, kvLens, qLenPerReq: 1, numQoHeads: hq, numKvHeads: hkv, headDim: d, smScale: 0.05, posEncodingMode: 'NONE', windowLeft: -1, logitsSoftCap: 0, vScale: 1 });
    expect(compareClose(await o.toArray(), want.o, tolerance('bf16')).ok, `seed ${seed}`).toBe(true);
    expect(() =>
      cudnnBatchDecodeWithKVCache(ctx.empty([2, hq, d], 'bf16'), ctx.empty([4, hkv, page, d], 'bf16'), ctx.empty([4, hkv, page, d], 'bf16'), 1, ctx.empty([1 << 20], 'u8'), {
        maxSequenceKv: 8,
        actualSeqLensKv: kvLens,
        blockTables,
      }),
    ).toThrow(/actualSeqLensKv: request 0 has length 9, outside \[0, 8\]/);
  });
});
