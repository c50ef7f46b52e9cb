/**
 * The cases the page runs: each builds fresh random inputs, runs a webinfer kernel on the page's
 * GPU, and compares the result with the float64 reference. Small shapes: browsers may give a
 * software adapter (SwiftShader in CI).
 */
import { type DType, type GpuContext, decodeArray, encodeArray } from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper, singleDecodeWithKVCache } from '@webinfer/decode';
import { BatchPrefillWithPagedKVCacheWrapper, singlePrefillWithKVCache } from '@webinfer/prefill';
import { type AttentionRefOptions, attentionRef, compareClose, makePagedFixture, randn, rng } from '@webinfer/reference';

export interface CaseResult {
  name: string;
  passed: boolean;
  /** Largest |got - want| over the output. */
  maxAbsError: number;
  /** Wall time of run + read back (includes pipeline compilation on first use). */
  ms: number;
  detail: string;
}

interface Case {
  name: string;
  run: (ctx: GpuContext) => Promise<{ got: ArrayLike<number>; want: ArrayLike<number>; tol: number }>;
}

function exact(r: () => number, n: number, dtype: DType): Float32Array {
  return decodeArray(encodeArray(randn(r, n), dtype), dtype) as Float32Array;
}

/** Per-request reference, rows concatenated. */
function refBatch(
  reqs: { q: Float32Array; k: Float32Array; v: Float32Array; qoLen: number; kvLen: number }[],
  heads: { numQoHeads: number; numKvHeads: number; headDimQk: number },
  options: AttentionRefOptions,
): Float64Array {
  const parts = reqs.map((q) => attentionRef({ ...heads, ...options, ...q }).o);
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const cases: Case[] = [
  {
    name: 'batch decode, paged f16 KV, GQA 4, page 16, kv 37/1/64',
    run: async (ctx) => {
      const r = rng(1);
      const [hq, hkv, d, page] = [8, 2, 64, 16];
      const kvLens = [37, 1, 64];
      const f = makePagedFixture(r, kvLens, page, hkv, d, 'NHD', (n) => exact(r, n, 'f16'));
      const q = exact(r, kvLens.length * hq * d, 'f16');
      const w = new BatchDecodeWithPagedKVCacheWrapper(ctx, ctx.empty([8 << 20], 'u8'));
      w.plan({ indptr: f.indptr, indices: f.indices, lastPageLen: f.lastPageLen, numQoHeads: hq, numKvHeads: hkv, headDim: d, pageSize: page });
      const cache = { k: ctx.tensor(f.kCache, [f.maxPages, page, hkv, d], 'f16'), v: ctx.tensor(f.vCache, [f.maxPages, page, hkv, d], 'f16') };
      const o = w.run(ctx.tensor(q, [kvLens.length, hq, d], 'f16'), cache);
      const got = await o.toArray();
      w.destroy();
      const want = refBatch(
        kvLens.map((kv, b) => ({ q: q.subarray(b * hq * d, (b + 1) * hq * d), k: f.k[b], v: f.v[b], qoLen: 1, kvLen: kv })),
        { numQoHeads: hq, numKvHeads: hkv, headDimQk: d },
        {},
      );
      return { got, want, tol: 2e-3 };
    },
  },
  {
    name: 'single decode, HND bf16, RoPE, sliding window 23',
    run: async (ctx) => {
      const r = rng(2);
      const [kv, hq, hkv, d] = [99, 4, 1, 128];
      const q = exact(r, hq * d, 'bf16');
      const k = exact(r, kv * hkv * d, 'bf16');
      const v = exact(r, kv * hkv * d, 'bf16');
      const o = singleDecodeWithKVCache(ctx.tensor(q, [hq, d], 'bf16'), ctx.tensor(k, [hkv, kv, d], 'bf16'), ctx.tensor(v, [hkv, kv, d], 'bf16'), {
        kvLayout: 'HND',
        posEncodingMode: 'ROPE_LLAMA',
        windowLeft: 23,
      });
      const want = attentionRef({ q, k, v, qoLen: 1, kvLen: kv, numQoHeads: hq, numKvHeads: hkv, headDimQk: d, posEncodingMode: 'ROPE_LLAMA', windowLeft: 23 }).o;
      return { got: await o.toArray(), want, tol: 1e-2 };
    },
  },
  {
    name: 'single prefill, causal (bottom-right), qo 17 kv 40, RoPE',
    run: async (ctx) => {
      const r = rng(3);
      const [qo, kv, hq, hkv, d] = [17, 40, 4, 2, 64];
      const q = exact(r, qo * hq * d, 'f16');
      const k = exact(r, kv * hkv * d, 'f16');
      const v = exact(r, kv * hkv * d, 'f16');
      const o = singlePrefillWithKVCache(ctx.tensor(q, [qo, hq, d], 'f16'), ctx.tensor(k, [kv, hkv, d], 'f16'), ctx.tensor(v, [kv, hkv, d], 'f16'), {
        causal: true,
        posEncodingMode: 'ROPE_LLAMA',
      });
      const want = attentionRef({ q, k, v, qoLen: qo, kvLen: kv, numQoHeads: hq, numKvHeads: hkv, headDimQk: d, causal: true, posEncodingMode: 'ROPE_LLAMA' }).o;
      return { got: await o.toArray(), want, tol: 4e-3 };
    },
  },
  {
    name: 'batch paged prefill, custom masks, page 5, qo 9/20 kv 30/44',
    run: async (ctx) => {
      const r = rng(4);
      const [hq, hkv, d, page] = [4, 4, 64, 5];
      const qoLens = [9, 20];
      const kvLens = [30, 44];
      const f = makePagedFixture(r, kvLens, page, hkv, d, 'NHD', (n) => exact(r, n, 'f16'));
      const q = exact(r, 29 * hq * d, 'f16');
      const masks = qoLens.map((qo, b) => Uint8Array.from({ length: qo * kvLens[b] }, () => Number(r() < 0.6)));
      const w = new BatchPrefillWithPagedKVCacheWrapper(ctx, ctx.empty([8 << 20], 'u8'));
      w.plan({
        qoIndptr: [0, 9, 29],
        pagedKvIndptr: f.indptr,
        pagedKvIndices: f.indices,
        pagedKvLastPageLen: f.lastPageLen,
        numQoHeads: hq,
        numKvHeads: hkv,
        headDimQk: d,
        pageSize: page,
        customMask: Uint8Array.from([...masks[0], ...masks[1]]),
      });
      const cache = { k: ctx.tensor(f.kCache, [f.maxPages, page, hkv, d], 'f16'), v: ctx.tensor(f.vCache, [f.maxPages, page, hkv, d], 'f16') };
      const got = await w.run(ctx.tensor(q, [29, hq, d], 'f16'), cache).toArray();
      w.destroy();
      const want = new Float64Array(29 * hq * d);
      want.set(attentionRef({ q: q.subarray(0, 9 * hq * d), k: f.k[0], v: f.v[0], qoLen: 9, kvLen: 30, numQoHeads: hq, numKvHeads: hkv, headDimQk: d, customMask: masks[0] }).o, 0);
      want.set(attentionRef({ q: q.subarray(9 * hq * d), k: f.k[1], v: f.v[1], qoLen: 20, kvLen: 44, numQoHeads: hq, numKvHeads: hkv, headDimQk: d, customMask: masks[1] }).o, 9 * hq * d);
      return { got, want, tol: 2e-3 };
    },
  },
];

export const CASE_NAMES = cases.map((c) => c.name);

/** Runs every case; a thrown error counts as a failure with its message. */
export async function runCases(ctx: GpuContext, onResult: (r: CaseResult) => void, only?: string): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const c of cases.filter((x) => !only || x.name.includes(only))) {
    const t0 = performance.now();
    let res: CaseResult;
    try {
      const { got, want, tol } = await ctx.checkErrors(() => c.run(ctx));
      const report = compareClose(got, want, { rtol: tol, atol: tol });
      res = {
        name: c.name,
        passed: report.ok,
        maxAbsError: report.maxAbsError,
        ms: performance.now() - t0,
        detail: report.ok ? `${report.count} values within ${tol}` : `${report.mismatches}/${report.count} differ; first at ${report.first?.index}: ${report.first?.actual} vs ${report.first?.expected}`,
      };
    } catch (e) {
      res = { name: c.name, passed: false, maxAbsError: Number.NaN, ms: performance.now() - t0, detail: `error: ${String(e)}` };
    }
    results.push(res);
    onResult(res);
  }
  return results;
}
