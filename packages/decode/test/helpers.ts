/** Builders shared by the decode tests: random paged caches and the float64 expectation. */
import {
  type DType,
  type FloatDType,
  type GpuContext,
  type KVLayout,
  type Tensor,
  decodeArray,
  encodeArray,
} from '@webinfer/core-buffers';
import { type PagedFixture, type PosEncodingMode, attentionRef, makePagedFixture as makePagedFixtureRef, randn } from '@webinfer/reference';

export type { PagedFixture } from '@webinfer/reference';

/** Values exactly representable in `dtype` (so the reference sees what the GPU sees). */
export function exactRandn(r: () => number, n: number, dtype: DType, scale = 1): Float32Array {
  return decodeArray(encodeArray(randn(r, n, scale), dtype), dtype) as Float32Array;
}

/** Random requests scattered over random pages, with values exact in `dtype`. */
export function makePagedFixture(
  r: () => number,
  kvLens: number[],
  pageSize: number,
  numKvHeads: number,
  headDim: number,
  layout: KVLayout,
  dtype: DType,
): PagedFixture {
  return makePagedFixtureRef(r, kvLens, pageSize, numKvHeads, headDim, layout, (n) => exactRandn(r, n, dtype));
}

/** Uploads the fixture's cache in the one-tensor or `{k, v}` form. */
export function uploadCache(
  ctx: GpuContext,
  f: PagedFixture,
  form: 'one' | 'pair',
  pageShape: number[],
  dtype: DType,
): Tensor | { k: Tensor; v: Tensor } {
  if (form === 'pair') {
    return { k: ctx.tensor(f.kCache, [f.maxPages, ...pageShape], dtype), v: ctx.tensor(f.vCache, [f.maxPages, ...pageShape], dtype) };
  }
  const per = pageShape.reduce((a, b) => a * b);
  const one = new Float32Array(2 * f.maxPages * per);
  for (let p = 0; p < f.maxPages; p++) {
    one.set(f.kCache.subarray(p * per, (p + 1) * per), 2 * p * per);
    one.set(f.vCache.subarray(p * per, (p + 1) * per), (2 * p + 1) * per);
  }
  return ctx.tensor(one, [f.maxPages, 2, ...pageShape], dtype);
}

export interface ExpectArgs {
  q: Float32Array; // [rows, Hq, D]
  f: PagedFixture;
  kvLens: number[];
  qLenPerReq: number;
  numQoHeads: number;
  numKvHeads: number;
  headDim: number;
  smScale: number;
  posEncodingMode: PosEncodingMode;
  windowLeft: number;
  logitsSoftCap: number;
  vScale: number;
  ropeScale?: number;
  ropeTheta?: number;
  sinks?: Float32Array;
}

/** The float64 expectation for every query row: row i of request b sees its first len_i keys. */
export function expectedDecode(a: ExpectArgs): { o: Float64Array; lse: Float64Array } {
  const rows = a.kvLens.length * a.qLenPerReq;
  const rowElems = a.numQoHeads * a.headDim;
  const o = new Float64Array(rows * rowElems);
  const lse = new Float64Array(rows * a.numQoHeads);
  for (let b = 0; b < a.kvLens.length; b++) {
    for (let i = 0; i < a.qLenPerReq; i++) {
      const row = b * a.qLenPerReq + i;
      const len = a.kvLens[b] === 0 ? 0 : a.kvLens[b] - a.qLenPerReq + 1 + i;
      const kvElems = len * a.numKvHeads * a.headDim;
      const res = attentionRef({
        q: a.q.subarray(row * rowElems, (row + 1) * rowElems),
        k: a.f.k[b].subarray(0, kvElems),
        v: a.f.v[b].subarray(0, kvElems),
        qoLen: 1,
        kvLen: len,
        numQoHeads: a.numQoHeads,
        numKvHeads: a.numKvHeads,
        headDimQk: a.headDim,
        smScale: a.smScale,
        posEncodingMode: a.posEncodingMode,
        windowLeft: a.windowLeft,
        logitsSoftCap: a.logitsSoftCap,
        ropeScale: a.ropeScale,
        ropeTheta: a.ropeTheta,
        vScale: a.vScale,
        sinks: a.sinks,
      });
      o.set(res.o, row * rowElems);
      lse.set(res.lse, row * a.numQoHeads);
    }
  }
  return { o, lse };
}

/** Tolerances by output dtype: output rounding dominates (f16 2^-11, bf16 2^-8). */
export function tolerance(oDtype: FloatDType): { rtol: number; atol: number } {
  if (oDtype === 'f32') return { rtol: 2e-4, atol: 2e-4 };
  if (oDtype === 'bf16') return { rtol: 1e-2, atol: 1e-2 };
  return { rtol: 2e-3, atol: 2e-3 };
}
