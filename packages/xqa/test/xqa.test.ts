import { DTypeError, type FloatDType, type GpuContext, type KVLayout, ShapeError, UnsupportedFeatureError, ValueError, createContext, decodeArray, encodeArray } from '@webinfer/core-buffers';
import { attentionRef, compareClose, gatherPagedRef, permutation, randn, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { xqa } from '../src';

let ctx: GpuContext;
let workspace: ReturnType<GpuContext['empty']>;
beforeAll(async () => {
  ctx = await createContext();
  workspace = ctx.empty([16 << 20], 'u8');
});
afterAll(() => ctx?.dispose());

interface Case {
  name: string;
  seqLens: number[];
  group: number;
  numKvHeads: number;
  headDim?: number;
  pageSize: number;
  layout?: KVLayout;
  qDtype?: 'f16' | 'bf16';
  kvDtype?: FloatDType;
  qScale?: number;
  kvScale?: number;
  sinks?: boolean;
  slidingWinSize?: number;
  /** Extra page-table columns beyond the longest request. */
  spareColumns?: number;
}

// The spec's xqa grid in miniature: groups 8/16, pages 16/64, NHD/HND, scales 1 and 0.5, sinks,
// sliding window, fp8 KV; lengths 0, 1, partial and full pages, and rows long enough to split.
const cases: Case[] = [
  { name: 'group 8, page 16 NHD', seqLens: [1, 54, 97, 16], group: 8, numKvHeads: 2, pageSize: 16 },
  { name: 'group 16, page 64 HND, scales 0.5', seqLens: [130, 0, 64], group: 16, numKvHeads: 1, pageSize: 64, layout: 'HND', qScale: 0.5, kvScale: 0.5 },
  { name: 'sinks', seqLens: [33, 200], group: 8, numKvHeads: 2, pageSize: 16, sinks: true },
  { name: 'sliding window 40', seqLens: [100, 39, 41, 600], group: 8, numKvHeads: 1, pageSize: 32, slidingWinSize: 40 },
  { name: 'fp8 e4m3 KV, kvScale 0.5', seqLens: [77, 300], group: 8, numKvHeads: 2, pageSize: 16, kvDtype: 'fp8_e4m3', kvScale: 0.5 },
  { name: 'bf16, long rows split, spare columns', seqLens: [700, 5, 0], group: 4, numKvHeads: 2, pageSize: 128, qDtype: 'bf16', spareColumns: 2 },
  { name: 'head dim 64, group 16 sinks + window', seqLens: [300, 12], group: 16, numKvHeads: 2, headDim: 64, pageSize: 16, sinks: true, slidingWinSize: 100 },
];

function exact(r: () => number, n: number, dtype: FloatDType): Float32Array {
  return decodeArray(encodeArray(randn(r, n), dtype), dtype) as Float32Array;
}

describe('xqa vs the float64 reference', () => {
  it.each(cases)('$name', async (c) => {
    const seed = testSeed();
    const r = rng(seed);
    const layout = c.layout ?? 'NHD';
    const qDtype = c.qDtype ?? 'f16';
    const kvDtype = c.kvDtype ?? qDtype;
    const D = c.headDim ?? 128;
    const [B, hkv, page] = [c.seqLens.length, c.numKvHeads, c.pageSize];
    const hq = hkv * c.group;
    const pagesPerSeq = Math.max(1, ...c.seqLens.map((l) => Math.ceil(l / page))) + (c.spareColumns ?? 0);
    const numPages = B * pagesPerSeq + 1;
    const per = page * hkv * D;
    const kHost = exact(r, numPages * per, kvDtype);
    const vHost = exact(r, numPages * per, kvDtype);
    const perm = permutation(r, numPages);
    const table = Int32Array.from({ length: B * pagesPerSeq }, (_, i) => perm[i]);
    const qHost = exact(r, B * hq * D, qDtype);
    const shape = layout === 'NHD' ? [numPages, page, hkv, D] : [numPages, hkv, page, D];
    const sinksHost = c.sinks ? Float32Array.from({ length: hq }, () => r() * 4 - 1) : undefined;
    const out = ctx.full([B, 1, hq, D], qDtype, Number.NaN);
    await ctx.checkErrors(() =>
      xqa(
        ctx.tensor(qHost, [B, 1, hq, D], qDtype),
        ctx.tensor(kHost, shape, kvDtype),
        ctx.tensor(vHost, shape, kvDtype),
        ctx.tensor(table, [B, pagesPerSeq], 'i32'),
        ctx.tensor(Uint32Array.from(c.seqLens), [B, 1], 'u32'),
        out,
        workspace,
        {
          numKvHeads: hkv,
          pageSize: page,
          kvLayout: layout,
          qScale: c.qScale,
          kvScale: c.kvScale,
          slidingWinSize: c.slidingWinSize,
          sinks: sinksHost ? ctx.tensor(sinksHost, [hkv, c.group], 'f32') : undefined,
        },
      ),
    );
    const got = await out.toArray();
    const indptr = Array.from({ length: B + 1 }, (_, b) => b * pagesPerSeq);
    const cache = { layout, pageSize: page, numHeads: hkv, headDim: D };
    const scale = (c.qScale ?? 1) * (c.kvScale ?? 1) / Math.sqrt(D);
    for (let b = 0; b < B; b++) {
      const len = c.seqLens[b];
      const ref = attentionRef({
        q: qHost.subarray(b * hq * D, (b + 1) * hq * D),
        k: gatherPagedRef({ ...cache, data: kHost }, indptr, table, len, b),
        v: gatherPagedRef({ ...cache, data: vHost }, indptr, table, len, b),
        qoLen: 1,
        kvLen: len,
        numQoHeads: hq,
        numKvHeads: hkv,
        headDimQk: D,
        smScale: scale,
        vScale: c.kvScale ?? 1,
        windowLeft: c.slidingWinSize ? c.slidingWinSize - 1 : -1,
        sinks: sinksHost,
      });
      const tol = qDtype === 'bf16' ? 1e-2 : 2e-3;
      const res = compareClose(got.subarray(b * hq * D, (b + 1) * hq * D), ref.o, { rtol: tol, atol: tol });
      expect(res.ok, `seed ${seed} request ${b} (len ${len}): ${JSON.stringify(res)}`).toBe(true);
    }
  });
});

describe('xqa errors', () => {
  it('names the argument at fault before any GPU work', () => {
    const [B, hq, hkv, D, page] = [2, 8, 2, 64, 16];
    const q = ctx.zeros([B, 1, hq, D], 'f16');
    const k = ctx.zeros([4, page, hkv, D], 'f16');
    const table = ctx.zeros([B, 2], 'i32');
    const lens = ctx.zeros([B], 'u32');
    const out = ctx.zeros([B, 1, hq, D], 'f16');
    const o = { numKvHeads: hkv, pageSize: page };
    expect(() => xqa(q, k, k, table, lens, out, workspace, { ...o, pageSize: 8 })).toThrow(/pageSize: must be one of 16, 32, 64, 128/);
    expect(() => xqa(q, k, k, table, lens, out, workspace, { ...o, numKvHeads: 3 })).toThrow(ValueError);
    expect(() => xqa(ctx.zeros([B, hq, D], 'f16'), k, k, table, lens, out, workspace, o)).toThrow(ShapeError);
    expect(() => xqa(ctx.zeros([B, 1, hq, D], 'f32'), k, k, table, lens, out, workspace, o)).toThrow(DTypeError);
    expect(() => xqa(q, ctx.zeros([4, page, hkv, D], 'bf16'), k, table, lens, out, workspace, o)).toThrow(/kCache/);
    expect(() => xqa(q, k, k, ctx.zeros([B + 1, 2], 'i32'), lens, out, workspace, o)).toThrow(/pageTable/);
    expect(() => xqa(q, k, k, table, ctx.zeros([B + 1], 'u32'), out, workspace, o)).toThrow(/seqLens/);
    expect(() => xqa(q, k, k, table, lens, ctx.zeros([B, 1, hq, D], 'bf16'), workspace, o)).toThrow(/output/);
    expect(() => xqa(q, k, k, table, lens, out, workspace, { ...o, sinks: ctx.zeros([hq], 'f32') })).toThrow(/sinks/);
    expect(() => xqa(q, k, k, table, lens, out, workspace, { ...o, qSeqLen: 2 })).toThrow(/mask: is required/);
    const q5 = ctx.zeros([B, 1, 2, hq, D], 'f16');
    const out5 = ctx.zeros([B, 1, 2, hq, D], 'f16');
    expect(() => xqa(q5, k, k, table, lens, out5, workspace, { ...o, qSeqLen: 2, mask: ctx.zeros([B, 2, 2], 'u32') })).toThrow(/mask/);
    expect(() => xqa(q5, k, k, table, lens, out5, workspace, { ...o, qSeqLen: 2, mask: ctx.zeros([B, 2, 1], 'u32'), slidingWinSize: 4 })).toThrow(UnsupportedFeatureError);
    expect(() => xqa(q, k, k, table, lens, out, workspace, { ...o, qSeqLen: 2, mask: ctx.zeros([B, 2, 1], 'u32') })).toThrow(/q: expected/);
    expect(() => xqa(q, k, k, table, lens, out, workspace, { ...o, slidingWinSize: -1 })).toThrow(/slidingWinSize/);
  });
});

describe('xqa speculative decoding (qSeqLen > 1 with a draft mask)', () => {
  it.each([
    { name: 'qSeqLen 3, group 8, page 16', seqLens: [20, 3, 70], qSeqLen: 3, group: 8, hkv: 2, page: 16, sinks: false },
    { name: 'qSeqLen 5, tree mask, sinks, page 64, split', seqLens: [600, 9], qSeqLen: 5, group: 4, hkv: 1, page: 64, sinks: true },
    { name: 'qSeqLen 33 (two mask words), tile kernel', seqLens: [40, 100], qSeqLen: 33, group: 2, hkv: 2, page: 16, sinks: false, tile: true },
  ] as { name: string; seqLens: number[]; qSeqLen: number; group: number; hkv: number; page: number; sinks: boolean; tile?: boolean }[])('$name', async (c) => {
    const seed = testSeed();
    const r = rng(seed);
    const D = 64;
    const B = c.seqLens.length;
    const hq = c.hkv * c.group;
    const Q = c.qSeqLen;
    const words = Math.ceil(Q / 32);
    const pps = Math.max(...c.seqLens.map((l) => Math.ceil(l / c.page)));
    const numPages = B * pps + 1;
    const per = c.page * c.hkv * D;
    const kHost = exact(r, numPages * per, 'f16');
    const vHost = exact(r, numPages * per, 'f16');
    const perm = permutation(r, numPages);
    const table = Int32Array.from({ length: B * pps }, (_, i) => perm[i]);
    const qHost = exact(r, B * Q * hq * D, 'f16');
    // A random tree over the drafts: each draft sees itself and a random subset of earlier ones.
    const bits = Array.from({ length: B * Q }, (_, row) => {
      const i = row % Q;
      return Array.from({ length: Q }, (_, t) => t === i || (t < i && r() < 0.6));
    });
    const maskWords = new Uint32Array(B * Q * words);
    for (const [row, rowBits] of bits.entries()) {
      for (const [t, on] of rowBits.entries()) if (on) maskWords[row * words + (t >> 5)] |= 1 << (t & 31);
    }
    const sinksHost = c.sinks ? Float32Array.from({ length: hq }, () => r() * 3) : undefined;
    const out = ctx.full([B, 1, Q, hq, D], 'f16', Number.NaN);
    await ctx.checkErrors(() =>
      xqa(
        ctx.tensor(qHost, [B, 1, Q, hq, D], 'f16'),
        ctx.tensor(kHost, [numPages, c.page, c.hkv, D], 'f16'),
        ctx.tensor(vHost, [numPages, c.page, c.hkv, D], 'f16'),
        ctx.tensor(table, [B, pps], 'i32'),
        ctx.tensor(Uint32Array.from(c.seqLens), [B], 'u32'),
        out,
        workspace,
        {
          numKvHeads: c.hkv,
          pageSize: c.page,
          qSeqLen: Q,
          mask: ctx.tensor(maskWords, [B, Q, words], 'u32'),
          sinks: sinksHost ? ctx.tensor(sinksHost, [c.hkv, c.group], 'f32') : undefined,
          // Both decode kernels carry the draft-mask term: the workgroup-memory one is forced here.
          debugKernel: c.tile ? { kernel: 'tile' } : undefined,
        },
      ),
    );
    const got = await out.toArray();
    const indptr = Array.from({ length: B + 1 }, (_, b) => b * pps);
    const cache = { layout: 'NHD' as const, pageSize: c.page, numHeads: c.hkv, headDim: D };
    for (let b = 0; b < B; b++) {
      const len = c.seqLens[b];
      const customMask = new Uint8Array(Q * len);
      for (let i = 0; i < Q; i++) {
        for (let j = 0; j < len; j++) {
          const t = j - (len - Q);
          customMask[i * len + j] = t < 0 || bits[b * Q + i][t] ? 1 : 0;
        }
      }
      const ref = attentionRef({
        q: qHost.subarray(b * Q * hq * D, (b + 1) * Q * hq * D),
        k: gatherPagedRef({ ...cache, data: kHost }, indptr, table, len, b),
        v: gatherPagedRef({ ...cache, data: vHost }, indptr, table, len, b),
        qoLen: Q,
        kvLen: len,
        numQoHeads: hq,
        numKvHeads: c.hkv,
        headDimQk: D,
        customMask,
        sinks: sinksHost,
      });
      const res = compareClose(got.subarray(b * Q * hq * D, (b + 1) * Q * hq * D), ref.o, { rtol: 2e-3, atol: 2e-3 });
      expect(res.ok, `seed ${seed} request ${b}: ${JSON.stringify(res)}`).toBe(true);
    }
  });
});
