/**
 * BatchPrefillWithPagedKVCacheWrapper and BatchPrefillWithRaggedKVCacheWrapper: FlashInfer's batch
 * prefill/append. plan() reads the index arrays on the CPU and schedules; run() encodes.
 */
import {
  blockTablesToPagedKV,
  checkGraphIndexBuffers,
  type GpuContext,
  IndexRangeError,
  type IntArray,
  type KVLayout,
  LayoutError,
  lastPageLensOf,
  type PagedKVCacheInput,
  PlanMismatchError,
  parseKVLayout,
  resolvePagedKVCache,
  ShapeError,
  type Tensor,
  UnsupportedFeatureError,
  ValueError,
  validateIndptr,
  validatePagedKVIndices,
} from '@webinfer/core-buffers';
import { type EngineKV, PrefillEngine } from './engine';
import { type ParsedPrefillOptions, type PrefillPlanOptions, packRequestMasks, parsePrefillOptions, parseQoIndptr } from './options';

interface PrefillGraphBuffers {
  batchSize: number;
  qoIndptr: Tensor;
  kvIndptr: Tensor;
  kvIndices: Tensor;
  kvLastPageLen: Tensor;
}

/** Page size that puts every token of a ragged request in one "page" (see engine.ts). */
export const RAGGED_PAGE = 1 << 30;

export interface BatchPrefillWrapperOptions {
  kvLayout?: KVLayout;
  /**
   * Graph mode (paged wrapper; FlashInfer's use_cuda_graph): the batch size is fixed by
   * `qoIndptrBuf`, each plan writes its tables into the buffers below and pads the schedule to a
   * size that depends only on the shape (heads, dims, options and the total query rows), so work
   * recorded with @webinfer/cuda-graph's `capture` replays with any KV lengths and page tables.
   * Custom masks are not available in graph mode.
   */
  useCudaGraph?: boolean;
  /** i32 `[B + 1]`; required with useCudaGraph (paged). */
  qoIndptrBuf?: Tensor;
  /** i32 `[B + 1]`; required with useCudaGraph (paged). */
  pagedKvIndptrBuf?: Tensor;
  /** i32 `[maxPages]`: the most pages a plan may use; required with useCudaGraph (paged). */
  pagedKvIndicesBuf?: Tensor;
  /** i32 `[B]`; required with useCudaGraph (paged). */
  pagedKvLastPageLenBuf?: Tensor;
  /** Accepted for API parity: 'auto' (default) or 'fa2'; both run webinfer's kernels. */
  backend?: string;
}

export interface PrefillRunOptions {
  qScale?: number;
  kScale?: number;
  vScale?: number;
  out?: Tensor;
  lse?: Tensor;
  returnLse?: boolean;
  /** Must equal the planned value when given. */
  windowLeft?: number;
  /** Encode into this encoder (the caller submits) instead of submitting at once. */
  encoder?: GPUCommandEncoder;
  /**
   * f32 `[Hq]` attention-sink logits (natural log), added to each row's softmax denominator
   * (FlashInfer passes them only to trtllm-gen; fa2 ignores them — here they are honoured).
   */
  sinks?: Tensor;
  /** webinfer extension (BatchAttention, the sink wrapper): sm_scale for this run instead of the planned one. */
  smScale?: number;
  /** webinfer extension (BatchAttention): the soft cap for this run; the plan must have enabled it. */
  logitsSoftCap?: number;
}

export interface BatchPrefillPagedPlanArgs extends PrefillPlanOptions {
  qoIndptr: IntArray;
  pagedKvIndptr?: IntArray;
  pagedKvIndices?: IntArray;
  pagedKvLastPageLen?: IntArray;
  pageSize: number;
  /** KV lengths overriding those derived from pagedKvLastPageLen. */
  seqLens?: IntArray;
  /** `[B, maxPagesPerSeq]` row-major, with seqLens, instead of the indptr/indices/lastPageLen. */
  blockTables?: IntArray;
}

export interface BatchPrefillRaggedPlanArgs extends PrefillPlanOptions {
  qoIndptr: IntArray;
  kvIndptr: IntArray;
}

abstract class PrefillWrapperBase {
  readonly ctx: GpuContext;
  readonly kvLayout: KVLayout;
  readonly useCudaGraph: boolean;
  protected readonly engine: PrefillEngine;
  protected parsed: (ParsedPrefillOptions & { maxPageId: number; kvTokens: number }) | undefined;
  private destroyed = false;

  constructor(ctx: GpuContext, workspaceBuffer: Tensor | GPUBuffer, options: BatchPrefillWrapperOptions, label: string) {
    ctx.assertLive();
    this.ctx = ctx;
    this.kvLayout = parseKVLayout(options.kvLayout ?? 'NHD');
    this.useCudaGraph = options.useCudaGraph ?? false;
    if (options.backend !== undefined && !['auto', 'fa2'].includes(options.backend)) {
      throw new ValueError(`backend '${options.backend}' is not available on WebGPU; use 'auto' or 'fa2'`, 'backend');
    }
    this.engine = new PrefillEngine(ctx, workspaceBuffer, label);
  }

  /** Graph mode: the fixed buffers, validated (paged wrapper only). */
  protected static graphBuffers(options: BatchPrefillWrapperOptions): PrefillGraphBuffers | undefined {
    if (!options.useCudaGraph) return undefined;
    const batchSize = checkGraphIndexBuffers([
      { name: 'qoIndptrBuf', tensor: options.qoIndptrBuf, extent: 'batch+1' },
      { name: 'pagedKvIndptrBuf', tensor: options.pagedKvIndptrBuf, extent: 'batch+1' },
      { name: 'pagedKvIndicesBuf', tensor: options.pagedKvIndicesBuf, extent: 'any' },
      { name: 'pagedKvLastPageLenBuf', tensor: options.pagedKvLastPageLenBuf, extent: 'batch' },
    ]);
    return {
      batchSize,
      qoIndptr: options.qoIndptrBuf!,
      kvIndptr: options.pagedKvIndptrBuf!,
      kvIndices: options.pagedKvIndicesBuf!,
      kvLastPageLen: options.pagedKvLastPageLenBuf!,
    };
  }

  /** Which kernel the last plan chose and how it tiled the work (diagnostics, tests, bench). */
  get planInfo(): { path: 'tensor-core' | 'simt'; tile: [number, number]; workgroupSize: number; numWork: number; numSlots: number } | undefined {
    const p = this.engine.plan;
    return p && { path: p.path, tile: p.tile, workgroupSize: p.workgroupSize, numWork: p.numWork, numSlots: p.numSlots };
  }

  protected planEngine(
    opts: PrefillPlanOptions,
    parsed: ParsedPrefillOptions,
    qoIndptr: Int32Array,
    kvLens: Int32Array,
    pageBase: Int32Array,
    indices: Int32Array,
    pageSize: number,
    graphIndicesCapacity?: number,
  ): void {
    const B = kvLens.length;
    const qoLens = Array.from({ length: B }, (_, b) => qoIndptr[b + 1] - qoIndptr[b]);
    const mask = packRequestMasks(opts, qoLens, kvLens);
    if (mask && graphIndicesCapacity !== undefined) throw new UnsupportedFeatureError('custom masks are not available in graph mode', 'customMask');
    this.engine.makePlan({
      ...parsed,
      qoIndptr,
      kvLens,
      pageBase,
      indices,
      pageSize,
      causal: parsed.causal,
      mask,
      fixedSplitSize: opts.fixedSplitSize,
      disableSplitKv: opts.disableSplitKv,
      useTensorCores: opts.useTensorCores,
      targetWorkgroups: opts.targetWorkgroups,
      tile: opts.debugTile,
      tensorCoreSubgroups: opts.debugTensorCoreSubgroups,
      tensorCoreKeys: opts.debugTensorCoreKeys,
      tensorCoreSkip: opts.debugTensorCoreSkip,
      simtSkip: opts.debugSimtSkip,
      simtTuning: { loadMode: opts.debugSimtLoadMode, ...opts.debugSimtTuning },
      skip: opts.skipRequests,
      graphIndicesCapacity,
    });
  }

  protected checkRun(options: PrefillRunOptions): ParsedPrefillOptions & { maxPageId: number; kvTokens: number } {
    this.assertLive();
    const p = this.parsed;
    if (!p) throw new PlanMismatchError('call plan() before run()', 'plan');
    if (options.windowLeft !== undefined && options.windowLeft !== p.windowLeft) {
      throw new PlanMismatchError(`windowLeft ${options.windowLeft} differs from the planned ${p.windowLeft}`, 'windowLeft');
    }
    return p;
  }

  protected runEngine(q: Tensor, k: EngineKV, v: EngineKV, options: PrefillRunOptions): Tensor | [Tensor, Tensor] {
    return this.engine.run({ q, k, v, ...options });
  }

  /** Releases the wrapper's own GPU buffers (not the workspace, which the caller owns). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.engine.destroy();
    this.parsed = undefined;
  }

  protected assertLive(): void {
    this.ctx.assertLive();
    if (this.destroyed) throw new PlanMismatchError('the wrapper was destroyed', 'wrapper');
  }
}

/**
 * Batch prefill/append attention of ragged queries over a paged KV cache.
 *
 * @example
 * const wrapper = new BatchPrefillWithPagedKVCacheWrapper(ctx, ctx.empty([128 << 20], 'u8'));
 * wrapper.plan({ qoIndptr, pagedKvIndptr, pagedKvIndices, pagedKvLastPageLen,
 *   numQoHeads: 32, numKvHeads: 8, headDimQk: 128, pageSize: 16, causal: true });
 * const o = wrapper.run(q, kvCache);          // q [qoIndptr[B], 32, 128] f16
 * const [o2, lse] = wrapper.runReturnLse(q, kvCache);
 */
export class BatchPrefillWithPagedKVCacheWrapper extends PrefillWrapperBase {
  private pageSize = 0;
  private readonly graph: PrefillGraphBuffers | undefined;
  /** Pages of the cache of the last run: graph-mode plans must stay inside it. */
  private boundPages: number | undefined;

  constructor(ctx: GpuContext, workspaceBuffer: Tensor | GPUBuffer, options: BatchPrefillWrapperOptions = {}) {
    super(ctx, workspaceBuffer, options, 'prefill/paged');
    this.graph = PrefillWrapperBase.graphBuffers(options);
  }

  plan(args: BatchPrefillPagedPlanArgs): void {
    this.assertLive();
    const parsed = parsePrefillOptions(args);
    if (!Number.isInteger(args.pageSize) || args.pageSize < 1) throw new ValueError(`must be a positive integer, got ${args.pageSize}`, 'pageSize');
    let v: ReturnType<typeof validatePagedKVIndices>;
    if (args.blockTables) {
      if (!args.seqLens) throw new ValueError('blockTables needs seqLens', 'seqLens');
      const conv = blockTablesToPagedKV({ blockTables: args.blockTables, batchSize: args.seqLens.length, seqLens: args.seqLens, pageSize: args.pageSize });
      v = validatePagedKVIndices({ ...conv, pageSize: args.pageSize });
    } else {
      if (!args.pagedKvIndptr || !args.pagedKvIndices || !args.pagedKvLastPageLen) {
        throw new ValueError('plan needs pagedKvIndptr, pagedKvIndices and pagedKvLastPageLen (or blockTables and seqLens)', 'pagedKvIndptr');
      }
      v = validatePagedKVIndices({ indptr: args.pagedKvIndptr, indices: args.pagedKvIndices, lastPageLen: args.pagedKvLastPageLen, pageSize: args.pageSize });
    }
    let kvLens = v.kvLens;
    if (args.seqLens && !args.blockTables) {
      if (args.seqLens.length !== kvLens.length) throw new ShapeError(`has ${args.seqLens.length} entries, expected batch_size = ${kvLens.length}`, 'seqLens');
      kvLens = Int32Array.from(args.seqLens as ArrayLike<number>);
      for (let b = 0; b < kvLens.length; b++) {
        const cap = (v.indptr[b + 1] - v.indptr[b]) * args.pageSize;
        if (kvLens[b] < 0 || kvLens[b] > cap) throw new ValueError(`request ${b}: length ${kvLens[b]} does not fit its ${cap / args.pageSize} pages`, 'seqLens');
      }
    }
    const qoIndptr = parseQoIndptr(args.qoIndptr, kvLens.length);
    const g = this.graph;
    if (g) {
      if (kvLens.length !== g.batchSize) {
        throw new ValueError(`batch size ${kvLens.length} differs from the fixed batch size ${g.batchSize} of the graph-mode buffers`, 'qoIndptr');
      }
      if (v.indices.length > g.kvIndices.shape[0]) {
        throw new ValueError(`${v.indices.length} page indices do not fit pagedKvIndicesBuf's ${g.kvIndices.shape[0]}`, 'pagedKvIndices');
      }
      if (this.boundPages !== undefined && v.maxPageId >= this.boundPages) {
        throw new IndexRangeError(`page id ${v.maxPageId} is outside the ${this.boundPages} pages of the cache the wrapper runs on`, 'pagedKvIndices');
      }
    }
    this.planEngine(args, parsed, qoIndptr, kvLens, v.indptr.subarray(0, -1), v.indices, args.pageSize, g?.kvIndices.shape[0]);
    if (g) {
      const padded = new Int32Array(g.kvIndices.shape[0]);
      padded.set(v.indices);
      g.qoIndptr.write(qoIndptr);
      g.kvIndptr.write(v.indptr);
      g.kvIndices.write(padded);
      g.kvLastPageLen.write(lastPageLensOf(kvLens, v.indptr, args.pageSize));
    }
    this.pageSize = args.pageSize;
    this.parsed = { ...parsed, maxPageId: v.maxPageId, kvTokens: 0 };
  }

  run(q: Tensor, pagedKvCache: PagedKVCacheInput, options: PrefillRunOptions & { returnLse: true }): [Tensor, Tensor];
  run(q: Tensor, pagedKvCache: PagedKVCacheInput, options?: PrefillRunOptions): Tensor;
  run(q: Tensor, pagedKvCache: PagedKVCacheInput, options: PrefillRunOptions = {}): Tensor | [Tensor, Tensor] {
    const p = this.checkRun(options);
    const cache = resolvePagedKVCache(pagedKvCache, this.kvLayout);
    if (cache.dtype !== p.kvDtype) throw new PlanMismatchError(`cache is ${cache.dtype} but plan said kvDataType ${p.kvDtype}`, 'pagedKvCache');
    if (cache.pageSize !== this.pageSize) throw new PlanMismatchError(`cache page size ${cache.pageSize} but plan said ${this.pageSize}`, 'pagedKvCache');
    if (cache.numKvHeads !== p.numKvHeads) throw new PlanMismatchError(`cache has ${cache.numKvHeads} kv heads but plan said ${p.numKvHeads}`, 'pagedKvCache');
    if (cache.headDimQk !== p.headDimQk || cache.headDimVo !== p.headDimVo) {
      throw new PlanMismatchError(`cache head dims ${cache.headDimQk}/${cache.headDimVo} but plan said ${p.headDimQk}/${p.headDimVo}`, 'pagedKvCache');
    }
    if (p.maxPageId >= cache.maxNumPages) {
      throw new PlanMismatchError(`planned page id ${p.maxPageId} is outside the cache's ${cache.maxNumPages} pages`, 'pagedKvIndices');
    }
    this.boundPages = cache.maxNumPages;
    return this.runEngine(q, { tensor: cache.k, addr: cache.kAddr }, { tensor: cache.v, addr: cache.vAddr }, options);
  }

  /** `run(..., { returnLse: true })`. */
  runReturnLse(q: Tensor, pagedKvCache: PagedKVCacheInput, options: PrefillRunOptions = {}): [Tensor, Tensor] {
    return this.run(q, pagedKvCache, { ...options, returnLse: true });
  }
}

/** K or V of a ragged/contiguous layout (`[tokens, H, D]` NHD, `[H, tokens, D]` HND) as the engine addresses it. */
export function raggedKV(t: Tensor, layout: KVLayout, tokens: number, numKvHeads: number, headDim: number, name: string): EngineKV {
  if (t.rank !== 3) throw new ShapeError(`expected a rank-3 tensor, got [${t.shape.join(', ')}]`, name);
  t.expect(name, null, layout === 'NHD' ? [tokens, numKvHeads, headDim] : [numKvHeads, tokens, headDim]);
  if (t.strides[2] !== 1) throw new LayoutError('the head dimension must be contiguous', name);
  const [slot, head] = layout === 'NHD' ? [t.strides[0], t.strides[1]] : [t.strides[1], t.strides[0]];
  return { tensor: t, addr: { offset: t.offset, stridePage: slot, strideSlot: slot, strideHead: head } };
}

/**
 * Batch prefill attention of ragged queries over ragged (contiguous per request) K/V.
 *
 * @example
 * const wrapper = new BatchPrefillWithRaggedKVCacheWrapper(ctx, ctx.empty([128 << 20], 'u8'));
 * wrapper.plan({ qoIndptr, kvIndptr, numQoHeads: 16, numKvHeads: 16, headDimQk: 192, headDimVo: 128, causal: true });
 * const o = wrapper.run(q, k, v);             // k [kvIndptr[B], 16, 192], v [kvIndptr[B], 16, 128]
 */
export class BatchPrefillWithRaggedKVCacheWrapper extends PrefillWrapperBase {
  constructor(ctx: GpuContext, workspaceBuffer: Tensor | GPUBuffer, options: BatchPrefillWrapperOptions = {}) {
    super(ctx, workspaceBuffer, options, 'prefill/ragged');
    if (options.useCudaGraph) {
      // K/V shapes follow the total KV tokens, so a recorded run could not follow a new plan.
      throw new UnsupportedFeatureError('graph mode is available for the paged wrapper only', 'useCudaGraph');
    }
  }

  plan(args: BatchPrefillRaggedPlanArgs): void {
    this.assertLive();
    const parsed = parsePrefillOptions(args);
    const kvIndptr = validateIndptr(args.kvIndptr, 'kvIndptr');
    const B = kvIndptr.length - 1;
    const qoIndptr = parseQoIndptr(args.qoIndptr, B);
    const kvLens = Int32Array.from({ length: B }, (_, b) => kvIndptr[b + 1] - kvIndptr[b]);
    const pageBase = Int32Array.from({ length: B }, (_, b) => b);
    this.planEngine(args, parsed, qoIndptr, kvLens, pageBase, kvIndptr.slice(0, B), RAGGED_PAGE);
    this.parsed = { ...parsed, maxPageId: 0, kvTokens: kvIndptr[B] };
  }

  run(q: Tensor, k: Tensor, v: Tensor, options: PrefillRunOptions & { returnLse: true }): [Tensor, Tensor];
  run(q: Tensor, k: Tensor, v: Tensor, options?: PrefillRunOptions): Tensor;
  run(q: Tensor, k: Tensor, v: Tensor, options: PrefillRunOptions = {}): Tensor | [Tensor, Tensor] {
    const p = this.checkRun(options);
    for (const [name, t] of [['k', k], ['v', v]] as const) {
      if (t.dtype !== p.kvDtype) throw new PlanMismatchError(`${name} is ${t.dtype} but plan said kvDataType ${p.kvDtype}`, name);
    }
    const kk = raggedKV(k, this.kvLayout, p.kvTokens, p.numKvHeads, p.headDimQk, 'k');
    const vv = raggedKV(v, this.kvLayout, p.kvTokens, p.numKvHeads, p.headDimVo, 'v');
    return this.runEngine(q, kk, vv, options);
  }

  /** `run(..., { returnLse: true })`. */
  runReturnLse(q: Tensor, k: Tensor, v: Tensor, options: PrefillRunOptions = {}): [Tensor, Tensor] {
    return this.run(q, k, v, { ...options, returnLse: true });
  }
}
