/**
 * BatchAttention: FlashInfer's unified attention over a mixed batch (decodes, appends, prefills)
 * on a paged KV cache. plan() takes per-request KV lengths (`kvLenArr`) instead of last-page
 * lengths and cuts every request into query tiles × KV chunks; run() is one dispatch over all of
 * them plus one merge pass for the split chunks, and always returns `[o, lse]`.
 */
import {
  type GpuContext,
  type IntArray,
  type KVLayout,
  type PagedKVCacheInput,
  PlanMismatchError,
  ShapeError,
  type Tensor,
  UnsupportedFeatureError,
  ValueError,
  validateIndptr,
} from '@webinfer/core-buffers';
import { BatchPrefillWithPagedKVCacheWrapper } from '@webinfer/prefill';

/** FlashInfer's BatchAttention owns a 384 MB float workspace. */
const WORKSPACE_BYTES = 384 * 1024 * 1024;

export interface BatchAttentionOptions {
  kvLayout?: KVLayout;
  /** Scratch for split-KV partial states; default: a 384 MB buffer made on the first plan. */
  workspaceBuffer?: Tensor | GPUBuffer;
}

export interface BatchAttentionPlanArgs {
  qoIndptr: IntArray;
  /** Page-level indptr into kvIndices. */
  kvIndptr: IntArray;
  kvIndices: IntArray;
  /** KV length of each request in tokens (at most its pages × pageSize). */
  kvLenArr: IntArray;
  numQoHeads: number;
  numKvHeads: number;
  headDimQk: number;
  headDimVo: number;
  pageSize: number;
  /** Bottom-right causal mask. Default false. */
  causal?: boolean;
  /** Default 1/sqrt(headDimQk). */
  smScale?: number;
  /** Pass it to run() as well (FlashInfer: plan picks the kernel, run gives the value). */
  logitsSoftCap?: number;
  /** Default bf16, as FlashInfer. */
  qDataType?: string;
  /** Default qDataType. */
  kvDataType?: string;
  /** Default qDataType. */
  oDataType?: string;
}

export interface BatchAttentionRunOptions {
  out?: Tensor;
  lse?: Tensor;
  /** Multiplies sm_scale. */
  kScale?: number;
  /** Multiplies the output. */
  vScale?: number;
  /** The soft cap value; default: the planned one. */
  logitsSoftCap?: number;
  encoder?: GPUCommandEncoder;
}

/**
 * Unified batch attention for mixed prefill/decode batches.
 *
 * @example
 * const attn = new BatchAttention(ctx, { kvLayout: 'NHD' });
 * attn.plan({ qoIndptr, kvIndptr, kvIndices, kvLenArr, numQoHeads: 32, numKvHeads: 8,
 *   headDimQk: 128, headDimVo: 128, pageSize: 16, causal: true, qDataType: 'f16' });
 * const [o, lse] = attn.run(q, kvCache);
 */
export class BatchAttention {
  readonly ctx: GpuContext;
  readonly kvLayout: KVLayout;
  private readonly wrapper: BatchPrefillWithPagedKVCacheWrapper;
  private readonly ownWorkspace: Tensor | undefined;
  private planned = false;

  constructor(ctx: GpuContext, options: BatchAttentionOptions = {}) {
    ctx.assertLive();
    this.ctx = ctx;
    this.kvLayout = options.kvLayout ?? 'NHD';
    this.ownWorkspace = options.workspaceBuffer ? undefined : ctx.empty([Math.min(WORKSPACE_BYTES, ctx.limits.maxBufferSize)], 'u8', 'attention/workspace');
    this.wrapper = new BatchPrefillWithPagedKVCacheWrapper(ctx, options.workspaceBuffer ?? this.ownWorkspace!, { kvLayout: this.kvLayout });
  }

  /** How the last plan cut the work (diagnostics, tests, bench). */
  get planInfo() {
    return this.wrapper.planInfo;
  }

  plan(args: BatchAttentionPlanArgs): void {
    if (args.headDimQk > 256 || args.headDimVo > 256) {
      throw new UnsupportedFeatureError(`head dims above 256 are not supported (got ${args.headDimQk}/${args.headDimVo})`, 'headDimQk');
    }
    const indptr = validateIndptr(args.kvIndptr, 'kvIndptr');
    const B = indptr.length - 1;
    if (args.kvLenArr.length !== B) throw new ShapeError(`has ${args.kvLenArr.length} entries, expected batch_size = ${B}`, 'kvLenArr');
    // kvLenArr replaces last_page_len: full last pages for the index check, the real lengths after.
    const lastPageLen = Array.from({ length: B }, (_, b) => (indptr[b + 1] > indptr[b] ? args.pageSize : 0));
    for (let b = 0; b < B; b++) {
      const cap = (indptr[b + 1] - indptr[b]) * args.pageSize;
      const len = args.kvLenArr[b];
      if (!Number.isInteger(len) || len < 0 || len > cap) {
        throw new ValueError(`request ${b}: length ${len} does not fit its ${indptr[b + 1] - indptr[b]} pages of ${args.pageSize}`, 'kvLenArr');
      }
    }
    this.wrapper.plan({
      qoIndptr: args.qoIndptr,
      pagedKvIndptr: indptr,
      pagedKvIndices: args.kvIndices,
      pagedKvLastPageLen: lastPageLen,
      seqLens: args.kvLenArr,
      numQoHeads: args.numQoHeads,
      numKvHeads: args.numKvHeads,
      headDimQk: args.headDimQk,
      headDimVo: args.headDimVo,
      pageSize: args.pageSize,
      causal: args.causal ?? false,
      smScale: args.smScale,
      logitsSoftCap: args.logitsSoftCap,
      qDataType: args.qDataType ?? 'bf16',
      kvDataType: args.kvDataType,
      oDataType: args.oDataType,
    });
    this.planned = true;
  }

  /** Returns `[o, lse]` (lse `[T, Hq]` f32, base 2), always. */
  run(q: Tensor, kvCache: PagedKVCacheInput, options: BatchAttentionRunOptions = {}): [Tensor, Tensor] {
    if (!this.planned) throw new PlanMismatchError('call plan() before run()', 'plan');
    return this.wrapper.run(q, kvCache, {
      out: options.out,
      lse: options.lse,
      kScale: options.kScale,
      vScale: options.vScale,
      logitsSoftCap: options.logitsSoftCap,
      encoder: options.encoder,
      returnLse: true,
    });
  }

  /** The seed example's call: `forward(q, k, v)` with paged K and V; returns o. */
  forward(q: Tensor, k: Tensor, v: Tensor): Tensor {
    return this.run(q, { k, v })[0];
  }

  /** Releases the wrapper's buffers and the workspace it made (not a caller's). */
  destroy(): void {
    this.wrapper.destroy();
    this.ownWorkspace?.destroy();
  }
}
