/**
 * singleDecodeWithKVCache: one query (all heads) against a contiguous K/V. The K/V tensors are
 * viewed as a paged cache with a single page holding every token, so the batch kernel (split-KV
 * included) serves it unchanged.
 */
import { LayoutError, ShapeError, type KVLayout, type Tensor, parseKVLayout } from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper } from './batch-decode';
import type { PosEncodingMode } from './shaders/batch-decode.wgsl';
import { workspaceFor } from './workspace-cache';

export interface SingleDecodeOptions {
  kvLayout?: KVLayout;
  posEncodingMode?: PosEncodingMode;
  useTensorCores?: boolean;
  qScale?: number;
  kScale?: number;
  vScale?: number;
  windowLeft?: number;
  logitsSoftCap?: number;
  smScale?: number;
  ropeScale?: number;
  ropeTheta?: number;
  returnLse?: boolean;
  /** webinfer extension: output tensor `[Hq, D]` to write. */
  out?: Tensor;
  /** Encode into this encoder instead of submitting. */
  encoder?: GPUCommandEncoder;
}

/**
 * Decode attention of `q` `[Hq, D]` over `k`, `v` `[kv_len, Hkv, D]` (NHD) or `[Hkv, kv_len, D]`
 * (HND). Returns `o` `[Hq, D]` in q's dtype, or `[o, lse]` (lse `[Hq]` f32, base 2) with returnLse.
 *
 * @example
 * const o = singleDecodeWithKVCache(q, k, v, { posEncodingMode: 'ROPE_LLAMA' });
 * const [o2, lse] = singleDecodeWithKVCache(q, k, v, { returnLse: true });
 */
export function singleDecodeWithKVCache(q: Tensor, k: Tensor, v: Tensor, options: SingleDecodeOptions & { returnLse: true }): [Tensor, Tensor];
export function singleDecodeWithKVCache(q: Tensor, k: Tensor, v: Tensor, options?: SingleDecodeOptions): Tensor;
export function singleDecodeWithKVCache(q: Tensor, k: Tensor, v: Tensor, options: SingleDecodeOptions = {}): Tensor | [Tensor, Tensor] {
  const ctx = q.ctx;
  const layout = parseKVLayout(options.kvLayout ?? 'NHD');
  if (q.rank !== 2) throw new ShapeError(`expected [num_qo_heads, head_dim], got [${q.shape.join(', ')}]`, 'q');
  if (k.rank !== 3) throw new ShapeError(`expected a rank-3 tensor, got [${k.shape.join(', ')}]`, 'k');
  const [numQoHeads, headDim] = q.shape;
  const kvLen = layout === 'NHD' ? k.shape[0] : k.shape[1];
  const numKvHeads = layout === 'NHD' ? k.shape[1] : k.shape[0];
  k.expect('k', null, layout === 'NHD' ? [kvLen, numKvHeads, headDim] : [numKvHeads, kvLen, headDim]);
  v.expect('v', [k.dtype], [...k.shape]);
  for (const [name, t] of [['k', k], ['v', v]] as const) {
    if (t.strides[2] !== 1) throw new LayoutError('the head dimension must be contiguous', name);
  }
  if (options.out) {
    options.out.expect('out', [q.dtype], [numQoHeads, headDim]);
    if (!options.out.isContiguous()) throw new LayoutError('must be contiguous', 'out');
  }
  // One page of kv_len tokens: [1, page, H, D] (NHD) or [1, H, page, D] (HND).
  const asPage = (t: Tensor) =>
    ctx.fromBuffer(t.buffer, [1, ...t.shape], t.dtype, { offset: t.offset, strides: [t.span() || 1, ...t.strides] });
  const pageSize = Math.max(1, kvLen);
  const wrapper = new BatchDecodeWithPagedKVCacheWrapper(ctx, workspaceFor(ctx), {
    kvLayout: layout,
    useTensorCores: options.useTensorCores,
  });
  try {
    wrapper.plan({
      indptr: [0, kvLen > 0 ? 1 : 0],
      indices: kvLen > 0 ? [0] : [],
      lastPageLen: [Math.max(kvLen, 0)],
      numQoHeads,
      numKvHeads,
      headDim,
      pageSize,
      posEncodingMode: options.posEncodingMode,
      windowLeft: options.windowLeft,
      logitsSoftCap: options.logitsSoftCap,
      qDataType: q.dtype,
      kvDataType: k.dtype,
      smScale: options.smScale,
      ropeScale: options.ropeScale,
      ropeTheta: options.ropeTheta,
    });
    const q3 = ctx.fromBuffer(q.buffer, [1, numQoHeads, headDim], q.dtype, { offset: q.offset, strides: [0, ...q.strides] });
    const out3 = options.out
      ? ctx.fromBuffer(options.out.buffer, [1, numQoHeads, headDim], q.dtype, { offset: options.out.offset })
      : undefined;
    const res = wrapper.run(q3, { k: asPage(k), v: asPage(v) }, {
      qScale: options.qScale,
      kScale: options.kScale,
      vScale: options.vScale,
      returnLse: true,
      out: out3,
      encoder: options.encoder,
    });
    const [o, lse] = res;
    const o2 = o.reshape([numQoHeads, headDim]);
    return options.returnLse ? [o2, lse.reshape([numQoHeads])] : o2;
  } finally {
    // With the caller's encoder the work is not submitted yet: its buffers must outlive this call
    // (they are collected with the wrapper).
    if (!options.encoder) wrapper.destroy();
  }
}
