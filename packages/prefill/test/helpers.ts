/** Builders shared by the prefill tests: exact random inputs and the float64 expectation per request. */
import { type DType, decodeArray, encodeArray, type FloatDType } from '@webinfer/core-buffers';
import { type AttentionRefOptions, attentionRef, randn } from '@webinfer/reference';

/** Values exactly representable in `dtype` (so the reference sees what the GPU sees). */
export function exactRandn(r: () => number, n: number, dtype: DType, scale = 1): Float32Array {
  return decodeArray(encodeArray(randn(r, n, scale), dtype), dtype) as Float32Array;
}

export interface RequestData {
  /** [qoLen, Hq, Dqk] */
  q: Float32Array;
  /** [kvLen, Hkv, Dqk] and [kvLen, Hkv, Dvo] */
  k: Float32Array;
  v: Float32Array;
  qoLen: number;
  kvLen: number;
  /** Bool [qoLen, kvLen] or undefined. */
  mask?: Uint8Array;
}

/** The float64 expectation of a batch, rows concatenated. */
export function expectedBatch(
  reqs: RequestData[],
  heads: { numQoHeads: number; numKvHeads: number; headDimQk: number; headDimVo: number },
  options: AttentionRefOptions,
): { o: Float64Array; lse: Float64Array } {
  const rows = reqs.reduce((a, r) => a + r.qoLen, 0);
  const o = new Float64Array(rows * heads.numQoHeads * heads.headDimVo);
  const lse = new Float64Array(rows * heads.numQoHeads);
  let row = 0;
  for (const r of reqs) {
    const res = attentionRef({ ...heads, ...options, q: r.q, k: r.k, v: r.v, qoLen: r.qoLen, kvLen: r.kvLen, customMask: r.mask ?? options.customMask });
    o.set(res.o, row * heads.numQoHeads * heads.headDimVo);
    lse.set(res.lse, row * heads.numQoHeads);
    row += r.qoLen;
  }
  return { o, lse };
}

/** Tolerances by output dtype: output rounding dominates (f16 2^-11, bf16 2^-8). */
export function tolerance(oDtype: FloatDType, kvDtype: FloatDType = oDtype): { rtol: number; atol: number } {
  if (kvDtype === 'fp8_e4m3' || kvDtype === 'fp8_e5m2') return { rtol: 3e-3, atol: 3e-3 };
  if (oDtype === 'f32') return { rtol: 2e-4, atol: 2e-4 };
  if (oDtype === 'bf16') return { rtol: 1e-2, atol: 1e-2 };
  return { rtol: 2e-3, atol: 2e-3 };
}

/** [tokens, H, D] -> [H, tokens, D]. */
export function toHnd(x: Float32Array, tokens: number, heads: number, d: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let j = 0; j < tokens; j++) for (let h = 0; h < heads; h++) y.set(x.subarray((j * heads + h) * d, (j * heads + h + 1) * d), (h * tokens + j) * d);
  return y;
}

/**
 * `WEBINFER_TEST_PREFILL_F32=1` (GPU hosts, device-test bundles): plans take the f32 kernel, so its
 * GPU-only code (unrolled loops) is checked where the tensor-core kernel would be picked.
 */
export const pathOverride: { useTensorCores?: false } =
  (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.WEBINFER_TEST_PREFILL_F32 === '1' ? { useTensorCores: false } : {};

