/**
 * BatchMLAPagedAttentionWrapper: FlashInfer's DeepSeek MLA attention over a paged compressed KV
 * cache (spec §10). plan() validates the page table and cuts each request's packed (token, head)
 * rows into tiles, splitting long KV when the tiles leave the GPU idle; run() encodes the MLA
 * kernel and the split-KV merge. One latent KV head serves every query head, so each page is read
 * once per tile of 32 (token, head) rows.
 */
import {
  CaptureToken,
  type CompiledKernel,
  DispatchCache,
  GrowableBuffer,
  type FloatDType,
  type GpuContext,
  IndexRangeError,
  type IntArray,
  LayoutError,
  PlanMismatchError,
  ShapeError,
  type Tensor,
  UnsupportedFeatureError,
  ValueError,
  WORK_ITEM_WORDS,
  Workspace,
  type WorkspaceRegion,
  checkGraphIndexBuffers,
  encodeDispatch,
  encodeSplitKVMerge,
  foldWorkgroups,
  getKernel,
  graphTileCapacity,
  noteCapture,
  pagedAddressingValues,
  parseKVDType,
  scheduleTiles,
  validateIndptr,
} from '@webinfer/core-buffers';
import { encodeLseToNatural } from './lse-natural';
import { mlaScheduleUniforms, mlaScheduleWgsl } from './shaders/device-schedule.wgsl';
import { MLA_BINDINGS, MLA_KEYS, MLA_ROWS, type MlaShaderConfig, mlaSimtWgsl, mlaSmemBytes, mlaUniforms } from './shaders/mla-simt.wgsl';
import { type MlaTcConfig, mlaTcLayout, mlaTcStageRows, mlaTcWgsl, mlaTensorCoreSupport } from './shaders/mla-tc.wgsl';

/** Workgroups that keep a large GPU busy; below it, long KV is split (f32 kernel). */
export const DEFAULT_MLA_TARGET_WORKGROUPS = 528;
/**
 * The same for the tensor-core kernel, whose 256-invocation workgroups hold many registers: on
 * the H200, B=64 x 4 row tiles unsplit (256 workgroups) ran 1.00 ms against 1.14 split to 528,
 * while B=8 (32 tiles) split to 128 workgroups ran 0.45 ms against 0.39 split to 512.
 */
export const DEFAULT_MLA_TC_TARGET_WORKGROUPS = 256;

export interface BatchMLAWrapperOptions {
  /**
   * Graph mode (FlashInfer's use_cuda_graph): the batch size is fixed by `qoIndptr`, each plan
   * writes its tables into the four buffers and pads the schedule to a shape-only capacity, so runs
   * recorded with @webinfer/cuda-graph's `capture` replay with any KV lengths and page tables
   * (the total query tokens are part of the shape).
   */
  useCudaGraph?: boolean;
  /** i32 `[B + 1]` (graph mode). */
  qoIndptr?: Tensor;
  /** i32 `[B + 1]` (graph mode). */
  kvIndptr?: Tensor;
  /** i32 `[maxPages]` (graph mode): the most pages a plan may use. */
  kvIndices?: Tensor;
  /** i32 `[B]` (graph mode). */
  kvLenArr?: Tensor;
  /** Accepted for API parity: 'auto' (default) or 'fa2'. */
  backend?: string;
}

export interface BatchMLAPlanArgs {
  qoIndptr: IntArray;
  /** Page-level indptr `[B + 1]`. */
  kvIndptr: IntArray;
  kvIndices: IntArray;
  /** KV length of each request in tokens. */
  kvLenArr: IntArray;
  numHeads: number;
  /** Compressed KV width: 512 (DeepSeek). */
  headDimCkv: number;
  /** RoPE part width: 64, or 0 (NoPE MLA). */
  headDimKpe: number;
  pageSize: number;
  causal: boolean;
  /** Required: FlashInfer has no default (DeepSeek passes 1/sqrt(128 + 64)). */
  smScale: number;
  /** f16 (default) or bf16; fp8_e4m3 too when oDataType says what to write. */
  qDataType?: string;
  /** Default: qDataType; f16, bf16 or fp8_e4m3. */
  kvDataType?: string;
  /** webinfer extension: output dtype, f16 or bf16 (default: qDataType). */
  oDataType?: string;
  fixedSplitSize?: number;
  disableSplitKv?: boolean;
  /** webinfer extension: workgroups that saturate the device. */
  targetWorkgroups?: number;
  /**
   * webinfer extension: true runs the tensor-core (subgroup-matrix) kernel and throws where the
   * device or config can't; false the f32 kernel; unset picks tensor cores where they can run
   * (f16 q and KV, f16/bf16 output).
   */
  useTensorCores?: boolean;
  /** Bench only: tensor-core kernel variants. */
  debugTensorCore?: { rowBlocks?: 1 | 2 | 4; qStageRows?: 16 | 32; prefetch?: boolean; skip?: ('load' | 'qk' | 'softmax' | 'pv')[] };
  /** Bench only: drop a kernel phase of the f32 kernel to time the rest (results are wrong). */
  debugSkip?: MlaShaderConfig['debugSkip'];
  /**
   * webinfer extension (xqaMla): decode with the page table and lengths on the GPU. The plan fixes
   * the batch size and page-table width (qoIndptr, kvIndptr, kvIndices and kvLenArr are then not
   * read); run() needs `deviceSchedule: { pageTable, seqLens }` and a GPU pre-pass writes the
   * schedule. Page ids are not validated (reads stay inside the cache binding).
   */
  deviceSchedule?: { batchSize: number; pagesPerSeq: number };
}

export interface BatchMLARunOptions {
  out?: Tensor;
  lse?: Tensor;
  returnLse?: boolean;
  /** LSE in natural log instead of base 2. */
  returnLseBaseOnE?: boolean;
  /** webinfer extension (xqaMla): multiplies the output. */
  vScale?: number;
  /**
   * webinfer extension (xqaMla): V rows from this `[P, page, headDimCkv]` view instead of the ckv
   * rows (same dtype, same pages).
   */
  vCache?: Tensor;
  /** Encode into this encoder (the caller submits) instead of submitting at once. */
  encoder?: GPUCommandEncoder;
  /** With a deviceSchedule plan: i32 `[B, pagesPerSeq]` page table, u32/i32 `[B]` or `[B, 1]` lengths. */
  deviceSchedule?: { pageTable: Tensor; seqLens: Tensor };
}

interface Plan {
  batchSize: number;
  tokens: number;
  numHeads: number;
  headDimCkv: number;
  headDimKpe: number;
  pageSize: number;
  causal: boolean;
  smScale: number;
  qDtype: FloatDType;
  kvDtype: FloatDType;
  oDtype: FloatDType;
  numWork: number;
  numSlots: number;
  indicesOffset: number;
  slotIndptrOffset: number;
  regions: { partialO: WorkspaceRegion; partialLse: WorkspaceRegion } | undefined;
  maxPageId: number;
  kernel: CompiledKernel;
  /** Packed rows a work item holds (the kernel's tile). */
  rowsPerTile: number;
  /** The tensor-core kernel with 4-byte K loads, for caches whose rows are not 16-byte aligned. */
  narrowKernel: (() => CompiledKernel) | undefined;
  /** The f32 kernel where `kernel` is the tensor-core one (which reads V from the ckv tile): runs with a separate vCache use it. */
  f32Kernel: (() => CompiledKernel) | undefined;
  shapeKey: string;
  device: { splits: number; tiles: number; pagesPerSeq: number } | undefined;
}

interface GraphBuffers {
  batchSize: number;
  qoIndptr: Tensor;
  kvIndptr: Tensor;
  kvIndices: Tensor;
  kvLenArr: Tensor;
}

function graphBuffers(o: BatchMLAWrapperOptions): GraphBuffers | undefined {
  if (!o.useCudaGraph) return undefined;
  const batchSize = checkGraphIndexBuffers([
    { name: 'qoIndptr', tensor: o.qoIndptr, extent: 'batch+1' },
    { name: 'kvIndptr', tensor: o.kvIndptr, extent: 'batch+1' },
    { name: 'kvIndices', tensor: o.kvIndices, extent: 'any' },
    { name: 'kvLenArr', tensor: o.kvLenArr, extent: 'batch' },
  ]);
  return { batchSize, qoIndptr: o.qoIndptr!, kvIndptr: o.kvIndptr!, kvIndices: o.kvIndices!, kvLenArr: o.kvLenArr! };
}

/**
 * @example
 * const mla = new BatchMLAPagedAttentionWrapper(ctx, ctx.empty([128 << 20], 'u8'));
 * mla.plan({ qoIndptr, kvIndptr, kvIndices, kvLenArr, numHeads: 128, headDimCkv: 512, headDimKpe: 64,
 *   pageSize: 64, causal: false, smScale: 1 / Math.sqrt(192), qDataType: 'f16', kvDataType: 'f16' });
 * const o = mla.run(qNope, qPe, ckvCache, kpeCache);   // o [T, 128, 512]
 */
export class BatchMLAPagedAttentionWrapper {
  readonly ctx: GpuContext;
  private readonly workspace: Workspace;
  private readonly planBuf: GrowableBuffer;
  private readonly lseScratch: GrowableBuffer;
  private readonly dispatch: DispatchCache;
  private readonly mergeDispatch: DispatchCache;
  private readonly scheduleDispatch: DispatchCache;
  private readonly graph: GraphBuffers | undefined;
  private current: Plan | undefined;
  private boundPages: number | undefined;
  private token = new CaptureToken('BatchMLAPagedAttentionWrapper');
  private destroyed = false;

  constructor(ctx: GpuContext, workspaceBuffer: Tensor | GPUBuffer, options: BatchMLAWrapperOptions = {}) {
    ctx.assertLive();
    if (options.backend !== undefined && !['auto', 'fa2'].includes(options.backend)) {
      throw new ValueError(`backend '${options.backend}' is not available on WebGPU; use 'auto' or 'fa2'`, 'backend');
    }
    this.ctx = ctx;
    this.graph = graphBuffers(options);
    this.workspace = new Workspace(ctx, workspaceBuffer);
    this.planBuf = new GrowableBuffer(ctx, 'mla/plan', GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, 4096);
    this.lseScratch = new GrowableBuffer(ctx, 'mla/lse-scratch', GPUBufferUsage.STORAGE);
    this.dispatch = new DispatchCache(ctx, 'mla/params');
    this.scheduleDispatch = new DispatchCache(ctx, 'mla/device-schedule');
    this.mergeDispatch = new DispatchCache(ctx, 'mla/merge');
  }

  /** How the last plan split the work (diagnostics, tests, bench). */
  get planInfo(): { numWork: number; numSlots: number } | undefined {
    return this.current && { numWork: this.current.numWork, numSlots: this.current.numSlots };
  }

  plan(args: BatchMLAPlanArgs): void {
    this.assertLive();
    const H = args.numHeads;
    if (!Number.isInteger(H) || H < 1) throw new ValueError(`must be a positive integer, got ${H}`, 'numHeads');
    if (args.headDimCkv !== 512) throw new UnsupportedFeatureError(`must be 512 (DeepSeek's compressed KV), got ${args.headDimCkv}`, 'headDimCkv');
    if (args.headDimKpe !== 0 && args.headDimKpe !== 64) throw new UnsupportedFeatureError(`must be 64 or 0, got ${args.headDimKpe}`, 'headDimKpe');
    if (!Number.isInteger(args.pageSize) || args.pageSize < 1) throw new ValueError(`must be a positive integer, got ${args.pageSize}`, 'pageSize');
    if (typeof args.causal !== 'boolean') throw new ValueError('is required (true or false)', 'causal');
    if (args.smScale === undefined) throw new ValueError('is required: MLA has no default (DeepSeek uses 1/sqrt(192))', 'smScale');
    if (!(Number.isFinite(args.smScale) && args.smScale > 0)) throw new ValueError(`must be a finite number > 0, got ${args.smScale}`, 'smScale');
    // q and KV may be fp8 (FlashInfer's xqa_mla); the output is f16, bf16 or f32.
    // The dtypes FlashInfer's MLA and xqa_mla take (and the tests cover): q and KV f16, bf16 or
    // fp8 e4m3; an fp8 q needs oDataType, the output being f16 or bf16.
    const qDtype = mlaDtype(args.qDataType, 'f16', 'qDataType', ['f16', 'bf16', 'fp8_e4m3']);
    const kvDtype = mlaDtype(args.kvDataType, qDtype, 'kvDataType', ['f16', 'bf16', 'fp8_e4m3']);
    if (qDtype === 'fp8_e4m3' && args.oDataType === undefined) {
      throw new ValueError('an fp8 q needs oDataType (f16 or bf16)', 'oDataType');
    }
    const oDtype = mlaDtype(args.oDataType, qDtype, 'oDataType', ['f16', 'bf16']);
    const dtypes = { qDtype, kvDtype, oDtype };
    if (args.deviceSchedule) {
      this.planDevice(args, dtypes);
      return;
    }

    const kvIndptr = validateIndptr(args.kvIndptr, 'kvIndptr');
    const B = kvIndptr.length - 1;
    const qoIndptr = validateIndptr(args.qoIndptr, 'qoIndptr');
    if (qoIndptr.length !== B + 1) throw new ShapeError(`has ${qoIndptr.length} entries, expected ${B + 1} (as kvIndptr)`, 'qoIndptr');
    const indices = Int32Array.from(args.kvIndices as ArrayLike<number>);
    if (kvIndptr[B] > indices.length) throw new IndexRangeError(`kvIndptr ends at ${kvIndptr[B]} but kvIndices has ${indices.length} entries`, 'kvIndptr');
    const kvLens = Int32Array.from(args.kvLenArr as ArrayLike<number>);
    if (kvLens.length !== B) throw new ShapeError(`has ${kvLens.length} entries, expected batch_size = ${B}`, 'kvLenArr');
    for (let b = 0; b < B; b++) {
      const cap = (kvIndptr[b + 1] - kvIndptr[b]) * args.pageSize;
      if (!Number.isInteger(kvLens[b]) || kvLens[b] < 0 || kvLens[b] > cap) {
        throw new ValueError(`request ${b}: length ${kvLens[b]} does not fit its ${cap / args.pageSize} pages`, 'kvLenArr');
      }
    }
    let maxPageId = -1;
    for (let i = 0; i < kvIndptr[B]; i++) {
      if (indices[i] < 0) throw new IndexRangeError(`entry ${i} is negative (${indices[i]})`, 'kvIndices');
      maxPageId = Math.max(maxPageId, indices[i]);
    }
    const g = this.graph;
    if (g) {
      if (B !== g.batchSize) throw new ValueError(`batch size ${B} differs from the fixed batch size ${g.batchSize} of the graph-mode buffers`, 'qoIndptr');
      if (kvIndptr[B] > g.kvIndices.shape[0]) throw new ValueError(`${kvIndptr[B]} page indices do not fit the kvIndices buffer's ${g.kvIndices.shape[0]}`, 'kvIndices');
      if (this.boundPages !== undefined && maxPageId >= this.boundPages) {
        throw new IndexRangeError(`page id ${maxPageId} is outside the ${this.boundPages} pages of the cache the wrapper runs on`, 'kvIndices');
      }
    }

    const { kernel, narrowKernel, f32Kernel, rows } = this.kernelFor(args, dtypes);
    const target = args.targetWorkgroups ?? (f32Kernel ? DEFAULT_MLA_TC_TARGET_WORKGROUPS : DEFAULT_MLA_TARGET_WORKGROUPS);
    const sched = scheduleTiles({
      qoIndptr,
      kvLens,
      pageBase: kvIndptr.subarray(0, B),
      maskBits: undefined,
      groupSize: H,
      numKvHeads: 1,
      rowsPerTile: rows,
      keysPerTile: MLA_KEYS,
      causal: args.causal,
      windowLeft: -1,
      targetWorkgroups: target,
      fixedSplitSize: args.fixedSplitSize,
      disableSplitKv: args.disableSplitKv,
    });
    const tokens = qoIndptr[B];
    const cap = g ? graphTileCapacity(tokens, B, H, rows, 1, target, g.kvIndices.shape[0] * args.pageSize) : { work: sched.numWork, slots: sched.numSlots };
    if (sched.numWork > cap.work || sched.numSlots > cap.slots) {
      throw new ValueError(`the split makes more work than a graph-mode schedule holds (${cap.work} items, ${cap.slots} states); use a larger fixedSplitSize`, 'fixedSplitSize');
    }
    const indicesOffset = Math.max(1, cap.work) * WORK_ITEM_WORDS;
    const slotIndptrOffset = indicesOffset + (g ? g.kvIndices.shape[0] : indices.length);
    const words = new Uint32Array(Math.ceil((slotIndptrOffset + tokens + 1) / 4) * 4);
    words.set(sched.work.subarray(0, sched.numWork * WORK_ITEM_WORDS), 0);
    words.set(indices.subarray(0, kvIndptr[B]), indicesOffset);
    words.set(sched.slotIndptr, slotIndptrOffset);
    this.planBuf.upload(words);
    if (g) {
      const padded = new Int32Array(g.kvIndices.shape[0]);
      padded.set(indices.subarray(0, kvIndptr[B]));
      g.qoIndptr.write(qoIndptr);
      g.kvIndptr.write(kvIndptr);
      g.kvIndices.write(padded);
      g.kvLenArr.write(kvLens);
    }
    const regions = this.workspace.carveSplitKV(cap.slots, H, args.headDimCkv, this.ctx.limits.maxStorageBufferBindingSize);
    const plan: Plan = {
      batchSize: B,
      tokens,
      numHeads: H,
      headDimCkv: args.headDimCkv,
      headDimKpe: args.headDimKpe,
      pageSize: args.pageSize,
      causal: args.causal,
      smScale: args.smScale,
      ...dtypes,
      numWork: cap.work,
      numSlots: cap.slots,
      indicesOffset,
      slotIndptrOffset,
      regions,
      maxPageId,
      kernel,
      narrowKernel,
      f32Kernel,
      rowsPerTile: rows,
      shapeKey: '',
      device: undefined,
    };
    this.commit(plan, g !== undefined);
  }

  /** The tensor-core kernel where it can run (unless `useTensorCores: false`), else the f32 kernel. */
  private kernelFor(args: BatchMLAPlanArgs, d: { qDtype: FloatDType; kvDtype: FloatDType; oDtype: FloatDType }): { kernel: CompiledKernel; narrowKernel: (() => CompiledKernel) | undefined; f32Kernel: (() => CompiledKernel) | undefined; rows: number } {
    const f32 = () => this.f32KernelFor(args, d);
    if (args.useTensorCores !== false && !args.debugSkip) {
      const why = mlaTensorCoreSupport(this.ctx, { ...d, headDimCkv: args.headDimCkv, headDimKpe: args.headDimKpe }, args.debugTensorCore?.rowBlocks);
      if (why === undefined) {
        const pageShift = Math.log2(args.pageSize);
        const config: MlaTcConfig = {
          headDimCkv: args.headDimCkv,
          headDimKpe: args.headDimKpe,
          ...d,
          causal: args.causal,
          nativeF16: true,
          subgroupSize: this.ctx.subgroupMinSize,
          ...(Number.isInteger(pageShift) ? { pageShift } : {}),
          ...args.debugTensorCore,
        };
        // Q staged 16 rows a pass where 32 don't fit (32 KB devices).
        const stage = mlaTcStageRows(this.ctx, args.headDimCkv + args.headDimKpe, config.rowBlocks ?? 2);
        if (stage === 16) config.qStageRows = 16;
        const rows = mlaTcLayout(args.headDimCkv + args.headDimKpe, config.rowBlocks ?? 2).ROWS;
        const compile = (wideKV: boolean) => getKernel(this.ctx, { id: 'mla/tensor-core', config: { ...config, wideKV }, wgsl: mlaTcWgsl, bindings: MLA_BINDINGS });
        return { kernel: compile(true), narrowKernel: () => compile(false), f32Kernel: f32, rows };
      }
      if (args.useTensorCores === true) throw new UnsupportedFeatureError(`the tensor-core path is unavailable: ${why}`, 'useTensorCores');
    }
    return { kernel: f32(), narrowKernel: undefined, f32Kernel: undefined, rows: MLA_ROWS };
  }

  private f32KernelFor(args: BatchMLAPlanArgs, d: { qDtype: FloatDType; kvDtype: FloatDType; oDtype: FloatDType }): CompiledKernel {
    const limit = this.ctx.limits.maxComputeWorkgroupStorageSize;
    if (mlaSmemBytes(512) > limit) {
      throw new UnsupportedFeatureError(`the MLA kernels need ${mlaSmemBytes(512)} bytes of workgroup memory; the device has ${limit}`, 'ctx');
    }
    const config: MlaShaderConfig = {
      headDimCkv: args.headDimCkv,
      headDimKpe: args.headDimKpe,
      qDtype: d.qDtype,
      kvDtype: d.kvDtype,
      oDtype: d.oDtype,
      causal: args.causal,
      nativeF16: this.ctx.hasF16,
      vStageVec4: mlaSmemBytes(1024) <= limit ? 1024 : 512,
      ...(args.debugSkip ? { debugSkip: args.debugSkip } : {}),
    };
    return getKernel(this.ctx, { id: 'mla/simt', config, wgsl: mlaSimtWgsl, bindings: MLA_BINDINGS });
  }

  /** Makes `plan` current; recorded dispatches survive only graph-mode plans of the same shape. */
  private commit(plan: Plan, graph: boolean): void {
    const { maxPageId: _m, kernel: _k, narrowKernel: _n, f32Kernel: _f, shapeKey: _s, regions: r, ...shape } = plan;
    plan.shapeKey = JSON.stringify({ ...shape, regions: r && [r.partialO.offset, r.partialLse.offset] });
    if (!graph || this.current?.shapeKey !== plan.shapeKey) {
      this.token.invalidate('the wrapper was planned again with a different shape');
      this.token = new CaptureToken('BatchMLAPagedAttentionWrapper');
    }
    this.current = plan;
  }

  /** A deviceSchedule plan: one token per request, every request cut into the same number of chunks. */
  private planDevice(args: BatchMLAPlanArgs, dtypes: { qDtype: FloatDType; kvDtype: FloatDType; oDtype: FloatDType }): void {
    const ds = args.deviceSchedule!;
    for (const [name, x] of [['deviceSchedule.batchSize', ds.batchSize], ['deviceSchedule.pagesPerSeq', ds.pagesPerSeq]] as const) {
      if (!Number.isInteger(x) || x < 1) throw new ValueError(`must be a positive integer, got ${x}`, name);
    }
    if (this.graph) throw new UnsupportedFeatureError('deviceSchedule plans are not available in graph mode', 'deviceSchedule');
    const B = ds.batchSize;
    const { kernel, narrowKernel, f32Kernel, rows } = this.kernelFor(args, dtypes);
    const tiles = Math.ceil(args.numHeads / rows);
    const target = args.targetWorkgroups ?? (f32Kernel ? DEFAULT_MLA_TC_TARGET_WORKGROUPS : DEFAULT_MLA_TARGET_WORKGROUPS);
    const busy = B * tiles;
    const splits = args.disableSplitKv || busy >= target ? 1 : Math.max(1, Math.min(Math.ceil(target / busy), Math.floor((ds.pagesPerSeq * args.pageSize) / 256)));
    const numWork = B * tiles * splits;
    const numSlots = splits > 1 ? B * splits : 0;
    const indicesOffset = numWork * WORK_ITEM_WORDS;
    const slotIndptrOffset = indicesOffset + B * ds.pagesPerSeq;
    const words = new Uint32Array(Math.ceil((slotIndptrOffset + B + 1) / 4) * 4);
    for (let b = 0; b <= B; b++) words[slotIndptrOffset + b] = splits > 1 ? b * splits : 0;
    this.planBuf.upload(words);
    const plan: Plan = {
      batchSize: B,
      tokens: B,
      numHeads: args.numHeads,
      headDimCkv: args.headDimCkv,
      headDimKpe: args.headDimKpe,
      pageSize: args.pageSize,
      causal: args.causal,
      smScale: args.smScale,
      ...dtypes,
      numWork,
      numSlots,
      indicesOffset,
      slotIndptrOffset,
      regions: this.workspace.carveSplitKV(numSlots, args.numHeads, args.headDimCkv, this.ctx.limits.maxStorageBufferBindingSize),
      maxPageId: -1,
      kernel,
      narrowKernel,
      f32Kernel,
      rowsPerTile: rows,
      shapeKey: '',
      device: { splits, tiles, pagesPerSeq: ds.pagesPerSeq },
    };
    this.commit(plan, false);
  }

  /** The GPU pre-pass of a deviceSchedule plan: work items from seqLens, page table into the plan buffer. */
  private encodeDeviceSchedule(encoder: GPUCommandEncoder, p: Plan, s: NonNullable<BatchMLARunOptions['deviceSchedule']>): void {
    const d = p.device!;
    s.pageTable.expect('pageTable', ['i32', 'u32'], [p.batchSize, d.pagesPerSeq]);
    if (!s.pageTable.isContiguous()) throw new LayoutError('must be contiguous', 'pageTable');
    s.seqLens.expect('seqLens', ['i32', 'u32'], s.seqLens.rank === 2 ? [p.batchSize, 1] : [p.batchSize]);
    const ctx = this.ctx;
    const kernel = getKernel(ctx, { id: 'mla/device-schedule', config: {}, wgsl: mlaScheduleWgsl, bindings: ['uniform', 'read-only-storage', 'storage'] });
    const seq = s.seqLens.binding('seqLens');
    const uniform = this.scheduleDispatch.uniform(
      mlaScheduleUniforms.pack({
        batch: p.batchSize,
        tiles: d.tiles,
        splits: d.splits,
        pages_per_seq: d.pagesPerSeq,
        page_size: p.pageSize,
        rows_per_tile: p.rowsPerTile,
        seq_offset: seq.elementOffset,
        seq_stride: s.seqLens.strides[0],
      }),
      true,
    );
    const group = this.scheduleDispatch.bindGroup(kernel, [{ buffer: uniform }, seq.binding, { buffer: this.planBuf.buffer! }]);
    encoder.copyBufferToBuffer(s.pageTable.buffer, s.pageTable.byteOffset, this.planBuf.buffer!, p.indicesOffset * 4, p.batchSize * d.pagesPerSeq * 4);
    encodeDispatch(encoder, kernel, group, foldWorkgroups(ctx, Math.ceil(p.numWork / 64)));
  }

  run(qNope: Tensor, qPe: Tensor | undefined, ckvCache: Tensor, kpeCache: Tensor | undefined, options: BatchMLARunOptions & { returnLse: true }): [Tensor, Tensor];
  run(qNope: Tensor, qPe: Tensor | undefined, ckvCache: Tensor, kpeCache: Tensor | undefined, options?: BatchMLARunOptions): Tensor;
  run(qNope: Tensor, qPe: Tensor | undefined, ckvCache: Tensor, kpeCache: Tensor | undefined, options: BatchMLARunOptions = {}): Tensor | [Tensor, Tensor] {
    this.assertLive();
    const p = this.current;
    if (!p) throw new PlanMismatchError('call plan() before run()', 'plan');
    const ctx = this.ctx;
    const { tokens: T, numHeads: H, headDimCkv: DC, headDimKpe: DP } = p;
    qNope.expect('qNope', [p.qDtype], [T, H, DC]);
    if (DP > 0) {
      if (!qPe) throw new ValueError('is required when headDimKpe > 0', 'qPe');
      qPe.expect('qPe', [p.qDtype], [T, H, DP]);
      if (!kpeCache) throw new ValueError('is required when headDimKpe > 0', 'kpeCache');
    }
    if (ckvCache.rank !== 3) throw new ShapeError(`expected [num_pages, page_size, ${DC}], got [${ckvCache.shape.join(', ')}]`, 'ckvCache');
    ckvCache.expect('ckvCache', [p.kvDtype], [null, p.pageSize, DC]);
    const numPages = ckvCache.shape[0];
    if (DP > 0) kpeCache!.expect('kpeCache', [p.kvDtype], [numPages, p.pageSize, DP]);
    if (p.maxPageId >= numPages) throw new PlanMismatchError(`planned page id ${p.maxPageId} is outside the cache's ${numPages} pages`, 'kvIndices');
    this.boundPages = numPages;
    const vScale = options.vScale ?? 1;
    if (!(Number.isFinite(vScale) && vScale > 0)) throw new ValueError(`must be a finite number > 0, got ${vScale}`, 'vScale');

    // Vector loads of 4 elements: rows must start at multiples of 4 elements of their binding.
    const views = [
      ['qNope', qNope],
      ['ckvCache', ckvCache],
      ...(DP > 0 ? ([['qPe', qPe!], ['kpeCache', kpeCache!]] as const) : []),
    ] as const;
    const binds = new Map<string, { binding: GPUBufferBinding; elementOffset: number }>();
    for (const [name, t] of views) {
      if (t.strides[2] !== 1) throw new LayoutError('the last dimension must be contiguous', name);
      const b = t.binding(name);
      if ([b.elementOffset, t.strides[0], t.strides[1]].some((x) => x % 4 !== 0)) {
        throw new LayoutError('rows must start at multiples of 4 elements (offset and strides)', name);
      }
      binds.set(name, b);
    }
    const out = options.out ?? ctx.empty([T, H, DC], p.oDtype, 'mla/out');
    if (options.out) {
      out.expect('out', [p.oDtype], [T, H, DC]);
      if (!out.isContiguous() || out.offset % 4 !== 0) throw new LayoutError('must be contiguous and start at a multiple of 4 elements', 'out');
    }
    const wantLse = options.returnLse || options.lse !== undefined;
    const lse = options.lse ?? (wantLse ? ctx.empty([T, H], 'f32', 'mla/lse') : undefined);
    if (options.lse) {
      options.lse.expect('lse', ['f32'], [T, H]);
      if (!options.lse.isContiguous()) throw new LayoutError('must be contiguous', 'lse');
    }
    const lseBinding = lse ? lse.buffer : this.lseScratch.reserve(T * H * 4);

    let vv = binds.get('ckvCache')!;
    let vStrides = [ckvCache.strides[0], ckvCache.strides[1]];
    if (options.vCache) {
      options.vCache.expect('vCache', [p.kvDtype], [numPages, p.pageSize, DC]);
      if (options.vCache.strides[2] !== 1) throw new LayoutError('the last dimension must be contiguous', 'vCache');
      vv = options.vCache.binding('vCache');
      vStrides = [options.vCache.strides[0], options.vCache.strides[1]];
      if ([vv.elementOffset, ...vStrides].some((x) => x % 4 !== 0)) throw new LayoutError('rows must start at multiples of 4 elements (offset and strides)', 'vCache');
    }
    const qn = binds.get('qNope')!;
    const ck = binds.get('ckvCache')!;
    const qp = binds.get('qPe') ?? qn;
    const kp = binds.get('kpeCache') ?? ck;
    const groups = foldWorkgroups(ctx, p.numWork);
    const wsBase = this.workspace.base;
    const uniform = this.dispatch.uniform(
      mlaUniforms.pack({
        num_work: p.numWork,
        num_heads: H,
        page_size: p.pageSize,
        ...pagedAddressingValues('ckv', { offset: ck.elementOffset, stridePage: ckvCache.strides[0], strideSlot: ckvCache.strides[1], strideHead: 0 }),
        ...pagedAddressingValues('kpe', DP > 0 ? { offset: kp.elementOffset, stridePage: kpeCache!.strides[0], strideSlot: kpeCache!.strides[1], strideHead: 0 } : { offset: 0, stridePage: 0, strideSlot: 0, strideHead: 0 }),
        ...pagedAddressingValues('val', { offset: vv.elementOffset, stridePage: vStrides[0], strideSlot: vStrides[1], strideHead: 0 }),
        qn_offset: qn.elementOffset,
        qn_stride_tok: qNope.strides[0],
        qn_stride_head: qNope.strides[1],
        qp_offset: DP > 0 ? qp.elementOffset : 0,
        qp_stride_tok: DP > 0 ? qPe!.strides[0] : 0,
        qp_stride_head: DP > 0 ? qPe!.strides[1] : 0,
        o_offset: out.offset,
        lse_offset: lse ? lse.offset : 0,
        part_o_offset: p.regions ? (p.regions.partialO.offset - wsBase) / 4 : 0,
        part_lse_offset: p.regions ? (p.regions.partialLse.offset - wsBase) / 4 : 0,
        indices_offset: p.indicesOffset,
        slot_indptr_offset: p.slotIndptrOffset,
        sm_scale_log2: p.smScale * Math.LOG2E,
        v_scale: vScale,
        groups_x: groups[0],
      }),
      Boolean(options.encoder),
    );
    // The tensor-core kernel takes V from the ckv tile: a separate V cache runs on the f32 kernel.
    const aligned = [ck, kp].every((b) => b.elementOffset % 8 === 0) && [ckvCache, kpeCache ?? ckvCache].every((t) => t.strides[0] % 8 === 0 && t.strides[1] % 8 === 0);
    const kernel = options.vCache && p.f32Kernel ? p.f32Kernel() : !aligned && p.narrowKernel ? p.narrowKernel() : p.kernel;
    const group = this.dispatch.bindGroup(kernel, [
      { buffer: uniform },
      qn.binding,
      qp.binding,
      ck.binding,
      kp.binding,
      { buffer: this.planBuf.buffer! },
      { buffer: out.buffer },
      { buffer: lseBinding },
      this.workspace.kernelBinding(ctx.limits.maxStorageBufferBindingSize),
      vv.binding,
    ]);
    if (p.device && !options.deviceSchedule) throw new PlanMismatchError('the plan is a deviceSchedule plan: run needs deviceSchedule { pageTable, seqLens }', 'deviceSchedule');
    if (!p.device && options.deviceSchedule) throw new PlanMismatchError('deviceSchedule given, but the plan was not a deviceSchedule plan', 'deviceSchedule');
    const encoder = options.encoder ?? ctx.device.createCommandEncoder({ label: 'mla' });
    noteCapture(options.encoder, this.token);
    if (p.device) this.encodeDeviceSchedule(encoder, p, options.deviceSchedule!);
    if (p.numWork > 0) encodeDispatch(encoder, kernel, group, groups);
    const temps: GPUBuffer[] = [];
    if (p.regions) {
      encodeSplitKVMerge(ctx, encoder, {
          partialO: this.workspace.binding(p.regions.partialO),
          partialLse: this.workspace.binding(p.regions.partialLse),
          indptr: this.planBuf.buffer!,
          indptrOffset: p.slotIndptrOffset,
          numRows: T,
          numHeads: H,
          headDim: DC,
          outDtype: p.oDtype,
          out,
          lse: lseBinding,
          lseOffset: lse ? lse.offset : 0,
          vScale,
          cache: this.mergeDispatch,
          external: Boolean(options.encoder),
        });
    }
    if (lse && options.returnLseBaseOnE) temps.push(...encodeLseToNatural(ctx, encoder, lse));
    if (!options.encoder) {
      ctx.submit([encoder.finish()]);
      for (const t of temps) t.destroy();
    }
    return options.returnLse ? [out, lse!] : out;
  }

  /** Releases the wrapper's own GPU buffers (not the workspace, which the caller owns). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.token.invalidate('the wrapper was destroyed');
    this.planBuf.destroy();
    this.lseScratch.destroy();
    this.dispatch.destroy();
    this.scheduleDispatch.destroy();
    this.mergeDispatch.destroy();
    this.current = undefined;
  }

  private assertLive(): void {
    this.ctx.assertLive();
    if (this.destroyed) throw new PlanMismatchError('the wrapper was destroyed', 'wrapper');
  }
}

function mlaDtype(name: string | undefined, fallback: string, argument: string, allowed: readonly FloatDType[]): FloatDType {
  const d = parseKVDType(name, fallback, argument);
  if (!allowed.includes(d)) throw new UnsupportedFeatureError(`${d} is not supported; use ${allowed.join(', ')}`, argument);
  return d;
}
