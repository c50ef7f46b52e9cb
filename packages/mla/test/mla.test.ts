import { type GpuContext, IndexRangeError, PlanMismatchError, UnsupportedFeatureError, ValueError, createContext, decodeArray, encodeArray } from '@webinfer/core-buffers';
import { compareClose, mlaRef, permutation, randn, rng, testContextOptions, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchMLAPagedAttentionWrapper } from '../src';

let ctx: GpuContext;
let workspace: ReturnType<GpuContext['empty']>;
beforeAll(async () => {
  ctx = await createContext(testContextOptions());
  workspace = ctx.empty([32 << 20], 'u8');
});
afterAll(() => ctx?.dispose());

interface Case {
  name: string;
  qoLens: number[];
  kvLens: number[];
  numHeads: number;
  pageSize: number;
  causal: boolean;
  headDimKpe?: number;
  dtype?: 'f16' | 'bf16';
  kvDtype?: 'fp8_e4m3';
  /** ckv and kpe as slices of one [P, page, 576] tensor. */
  fused?: boolean;
  fixedSplitSize?: number;
  lseBaseE?: boolean;
  /** false: the f32 kernel even where the tensor-core one would run. */
  useTensorCores?: boolean;
  /** Tensor-core kernel shape (runs only where the device has subgroup matrices: GPU hosts). */
  tensorCore?: { rowBlocks?: 1 | 2 | 4; qStageRows?: 16 | 32 };
}

// The spec's MLA grid in miniature: batch 1/3/7, kv 0/17/33/96/97, qo 1..17, causal both ways,
// page 1/16, without kpe; plus 128 heads, bf16, fp8 KV, a fused 576-wide cache and forced splits.
const cases: Case[] = [
  { name: 'decode B=3, 16 heads, page 16', qoLens: [1, 1, 1], kvLens: [17, 33, 96], numHeads: 16, pageSize: 16, causal: false },
  { name: 'B=7 causal append, qo 1..17', qoLens: [1, 17, 5, 2, 9, 3, 1], kvLens: [0, 17, 33, 96, 97, 5, 40], numHeads: 16, pageSize: 16, causal: true },
  { name: 'page 1, non-causal qo > 1', qoLens: [2, 1, 3], kvLens: [17, 1, 33], numHeads: 8, pageSize: 1, causal: false },
  { name: 'without kpe', qoLens: [1, 4, 1], kvLens: [97, 33, 0], numHeads: 16, pageSize: 16, causal: true, headDimKpe: 0 },
  { name: '128 heads decode, bf16', qoLens: [1, 1], kvLens: [97, 33], numHeads: 128, pageSize: 16, causal: false, dtype: 'bf16' },
  // Shares the causal f16 kernel with the append case (each dtype/mask mix is one slow cold compile on lavapipe).
  { name: 'fused 576-wide cache', qoLens: [1, 3], kvLens: [40, 96], numHeads: 16, pageSize: 16, causal: true, fused: true },
  { name: 'B=1 long, forced split, LSE base e', qoLens: [6], kvLens: [300], numHeads: 16, pageSize: 16, causal: true, fixedSplitSize: 64, lseBaseE: true },
  // Same shapes as the first case (one compile on lavapipe); on tensor-core devices it keeps the f32 kernel tested.
  { name: 'decode B=3, f32 kernel forced (useTensorCores: false)', qoLens: [1, 1, 1], kvLens: [17, 33, 96], numHeads: 16, pageSize: 16, causal: false, useTensorCores: false },
  { name: 'fp8 e4m3 KV, f16 q', qoLens: [1, 2], kvLens: [50, 97], numHeads: 16, pageSize: 16, causal: true, kvDtype: 'fp8_e4m3' },
  // Tensor-core shapes other than the default (device-test bundles): 64 rows a workgroup, and Q
  // staged 16 rows a pass (what 32 KB devices take).
  { name: 'tensor cores, 64 rows a workgroup', qoLens: [1, 3, 1], kvLens: [97, 40, 17], numHeads: 128, pageSize: 16, causal: true, tensorCore: { rowBlocks: 4 } },
  { name: 'tensor cores, Q staged 16 rows a pass', qoLens: [1, 3, 1], kvLens: [97, 40, 17], numHeads: 64, pageSize: 16, causal: true, tensorCore: { qStageRows: 16 } },
];

function exact(r: () => number, n: number, dtype: 'f16' | 'bf16' | 'f32' | 'fp8_e4m3', scale = 1): Float32Array {
  return decodeArray(encodeArray(randn(r, n, scale), dtype), dtype) as Float32Array;
}

describe('BatchMLAPagedAttentionWrapper vs the float64 reference', () => {
  it.each(cases)('$name', async (c) => {
    if (c.tensorCore && !ctx.features.has('chromium-experimental-subgroup-matrix')) return;
    const seed = testSeed();
    const r = rng(seed);
    const dtype = c.dtype ?? 'f16';
    const [H, DC, DP, page] = [c.numHeads, 512, c.headDimKpe ?? 64, c.pageSize];
    const B = c.kvLens.length;
    const pages = c.kvLens.map((l) => Math.ceil(l / page));
    const kvIndptr = [0];
    for (const n of pages) kvIndptr.push(kvIndptr[kvIndptr.length - 1] + n);
    const numPages = kvIndptr[B] + 2;
    const perm = permutation(r, numPages);
    const kvIndices = Array.from({ length: kvIndptr[B] }, (_, i) => perm[i]);
    const qoIndptr = [0];
    for (const n of c.qoLens) qoIndptr.push(qoIndptr[qoIndptr.length - 1] + n);
    const T = qoIndptr[B];
    const kvDtype = c.kvDtype ?? dtype;
    const ckvHost = exact(r, numPages * page * DC, kvDtype, c.kvDtype ? 0.25 : 1);
    const kpeHost = exact(r, numPages * page * DP, kvDtype, c.kvDtype ? 0.25 : 1);
    const qnHost = exact(r, T * H * DC, dtype);
    const qpHost = exact(r, T * H * DP, dtype);
    let ckv: ReturnType<GpuContext['tensor']>;
    let kpe: ReturnType<GpuContext['tensor']> | undefined;
    if (c.fused) {
      const both = new Float32Array(numPages * page * (DC + DP));
      for (let s = 0; s < numPages * page; s++) {
        both.set(ckvHost.subarray(s * DC, (s + 1) * DC), s * (DC + DP));
        both.set(kpeHost.subarray(s * DP, (s + 1) * DP), s * (DC + DP) + DC);
      }
      const t = ctx.tensor(both, [numPages, page, DC + DP], dtype);
      ckv = t.slice(2, 0, DC);
      kpe = t.slice(2, DC, DC + DP);
    } else {
      ckv = ctx.tensor(ckvHost, [numPages, page, DC], kvDtype);
      kpe = DP > 0 ? ctx.tensor(kpeHost, [numPages, page, DP], kvDtype) : undefined;
    }
    const smScale = 1 / Math.sqrt(128 + 64);
    const w = new BatchMLAPagedAttentionWrapper(ctx, workspace);
    w.plan({ qoIndptr, kvIndptr, kvIndices, kvLenArr: c.kvLens, numHeads: H, headDimCkv: DC, headDimKpe: DP, pageSize: page, causal: c.causal, smScale, qDataType: dtype, kvDataType: kvDtype, fixedSplitSize: c.fixedSplitSize, useTensorCores: c.useTensorCores, ...(c.tensorCore ? { useTensorCores: true, debugTensorCore: c.tensorCore } : {}) });
    if (c.fixedSplitSize) expect(w.planInfo!.numSlots).toBeGreaterThan(0);
    const out = ctx.full([T, H, DC], dtype, Number.NaN);
    const lse = ctx.full([T, H], 'f32', Number.NaN);
    await ctx.checkErrors(() =>
      w.run(ctx.tensor(qnHost, [T, H, DC], dtype), DP > 0 ? ctx.tensor(qpHost, [T, H, DP], dtype) : undefined, ckv, kpe, { out, lse, returnLse: true, returnLseBaseOnE: c.lseBaseE }),
    );
    const gotO = await out.toArray();
    const gotL = await lse.toArray();
    for (let b = 0; b < B; b++) {
      const [q0, q1] = [qoIndptr[b], qoIndptr[b + 1]];
      if (q1 === q0) continue;
      const len = c.kvLens[b];
      const rowsOf = (host: Float32Array, width: number) => {
        const o = new Float64Array(len * width);
        for (let j = 0; j < len; j++) {
          const p = kvIndices[kvIndptr[b] + Math.floor(j / page)];
          for (let d = 0; d < width; d++) o[j * width + d] = host[(p * page + (j % page)) * width + d];
        }
        return o;
      };
      const ref = mlaRef({
        qNope: qnHost.subarray(q0 * H * DC, q1 * H * DC),
        qPe: qpHost.subarray(q0 * H * DP, q1 * H * DP),
        ckv: rowsOf(ckvHost, DC),
        kpe: rowsOf(kpeHost, DP),
        qoLen: q1 - q0,
        kvLen: len,
        numHeads: H,
        headDimCkv: DC,
        headDimKpe: DP,
        causal: c.causal,
        smScale,
      });
      const tol = dtype === 'bf16' ? 1e-2 : 2e-3;
      const ro = compareClose(gotO.subarray(q0 * H * DC, q1 * H * DC), ref.o, { rtol: tol, atol: tol });
      expect(ro.ok, `seed ${seed} request ${b}: o ${JSON.stringify(ro)}`).toBe(true);
      const wantL = c.lseBaseE ? ref.lse.map((x) => x * Math.LN2) : ref.lse;
      const rl = compareClose(gotL.subarray(q0 * H, q1 * H), wantL, { rtol: 1e-3, atol: 1e-3 });
      expect(rl.ok, `seed ${seed} request ${b}: lse ${JSON.stringify(rl)}`).toBe(true);
    }
    w.destroy();
  });
});

describe('BatchMLAPagedAttentionWrapper errors', () => {
  it('names the argument at fault before any GPU work', async () => {
    const w = new BatchMLAPagedAttentionWrapper(ctx, workspace);
    const base = { qoIndptr: [0, 1], kvIndptr: [0, 2], kvIndices: [0, 1], kvLenArr: [20], numHeads: 16, headDimCkv: 512, headDimKpe: 64, pageSize: 16, causal: false, smScale: 0.1 };
    expect(() => w.plan({ ...base, smScale: undefined as unknown as number })).toThrow(/smScale: is required/);
    expect(() => w.plan({ ...base, headDimCkv: 256 })).toThrow(UnsupportedFeatureError);
    expect(() => w.plan({ ...base, qDataType: 'f32' })).toThrow(/qDataType: f32 is not supported/);
    expect(() => w.plan({ ...base, kvDataType: 'fp8_e5m2' })).toThrow(UnsupportedFeatureError);
    expect(() => w.plan({ ...base, qDataType: 'fp8_e4m3' })).toThrow(/oDataType/);
    expect(() => w.plan({ ...base, kvLenArr: [40] })).toThrow(/kvLenArr/);
    expect(() => w.plan({ ...base, kvIndices: [0, -1] })).toThrow(IndexRangeError);
    expect(() => w.plan({ ...base, qoIndptr: [0, 1, 2] })).toThrow(/qoIndptr/);
    // Tensor cores take f16 only, and never fall back silently when forced.
    expect(() => w.plan({ ...base, qDataType: 'bf16', useTensorCores: true })).toThrow(/useTensorCores: the tensor-core path is unavailable/);
    if (!ctx.features.has('chromium-experimental-subgroup-matrix')) {
      expect(() => w.plan({ ...base, useTensorCores: true })).toThrow(/useTensorCores: the tensor-core path is unavailable: the device offers no subgroup matrices/);
    }
    expect(() => w.run(ctx.zeros([1, 16, 512], 'f16'), undefined, ctx.zeros([2, 16, 512], 'f16'), undefined)).toThrow(PlanMismatchError);
    w.destroy();
    // WebGPU's default 16 KB of workgroup memory: a typed error at plan(), not a failed pipeline.
    const small = await createContext({ limits: { maxComputeWorkgroupStorageSize: 16384 } });
    try {
      const ws = small.empty([1 << 20], 'u8');
      expect(() => new BatchMLAPagedAttentionWrapper(small, ws).plan({ ...base, useTensorCores: false })).toThrow(/ctx: the MLA kernels need \d+ bytes of workgroup memory; the device has 16384/);
    } finally {
      small.dispose();
    }
  });

  it('checks run() against the plan', () => {
    const w = new BatchMLAPagedAttentionWrapper(ctx, workspace);
    const base = { qoIndptr: [0, 1], kvIndptr: [0, 2], kvIndices: [0, 1], kvLenArr: [20], numHeads: 16, headDimCkv: 512, headDimKpe: 64, pageSize: 16, causal: false, smScale: 0.1 };
    w.plan(base);
    const qn = ctx.zeros([1, 16, 512], 'f16');
    const qp = ctx.zeros([1, 16, 64], 'f16');
    const ckv = ctx.zeros([2, 16, 512], 'f16');
    const kpe = ctx.zeros([2, 16, 64], 'f16');
    expect(() => w.run(qn, undefined, ckv, kpe)).toThrow(/qPe: is required/);
    expect(() => w.run(qn, qp, ctx.zeros([2, 8, 512], 'f16'), kpe)).toThrow(/ckvCache/);
    expect(() => w.run(qn, qp, ctx.zeros([1, 16, 512], 'f16'), ctx.zeros([1, 16, 64], 'f16'))).toThrow(/page id 1/);
    expect(() => w.run(ctx.zeros([1, 16, 512], 'bf16'), qp, ckv, kpe)).toThrow(/qNope/);
    expect(() => w.run(qn, qp, ckv, kpe, { vScale: -1 })).toThrow(ValueError);
    w.destroy();
  });
});
