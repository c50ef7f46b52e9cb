import { createContext, type FloatDType, type GpuContext, type KVLayout } from '@webinfer/core-buffers';
import { compareClose, type PosEncodingMode, rng, testContextOptions, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { singlePrefillWithKVCache, singlePrefillWithKVCacheReturnLse } from '../src';
import { exactRandn, expectedBatch, pathOverride, toHnd, tolerance } from './helpers';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext(testContextOptions());
});
afterAll(() => ctx?.dispose());

interface Case {
  qoLen: number;
  kvLen: number;
  hq: number;
  hkv: number;
  dqk: number;
  dvo?: number;
  layout?: KVLayout;
  dtype?: FloatDType;
  kvDtype?: FloatDType;
  causal?: boolean;
  pos?: PosEncodingMode;
  windowLeft?: number;
  softCap?: number;
  /** Custom mask: 'causal' (tril equal to causal) or 'random'. */
  mask?: 'causal' | 'random';
  tile?: [number, number, ('none' | 'kv' | 'all' | 'k')?];
  kScale?: number;
  vScale?: number;
}

const cases: Case[] = [
  { qoLen: 1, kvLen: 1, hq: 4, hkv: 4, dqk: 64 },
  { qoLen: 37, kvLen: 54, hq: 4, hkv: 1, dqk: 64, causal: true },
  { qoLen: 17, kvLen: 97, hq: 8, hkv: 2, dqk: 128, causal: true, layout: 'HND', pos: 'ROPE_LLAMA' },
  { qoLen: 34, kvLen: 1, hq: 4, hkv: 4, dqk: 64, causal: true }, // qo > kv: first rows see nothing
  { qoLen: 70, kvLen: 33, hq: 2, hkv: 2, dqk: 64, causal: false },
  { qoLen: 45, kvLen: 120, hq: 4, hkv: 2, dqk: 64, causal: true, windowLeft: 13 },
  { qoLen: 45, kvLen: 120, hq: 4, hkv: 2, dqk: 64, causal: false, windowLeft: 20 },
  { qoLen: 33, kvLen: 81, hq: 4, hkv: 4, dqk: 128, causal: true, softCap: 30 },
  { qoLen: 17, kvLen: 81, hq: 8, hkv: 8, dqk: 64, causal: false, pos: 'ALIBI' },
  { qoLen: 30, kvLen: 77, hq: 4, hkv: 1, dqk: 64, mask: 'causal' },
  { qoLen: 30, kvLen: 77, hq: 4, hkv: 2, dqk: 64, mask: 'random', windowLeft: 40 },
  { qoLen: 40, kvLen: 70, hq: 2, hkv: 1, dqk: 192, dvo: 128, causal: true },
  { qoLen: 20, kvLen: 50, hq: 2, hkv: 2, dqk: 256, causal: true, dtype: 'bf16' },
  { qoLen: 25, kvLen: 60, hq: 4, hkv: 2, dqk: 64, causal: true, dtype: 'f32' },
  { qoLen: 25, kvLen: 60, hq: 4, hkv: 2, dqk: 128, causal: true, kvDtype: 'fp8_e4m3', kScale: 0.5, vScale: 2 },
  { qoLen: 25, kvLen: 60, hq: 4, hkv: 2, dqk: 64, causal: true, kvDtype: 'fp8_e5m2', pos: 'ROPE_LLAMA' },
  { qoLen: 50, kvLen: 90, hq: 8, hkv: 2, dqk: 64, causal: true, tile: [16, 8] },
  { qoLen: 50, kvLen: 90, hq: 8, hkv: 2, dqk: 128, causal: true, tile: [32, 16], layout: 'HND' },
  { qoLen: 50, kvLen: 90, hq: 8, hkv: 2, dqk: 128, causal: true, tile: [32, 16, 'kv'] }, // K/V widened to f32 as they are stored
  // f32 K with P in its memory, 2 x 8 micro-tiles: plain, RoPE (loop loads), custom mask + soft cap
  { qoLen: 50, kvLen: 90, hq: 8, hkv: 2, dqk: 128, causal: true, tile: [32, 16, 'k'] },
  { qoLen: 37, kvLen: 97, hq: 4, hkv: 1, dqk: 64, causal: true, pos: 'ROPE_LLAMA', tile: [64, 16, 'k'] },
  { qoLen: 30, kvLen: 77, hq: 4, hkv: 2, dqk: 64, mask: 'random', softCap: 30, tile: [64, 16, 'k'], layout: 'HND' },
  { qoLen: 16, kvLen: 700, hq: 4, hkv: 4, dqk: 64, causal: true, pos: 'ROPE_LLAMA' }, // append: split KV
];

describe('singlePrefillWithKVCache', () => {
  it.each(cases)('qo $qoLen kv $kvLen Hq $hq Hkv $hkv D $dqk/$dvo $layout $dtype $kvDtype causal $causal $pos w$windowLeft cap$softCap mask $mask tile $tile', async (c) => {
    const seed = testSeed();
    const r = rng(seed);
    const dvo = c.dvo ?? c.dqk;
    const dtype = c.dtype ?? 'f16';
    const kvDtype = c.kvDtype ?? dtype;
    const layout = c.layout ?? 'NHD';
    const qHost = exactRandn(r, c.qoLen * c.hq * c.dqk, dtype);
    const kHost = exactRandn(r, c.kvLen * c.hkv * c.dqk, kvDtype);
    const vHost = exactRandn(r, c.kvLen * c.hkv * dvo, kvDtype);
    let mask: Uint8Array | undefined;
    if (c.mask) {
      mask = new Uint8Array(c.qoLen * c.kvLen);
      for (let i = 0; i < c.qoLen; i++) {
        for (let j = 0; j < c.kvLen; j++) mask[i * c.kvLen + j] = c.mask === 'causal' ? Number(j <= i + c.kvLen - c.qoLen) : Number(r() < 0.6);
      }
    }
    const kvShape = (d: number) => (layout === 'NHD' ? [c.kvLen, c.hkv, d] : [c.hkv, c.kvLen, d]);
    const k = ctx.tensor(layout === 'NHD' ? kHost : toHnd(kHost, c.kvLen, c.hkv, c.dqk), kvShape(c.dqk), kvDtype);
    const v = ctx.tensor(layout === 'NHD' ? vHost : toHnd(vHost, c.kvLen, c.hkv, dvo), kvShape(dvo), kvDtype);
    const q = ctx.tensor(qHost, [c.qoLen, c.hq, c.dqk], dtype);
    // Poisoned output: an element the kernel never writes stays NaN and fails the comparison.
    const out = ctx.full([c.qoLen, c.hq, dvo], dtype, Number.NaN);
    const [o, lse] = await ctx.checkErrors(() =>
      singlePrefillWithKVCacheReturnLse(q, k, v, {
        ...pathOverride,
        out,
        kvLayout: layout,
        causal: c.causal,
        customMask: mask,
        posEncodingMode: c.pos,
        windowLeft: c.windowLeft,
        logitsSoftCap: c.softCap,
        kScale: c.kScale,
        vScale: c.vScale,
        ...(c.tile ? { debugTile: c.tile } : {}),
      }),
    );
    expect(o.buffer).toBe(out.buffer);
    expect(lse.shape).toEqual([c.qoLen, c.hq]);
    const want = expectedBatch(
      [{ q: qHost, k: kHost, v: vHost, qoLen: c.qoLen, kvLen: c.kvLen, mask }],
      { numQoHeads: c.hq, numKvHeads: c.hkv, headDimQk: c.dqk, headDimVo: dvo },
      {
        causal: c.causal,
        posEncodingMode: c.pos,
        windowLeft: c.windowLeft,
        logitsSoftCap: c.softCap,
        smScale: (1 / Math.sqrt(c.dqk)) * (c.kScale ?? 1),
        vScale: c.vScale,
      },
    );
    const tol = tolerance(dtype, kvDtype);
    // RoPE'd q/k are rounded to the input's 16-bit format (as FlashInfer's prefill does).
    const t = c.pos === 'ROPE_LLAMA' && dtype !== 'f32' ? { rtol: 4e-3, atol: 4e-3 } : tol;
    const ro = compareClose(await o.toArray(), want.o, t);
    const rl = compareClose(await lse.toArray(), want.lse, { rtol: 1e-3, atol: 2e-3 });
    expect(ro.ok, `seed ${seed}: ${JSON.stringify(ro)}`).toBe(true);
    expect(rl.ok, `seed ${seed}: ${JSON.stringify(rl)}`).toBe(true);
  });

  it('runs without shader-f16 and subgroups (the browser-portable path) to the same result', async () => {
    const plain = await createContext({ disableFeatures: ['shader-f16', 'subgroups'] });
    try {
      const r = rng(testSeed());
      const [qo, kv, hq, hkv, d] = [37, 90, 8, 2, 64];
      const qh = exactRandn(r, qo * hq * d, 'f16');
      const kh = exactRandn(r, kv * hkv * d, 'f16');
      const vh = exactRandn(r, kv * hkv * d, 'f16');
      const run = async (c: GpuContext) => {
        const o = singlePrefillWithKVCache(c.tensor(qh, [qo, hq, d], 'f16'), c.tensor(kh, [kv, hkv, d], 'f16'), c.tensor(vh, [kv, hkv, d], 'f16'), {
          causal: true,
          posEncodingMode: 'ROPE_LLAMA',
          windowLeft: 40,
          out: c.full([qo, hq, d], 'f16', Number.NaN),
        });
        return o.toArray();
      };
      const want = expectedBatch([{ q: qh, k: kh, v: vh, qoLen: qo, kvLen: kv }], { numQoHeads: hq, numKvHeads: hkv, headDimQk: d, headDimVo: d }, { causal: true, posEncodingMode: 'ROPE_LLAMA', windowLeft: 40 });
      for (const c of [plain, ctx]) {
        const res = compareClose(await run(c), want.o, { rtol: 4e-3, atol: 4e-3 });
        expect(res.ok, JSON.stringify(res)).toBe(true);
      }
    } finally {
      plain.dispose();
    }
  });

  it("fits WebGPU's default 16 KB of workgroup memory (swizzled tiles), D 128 and 256", async () => {
    const small = await createContext({ limits: { maxComputeWorkgroupStorageSize: 16384 } });
    try {
      const r = rng(testSeed());
      for (const d of [128, 256]) {
        const [qo, kv, hq, hkv] = [37, 70, 4, 2];
        const qh = exactRandn(r, qo * hq * d, 'f16');
        const kh = exactRandn(r, kv * hkv * d, 'f16');
        const vh = exactRandn(r, kv * hkv * d, 'f16');
        const o = singlePrefillWithKVCache(small.tensor(qh, [qo, hq, d], 'f16'), small.tensor(kh, [kv, hkv, d], 'f16'), small.tensor(vh, [kv, hkv, d], 'f16'), {
          causal: true,
          useTensorCores: false,
          out: small.full([qo, hq, d], 'f16', Number.NaN),
        });
        const want = expectedBatch([{ q: qh, k: kh, v: vh, qoLen: qo, kvLen: kv }], { numQoHeads: hq, numKvHeads: hkv, headDimQk: d, headDimVo: d }, { causal: true });
        const res = compareClose(await small.checkErrors(() => o.toArray()), want.o, tolerance('f16', 'f16'));
        expect(res.ok, `D ${d}: ${JSON.stringify(res)}`).toBe(true);
      }
    } finally {
      small.dispose();
    }
  });

  it('custom mask equal to causal gives the same output as causal', async () => {
    const r = rng(testSeed());
    const [qo, kv, h, d] = [21, 50, 2, 64];
    const q = ctx.tensor(exactRandn(r, qo * h * d, 'f16'), [qo, h, d], 'f16');
    const k = ctx.tensor(exactRandn(r, kv * h * d, 'f16'), [kv, h, d], 'f16');
    const v = ctx.tensor(exactRandn(r, kv * h * d, 'f16'), [kv, h, d], 'f16');
    const mask = Array.from({ length: qo * kv }, (_, e) => Math.floor(e % kv) <= Math.floor(e / kv) + kv - qo);
    const a = await singlePrefillWithKVCache(q, k, v, { causal: true }).toArray();
    const b = await singlePrefillWithKVCache(q, k, v, { customMask: mask }).toArray();
    expect(compareClose(b, a, { rtol: 1e-3, atol: 1e-3 }).ok).toBe(true);
  });

  it('returns just o by default, and rejects bad input before any GPU work', () => {
    const q = ctx.empty([4, 2, 64], 'f16');
    const k = ctx.empty([3, 2, 64], 'f16');
    expect(singlePrefillWithKVCache(q, k, k).shape).toEqual([4, 2, 64]);
    expect(() => singlePrefillWithKVCache(q, k, ctx.empty([3, 2, 64], 'bf16'))).toThrow(/v is bf16/);
    expect(() => singlePrefillWithKVCache(q, ctx.empty([3, 3, 64], 'f16'), ctx.empty([3, 3, 64], 'f16'))).toThrow(/numQoHeads: 2 query heads are not a multiple of 3/);
    expect(() => singlePrefillWithKVCache(ctx.empty([4, 2, 96], 'f16'), ctx.empty([3, 2, 96], 'f16'), ctx.empty([3, 2, 96], 'f16'))).toThrow(/head_dim_qk 96 is not supported/);
    expect(() => singlePrefillWithKVCache(q, k, k, { customMask: [true, false] })).toThrow(/customMask: has 2 elements/);
    expect(() => singlePrefillWithKVCache(q, k, k, { windowLeft: -2 })).toThrow(/windowLeft/);
    if (!ctx.features.has('chromium-experimental-subgroup-matrix')) {
      expect(() => singlePrefillWithKVCache(q, k, k, { useTensorCores: true })).toThrow(/useTensorCores: the tensor-core path is unavailable: the device offers no subgroup matrices/);
    }
    expect(() => singlePrefillWithKVCache(ctx.empty([4, 2, 64], 'bf16'), ctx.empty([3, 2, 64], 'bf16'), ctx.empty([3, 2, 64], 'bf16'), { useTensorCores: true })).toThrow(/useTensorCores: the tensor-core path is unavailable/);
    expect(() => singlePrefillWithKVCache(q, k, k, { posEncodingMode: 'ALIBI', logitsSoftCap: 5 })).toThrow(/ALiBi with a logits soft cap/);
    expect(() => singlePrefillWithKVCache(ctx.empty([4, 2, 128], 'f16'), ctx.empty([3, 2, 128], 'f16'), ctx.empty([3, 2, 64], 'f16'), { posEncodingMode: 'ROPE_LLAMA' })).toThrow(/headDimVo == headDimQk/);
  });
});
