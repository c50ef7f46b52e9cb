/**
 * FlashInfer's block-table entry points, running webinfer's decode kernel:
 * cudnnBatchDecodeWithKVCache (cuDNN-style, logical HND caches) and trtllmBatchDecodeWithKVCache
 * (TRT-LLM-style: bmm1/bmm2 scales, sinks, several query rows per request).
 */
import {
  type IntArray,
  type KVLayout,
  type PagedKVCacheInput,
  ShapeError,
  checkLengths,
  type Tensor,
  pagedCacheGeometry,
  parseKVLayout,
} from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper } from './batch-decode';

export interface CudnnBatchDecodeOptions {
  /** Upper bound on KV lengths (checked). */
  maxSequenceKv: number;
  /** KV length per request (B). */
  actualSeqLensKv: IntArray;
  /** `[B, pagesPerSeq]` row-major page ids. */
  blockTables: IntArray;
  out?: Tensor;
  encoder?: GPUCommandEncoder;
}

/**
 * cuDNN-style decode: q `[B, Hq, D]`, caches `[P, Hkv, page, D]` (logical HND), explicit `scale`.
 * Returns o `[B, Hq, D]`.
 *
 * @example
 * const o = cudnnBatchDecodeWithKVCache(q, kCache, vCache, 1 / Math.sqrt(128), workspace, {
 *   maxSequenceKv: 4096, actualSeqLensKv: seqLens, blockTables,
 * });
 */
export function cudnnBatchDecodeWithKVCache(
  q: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  scale: number,
  workspaceBuffer: Tensor | GPUBuffer,
  options: CudnnBatchDecodeOptions,
): Tensor {
  if (q.rank !== 3) throw new ShapeError(`expected [B, Hq, D], got [${q.shape.join(', ')}]`, 'q');
  if (kCache.rank !== 4) throw new ShapeError(`expected [P, Hkv, page, D], got [${kCache.shape.join(', ')}]`, 'kCache');
  const [, numKvHeads, pageSize, headDim] = kCache.shape;
  checkLengths(options.actualSeqLensKv, options.maxSequenceKv, 'actualSeqLensKv');
  const wrapper = new BatchDecodeWithPagedKVCacheWrapper(q.ctx, workspaceBuffer, { kvLayout: 'HND' });
  try {
    wrapper.plan({
      blockTables: options.blockTables,
      seqLens: options.actualSeqLensKv,
      numQoHeads: q.shape[1],
      numKvHeads,
      headDim,
      pageSize,
      qDataType: q.dtype,
      kvDataType: kCache.dtype,
      smScale: scale,
    });
    return wrapper.run(q, { k: kCache, v: vCache }, { out: options.out, encoder: options.encoder });
  } finally {
    // With the caller's encoder the work is not submitted yet: its buffers must outlive this call
    // (they are collected with the wrapper).
    if (!options.encoder) wrapper.destroy();
  }
}

export interface TrtllmBatchDecodeOptions {
  /** q·k multiplier: q_scale * k_scale * sm_scale. Default 1. */
  bmm1Scale?: number;
  /** Output multiplier: v_scale / o_scale. Default 1. */
  bmm2Scale?: number;
  windowLeft?: number;
  out?: Tensor;
  outDtype?: string;
  /** f32 `[Hq]` sink logits. */
  sinks?: Tensor;
  kvLayout?: KVLayout;
  /** Query rows per request (causal, bottom-right inside the request). */
  qLenPerReq?: number;
  returnLse?: boolean;
  lse?: Tensor;
  encoder?: GPUCommandEncoder;
}

/**
 * TRT-LLM-style decode: query `[B * qLenPerReq, Hq, D]`, kvCache `[P, 2, Hkv, page, D]` (HND by
 * default) or `{k, v}`, block tables `[B, maxPages]`, KV lengths `seqLens` `[B]`.
 * Returns o, or `[o, lse]` with returnLse.
 *
 * @example
 * const o = trtllmBatchDecodeWithKVCache(q, cache, workspace, blockTables, seqLens, 4096, { bmm1Scale: 1 / Math.sqrt(128) });
 */
export function trtllmBatchDecodeWithKVCache(
  query: Tensor,
  kvCache: PagedKVCacheInput,
  workspaceBuffer: Tensor | GPUBuffer,
  blockTables: IntArray,
  seqLens: IntArray,
  maxSeqLen: number,
  options: TrtllmBatchDecodeOptions = {},
): Tensor | [Tensor, Tensor] {
  const layout = parseKVLayout(options.kvLayout ?? 'HND');
  if (query.rank !== 3) throw new ShapeError(`expected [num_tokens, Hq, D], got [${query.shape.join(', ')}]`, 'query');
  checkLengths(seqLens, maxSeqLen, 'seqLens');
  const { k: kT, numKvHeads, pageSize, headDim } = pagedCacheGeometry(kvCache, layout);
  const wrapper = new BatchDecodeWithPagedKVCacheWrapper(query.ctx, workspaceBuffer, { kvLayout: layout });
  try {
    wrapper.plan({
      blockTables,
      seqLens,
      numQoHeads: query.shape[1],
      numKvHeads,
      headDim,
      pageSize,
      windowLeft: options.windowLeft,
      qDataType: query.dtype,
      kvDataType: kT.dtype,
      oDataType: options.outDtype ?? options.out?.dtype ?? query.dtype,
      smScale: options.bmm1Scale ?? 1,
      qLenPerReq: options.qLenPerReq,
    });
    return wrapper.run(query, kvCache, {
      vScale: options.bmm2Scale ?? 1,
      sinks: options.sinks,
      out: options.out,
      lse: options.lse,
      returnLse: options.returnLse,
      encoder: options.encoder,
    });
  } finally {
    // With the caller's encoder the work is not submitted yet: its buffers must outlive this call
    // (they are collected with the wrapper).
    if (!options.encoder) wrapper.destroy();
  }
}

