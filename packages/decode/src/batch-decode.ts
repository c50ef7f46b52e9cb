/**
 * BatchDecodeWithPagedKVCacheWrapper: FlashInfer's batch decode on a paged KV cache.
 * plan() (CPU) validates the page table, splits long requests into KV chunks sized to the device
 * and uploads the schedule; run() checks the tensors against the plan and encodes the decode
 * kernel (and the merge of split chunks). Nothing waits for the GPU.
 */
import {
  CaptureToken,
  type CompiledKernel as CompiledKernelRef,
  DispatchCache,
  GrowableBuffer,
  type FloatDType,
  IndexRangeError,
  type GpuContext,
  type IntArray,
  type KVLayout,
  LayoutError,
  PlanMismatchError,
  ShapeError,
  type Tensor,
  UnsupportedFeatureError,
  ValueError,
  Workspace,
  type WorkspaceRegion,
  blockTablesToPagedKV,
  checkAlibiSoftCap,
  checkGraphIndexBuffers,
  dtypeBytes,
  encodeDispatch,
  encodeSplitKVMerge,
  foldWorkgroups,
  getKernel,
  lastPageLensOf,
  mergeWorkgroups,
  noteCapture,
  parseKVLayout,
  planSplitKV,
  type SplitKVPlan,
  resolvePagedKVCache,
  validatePagedKVIndices,
  type PagedKVCacheInput,
} from '@webinfer/core-buffers';
import {
  checkHeadDim,
  checkHeads,
  parseKVDType,
  parseNonNegative,
  parsePosEncoding,
  parsePositive,
  parseQDType,
  parseScale,
  parseWindowLeft,
} from './options';
import { deviceScheduleUniforms, deviceScheduleWgsl } from './shaders/device-schedule.wgsl';
import { type SubgroupDecodeConfig, elementsPerLoad, subgroupDecodeLayout, subgroupDecodeWgsl } from './shaders/subgroup-decode.wgsl';
import { type TensorCoreDecodeConfig, tensorCoreDecodeLayout, tensorCoreDecodeSupport, tensorCoreDecodeWgsl } from './shaders/tc-decode.wgsl';
import { type StagedTensorCoreDecodeConfig, stagedTensorCoreDecodeLayout, stagedTensorCoreDecodeSupport, stagedTensorCoreDecodeWgsl } from './shaders/tc-staged-decode.wgsl';
import {
  DIRECT_SLOT,
  type DecodeShaderConfig,
  PADDING_ROW,
  type PosEncodingMode,
  WORK_ITEM_WORDS,
  batchDecodeWgsl,
  decodeLayout,
  decodeUniforms,
} from './shaders/batch-decode.wgsl';

const WORKGROUP_SIZE = 128;

/** A tensor-core kernel choice: matrices read from the cache, or K/V staged in workgroup memory. */
type TensorCoreChoice = (Omit<TensorCoreDecodeConfig, 'sinks'> & { staged?: undefined }) | (Omit<StagedTensorCoreDecodeConfig, 'sinks'> & { staged: true });
/** Workgroups that keep a large GPU busy (an H100 has 132 SMs); below it, requests are split. */
export const DEFAULT_TARGET_WORKGROUPS = 528;
/** Chunks at least this long may go to twice the target (see plan). */
const LONG_CHUNK = 1536;

export interface BatchDecodeWrapperOptions {
  kvLayout?: KVLayout;
  /**
   * Graph mode (FlashInfer's use_cuda_graph): the batch size is fixed by `lastPageLenBuffer`, every
   * plan writes its page table into the three buffers below, and the dispatch sizes, uniforms and
   * buffers no longer depend on the lengths, so work recorded with @webinfer/cuda-graph's
   * `capture` stays valid across plans of the same shape.
   */
  useCudaGraph?: boolean;
  /** i32 `[B + 1]`; required with useCudaGraph. */
  indptrBuffer?: Tensor;
  /** i32 `[maxPages]`: the most pages one plan may use; required with useCudaGraph. */
  indicesBuffer?: Tensor;
  /** i32 `[B]`; its length fixes the batch size. Required with useCudaGraph. */
  lastPageLenBuffer?: Tensor;
  /**
   * Graph mode: read dispatch sizes from a buffer plan() writes, so only the real chunks run and
   * the merge runs only when something was split (GPU time equal to the plain wrapper's). Off by
   * default: Dawn validates every indirect dispatch on the CPU, which triples replay cost, while
   * the padded direct dispatch's extra workgroups exit at once (BENCHMARKS.md has both).
   */
  indirectDispatch?: boolean;
  /**
   * Run the tensor-core decode kernel (f16 subgroup matrices; f16 q and KV, head dim a multiple
   * of 32, pages a multiple of 16 tokens, no RoPE): as FlashInfer's tensor-core decode, exact f16
   * products summed in f32 with P rounded to f16. plan() throws UnsupportedFeatureError, naming
   * the reason, where it can't run. Default false (the f32 kernels).
   */
  useTensorCores?: boolean;
}

export interface BatchDecodePlanArgs {
  indptr?: IntArray;
  indices?: IntArray;
  lastPageLen?: IntArray;
  numQoHeads: number;
  numKvHeads: number;
  headDim: number;
  pageSize: number;
  posEncodingMode?: PosEncodingMode;
  windowLeft?: number;
  logitsSoftCap?: number;
  /** FlashInfer's default is f16; run() rejects q of another dtype. */
  qDataType?: string;
  /** Default: qDataType. */
  kvDataType?: string;
  /** Default: qDataType. */
  oDataType?: string;
  /** Default 1/sqrt(headDim). */
  smScale?: number;
  ropeScale?: number;
  ropeTheta?: number;
  /** KV lengths overriding those derived from lastPageLen. */
  seqLens?: IntArray;
  /** `[B, maxPagesPerSeq]` row-major, with seqLens, instead of indptr/indices/lastPageLen. */
  blockTables?: IntArray;
  fixedSplitSize?: number;
  disableSplitKv?: boolean;
  /** Query rows per request (speculative/MTP decode; causal inside the request). */
  qLenPerReq?: number;
  /** webinfer extension: workgroups that saturate the device (default 528). */
  targetWorkgroups?: number;
  /**
   * webinfer extension: invocations per workgroup of the decode kernel, 64, 128 (default) or 256.
   * BatchAttention asks for the prefill kernel's size so both can share one dispatch.
   */
  workgroupSize?: number;
  /**
   * webinfer extension (used by @webinfer/xqa): the page table and lengths stay on the GPU. The
   * plan fixes only the batch size and the page-table width; run() then needs
   * `deviceSchedule: { pageTable, seqLens }` and builds the schedule in a GPU pre-pass, cutting
   * each request into the same number of chunks. Page ids are not validated (reads stay in
   * bounds of the cache binding, as WebGPU guarantees).
   */
  deviceSchedule?: {
    batchSize: number;
    pagesPerSeq: number;
    /**
     * Speculative decoding (xqa's mask): u32 words per mask row. Every one of the qLenPerReq rows
     * of a request then sees all its keys, except draft keys (the last qLenPerReq) its mask row
     * clears; run() needs `deviceSchedule.mask`.
     */
    maskWords?: number;
  };
  /** Benchmark/debug only: override kernel shape or drop a phase. Not for production use. */
  debug?: {
    tile?: number;
    workgroupSize?: number;
    debugSkip?: DecodeShaderConfig['debugSkip'];
    /**
     * Force a kernel: 'subgroup' (registers + shuffles), 'tile' (workgroup-memory tiles),
     * 'tensor-core' (matrices from the cache) or 'tensor-core-staged' (K/V through workgroup memory).
     */
    kernel?: 'subgroup' | 'tile' | 'tensor-core' | 'tensor-core-staged';
    tokensPerStep?: number;
    headsPerWorkgroup?: number;
    /** fp8 KV in 16-byte loads. */
    wideFp8Loads?: boolean;
    /** Tensor-core kernel: V matrices loaded with K (default true). */
    tensorCoreEarlyV?: boolean;
    /** Tensor-core kernel: caches bound as array<f16>. */
    tensorCoreF16Cache?: boolean;
    /** Staged tensor-core kernel: Q matrices loaded from workgroup memory every block. */
    stagedQInSmem?: boolean;
    /** Staged tensor-core kernel: subgroups a workgroup (16 keys each; default 2). */
    stagedSubgroups?: number;
    /** Staged tensor-core kernel: leave a phase out (wrong results; cost profiling). */
    stagedProfileSkip?: StagedTensorCoreDecodeConfig['profileSkip'];
    /** Subgroup kernel: every token reads the chunk's first row (wrong results; compute cost). */
    subgroupProfileSkip?: 'loads';
    /** Subgroup kernel: false finishes the dot products with a butterfly (every lane every head). */
    scatterSoftmax?: boolean;
    /**
     * Subgroup kernel: true moves the running max (and rescales O) only when a logit passes it by
     * more than 8, false rescales every step. Default: lazy for fp8 KV, every step otherwise.
     */
    lazyRescale?: boolean;
  };
}

export interface BatchDecodeRunOptions {
  qScale?: number;
  kScale?: number;
  vScale?: number;
  out?: Tensor;
  lse?: Tensor;
  returnLse?: boolean;
  /** Must equal the planned value when given. */
  windowLeft?: number;
  /** f32 `[Hq]`: per-head sink logit (natural log) added to the softmax denominator. */
  sinks?: Tensor;
  /** Encode into this encoder (the caller submits) instead of submitting at once. */
  encoder?: GPUCommandEncoder;
  /** With a `deviceSchedule` plan: i32 `[B, pagesPerSeq]` page table and u32/i32 `[B]` (or `[B, 1]`) lengths. */
  deviceSchedule?: { pageTable: Tensor; seqLens: Tensor; mask?: Tensor };
}

interface Plan {
  batchSize: number;
  rows: number;
  numQoHeads: number;
  numKvHeads: number;
  headDim: number;
  pageSize: number;
  qDtype: FloatDType;
  kvDtype: FloatDType;
  oDtype: FloatDType;
  posEncoding: PosEncodingMode;
  windowLeft: number;
  softCap: number;
  smScale: number;
  ropeScale: number;
  ropeTheta: number;
  maxPageId: number;
  numWork: number;
  numSlots: number;
  tile: number;
  workgroupSize: number;
  debugSkip: DecodeShaderConfig['debugSkip'];
  /** The subgroup kernel's config (without sinks), or undefined for the tile kernel. */
  subgroup: Omit<SubgroupDecodeConfig, 'sinks'> | undefined;
  /** The tensor-core kernel's config (without sinks) when it runs instead. */
  tensorCore: TensorCoreChoice | undefined;
  headGroups: number;
  /** The kernel choice's compiled kernels, filled on first run (shared by plans with the same choice; see run()). */
  kernels: (CompiledKernelRef | undefined)[];
  workOffset: number;
  indicesOffset: number;
  slotIndptrOffset: number;
  regions: { partialO: WorkspaceRegion; partialLse: WorkspaceRegion } | undefined;
  kvLens: Int32Array;
  /** Graph mode: everything recorded dispatches depend on; a plan that changes it invalidates them. */
  shapeKey: string;
  /** Device-scheduled plans: chunks per row, page-table width and the window in tokens (0: none). */
  device: { splits: number; pagesPerSeq: number; window: number; qLenPerReq: number; maskWords: number; maskOffset: number } | undefined;
}

/** The fixed buffers of graph mode (FlashInfer's paged_kv_*_buffer). */
interface GraphBuffers {
  batchSize: number;
  indptr: Tensor;
  indices: Tensor;
  lastPageLen: Tensor;
}

function graphBuffers(options: BatchDecodeWrapperOptions): GraphBuffers | undefined {
  if (!options.useCudaGraph) return undefined;
  const batchSize = checkGraphIndexBuffers([
    { name: 'lastPageLenBuffer', tensor: options.lastPageLenBuffer, extent: 'batch' },
    { name: 'indptrBuffer', tensor: options.indptrBuffer, extent: 'batch+1' },
    { name: 'indicesBuffer', tensor: options.indicesBuffer, extent: 'any' },
  ]);
  return { batchSize, indptr: options.indptrBuffer!, indices: options.indicesBuffer!, lastPageLen: options.lastPageLenBuffer! };
}

/** Rows (query rows of all requests) with their KV ranges, shared with the block-table entry points. */
export function decodeRows(kvLens: Int32Array, qLenPerReq: number, windowLeft: number) {
  const rows = kvLens.length * qLenPerReq;
  const both = new Int32Array(2 * rows);
  const rowStart = both.subarray(0, rows);
  const rowEnd = both.subarray(rows);
  for (let b = 0; b < kvLens.length; b++) {
    if (qLenPerReq > 1 && kvLens[b] < qLenPerReq) {
      throw new ValueError(`request ${b} has ${kvLens[b]} KV tokens, fewer than qLenPerReq = ${qLenPerReq}`, 'seqLens');
    }
    for (let i = 0; i < qLenPerReq; i++) {
      const r = b * qLenPerReq + i;
      const len = kvLens[b] === 0 ? 0 : kvLens[b] - qLenPerReq + 1 + i; // causal, bottom-right
      rowEnd[r] = len;
      rowStart[r] = windowLeft >= 0 ? Math.max(0, len - 1 - windowLeft) : 0;
    }
  }
  return { rows, rowStart, rowEnd };
}

/** The largest tile that fits the device's workgroup memory. */
export function chooseTile(ctx: GpuContext, base: Omit<DecodeShaderConfig, 'tile'>): number {
  const limit = ctx.limits.maxComputeWorkgroupStorageSize;
  for (const tile of [64, 32, 16, 8]) {
    if (tile > base.workgroupSize) continue;
    if (decodeLayout({ ...base, tile }).smemBytes <= limit) return tile;
  }
  throw new UnsupportedFeatureError(
    `group size ${base.groupSize} x head_dim ${base.headDim} needs more workgroup memory than the device's ${limit} bytes`,
    'numQoHeads',
  );
}

/**
 * Batch decode over a paged KV cache, one query row per request (or qLenPerReq).
 *
 * @example
 * const wrapper = new BatchDecodeWithPagedKVCacheWrapper(ctx, ctx.empty([128 << 20], 'u8'));
 * wrapper.plan({ indptr, indices, lastPageLen, numQoHeads: 32, numKvHeads: 8, headDim: 128, pageSize: 16 });
 * const o = wrapper.run(q, kvCache);          // q [B, 32, 128] f16, kvCache [P, 2, 16, 8, 128] f16
 * const [o2, lse] = wrapper.runReturnLse(q, kvCache);
 */
export class BatchDecodeWithPagedKVCacheWrapper {
  readonly ctx: GpuContext;
  readonly kvLayout: KVLayout;
  readonly useTensorCores: boolean;
  readonly useCudaGraph: boolean;
  private readonly workspace: Workspace;
  private readonly planBuf: GrowableBuffer;
  private readonly mergeDispatch: DispatchCache;
  private readonly kernelChoices = new Map<
    string,
    {
      tile: number;
      subgroup: Omit<SubgroupDecodeConfig, 'sinks'> | undefined;
      tensorCore: TensorCoreChoice | undefined;
      /** Compiled kernels of this choice by (sinks ? 1 : 0) + (speculative mask ? 2 : 0), kept across plans. */
      kernels: (CompiledKernelRef | undefined)[];
    }
  >();
  /** Host staging of the plan words, reused across plans (zeroed, not reallocated). */
  private planWords = new Uint32Array(0);
  private readonly lseScratch: GrowableBuffer;
  private current: Plan | undefined;
  private readonly dispatch: DispatchCache;
  private readonly scheduleDispatch: DispatchCache;
  private readonly graph: GraphBuffers | undefined;
  /** Pages in the cache of the last run: graph-mode plans must stay inside it (replays check nothing). */
  private boundPages: number | undefined;
  /** The last cache run() was given and its resolved views (an engine passes the same one every step). */
  private lastCache: { input: PagedKVCacheInput; resolved: ReturnType<typeof resolvePagedKVCache> } | undefined;
  /** Graph mode: the decode and merge dispatch sizes (u32 x3 each), written by plan(). */
  private readonly indirect: GPUBuffer | undefined;
  private token = new CaptureToken('BatchDecodeWithPagedKVCacheWrapper');
  private destroyed = false;

  constructor(ctx: GpuContext, workspaceBuffer: Tensor | GPUBuffer, options: BatchDecodeWrapperOptions = {}) {
    ctx.assertLive();
    this.ctx = ctx;
    this.kvLayout = parseKVLayout(options.kvLayout ?? 'NHD');
    this.useTensorCores = options.useTensorCores ?? false;
    this.useCudaGraph = options.useCudaGraph ?? false;
    this.graph = graphBuffers(options);
    this.indirect =
      this.graph && options.indirectDispatch
      ? ctx.device.createBuffer({ label: 'decode/indirect', size: 32, usage: GPUBufferUsage.INDIRECT | GPUBufferUsage.COPY_DST })
      : undefined;
    this.workspace = new Workspace(ctx, workspaceBuffer);
    this.dispatch = new DispatchCache(ctx, 'decode/params');
    this.scheduleDispatch = new DispatchCache(ctx, 'decode/device-schedule');
    this.mergeDispatch = new DispatchCache(ctx, 'decode/merge');
    this.planBuf = new GrowableBuffer(ctx, 'decode/plan', GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, 4096);
    this.lseScratch = new GrowableBuffer(ctx, 'decode/lse-scratch', GPUBufferUsage.STORAGE);
  }

  /** Number of query rows the current plan expects. */
  get plannedRows(): number {
    return this.current?.rows ?? 0;
  }

  /** How the last plan split the work (for diagnostics and tests). */
  get planInfo():
    | { numWork: number; numSlots: number; tile: number; kernel: 'subgroup' | 'tile' | 'tensor-core' | 'tensor-core-staged'; workgroupSize: number; tokensPerStep?: number }
    | undefined {
    const p = this.current;
    return (
      p && {
        numWork: p.numWork,
        numSlots: p.numSlots,
        tile: p.tile,
        kernel: p.tensorCore ? (p.tensorCore.staged ? 'tensor-core-staged' : 'tensor-core') : p.subgroup ? 'subgroup' : 'tile',
        workgroupSize: p.tensorCore ? p.tensorCore.subgroupSize * (p.tensorCore.staged ? p.tensorCore.subgroups : 1) : p.workgroupSize,
        // The subgroup kernel's tokens a lane step.
        ...(p.subgroup && !p.tensorCore ? { tokensPerStep: p.subgroup.tokensPerStep } : {}),
      }
    );
  }

  plan(args: BatchDecodePlanArgs): void {
    this.assertLive();
    const group = checkHeads(args.numQoHeads, args.numKvHeads);
    checkHeadDim(args.headDim);
    if (!Number.isInteger(args.pageSize) || args.pageSize < 1) {
      throw new ValueError(`must be a positive integer, got ${args.pageSize}`, 'pageSize');
    }
    const posEncoding = parsePosEncoding(args.posEncodingMode);
    const windowLeft = parseWindowLeft(args.windowLeft);
    const softCap = parseNonNegative(args.logitsSoftCap, 0, 'logitsSoftCap');
    checkAlibiSoftCap(posEncoding, softCap);
    const qDtype = parseQDType(args.qDataType, 'f16', 'qDataType');
    const kvDtype = parseKVDType(args.kvDataType, qDtype, 'kvDataType');
    const oDtype = parseQDType(args.oDataType, qDtype, 'oDataType');
    const smScale = parsePositive(args.smScale, 1 / Math.sqrt(args.headDim), 'smScale');
    const ropeScale = parsePositive(args.ropeScale, 1, 'ropeScale');
    const ropeTheta = parsePositive(args.ropeTheta, 1e4, 'ropeTheta');
    const qLenPerReq = args.qLenPerReq ?? 1;
    if (!Number.isInteger(qLenPerReq) || qLenPerReq < 1) throw new ValueError(`must be a positive integer, got ${qLenPerReq}`, 'qLenPerReq');
    if (qLenPerReq > 1 && posEncoding === 'ALIBI') {
      throw new UnsupportedFeatureError('ALiBi with qLenPerReq > 1 is not supported', 'posEncodingMode');
    }

    let indptr: Int32Array;
    let indices: Int32Array;
    let kvLens: Int32Array;
    let maxPageId: number;
    const ds = args.deviceSchedule;
    if (ds) {
      for (const [name, x] of [['deviceSchedule.batchSize', ds.batchSize], ['deviceSchedule.pagesPerSeq', ds.pagesPerSeq]] as const) {
        if (!Number.isInteger(x) || x < 1) throw new ValueError(`must be a positive integer, got ${x}`, name);
      }
      if (this.graph) throw new UnsupportedFeatureError('deviceSchedule plans are not available in graph mode', 'deviceSchedule');
      // Lengths are unknown here: size everything for full page-table rows.
      indptr = Int32Array.from({ length: ds.batchSize + 1 }, (_, b) => b * ds.pagesPerSeq);
      indices = new Int32Array(0);
      kvLens = new Int32Array(ds.batchSize).fill(ds.pagesPerSeq * args.pageSize);
      maxPageId = -1;
    } else if (args.blockTables) {
      if (!args.seqLens) throw new ValueError('blockTables needs seqLens', 'seqLens');
      const conv = blockTablesToPagedKV({ blockTables: args.blockTables, batchSize: args.seqLens.length, seqLens: args.seqLens, pageSize: args.pageSize });
      const v = validatePagedKVIndices({ ...conv, pageSize: args.pageSize });
      ({ indptr, indices, kvLens, maxPageId } = v);
    } else {
      if (!args.indptr || !args.indices || !args.lastPageLen) {
        throw new ValueError('plan needs indptr, indices and lastPageLen (or blockTables and seqLens)', 'indptr');
      }
      const v = validatePagedKVIndices({ indptr: args.indptr, indices: args.indices, lastPageLen: args.lastPageLen, pageSize: args.pageSize });
      ({ indptr, indices, kvLens, maxPageId } = v);
      if (args.seqLens) {
        if (args.seqLens.length !== kvLens.length) {
          throw new ShapeError(`has ${args.seqLens.length} entries, expected batch_size = ${kvLens.length}`, 'seqLens');
        }
        kvLens = Int32Array.from(args.seqLens as ArrayLike<number>);
        for (let b = 0; b < kvLens.length; b++) {
          const cap = (indptr[b + 1] - indptr[b]) * args.pageSize;
          if (kvLens[b] < 0 || kvLens[b] > cap) {
            throw new ValueError(`request ${b}: length ${kvLens[b]} does not fit its ${cap / args.pageSize} pages`, 'seqLens');
          }
        }
      }
    }

    if (this.graph) this.checkGraphPlan(kvLens.length, indices, maxPageId);

    if (args.workgroupSize !== undefined && (![64, 128, 256].includes(args.workgroupSize) || args.workgroupSize > this.ctx.limits.maxComputeInvocationsPerWorkgroup)) {
      throw new ValueError(`must be 64, 128 or 256 (and within the device's limit), got ${args.workgroupSize}`, 'workgroupSize');
    }
    const base = {
      headDim: args.headDim,
      groupSize: group,
      workgroupSize: args.workgroupSize ?? args.debug?.workgroupSize ?? WORKGROUP_SIZE,
      qDtype,
      kvDtype,
      oDtype,
      posEncoding,
      softCap: softCap > 0,
      sinks: false,
      nativeF16: this.ctx.hasF16,
    };
    // Kernel choice depends only on these options: worked out once per distinct set (plan runs
    // every step, so its CPU time counts).
    // The tensor-core kernel's 16-key blocks may not cross pages: fine with pages of 16k tokens,
    // or when no request spans two pages (single decode's one page).
    let onePagePerRequest = false;
    if (this.useTensorCores || args.debug?.kernel === 'tensor-core') {
      onePagePerRequest = true;
      for (let b = 0; b + 1 < indptr.length; b++) if (indptr[b + 1] - indptr[b] > 1) onePagePerRequest = false;
    }
    // Every field of base, spelled out (JSON.stringify of it was a tenth of plan's CPU time).
    const choiceKey = `${base.headDim}|${base.groupSize}|${base.workgroupSize}|${qDtype}|${kvDtype}|${oDtype}|${posEncoding}|${base.softCap}|${base.nativeF16}|${args.pageSize}|${onePagePerRequest}|${args.debug ? JSON.stringify(args.debug) : ''}`;
    let choice = this.kernelChoices.get(choiceKey);
    if (!choice) {
      const tensorCore = this.tensorCoreConfig(base, args.pageSize, onePagePerRequest, args.debug?.kernel, args.debug?.tensorCoreEarlyV, args.debug?.tensorCoreF16Cache, args.debug?.stagedQInSmem, args.debug?.stagedSubgroups, args.debug?.stagedProfileSkip);
      choice = {
        tile: args.debug?.tile ?? chooseTile(this.ctx, base),
        subgroup: tensorCore
          ? undefined
          : this.subgroupConfig(base, args.debug?.kernel === 'tensor-core' || args.debug?.kernel === 'tensor-core-staged' ? undefined : args.debug?.kernel, args.debug?.tokensPerStep, args.pageSize, args.debug?.headsPerWorkgroup, args.debug?.wideFp8Loads, args.debug?.scatterSoftmax, args.debug?.lazyRescale, args.debug?.subgroupProfileSkip),
        tensorCore,
        kernels: [],
      };
      this.kernelChoices.set(choiceKey, choice);
    }
    const { tile, subgroup, tensorCore } = choice;
    const { rows, rowStart, rowEnd } = decodeRows(kvLens, qLenPerReq, windowLeft);
    const headGroups = tensorCore
      ? tensorCore.staged
        ? stagedTensorCoreDecodeLayout({ ...tensorCore, sinks: false }).headGroups
        : tensorCoreDecodeLayout({ ...tensorCore, sinks: false }).headGroups
      : subgroup
        ? subgroupDecodeLayout({ ...subgroup, sinks: false }).headGroups
        : 1;
    // The tensor-core kernel's workgroups are one subgroup each: 4x as many fill the device
    // (H100: B=64, kv 4096 took 0.656 ms at 2112 against 0.851 at 528, BENCHMARKS.md).
    const oneSubgroup = tensorCore !== undefined && !tensorCore.staged;
    const targetWorkgroups = args.targetWorkgroups ?? (oneSubgroup ? 4 * DEFAULT_TARGET_WORKGROUPS : DEFAULT_TARGET_WORKGROUPS);
    const splitAt = (target: number) =>
      planSplitKV({
        rowStart,
        rowEnd,
        workgroupsPerChunk: args.numKvHeads * headGroups,
        targetWorkgroups: target,
        tile,
        fixedSplitSize: args.fixedSplitSize,
        disableSplitKv: args.disableSplitKv,
        // graph mode's padded capacity assumes the target's chunk size
        balance: !this.graph,
      });
    let split: SplitKVPlan;
    if (ds) split = deviceSplit(rows, args.numKvHeads * headGroups, targetWorkgroups, ds.pagesPerSeq * args.pageSize, args.disableSplitKv);
    else if (this.graph || oneSubgroup || args.targetWorkgroups !== undefined) split = splitAt(targetWorkgroups);
    else {
      // Twice the target where chunks stay long (H100, balanced chunks: B=8 kv 32768 GQA 4 f16
      // 0.477 -> 0.385 ms, fp8 0.419 -> 0.330); shorter chunks cost more in fixed per-workgroup
      // work than the extra workgroups win (B=16 kv 4096: 0.106 -> 0.117 ms at 512-token chunks;
      // single decode kv 32768: 0.193 -> 0.200 at 1024).
      split = splitAt(2 * targetWorkgroups);
      if (split.chunkSize > 0 && split.chunkSize < LONG_CHUNK) split = splitAt(targetWorkgroups);
    }
    // Graph mode pads the schedule to a capacity that depends only on the shape: the automatic
    // split makes at most rows + target / (workgroups per chunk) chunks (each row adds at most one
    // partial chunk to total / chunkSize), and the same bound sizes the partial states.
    // A batch that fills the GPU on its own is never split (without fixedSplitSize): then graph
    // mode needs no padding and records no merge.
    const chunks = split.chunkRow.length;
    const wpc = args.numKvHeads * headGroups;
    const maySplit = !args.disableSplitKv && (Boolean(args.fixedSplitSize) || rows * wpc < targetWorkgroups);
    const numWork = this.graph ? (maySplit ? rows + Math.ceil(targetWorkgroups / wpc) : rows) : chunks;
    if (chunks > numWork) {
      throw new ValueError(`the split makes ${chunks} chunks, more than the ${numWork} a graph-mode schedule holds; use a larger fixedSplitSize`, 'fixedSplitSize');
    }
    const numSlots = this.graph ? (maySplit ? numWork : 0) : split.numSlots;
    const indicesCapacity = this.graph ? this.graph.indices.shape[0] : ds ? ds.batchSize * ds.pagesPerSeq : indices.length;

    // Plan buffer: work items | page indices | slot indptr (u32 words).
    const workOffset = 0;
    const indicesOffset = numWork * WORK_ITEM_WORDS;
    const slotIndptrOffset = indicesOffset + indicesCapacity;
    // Length rounded to whole 16-byte rows so writeBuffer takes it without a padded copy.
    // Device-scheduled speculative plans keep the draft mask rows after the slot indptr.
    const maskWords = ds?.maskWords ?? 0;
    const maskOffset = slotIndptrOffset + rows + 1;
    const wordCount = Math.ceil((maskOffset + rows * maskWords) / 4) * 4;
    if (this.planWords.length < wordCount) this.planWords = new Uint32Array(Math.max(wordCount, this.planWords.length * 2));
    const words = this.planWords.subarray(0, wordCount);
    // Everything but the page indices (written below) starts at zero, as in a fresh array.
    words.fill(0, 0, indicesOffset);
    words.fill(0, indicesOffset + (ds ? 0 : indices.length));
    for (let c = chunks; c < numWork; c++) words[workOffset + c * WORK_ITEM_WORDS] = PADDING_ROW;
    for (let c = 0; c < (ds ? 0 : chunks); c++) {
      const r = split.chunkRow[c];
      const b = Math.floor(r / qLenPerReq);
      const at = workOffset + c * WORK_ITEM_WORDS;
      words[at] = r;
      words[at + 1] = split.chunkStart[c];
      words[at + 2] = split.chunkEnd[c];
      words[at + 3] = split.chunkSlot[c] < 0 ? DIRECT_SLOT : split.chunkSlot[c];
      words[at + 4] = indptr[b];
      words[at + 5] = rowEnd[r];
    }
    words.set(indices, indicesOffset);
    words.set(split.slotIndptr, slotIndptrOffset);
    this.planBuf.upload(words);
    if (this.indirect) {
      // Dispatch only the real chunks (the padded tail would exit at once) and merge only when
      // something was split, so a replayed step costs the GPU what the plain wrapper's does.
      const [gx, gy] = foldWorkgroups(this.ctx, numWork * args.numKvHeads * headGroups);
      const real = chunks * args.numKvHeads * headGroups;
      const merge = split.numSlots > 0 ? mergeWorkgroups(this.ctx, rows, args.numQoHeads, args.headDim) : [0, 1];
      const sizes = gy === 1 ? [real, 1, 1] : [gx, Math.ceil(real / gx), 1];
      this.ctx.device.queue.writeBuffer(this.indirect, 0, Uint32Array.from([...sizes, merge[0], merge[1], 1, 0, 0]));
    }
    if (this.graph) {
      this.graph.indptr.write(indptr);
      this.graph.indices.write(padTo(indices, this.graph.indices.shape[0]));
      this.graph.lastPageLen.write(lastPageLensOf(kvLens, indptr, args.pageSize));
    }

    const regions = this.workspace.carveSplitKV(numSlots, args.numQoHeads, args.headDim, this.ctx.limits.maxStorageBufferBindingSize);
    const plan: Plan = {
      batchSize: kvLens.length,
      rows,
      numQoHeads: args.numQoHeads,
      numKvHeads: args.numKvHeads,
      headDim: args.headDim,
      pageSize: args.pageSize,
      qDtype,
      kvDtype,
      oDtype,
      posEncoding,
      windowLeft,
      softCap,
      smScale,
      ropeScale,
      ropeTheta,
      maxPageId,
      numWork,
      numSlots,
      tile,
      workgroupSize: base.workgroupSize,
      debugSkip: args.debug?.debugSkip,
      subgroup,
      tensorCore,
      kernels: choice.kernels,
      headGroups,
      workOffset,
      indicesOffset,
      slotIndptrOffset,
      regions,
      kvLens,
      shapeKey: '',
      device: ds && { splits: chunks / rows, pagesPerSeq: ds.pagesPerSeq, window: windowLeft >= 0 ? windowLeft + 1 : 0, qLenPerReq, maskWords, maskOffset },
    };
    // Only graph mode keeps recorded dispatches across plans, so only it needs the shape key.
    plan.shapeKey = this.graph ? planShapeKey(plan) : '';
    // Recorded dispatches survive a re-plan only in graph mode, and only with the same shape.
    if (!this.graph || this.current?.shapeKey !== plan.shapeKey) {
      this.token.invalidate('the wrapper was planned again with a different shape');
      this.token = new CaptureToken('BatchDecodeWithPagedKVCacheWrapper');
    }
    this.current = plan;
  }

  private checkGraphPlan(batchSize: number, indices: Int32Array, maxPageId: number): void {
    const g = this.graph!;
    if (batchSize !== g.batchSize) {
      throw new ValueError(`batch size ${batchSize} differs from the fixed batch size ${g.batchSize} of the graph-mode buffers`, 'indptr');
    }
    if (indices.length > g.indices.shape[0]) {
      throw new ValueError(`${indices.length} page indices do not fit indicesBuffer's ${g.indices.shape[0]}`, 'indices');
    }
    if (this.boundPages !== undefined && maxPageId >= this.boundPages) {
      throw new IndexRangeError(`page id ${maxPageId} is outside the ${this.boundPages} pages of the cache the wrapper runs on`, 'indices');
    }
  }

  /** The tile kernel's config for plan `p`. */
  private tileConfig(p: Plan, sinks: boolean): DecodeShaderConfig {
    return {
      headDim: p.headDim,
      groupSize: p.numQoHeads / p.numKvHeads,
      tile: p.tile,
      workgroupSize: p.workgroupSize,
      qDtype: p.qDtype,
      kvDtype: p.kvDtype,
      oDtype: p.oDtype,
      posEncoding: p.posEncoding,
      softCap: p.softCap > 0,
      sinks,
      nativeF16: this.ctx.hasF16,
      ...(p.debugSkip ? { debugSkip: p.debugSkip } : {}),
      ...(p.device?.maskWords ? { specMask: true } : {}),
    };
  }

  /**
   * The tensor-core kernel's config when the wrapper asks for tensor cores (or the bench forces
   * it); throws where it can't run. Undefined otherwise.
   */
  private tensorCoreConfig(
    base: Omit<DecodeShaderConfig, 'tile'>,
    pageSize: number,
    onePagePerRequest: boolean,
    force: 'subgroup' | 'tile' | 'tensor-core' | 'tensor-core-staged' | undefined,
    earlyV: boolean | undefined,
    f16Cache: boolean | undefined,
    qInSmem?: boolean,
    stagedSubgroups?: number,
    profileSkip?: StagedTensorCoreDecodeConfig['profileSkip'],
  ): TensorCoreChoice | undefined {
    const wanted = force === 'tensor-core' || force === 'tensor-core-staged' || (this.useTensorCores && force === undefined);
    if (!wanted) return undefined;
    const pagePow2 = (pageSize & (pageSize - 1)) === 0;
    // useTensorCores takes the staged kernel wherever it runs (H100: 0.46 against 0.64 ms for the
    // cache-reading one at B=64 kv 4096 and at xqa's GQA 8 shape), else the cache-reading kernel.
    if (force !== 'tensor-core') {
      const kv = base.kvDtype;
      const staged =
        kv === 'f16' || kv === 'fp8_e4m3' || kv === 'fp8_e5m2'
          ? {
              staged: true as const,
              headDim: base.headDim,
              groupSize: base.groupSize,
              subgroupSize: this.ctx.subgroupMinSize,
              // 2 subgroups (32-key blocks): H100 GQA 8 B=128 kv 2048 0.431 ms against 0.459 with 4
              subgroups: stagedSubgroups ?? 2,
              kvDtype: kv,
              oDtype: base.oDtype,
              posEncoding: base.posEncoding,
              softCap: base.softCap,
              pagePow2,
              ...(qInSmem ? { qInSmem } : {}),
              ...(profileSkip ? { profileSkip } : {}),
            }
          : undefined;
      const why = staged ? stagedTensorCoreDecodeSupport(this.ctx, { ...staged, sinks: false }, base.qDtype) : 'it takes f16 or fp8 KV';
      if (staged && why === undefined) return staged;
      if (force === 'tensor-core-staged') throw new UnsupportedFeatureError(`the staged tensor-core decode kernel is unavailable: ${why}`, 'useTensorCores');
    }
    const why = tensorCoreDecodeSupport(this.ctx, { ...base, pageSize, onePagePerRequest });
    if (why !== undefined) throw new UnsupportedFeatureError(`the tensor-core decode kernel is unavailable: ${why}`, 'useTensorCores');
    return {
      headDim: base.headDim,
      groupSize: base.groupSize,
      subgroupSize: this.ctx.subgroupMinSize,
      oDtype: base.oDtype,
      posEncoding: base.posEncoding,
      softCap: base.softCap,
      pagePow2,
      ...(earlyV === false ? { earlyV } : {}),
      ...(f16Cache !== undefined ? { f16Cache } : {}),
    };
  }

  /**
   * The subgroup kernel when the device has subgroups and it fits: TD lanes per token (at most the
   * smallest subgroup), at most 16 vec4 of q per lane (so q and o stay in registers).
   */
  private subgroupConfig(
    base: Omit<DecodeShaderConfig, 'tile'>,
    force: 'subgroup' | 'tile' | undefined,
    tokensPerStep: number | undefined,
    pageSize: number,
    headsPerWorkgroup: number | undefined,
    wideFp8Loads = false,
    scatterSoftmax: boolean | undefined = undefined,
    lazyRescale: boolean | undefined = undefined,
    profileSkip: 'loads' | undefined = undefined,
  ): Omit<SubgroupDecodeConfig, 'sinks'> | undefined {
    const ctx = this.ctx;
    if (force === 'tile') return undefined;
    const sg = ctx.subgroupMinSize;
    if (!ctx.hasSubgroups || sg < 1) {
      if (force === 'subgroup') throw new UnsupportedFeatureError('the subgroup kernel needs the subgroups feature', 'debug.kernel');
      return undefined;
    }
    const ept = elementsPerLoad(base.kvDtype, wideFp8Loads);
    const chunks = base.headDim / ept;
    let td = 1;
    while (td * 2 <= Math.min(chunks, sg, 32)) td *= 2;
    const rv = chunks / td;
    const nv = ept / 4;
    // q and o of every served head stay in registers: at most 8 vec4 of each per lane.
    const hpw = headsPerWorkgroup ?? Math.max(1, Math.min(base.groupSize, Math.floor(8 / (rv * nv))));
    // Lazy rescale (H100, BENCHMARKS.md "Session 7") for fp8, with more tokens a step: B = 64, kv
    // 4096, H 32/8, e4m3 with 4 0.343 ms against 0.392 rescaling every step with 2; e5m2 with 8
    // 0.288 against 0.297 with 4. For f16 it measured the same or slower (0.393 against 0.385).
    const lazy = lazyRescale ?? (base.kvDtype === 'fp8_e4m3' || base.kvDtype === 'fp8_e5m2');
    const lazyTokens = base.kvDtype === 'fp8_e5m2' ? 8 : 4;
    // 16-bit KV with 2 heads a workgroup (GQA 2 at head dims 64 and 128) takes 8 tokens a step
    // (H100, BENCHMARKS.md "Session 10": B = 64, kv 4096, H 16/8 0.368 ms against 0.437 with 4;
    // kv 32768 and page 1 alike), where groups of 1, 3 and 4 read 2-7% slower with 8.
    const wideStep = (base.kvDtype === 'f16' || base.kvDtype === 'bf16') && hpw === 2 && rv === 1;
    const config = {
      headDim: base.headDim,
      groupSize: base.groupSize,
      headsPerWorkgroup: hpw,
      lanesPerToken: td,
      // Tokens per lane per step (H100, reduce-scatter softmax, BENCHMARKS.md "Session 5"): 4
      // (B = 64, kv 4096, H 32/8: 0.386 ms against 0.410 for 2; GQA 8: 0.489 against 0.605), but 2
      // for e4m3 when it rescales every step (0.390 against 0.454; lazy fp8: above). Unrolled
      // loads per step (U x RV) stay <= 8, which bounds shader size (and compile time).
      // A CPU adapter (lavapipe in CI) takes 1: its compile time grows with the unrolled step and
      // its speed is not the point; the tests force 2 and 4 on a few cases there.
      tokensPerStep: tokensPerStep ?? (ctx.isSoftwareAdapter ? 1 : Math.min(lazy ? lazyTokens : base.kvDtype === 'fp8_e4m3' ? 2 : wideStep ? 8 : 4, Math.max(1, Math.floor(8 / rv)))),
      pagePow2: (pageSize & (pageSize - 1)) === 0,
      workgroupSize: base.workgroupSize,
      qDtype: base.qDtype,
      kvDtype: base.kvDtype,
      oDtype: base.oDtype,
      posEncoding: base.posEncoding,
      softCap: base.softCap,
      nativeF16: base.nativeF16,
      wideFp8Loads,
      ...(scatterSoftmax === false ? { scatterSoftmax } : {}),
      ...(lazy ? {} : { lazyRescale: false }),
      ...(profileSkip ? { profileSkip } : {}),
    };
    if (subgroupDecodeLayout({ ...config, sinks: false }).smemBytes > ctx.limits.maxComputeWorkgroupStorageSize) {
      if (force === 'subgroup') throw new UnsupportedFeatureError('the subgroup kernel does not fit workgroup memory', 'debug.kernel');
      return undefined;
    }
    return config;
  }

  run(q: Tensor, pagedKvCache: PagedKVCacheInput, options: BatchDecodeRunOptions & { returnLse: true }): [Tensor, Tensor];
  run(q: Tensor, pagedKvCache: PagedKVCacheInput, options?: BatchDecodeRunOptions): Tensor;
  run(q: Tensor, pagedKvCache: PagedKVCacheInput, options: BatchDecodeRunOptions = {}): Tensor | [Tensor, Tensor] {
    this.assertLive();
    const p = this.current;
    if (!p) throw new PlanMismatchError('call plan() before run()', 'plan');
    const ctx = this.ctx;
    q.expect('q', [p.qDtype], [p.rows, p.numQoHeads, p.headDim]);
    if (q.strides[2] !== 1) throw new LayoutError('the head dimension of q must be contiguous', 'q');
    if (options.windowLeft !== undefined && options.windowLeft !== p.windowLeft) {
      throw new PlanMismatchError(`windowLeft ${options.windowLeft} differs from the planned ${p.windowLeft}`, 'windowLeft');
    }
    if (this.lastCache?.input !== pagedKvCache) this.lastCache = { input: pagedKvCache, resolved: resolvePagedKVCache(pagedKvCache, this.kvLayout) };
    const cache = this.lastCache.resolved;
    if (cache.dtype !== p.kvDtype) throw new PlanMismatchError(`cache is ${cache.dtype} but plan said kvDataType ${p.kvDtype}`, 'pagedKvCache');
    if (cache.pageSize !== p.pageSize) throw new PlanMismatchError(`cache page size ${cache.pageSize} but plan said ${p.pageSize}`, 'pagedKvCache');
    if (cache.numKvHeads !== p.numKvHeads) throw new PlanMismatchError(`cache has ${cache.numKvHeads} kv heads but plan said ${p.numKvHeads}`, 'pagedKvCache');
    if (cache.headDimQk !== p.headDim || cache.headDimVo !== p.headDim) {
      throw new PlanMismatchError(`cache head dim ${cache.headDimQk} but plan said ${p.headDim}`, 'pagedKvCache');
    }
    if (p.maxPageId >= cache.maxNumPages) {
      throw new PlanMismatchError(`planned page id ${p.maxPageId} is outside the cache's ${cache.maxNumPages} pages`, 'indices');
    }
    this.boundPages = cache.maxNumPages;
    const vecElems = 16 / dtypeBytes(p.kvDtype);
    for (const a of [cache.kAddr, cache.vAddr]) {
      if (a.offset % vecElems !== 0 || a.stridePage % vecElems !== 0 || a.strideSlot % vecElems !== 0 || a.strideHead % vecElems !== 0) {
        throw new LayoutError(`${a === cache.kAddr ? 'k' : 'v'} rows must start on 16-byte boundaries (offsets and strides multiples of ${vecElems} elements)`, 'pagedKvCache');
      }
    }
    // Bind only the tensors' own ranges, so caches inside larger buffers work (offsets rebased).
    const kBind = cache.k.binding('pagedKvCache');
    const vBind = cache.v.binding('pagedKvCache');
    const qBind = q.binding('q');
    const kOffset = cache.kAddr.offset - cache.k.offset + kBind.elementOffset;
    const vOffset = cache.vAddr.offset - cache.v.offset + vBind.elementOffset;
    if (kOffset % vecElems !== 0 || vOffset % vecElems !== 0) {
      throw new LayoutError(`rows must start on 16-byte boundaries of the binding`, 'pagedKvCache');
    }
    const qScale = parseScale(options.qScale, 'qScale');
    const kScale = parseScale(options.kScale, 'kScale');
    const vScale = parseScale(options.vScale, 'vScale');
    if (options.sinks) {
      options.sinks.expect('sinks', ['f32'], [p.numQoHeads]);
      if (options.sinks.offset !== 0 || !options.sinks.isContiguous()) throw new LayoutError('must be a contiguous tensor at offset 0', 'sinks');
    }
    const out = options.out ?? ctx.empty([p.rows, p.numQoHeads, p.headDim], p.oDtype, 'decode/out');
    if (options.out) {
      out.expect('out', [p.oDtype], [p.rows, p.numQoHeads, p.headDim]);
      if (!out.isContiguous()) throw new LayoutError('must be contiguous', 'out');
    }
    const wantLse = options.returnLse || options.lse !== undefined;
    const lse = options.lse ?? (wantLse ? ctx.empty([p.rows, p.numQoHeads], 'f32', 'decode/lse') : undefined);
    if (options.lse) {
      options.lse.expect('lse', ['f32'], [p.rows, p.numQoHeads]);
      if (!options.lse.isContiguous()) throw new LayoutError('must be contiguous', 'lse');
    }

    // The pipeline depends only on the plan (and on whether sinks are given): look it up once.
    const withSinks = options.sinks !== undefined ? 1 : 0;
    const bindings = ['uniform', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'storage', 'storage', 'storage'] as const;
    // Looked up once per kernel choice, not per plan: getKernel's key is a long config string.
    const variant = withSinks + (p.device?.maskWords ? 2 : 0);
    if (!p.kernels[variant]) {
      p.kernels[variant] = p.tensorCore?.staged
        ? getKernel(ctx, {
            id: 'decode/tc-staged-decode',
            config: { ...p.tensorCore, sinks: withSinks === 1, ...(p.device?.maskWords ? { specMask: true } : {}) },
            wgsl: stagedTensorCoreDecodeWgsl,
            bindings,
          })
        : p.tensorCore
        ? getKernel(ctx, {
            id: 'decode/tc-decode',
            config: { ...p.tensorCore, sinks: withSinks === 1, ...(p.device?.maskWords ? { specMask: true } : {}) },
            wgsl: tensorCoreDecodeWgsl,
            bindings,
          })
        : p.subgroup
        ? getKernel(ctx, {
            id: 'decode/subgroup-decode',
            config: { ...p.subgroup, sinks: withSinks === 1, ...(p.device?.maskWords ? { specMask: true } : {}) },
            wgsl: subgroupDecodeWgsl,
            bindings,
          })
        : getKernel(ctx, { id: 'decode/tile-decode', config: this.tileConfig(p, options.sinks !== undefined), wgsl: batchDecodeWgsl, bindings });
    }
    const kernel = p.kernels[variant]!;
    const sm = p.smScale * qScale * kScale;
    const oOffsetWords = out.offset;
    const groups = foldWorkgroups(ctx, p.numWork * p.numKvHeads * p.headGroups);
    const wsBase = this.workspace.base;
    const uniformValues = {
        num_work: p.numWork,
        num_kv_heads: p.numKvHeads,
        num_qo_heads: p.numQoHeads,
        page_size: p.pageSize,
        page_shift: Math.log2(p.pageSize) % 1 === 0 ? Math.log2(p.pageSize) : 0,
        k_offset: kOffset,
        k_stride_page: cache.kAddr.stridePage,
        k_stride_slot: cache.kAddr.strideSlot,
        k_stride_head: cache.kAddr.strideHead,
        v_offset: vOffset,
        v_stride_page: cache.vAddr.stridePage,
        v_stride_slot: cache.vAddr.strideSlot,
        v_stride_head: cache.vAddr.strideHead,
        q_offset: qBind.elementOffset,
        q_stride_row: q.strides[0],
        q_stride_head: q.strides[1],
        o_offset: oOffsetWords,
        lse_offset: lse ? lse.offset : 0,
        part_o_offset: p.regions ? (p.regions.partialO.offset - wsBase) / 4 : 0,
        part_lse_offset: p.regions ? (p.regions.partialLse.offset - wsBase) / 4 : 0,
        work_offset: p.workOffset,
        indices_offset: p.indicesOffset,
        window_left: p.windowLeft,
        sm_scale: sm,
        sm_scale_log2: sm * Math.LOG2E,
        soft_cap: p.softCap,
        v_scale: vScale,
        rope_rcp_scale: 1 / p.ropeScale,
        rope_log2_theta: Math.log2(p.ropeTheta),
        groups_x: groups[0],
        spec_q_len: p.device?.maskWords ? p.device.qLenPerReq : 0,
        mask_offset: p.device?.maskOffset ?? 0,
        mask_words: p.device?.maskWords ?? 0,
    };
    const uniform = this.dispatch.uniform(decodeUniforms.packScratch(uniformValues), Boolean(options.encoder));
    const lseBinding = lse ? lse.buffer : this.lseScratch.reserve(p.rows * p.numQoHeads * 4);
    // The kernel addresses partial states relative to the workspace base.
    const wsBinding = this.workspace.kernelBinding(ctx.limits.maxStorageBufferBindingSize);
    const whole = (buffer: GPUBuffer): GPUBufferBinding => ({ buffer });
    const group = this.dispatch.bindGroup(kernel, [
      whole(uniform),
      qBind.binding,
      kBind.binding,
      vBind.binding,
      whole(this.planBuf.buffer!),
      options.sinks ? options.sinks.binding('sinks').binding : qBind.binding,
      whole(out.buffer),
      whole(lseBinding),
      wsBinding,
    ]);
    const schedule = this.checkDeviceSchedule(p, options.deviceSchedule);
    const encoder = options.encoder ?? ctx.device.createCommandEncoder({ label: 'decode' });
    noteCapture(options.encoder, this.token);
    if (schedule) this.encodeDeviceSchedule(encoder, p, schedule);
    encodeDispatch(encoder, kernel, group, this.indirect ? { buffer: this.indirect, offset: 0 } : groups);
    let mergeUniform: GPUBuffer | undefined;
    // Graph mode merges whenever a plan of its shape may split (rows a plan did not split have no
    // slots and are skipped).
    if (p.regions) {
      mergeUniform = encodeSplitKVMerge(ctx, encoder, {
        partialO: this.workspace.binding(p.regions.partialO),
        partialLse: this.workspace.binding(p.regions.partialLse),
        indptr: this.planBuf.buffer!,
        indptrOffset: p.slotIndptrOffset,
        numRows: p.rows,
        numHeads: p.numQoHeads,
        headDim: p.headDim,
        outDtype: p.oDtype,
        out,
        lse: lseBinding,
        lseOffset: lse ? lse.offset : 0,
        sinks: options.sinks?.buffer,
        vScale,
        indirect: this.indirect && { buffer: this.indirect, offset: 12 },
        cache: this.mergeDispatch,
        external: Boolean(options.encoder),
      });
    }
    if (!options.encoder) {
      ctx.submit([encoder.finish()]);
      mergeUniform?.destroy();
    }
    return options.returnLse ? [out, lse!] : out;
  }

  private checkDeviceSchedule(p: Plan, s: BatchDecodeRunOptions['deviceSchedule']): BatchDecodeRunOptions['deviceSchedule'] {
    if (!p.device) {
      if (s) throw new PlanMismatchError('deviceSchedule given, but the plan was not a deviceSchedule plan', 'deviceSchedule');
      return undefined;
    }
    if (!s) throw new PlanMismatchError('the plan is a deviceSchedule plan: run needs deviceSchedule { pageTable, seqLens }', 'deviceSchedule');
    s.pageTable.expect('pageTable', ['i32', 'u32'], [p.batchSize, p.device.pagesPerSeq]);
    if (!s.pageTable.isContiguous()) throw new LayoutError('must be contiguous', 'pageTable');
    s.seqLens.expect('seqLens', ['i32', 'u32'], s.seqLens.rank === 2 ? [p.batchSize, 1] : [p.batchSize]);
    const d = p.device;
    if (d.maskWords > 0) {
      if (!s.mask) throw new PlanMismatchError('the plan has a speculative mask: run needs deviceSchedule.mask', 'mask');
      s.mask.expect('mask', ['u32', 'i32'], [p.batchSize, d.qLenPerReq, d.maskWords]);
      if (!s.mask.isContiguous()) throw new LayoutError('must be contiguous', 'mask');
    } else if (s.mask) {
      throw new PlanMismatchError('a mask was given, but the plan has none (deviceSchedule.maskWords)', 'mask');
    }
    return s;
  }

  /** The GPU pre-pass of a deviceSchedule plan: work items from seqLens, page table into the plan buffer. */
  private encodeDeviceSchedule(encoder: GPUCommandEncoder, p: Plan, s: NonNullable<BatchDecodeRunOptions['deviceSchedule']>): void {
    const ctx = this.ctx;
    const d = p.device!;
    const kernel = getKernel(ctx, { id: 'decode/device-schedule', config: {}, wgsl: deviceScheduleWgsl, bindings: ['uniform', 'read-only-storage', 'storage'] });
    const seq = s.seqLens.binding('seqLens');
    const uniform = this.scheduleDispatch.uniform(
      deviceScheduleUniforms.pack({
        batch: p.batchSize,
        splits: d.splits,
        pages_per_seq: d.pagesPerSeq,
        page_size: p.pageSize,
        window: d.window,
        seq_offset: seq.elementOffset,
        seq_stride: s.seqLens.strides[0],
        q_len: d.qLenPerReq,
      }),
      true,
    );
    const group = this.scheduleDispatch.bindGroup(kernel, [{ buffer: uniform }, seq.binding, { buffer: this.planBuf.buffer! }]);
    encoder.copyBufferToBuffer(s.pageTable.buffer, s.pageTable.byteOffset, this.planBuf.buffer!, p.indicesOffset * 4, p.batchSize * d.pagesPerSeq * 4);
    if (s.mask) encoder.copyBufferToBuffer(s.mask.buffer, s.mask.byteOffset, this.planBuf.buffer!, d.maskOffset * 4, p.rows * d.maskWords * 4);
    encodeDispatch(encoder, kernel, group, foldWorkgroups(ctx, Math.ceil(p.numWork / 64)));
  }

  /** `run(..., { returnLse: true })`. */
  runReturnLse(q: Tensor, pagedKvCache: PagedKVCacheInput, options: BatchDecodeRunOptions = {}): [Tensor, Tensor] {
    return this.run(q, pagedKvCache, { ...options, returnLse: true });
  }

  /** Releases the wrapper's own GPU buffers (not the workspace, which the caller owns). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.token.invalidate('the wrapper was destroyed');
    this.planBuf.destroy();
    this.lseScratch.destroy();
    this.indirect?.destroy();
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

/** Everything in a plan that recorded dispatches depend on (not the page table or lengths). */
function planShapeKey(p: Plan): string {
  const { kvLens: _k, maxPageId: _m, kernels: _c, shapeKey: _s, regions, ...shape } = p;
  return JSON.stringify({ ...shape, regions: regions && [regions.partialO.offset, regions.partialLse.offset] });
}

function padTo(values: Int32Array, length: number): Int32Array {
  if (values.length === length) return values;
  const out = new Int32Array(length);
  out.set(values);
  return out;
}


/**
 * Why the staged tensor-core decode kernel (what `useTensorCores` runs where it can) can't serve
 * these options on `ctx`, or undefined when it can. xqa asks before it picks tensor cores.
 */
export function stagedTensorCoreDecodeUnavailable(
  ctx: GpuContext,
  o: { headDim: number; groupSize: number; qDtype: FloatDType; kvDtype: FloatDType; posEncoding?: PosEncodingMode },
): string | undefined {
  if (o.kvDtype !== 'f16' && o.kvDtype !== 'fp8_e4m3' && o.kvDtype !== 'fp8_e5m2') return 'it takes f16 or fp8 KV';
  const c = { headDim: o.headDim, groupSize: o.groupSize, subgroupSize: ctx.subgroupMinSize, subgroups: 2, kvDtype: o.kvDtype, oDtype: 'f16' as const, posEncoding: o.posEncoding ?? 'NONE', softCap: false, sinks: false, pagePow2: true };
  return stagedTensorCoreDecodeSupport(ctx, c, o.qDtype);
}

/**
 * A device-scheduled plan's split: the same number of chunks for every row (lengths are on the
 * GPU), enough to give the device `target` workgroups, and no more than rows of `capacity` tokens
 * can fill with 256-token chunks.
 */
function deviceSplit(rows: number, workgroupsPerChunk: number, target: number, capacity: number, disable: boolean | undefined) {
  const busy = rows * workgroupsPerChunk;
  const splits = disable || busy >= target ? 1 : Math.max(1, Math.min(Math.ceil(target / busy), Math.floor(capacity / 256)));
  const chunkRow = Int32Array.from({ length: rows * splits }, (_, c) => Math.floor(c / splits));
  const slotIndptr = Int32Array.from({ length: rows + 1 }, (_, r) => (splits > 1 ? r * splits : 0));
  const zeros = new Int32Array(rows * splits);
  return { chunkRow, chunkStart: zeros, chunkEnd: zeros, chunkSlot: zeros, slotIndptr, numSlots: splits > 1 ? rows * splits : 0, chunkSize: 0 };
}
