import { createContext, type FloatDType, type GpuContext, type KVLayout } from '@webinfer/core-buffers';
import { compareClose, makePagedFixture, type PosEncodingMode, rng, testContextOptions, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchPrefillWithPagedKVCacheWrapper, BatchPrefillWithRaggedKVCacheWrapper, packbits, segmentPackbits } from '../src';
import { exactRandn, expectedBatch, pathOverride, type RequestData, tolerance } from './helpers';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext(testContextOptions());
});
afterAll(() => ctx?.dispose());

interface PagedCase {
  qoLens: number[];
  kvLens: number[];
  page: number;
  hq: number;
  hkv: number;
  d: number;
  layout: KVLayout;
  form: 'one' | 'pair';
  causal?: boolean;
  pos?: PosEncodingMode;
  windowLeft?: number;
  mask?: boolean;
  kvDtype?: FloatDType;
  fixedSplitSize?: number;
  disableSplitKv?: boolean;
  qScale?: number;
  oDtype?: 'f16' | 'f32' | 'bf16';
  /** 1: the largest workgroups (on tensor-core devices, 8 subgroups of 16 rows) and no split. */
  targetWorkgroups?: number;
  /** The f32 kernel with this K/V load mode. */
  simtLoadMode?: 'batch' | 'prefetch' | 'loop';
  /** The f32 kernel with these loop unrollings / full-tile mask skip. */
  simt?: { qkUnroll?: number; pvUnroll?: number; fullTiles?: boolean; pInRegisters?: boolean; lateFetch?: boolean; swizzle?: boolean; workgroupSize?: number };
  /** The tensor-core kernel with this shape (runs only where the device has subgroup matrices). */
  tensorCore?: { subgroups: number; keys: 16 | 32 };
  /** The f32 kernel with this tile [rows, keys, wide]. */
  tile?: [number, number, ('none' | 'kv' | 'all' | 'k')?];
}

const pagedCases: PagedCase[] = [
  { qoLens: [37, 17, 1], kvLens: [54, 97, 1], page: 16, hq: 4, hkv: 1, d: 64, layout: 'NHD', form: 'one', causal: true },
  { qoLens: [12, 0, 20], kvLens: [30, 0, 20], page: 5, hq: 8, hkv: 2, d: 128, layout: 'HND', form: 'pair', causal: true, pos: 'ROPE_LLAMA' }, // empty request
  { qoLens: [9, 33], kvLens: [40, 33], page: 1, hq: 4, hkv: 4, d: 64, layout: 'NHD', form: 'pair', causal: false },
  { qoLens: [34, 5], kvLens: [1, 70], page: 16, hq: 4, hkv: 2, d: 64, layout: 'HND', form: 'one', causal: true }, // qo > kv
  { qoLens: [20, 31], kvLens: [45, 80], page: 16, hq: 8, hkv: 1, d: 64, layout: 'NHD', form: 'one', mask: true },
  { qoLens: [13, 47], kvLens: [111, 397], page: 16, hq: 4, hkv: 4, d: 64, layout: 'NHD', form: 'one', causal: true, windowLeft: 33 },
  { qoLens: [8, 4], kvLens: [300, 500], page: 16, hq: 4, hkv: 2, d: 64, layout: 'NHD', form: 'one', causal: true, fixedSplitSize: 64 }, // forced split
  { qoLens: [8, 4], kvLens: [300, 500], page: 16, hq: 4, hkv: 2, d: 64, layout: 'NHD', form: 'one', causal: true, disableSplitKv: true },
  { qoLens: [10, 6], kvLens: [50, 77], page: 16, hq: 4, hkv: 2, d: 128, layout: 'NHD', form: 'pair', causal: true, kvDtype: 'fp8_e4m3' },
  { qoLens: [7, 19], kvLens: [33, 90], page: 8, hq: 4, hkv: 2, d: 64, layout: 'HND', form: 'one', causal: true, qScale: 0.5, oDtype: 'f32', fixedSplitSize: 32 },
  { qoLens: [70, 3, 41], kvLens: [90, 3, 200], page: 5, hq: 8, hkv: 2, d: 128, layout: 'HND', form: 'pair', causal: true, pos: 'ROPE_LLAMA', targetWorkgroups: 1 },
  { qoLens: [40, 150], kvLens: [45, 180], page: 16, hq: 4, hkv: 1, d: 64, layout: 'NHD', form: 'one', mask: true, targetWorkgroups: 1 },
  { qoLens: [130, 9], kvLens: [300, 77], page: 16, hq: 4, hkv: 4, d: 128, layout: 'NHD', form: 'one', causal: true, windowLeft: 50, kvDtype: 'fp8_e4m3', targetWorkgroups: 1 },
  { qoLens: [37, 17, 1], kvLens: [54, 97, 1], page: 16, hq: 4, hkv: 1, d: 64, layout: 'NHD', form: 'one', causal: true, simtLoadMode: 'loop' },
  { qoLens: [20, 31], kvLens: [45, 80], page: 5, hq: 8, hkv: 2, d: 128, layout: 'HND', form: 'pair', mask: true, simtLoadMode: 'batch' },
  { qoLens: [8, 4], kvLens: [300, 500], page: 16, hq: 4, hkv: 2, d: 64, layout: 'NHD', form: 'one', causal: true, fixedSplitSize: 64, oDtype: 'f32', simtLoadMode: 'prefetch' },
  // f32 kernel knobs: tiles with no masked logit skip the mask test (causal interior, window, split)
  { qoLens: [130, 9, 20], kvLens: [300, 77, 300], page: 16, hq: 4, hkv: 2, d: 64, layout: 'NHD', form: 'one', causal: true, fixedSplitSize: 64, simt: { fullTiles: true, qkUnroll: 4, pvUnroll: 4 } },
  { qoLens: [100, 47], kvLens: [211, 397], page: 5, hq: 4, hkv: 4, d: 64, layout: 'HND', form: 'pair', causal: true, windowLeft: 33, simt: { fullTiles: true, qkUnroll: 2, pvUnroll: 2 } },
  // P, max and sum in registers (P V by subgroup shuffles) is the default with subgroups; here a
  // causal split with the next tile's loads issued before QKᵀ (lateFetch off), and P in workgroup
  // memory (pInRegisters off) with a custom mask
  { qoLens: [70, 9, 33], kvLens: [150, 77, 33], page: 16, hq: 4, hkv: 2, d: 64, layout: 'NHD', form: 'one', causal: true, fixedSplitSize: 64, simt: { pInRegisters: true, lateFetch: false } },
  { qoLens: [20, 31], kvLens: [45, 80], page: 5, hq: 8, hkv: 2, d: 64, layout: 'HND', form: 'pair', mask: true, simt: { pInRegisters: false } },
  // Q/K rows swizzled instead of padded (what lavapipe's 32 KB takes for D 128 anyway) with RoPE
  { qoLens: [20, 9], kvLens: [50, 77], page: 16, hq: 4, hkv: 2, d: 64, layout: 'HND', form: 'pair', causal: true, pos: 'ROPE_LLAMA', simt: { pInRegisters: true, swizzle: true }, tile: [32, 32, 'k'] },
  // GPUs' first choice: 128-row tiles in workgroups of 256 (f32 K where it fits, else f16 K
  // swizzled, as D 128 at 48 KB; this device has 32 KB, so D 64 stands in).
  { qoLens: [130, 9, 70], kvLens: [300, 77, 150], page: 16, hq: 4, hkv: 2, d: 64, layout: 'NHD', form: 'one', causal: true, fixedSplitSize: 64, simt: { pInRegisters: true, swizzle: true, workgroupSize: 256 }, tile: [128, 32, 'none'] },
  { qoLens: [75, 200], kvLens: [75, 260], page: 5, hq: 4, hkv: 1, d: 64, layout: 'HND', form: 'pair', causal: true, windowLeft: 90, pos: 'ROPE_LLAMA', simt: { pInRegisters: true, swizzle: false, workgroupSize: 256 }, tile: [128, 32, 'k'] },
  // 8 tensor-core subgroups with 16-key tiles (what 32 KB devices and D 256 take), forced; GPU hosts only
  { qoLens: [70, 3, 41], kvLens: [90, 3, 200], page: 16, hq: 8, hkv: 2, d: 128, layout: 'NHD', form: 'one', causal: true, tensorCore: { subgroups: 8, keys: 16 } },
  { qoLens: [37, 17], kvLens: [54, 97], page: 16, hq: 4, hkv: 2, d: 64, layout: 'HND', form: 'pair', causal: true, pos: 'ROPE_LLAMA', tensorCore: { subgroups: 8, keys: 16 } },
];

describe('BatchPrefillWithPagedKVCacheWrapper', () => {
  it.each(pagedCases)('qo $qoLens kv $kvLens page $page Hq $hq Hkv $hkv D $d $layout $form causal $causal $pos w$windowLeft mask $mask $kvDtype split $fixedSplitSize wg $targetWorkgroups load $simtLoadMode simt $simt tc $tensorCore', async (c) => {
    if (c.tensorCore && !ctx.features.has('chromium-experimental-subgroup-matrix')) return;
    const seed = testSeed();
    const r = rng(seed);
    const kvDtype = c.kvDtype ?? 'f16';
    const f = makePagedFixture(r, c.kvLens, c.page, c.hkv, c.d, c.layout, (n) => exactRandn(r, n, kvDtype));
    const rows = c.qoLens.reduce((a, b) => a + b, 0);
    const qHost = exactRandn(r, rows * c.hq * c.d, 'f16');
    const qoIndptr = [0];
    for (const l of c.qoLens) qoIndptr.push(qoIndptr[qoIndptr.length - 1] + l);
    const masks = c.mask ? c.qoLens.map((qo, b) => Uint8Array.from({ length: qo * c.kvLens[b] }, () => Number(r() < 0.7))) : undefined;
    const flat = masks ? Uint8Array.from(masks.flatMap((m) => Array.from(m))) : undefined;
    const pageShape = c.layout === 'NHD' ? [c.page, c.hkv, c.d] : [c.hkv, c.page, c.d];
    const perPage = c.page * c.hkv * c.d;
    const cache =
      c.form === 'pair'
        ? { k: ctx.tensor(f.kCache, [f.maxPages, ...pageShape], kvDtype), v: ctx.tensor(f.vCache, [f.maxPages, ...pageShape], kvDtype) }
        : ctx.tensor(
            Float32Array.from({ length: 2 * f.maxPages * perPage }, (_, i) => {
              const p = Math.floor(i / (2 * perPage));
              const w = i % (2 * perPage);
              return (w < perPage ? f.kCache : f.vCache)[p * perPage + (w % perPage)];
            }),
            [f.maxPages, 2, ...pageShape],
            kvDtype,
          );
    const wrapper = new BatchPrefillWithPagedKVCacheWrapper(ctx, ctx.empty([16 << 20], 'u8'), { kvLayout: c.layout });
    wrapper.plan({
      ...pathOverride,
      qoIndptr,
      pagedKvIndptr: f.indptr,
      pagedKvIndices: f.indices,
      pagedKvLastPageLen: f.lastPageLen,
      numQoHeads: c.hq,
      numKvHeads: c.hkv,
      headDimQk: c.d,
      pageSize: c.page,
      causal: c.causal,
      customMask: flat,
      posEncodingMode: c.pos,
      windowLeft: c.windowLeft,
      kvDataType: kvDtype,
      fixedSplitSize: c.fixedSplitSize,
      disableSplitKv: c.disableSplitKv,
      oDataType: c.oDtype,
      targetWorkgroups: c.targetWorkgroups,
      ...(c.simtLoadMode ? { useTensorCores: false, debugSimtLoadMode: c.simtLoadMode } : {}),
      ...(c.simt ? { useTensorCores: false, debugSimtTuning: c.simt } : {}),
      ...(c.tile ? { useTensorCores: false, debugTile: c.tile } : {}),
      ...(c.tensorCore ? { useTensorCores: true, debugTensorCoreSubgroups: c.tensorCore.subgroups, debugTensorCoreKeys: c.tensorCore.keys } : {}),
    });
    if (c.fixedSplitSize) expect(wrapper.planInfo!.numSlots).toBeGreaterThan(0);
    if (c.disableSplitKv) expect(wrapper.planInfo!.numSlots).toBe(0);
    if (c.tile) expect([wrapper.planInfo!.tile, wrapper.planInfo!.workgroupSize]).toEqual([c.tile.slice(0, 2), c.simt?.workgroupSize ?? 128]);
    if (c.tensorCore) {
      expect(wrapper.planInfo!.path).toBe('tensor-core');
      expect(wrapper.planInfo!.tile).toEqual([16 * c.tensorCore.subgroups, c.tensorCore.keys]);
    }
    const out = ctx.full([rows, c.hq, c.d], c.oDtype ?? 'f16', Number.NaN);
    const lsePoisoned = ctx.full([rows, c.hq], 'f32', Number.NaN);
    const [o, lse] = await ctx.checkErrors(() =>
      wrapper.runReturnLse(ctx.tensor(qHost, [rows, c.hq, c.d], 'f16'), cache, { out, lse: lsePoisoned, qScale: c.qScale }),
    );
    const reqs: RequestData[] = c.qoLens.map((qo, b) => ({
      q: qHost.subarray(qoIndptr[b] * c.hq * c.d, qoIndptr[b + 1] * c.hq * c.d),
      k: f.k[b],
      v: f.v[b],
      qoLen: qo,
      kvLen: c.kvLens[b],
      mask: masks?.[b],
    }));
    const want = expectedBatch(reqs, { numQoHeads: c.hq, numKvHeads: c.hkv, headDimQk: c.d, headDimVo: c.d }, {
      causal: c.causal,
      posEncodingMode: c.pos,
      windowLeft: c.windowLeft,
      smScale: (c.qScale ?? 1) / Math.sqrt(c.d),
    });
    const tol = c.pos === 'ROPE_LLAMA' ? { rtol: 4e-3, atol: 4e-3 } : tolerance(c.oDtype ?? 'f16', kvDtype);
    const ro = compareClose(await o.toArray(), want.o, tol);
    const rl = compareClose(await lse.toArray(), want.lse, { rtol: 1e-3, atol: 2e-3 });
    expect(ro.ok, `seed ${seed}: ${JSON.stringify(ro)}`).toBe(true);
    expect(rl.ok, `seed ${seed}: ${JSON.stringify(rl)}`).toBe(true);
    wrapper.destroy();
  });

  it('rejects bad input with errors naming the argument', () => {
    const w = new BatchPrefillWithPagedKVCacheWrapper(ctx, ctx.empty([1 << 20], 'u8'));
    const base = { qoIndptr: [0, 4], pagedKvIndptr: [0, 1], pagedKvIndices: [0], pagedKvLastPageLen: [4], numQoHeads: 2, numKvHeads: 2, headDimQk: 64, pageSize: 4 };
    expect(() => w.run(ctx.empty([4, 2, 64], 'f16'), ctx.empty([1, 2, 4, 2, 64], 'f16'))).toThrow(/plan: call plan\(\) before run\(\)/);
    expect(() => w.plan({ ...base, qoIndptr: [0, 4, 5] })).toThrow(/qoIndptr: has 3 entries/);
    expect(() => w.plan({ ...base, pagedKvLastPageLen: [5] })).toThrow(/lastPageLen/);
    expect(() => w.plan({ ...base, pageSize: 0 })).toThrow(/pageSize/);
    expect(() => w.plan({ ...base, headDimVo: 96 })).toThrow(/head_dim_vo 96/);
    expect(() => w.plan({ ...base, qDataType: 'fp8_e4m3' })).toThrow(/qDataType/);
    expect(() => w.plan({ ...base, customMask: [1, 0, 1], packedCustomMask: new Uint8Array(2) })).toThrow(/customMask or packedCustomMask/);
    expect(() => w.plan({ ...base, packedCustomMask: new Uint8Array(1) })).toThrow(/packedCustomMask: has 1 bytes/);
    w.plan({ ...base, pagedKvIndices: [3] });
    expect(() => w.run(ctx.empty([4, 2, 64], 'f16'), ctx.empty([2, 2, 4, 2, 64], 'f16'))).toThrow(/page id 3 is outside/);
    w.plan(base);
    expect(() => w.run(ctx.empty([5, 2, 64], 'f16'), ctx.empty([1, 2, 4, 2, 64], 'f16'))).toThrow(/q: shape/);
    expect(() => w.run(ctx.empty([4, 2, 64], 'f16'), ctx.empty([1, 2, 4, 2, 64], 'bf16'))).toThrow(/kvDataType f16/);
    expect(() => w.run(ctx.empty([4, 2, 64], 'f16'), ctx.empty([1, 2, 4, 2, 64], 'f16'), { windowLeft: 3 })).toThrow(/windowLeft 3 differs/);
    expect(() => new BatchPrefillWithPagedKVCacheWrapper(ctx, ctx.empty([1 << 20], 'u8'), { backend: 'cudnn' })).toThrow(/backend 'cudnn'/);
    w.destroy();
    expect(() => w.plan(base)).toThrow(/destroyed/);
  });

  it('runs the f32 path in 128-row tiles and workgroups of 256 where the device fits them (GPU hosts)', () => {
    // CPU adapters take tiles of at most 32 rows; D 128 needs 48 KB of workgroup memory.
    const limits = ctx.limits;
    if (ctx.isSoftwareAdapter || !ctx.hasSubgroups || limits.maxComputeWorkgroupStorageSize < 49152 || limits.maxComputeInvocationsPerWorkgroup < 256) return;
    const w = new BatchPrefillWithPagedKVCacheWrapper(ctx, ctx.empty([1 << 20], 'u8'));
    const shape = (d: number) => ({ qoIndptr: [0, 256], pagedKvIndptr: [0, 16], pagedKvIndices: Array.from({ length: 16 }, (_, i) => i), pagedKvLastPageLen: [16], numQoHeads: 8, numKvHeads: 8, headDimQk: d, pageSize: 16, causal: true, useTensorCores: false });
    const choice = (d: number) => {
      w.plan(shape(d));
      const info = w.planInfo!;
      return [info.path, info.tile, info.workgroupSize];
    };
    expect([choice(128), choice(64)]).toEqual([
      ['simt', [128, 32], 256],
      ['simt', [128, 32], 256],
    ]);
    w.destroy();
  });
});

describe('BatchPrefillWithRaggedKVCacheWrapper', () => {
  it.each([
    { qoLens: [40, 7], kvLens: [70, 7], hq: 2, hkv: 1, dqk: 192, dvo: 128, causal: true, pos: 'NONE' as PosEncodingMode, softCap: 0 },
    { qoLens: [17, 30, 3], kvLens: [17, 81, 50], hq: 4, hkv: 2, dqk: 64, dvo: 64, causal: false, pos: 'ALIBI' as PosEncodingMode, softCap: 0 },
    { qoLens: [25, 9], kvLens: [60, 9], hq: 4, hkv: 4, dqk: 128, dvo: 128, causal: true, pos: 'NONE' as PosEncodingMode, softCap: 50 },
    { qoLens: [3, 6], kvLens: [0, 11], hq: 2, hkv: 1, dqk: 64, dvo: 64, causal: false, pos: 'NONE' as PosEncodingMode, softCap: 0 }, // no KV at all: o = 0, lse = -inf
  ])('qo $qoLens kv $kvLens D $dqk/$dvo causal $causal $pos cap $softCap', async (c) => {
    const seed = testSeed();
    const r = rng(seed);
    const qoIndptr = [0];
    const kvIndptr = [0];
    c.qoLens.forEach((l, b) => {
      qoIndptr.push(qoIndptr[b] + l);
      kvIndptr.push(kvIndptr[b] + c.kvLens[b]);
    });
    const rows = qoIndptr[c.qoLens.length];
    const toks = kvIndptr[c.kvLens.length];
    const qHost = exactRandn(r, rows * c.hq * c.dqk, 'f16');
    const kHost = exactRandn(r, toks * c.hkv * c.dqk, 'f16');
    const vHost = exactRandn(r, toks * c.hkv * c.dvo, 'f16');
    const w = new BatchPrefillWithRaggedKVCacheWrapper(ctx, ctx.empty([16 << 20], 'u8'));
    w.plan({ ...pathOverride, qoIndptr, kvIndptr, numQoHeads: c.hq, numKvHeads: c.hkv, headDimQk: c.dqk, headDimVo: c.dvo, causal: c.causal, posEncodingMode: c.pos, logitsSoftCap: c.softCap });
    const out = ctx.full([rows, c.hq, c.dvo], 'f16', Number.NaN);
    const [o, lse] = await ctx.checkErrors(() =>
      w.runReturnLse(ctx.tensor(qHost, [rows, c.hq, c.dqk], 'f16'), ctx.tensor(kHost, [toks, c.hkv, c.dqk], 'f16'), ctx.tensor(vHost, [toks, c.hkv, c.dvo], 'f16'), { out }),
    );
    const reqs: RequestData[] = c.qoLens.map((qo, b) => ({
      q: qHost.subarray(qoIndptr[b] * c.hq * c.dqk, qoIndptr[b + 1] * c.hq * c.dqk),
      k: kHost.subarray(kvIndptr[b] * c.hkv * c.dqk, kvIndptr[b + 1] * c.hkv * c.dqk),
      v: vHost.subarray(kvIndptr[b] * c.hkv * c.dvo, kvIndptr[b + 1] * c.hkv * c.dvo),
      qoLen: qo,
      kvLen: c.kvLens[b],
    }));
    const want = expectedBatch(reqs, { numQoHeads: c.hq, numKvHeads: c.hkv, headDimQk: c.dqk, headDimVo: c.dvo }, { causal: c.causal, posEncodingMode: c.pos, logitsSoftCap: c.softCap });
    const ro = compareClose(await o.toArray(), want.o, tolerance('f16'));
    const rl = compareClose(await lse.toArray(), want.lse, { rtol: 1e-3, atol: 2e-3 });
    expect(ro.ok, `seed ${seed}: ${JSON.stringify(ro)}`).toBe(true);
    expect(rl.ok, `seed ${seed}: ${JSON.stringify(rl)}`).toBe(true);
    w.destroy();
  });
});

describe('packbits', () => {
  it('packs little- and big-endian, and segments at fresh bytes', () => {
    expect(Array.from(packbits([1, 0, 1, 1, 0, 0, 0, 0, 1]))).toEqual([0b1101, 1]);
    expect(Array.from(packbits([1, 0, 1, 1, 0, 0, 0, 0, 1], 'big'))).toEqual([0b10110000, 0x80]);
    const [packed, byteIndptr] = segmentPackbits([1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1], [0, 3, 12]);
    expect(Array.from(byteIndptr)).toEqual([0, 1, 3]);
    expect(Array.from(packed)).toEqual([0b111, 0b11101100, 0b1]);
    expect(() => segmentPackbits([1], [0, 2])).toThrow(/indptr ends at 2/);
  });
});
