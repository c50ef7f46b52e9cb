/**
 * singlePrefillWithKVCache: one request's prefill/append attention over contiguous K/V, run as a
 * ragged batch of one.
 */

import type { PosEncodingMode } from '@webinfer/core-buffers';
import { type KVLayout, parseKVLayout, ShapeError, sharedWorkspace, type Tensor } from '@webinfer/core-buffers';
import { BatchPrefillWithRaggedKVCacheWrapper } from './batch-prefill';

export interface SinglePrefillOptions {
  /** Bool `[qo_len, kv_len]` row-major; true keeps. Replaces causal. */
  customMask?: ArrayLike<boolean | number>;
  /** Little-endian packed bits of customMask. */
  packedCustomMask?: Uint8Array;
  /** Bottom-right aligned when qo_len < kv_len. Default false. */
  causal?: boolean;
  kvLayout?: KVLayout;
  posEncodingMode?: PosEncodingMode;
  /** Accepted for API parity; QKᵀ is always reduced in f32. */
  useFp16QkReduction?: boolean;
  smScale?: number;
  windowLeft?: number;
  logitsSoftCap?: number;
  ropeScale?: number;
  ropeTheta?: number;
  /** Multiplies sm_scale (fp8 K calibration). */
  kScale?: number;
  /** Multiplies the output. */
  vScale?: number;
  /** Output dtype (default q's). */
  oDataType?: string;
  returnLse?: boolean;
  /** As the batch wrappers' plan option: true forces the tensor-core kernel, false the f32 kernel, unset picks. */
  useTensorCores?: boolean;
  /** webinfer extension: output tensor `[qo_len, Hq, Dvo]` to write. */
  out?: Tensor;
  /** Encode into this encoder instead of submitting. */
  encoder?: GPUCommandEncoder;
  /** Tests/bench only: force the f32 kernel's tile [rows, keys, wide?]. */
  debugTile?: [number, number, ('none' | 'kv' | 'all' | 'k')?];
}

/**
 * Prefill attention of `q` `[qo_len, Hq, Dqk]` over `k` `[kv_len, Hkv, Dqk]`, `v` `[kv_len, Hkv, Dvo]`
 * (NHD; HND puts the head first). Returns `o` `[qo_len, Hq, Dvo]`, or `[o, lse]` with returnLse
 * (lse `[qo_len, Hq]` f32, base 2).
 *
 * @example
 * const o = singlePrefillWithKVCache(q, k, v, { causal: true });
 * const [o2, lse] = singlePrefillWithKVCacheReturnLse(q, k, v, { causal: true, posEncodingMode: 'ROPE_LLAMA' });
 */
export function singlePrefillWithKVCache(q: Tensor, k: Tensor, v: Tensor, options: SinglePrefillOptions & { returnLse: true }): [Tensor, Tensor];
export function singlePrefillWithKVCache(q: Tensor, k: Tensor, v: Tensor, options?: SinglePrefillOptions): Tensor;
export function singlePrefillWithKVCache(q: Tensor, k: Tensor, v: Tensor, options: SinglePrefillOptions = {}): Tensor | [Tensor, Tensor] {
  const ctx = q.ctx;
  const layout = parseKVLayout(options.kvLayout ?? 'NHD');
  if (q.rank !== 3) throw new ShapeError(`expected [qo_len, num_qo_heads, head_dim], got [${q.shape.join(', ')}]`, 'q');
  if (k.rank !== 3) throw new ShapeError(`expected a rank-3 tensor, got [${k.shape.join(', ')}]`, 'k');
  if (v.rank !== 3) throw new ShapeError(`expected a rank-3 tensor, got [${v.shape.join(', ')}]`, 'v');
  const [qoLen, numQoHeads, headDimQk] = q.shape;
  const kvLen = layout === 'NHD' ? k.shape[0] : k.shape[1];
  const numKvHeads = layout === 'NHD' ? k.shape[1] : k.shape[0];
  const headDimVo = v.shape[2];
  const wrapper = new BatchPrefillWithRaggedKVCacheWrapper(ctx, sharedWorkspace(ctx, 128 * 1024 * 1024), { kvLayout: layout });
  try {
    wrapper.plan({
      qoIndptr: [0, qoLen],
      kvIndptr: [0, kvLen],
      numQoHeads,
      numKvHeads,
      headDimQk,
      headDimVo,
      customMask: options.customMask,
      packedCustomMask: options.packedCustomMask,
      causal: options.causal,
      posEncodingMode: options.posEncodingMode,
      smScale: options.smScale,
      windowLeft: options.windowLeft,
      logitsSoftCap: options.logitsSoftCap,
      ropeScale: options.ropeScale,
      ropeTheta: options.ropeTheta,
      qDataType: q.dtype,
      kvDataType: k.dtype,
      oDataType: options.oDataType,
      useTensorCores: options.useTensorCores,
      debugTile: options.debugTile,
    });
    return wrapper.run(q, k, v, {
      kScale: options.kScale,
      vScale: options.vScale,
      out: options.out,
      returnLse: options.returnLse,
      encoder: options.encoder,
    });
  } finally {
    // With the caller's encoder the work is not submitted yet: its buffers must outlive this call.
    if (!options.encoder) wrapper.destroy();
  }
}

/** `singlePrefillWithKVCache(..., { returnLse: true })`. */
export function singlePrefillWithKVCacheReturnLse(q: Tensor, k: Tensor, v: Tensor, options: SinglePrefillOptions = {}): [Tensor, Tensor] {
  return singlePrefillWithKVCache(q, k, v, { ...options, returnLse: true });
}
