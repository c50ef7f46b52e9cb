/**
 * FlashInfer's block-table prefill entry points, running webinfer's prefill kernel:
 * trtllmBatchContextWithKVCache (TRT-LLM style: bmm1/bmm2 scales, sinks, causal by default, HND)
 * and cudnnBatchPrefillWithKVCache (cuDNN style: explicit scale, logical HND paged caches or ragged
 * caches, LSE padded per request).
 */
import {
  checkLengths,
  type IntArray,
  type KVLayout,
  type PagedKVCacheInput,
  pagedCacheGeometry,
  parseKVLayout,
  ShapeError,
  type Tensor,
  ValueError,
  validateIndptr,
} from '@webinfer/core-buffers';
import { BatchPrefillWithPagedKVCacheWrapper, BatchPrefillWithRaggedKVCacheWrapper } from './batch-prefill';
import { padLse } from './lse-pad';

export interface TrtllmBatchContextOptions {
  windowLeft?: number;
  out?: Tensor;
  outDtype?: string;
  /** Default 'HND' (TRT-LLM's layout). */
  kvLayout?: KVLayout;
  /** f32 `[Hq]` sink logits. */
  sinks?: Tensor;
  /** Bottom-right causal mask; default true. */
  causal?: boolean;
  lse?: Tensor;
  returnLse?: boolean;
  encoder?: GPUCommandEncoder;
}


/**
 * TRT-LLM-style context (prefill) attention: query `[T, Hq, D]` with rows per request from
 * `cumSeqLensQ`, a paged cache `[P, 2, Hkv, page, D]` (HND by default) or `{k, v}`, block tables
 * `[B, maxPages]` (row-major), KV lengths `seqLens`. Logits scale `bmm1Scale` (= q·k·sm scales),
 * output scale `bmm2Scale` (= v_scale / o_scale). Returns o, or `[o, lse]` (base 2) with returnLse.
 *
 * @example
 * const o = trtllmBatchContextWithKVCache(q, cache, ws, blockTables, seqLens, 512, 4096,
 *   1 / Math.sqrt(128), 1, 2, [0, 100, 612], [0, 300, 4396]);
 */
export function trtllmBatchContextWithKVCache(
  query: Tensor,
  kvCache: PagedKVCacheInput,
  workspaceBuffer: Tensor | GPUBuffer,
  blockTables: IntArray,
  seqLens: IntArray,
  maxQLen: number,
  maxKvLen: number,
  bmm1Scale: number,
  bmm2Scale: number,
  batchSize: number,
  cumSeqLensQ: IntArray,
  cumSeqLensKv: IntArray,
  options: TrtllmBatchContextOptions = {},
): Tensor | [Tensor, Tensor] {
  const layout = parseKVLayout(options.kvLayout ?? 'HND');
  if (query.rank !== 3) throw new ShapeError(`expected [num_tokens, Hq, D], got [${query.shape.join(', ')}]`, 'query');
  if (seqLens.length !== batchSize) throw new ShapeError(`has ${seqLens.length} entries, expected batch_size = ${batchSize}`, 'seqLens');
  const qoIndptr = validateIndptr(cumSeqLensQ, 'cumSeqLensQ');
  const kvIndptr = validateIndptr(cumSeqLensKv, 'cumSeqLensKv');
  if (qoIndptr.length !== batchSize + 1) throw new ShapeError(`has ${qoIndptr.length} entries, expected batch_size + 1`, 'cumSeqLensQ');
  if (kvIndptr.length !== batchSize + 1) throw new ShapeError(`has ${kvIndptr.length} entries, expected batch_size + 1`, 'cumSeqLensKv');
  for (let b = 0; b < batchSize; b++) {
    if (kvIndptr[b + 1] - kvIndptr[b] !== seqLens[b]) {
      throw new ValueError(`request ${b}: cumSeqLensKv gives ${kvIndptr[b + 1] - kvIndptr[b]} tokens but seqLens says ${seqLens[b]}`, 'cumSeqLensKv');
    }
  }
  checkLengths(Array.from({ length: batchSize }, (_, b) => qoIndptr[b + 1] - qoIndptr[b]), maxQLen, 'cumSeqLensQ');
  checkLengths(seqLens, maxKvLen, 'seqLens');
  const { k: kT, numKvHeads, pageSize, headDim } = pagedCacheGeometry(kvCache, layout);
  const wrapper = new BatchPrefillWithPagedKVCacheWrapper(query.ctx, workspaceBuffer, { kvLayout: layout });
  try {
    wrapper.plan({
      qoIndptr,
      blockTables,
      seqLens,
      numQoHeads: query.shape[1],
      numKvHeads,
      headDimQk: headDim,
      pageSize,
      causal: options.causal ?? true,
      windowLeft: options.windowLeft,
      smScale: bmm1Scale,
      qDataType: query.dtype,
      kvDataType: kT.dtype,
      oDataType: options.outDtype ?? options.out?.dtype ?? query.dtype,
    });
    return wrapper.run(query, kvCache, {
      vScale: bmm2Scale,
      sinks: options.sinks,
      out: options.out,
      lse: options.lse,
      returnLse: options.returnLse,
      encoder: options.encoder,
    });
  } finally {
    // With the caller's encoder the work is not submitted yet: its buffers must outlive this call.
    if (!options.encoder) wrapper.destroy();
  }
}

export interface CudnnBatchPrefillOptions {
  /** Longest query length (rows of the padded LSE). */
  maxTokenPerSequence: number;
  /** Longest KV length (checked). */
  maxSequenceKv: number;
  /** Query rows per request `[B]`. */
  actualSeqLensQ: IntArray;
  /** KV length per request `[B]`. */
  actualSeqLensKv: IntArray;
  /** `[B, pagesPerSeq]` row-major page ids: the caches are paged `[P, Hkv, page, D]`. Without it they are ragged `[Tkv, Hkv, D]`. */
  blockTables?: IntArray;
  /** Bottom-right causal mask. */
  causal: boolean;
  /** Also return the LSE, padded to `[B, maxTokenPerSequence, Hq]`, natural log (cuDNN's Stats). */
  returnLse: boolean;
  out?: Tensor;
  oDataType?: string;
  encoder?: GPUCommandEncoder;
}

/**
 * cuDNN-style prefill: q `[T, Hq, Dqk]` packed by `actualSeqLensQ`; paged caches `[P, Hkv, page, D]`
 * with `blockTables`, or ragged caches `[Tkv, Hkv, D]` packed by `actualSeqLensKv`; explicit `scale`.
 * Returns `[o, lse | undefined]`.
 *
 * @example
 * const [o, lse] = cudnnBatchPrefillWithKVCache(q, kCache, vCache, 1 / Math.sqrt(128), ws, {
 *   maxTokenPerSequence: 700, maxSequenceKv: 1066, actualSeqLensQ, actualSeqLensKv, blockTables,
 *   causal: true, returnLse: true });
 */
export function cudnnBatchPrefillWithKVCache(
  q: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  scale: number,
  workspaceBuffer: Tensor | GPUBuffer,
  options: CudnnBatchPrefillOptions,
): [Tensor, Tensor | undefined] {
  if (q.rank !== 3) throw new ShapeError(`expected [T, Hq, D], got [${q.shape.join(', ')}]`, 'q');
  const lensQ = Int32Array.from(options.actualSeqLensQ as ArrayLike<number>);
  const lensKv = Int32Array.from(options.actualSeqLensKv as ArrayLike<number>);
  const B = lensQ.length;
  if (lensKv.length !== B) throw new ShapeError(`has ${lensKv.length} entries, expected ${B} (as actualSeqLensQ)`, 'actualSeqLensKv');
  checkLengths(lensQ, options.maxTokenPerSequence, 'actualSeqLensQ');
  checkLengths(lensKv, options.maxSequenceKv, 'actualSeqLensKv');
  const qoIndptr = new Int32Array(B + 1);
  const kvIndptr = new Int32Array(B + 1);
  for (let b = 0; b < B; b++) {
    qoIndptr[b + 1] = qoIndptr[b] + lensQ[b];
    kvIndptr[b + 1] = kvIndptr[b] + lensKv[b];
  }
  const common = {
    qoIndptr,
    numQoHeads: q.shape[1],
    headDimQk: q.shape[2],
    causal: options.causal,
    smScale: scale,
    qDataType: q.dtype,
    kvDataType: kCache.dtype,
    oDataType: options.oDataType ?? options.out?.dtype ?? q.dtype,
  };
  const run = { out: options.out, returnLse: options.returnLse, encoder: options.encoder } as const;
  let res: Tensor | [Tensor, Tensor];
  let destroy: () => void;
  if (options.blockTables) {
    if (kCache.rank !== 4) throw new ShapeError(`expected [P, Hkv, page, D], got [${kCache.shape.join(', ')}]`, 'kCache');
    const [, numKvHeads, pageSize] = kCache.shape;
    const w = new BatchPrefillWithPagedKVCacheWrapper(q.ctx, workspaceBuffer, { kvLayout: 'HND' });
    destroy = () => w.destroy();
    try {
      w.plan({ ...common, blockTables: options.blockTables, seqLens: lensKv, numKvHeads, headDimVo: vCache.shape[3], pageSize });
      res = w.run(q, { k: kCache, v: vCache }, run);
    } catch (e) {
      destroy();
      throw e;
    }
  } else {
    if (kCache.rank !== 3) throw new ShapeError(`expected [Tkv, Hkv, D], got [${kCache.shape.join(', ')}]`, 'kCache');
    const w = new BatchPrefillWithRaggedKVCacheWrapper(q.ctx, workspaceBuffer);
    destroy = () => w.destroy();
    try {
      w.plan({ ...common, kvIndptr, numKvHeads: kCache.shape[1], headDimVo: vCache.shape[2] });
      res = w.run(q, kCache, vCache, run);
    } catch (e) {
      destroy();
      throw e;
    }
  }
  if (!Array.isArray(res)) {
    if (!options.encoder) destroy();
    return [res, undefined];
  }
  const [o, lse] = res;
  const padded = padLse(q.ctx, lse, qoIndptr, options.maxTokenPerSequence, options.encoder);
  if (!options.encoder) {
    destroy();
    lse.destroy();
  }
  return [o, padded];
}
