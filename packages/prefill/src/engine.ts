/**
 * The prefill engine behind every entry point (single, batch paged, batch ragged, block tables).
 * A ragged or contiguous K/V is addressed as a paged cache whose request b is one "page" starting
 * at token kv_indptr[b] (page stride = token stride), so one kernel serves all of them.
 *
 * plan (CPU): validates, schedules work items (schedule.ts), uploads them with the page indices
 * and the packed masks, carves the workspace for split-KV partial states.
 * run: checks tensors against the plan, encodes the kernel and (when split) the merge.
 */
import {
  CaptureToken,
  type CompiledKernel,
  DispatchCache,
  encodeDispatch,
  encodeSplitKVMerge,
  foldWorkgroups,
  type GpuContext,
  GrowableBuffer,
  getKernel,
  graphTileCapacity,
  LayoutError,
  noteCapture,
  type PagedAddressing,
  PlanMismatchError,
  pagedAddressingValues,
  parseScale,
  scheduleTiles,
  type Tensor,
  UnsupportedFeatureError,
  ValueError,
  Workspace,
  type WorkspaceRegion,
} from '@webinfer/core-buffers';
import type { ParsedPrefillOptions } from './options';
import { type MaskMode, PREFILL_BINDINGS, type PrefillKernelOptions, prefillUniforms, WORK_ITEM_WORDS } from './shaders/prefill-common';
import { SIMT_TILES, SIMT_TILES_P_IN_REGISTERS, SIMT_WORKGROUP, type SimtPrefillConfig, simtLayout, simtPrefillWgsl } from './shaders/prefill-simt.wgsl';
import { type TensorCorePrefillConfig, tensorCoreLayout, tensorCorePrefillWgsl, tensorCoreSupport } from './shaders/prefill-tc.wgsl';

/** Workgroups that keep a large GPU busy (an H100 has 132 SMs); below it, long KV is split. */
export const DEFAULT_TARGET_WORKGROUPS = 264;

/** The parsed options plus the request tables (page-level for paged, one page per request for ragged). */
export interface EnginePlanArgs extends ParsedPrefillOptions {
  qoIndptr: Int32Array;
  kvLens: Int32Array;
  /** Per request, the index of its first page in `indices`. */
  pageBase: Int32Array;
  indices: Int32Array;
  pageSize: number;
  /** Packed little-endian mask bytes and per-request byte offsets, or undefined. */
  mask: { packed: Uint8Array; byteIndptr: Int32Array } | undefined;
  fixedSplitSize?: number;
  disableSplitKv?: boolean;
  /** true: the tensor-core kernel (an error where the device can't); false: the f32 kernel; unset: the tensor-core kernel where it can run. */
  useTensorCores?: boolean;
  targetWorkgroups?: number;
  /** Tests/bench: force a tile [rows, keys, wide?] of the f32 kernel. */
  tile?: [number, number, ('none' | 'kv' | 'all' | 'k')?];
  /** Requests this plan leaves to another kernel: no work items, their rows are not written. */
  skip?: Uint8Array;
  /** Bench only: subgroups (16 query rows each) per tensor-core workgroup. */
  tensorCoreSubgroups?: number;
  /** Bench only: keys per tensor-core K/V tile (default 32, else 16 where 32 doesn't fit). */
  tensorCoreKeys?: 16 | 32;
  /** Bench profiling only: tensor-core phases left out. */
  tensorCoreSkip?: TensorCorePrefillConfig['debugSkip'];
  /** Bench profiling only: f32-kernel phases left out. */
  simtSkip?: SimtPrefillConfig['debugSkip'];
  /** Tests/bench only: the f32 kernel's load mode, loop unrolling and full-tile test. */
  simtTuning?: SimtTuning;
  /**
   * Graph mode: pad the schedule to capacities that depend only on the shape, with room for this
   * many page indices, so dispatches recorded under one plan stay valid for the next.
   */
  graphIndicesCapacity?: number;
}

/** The f32 kernel's knobs a plan may set (tests and bench). */
export type SimtTuning = Pick<SimtPrefillConfig, 'loadMode' | 'qkUnroll' | 'pvUnroll' | 'fullTiles' | 'pInRegisters' | 'lateFetch' | 'swizzle' | 'workgroupSize'>;

/** K or V as the kernel addresses it, with the binding it lives in. */
export interface EngineKV {
  tensor: Tensor;
  addr: PagedAddressing;
}

export interface EngineRunArgs {
  q: Tensor;
  k: EngineKV;
  v: EngineKV;
  qScale?: number;
  kScale?: number;
  vScale?: number;
  out?: Tensor;
  lse?: Tensor;
  returnLse?: boolean;
  encoder?: GPUCommandEncoder;
  /** f32 `[Hq]` per-head sink logits (natural log) added to each row's softmax denominator. */
  sinks?: Tensor;
  /** Replaces the planned sm_scale for this run (BatchAttention, sink wrapper). */
  smScale?: number;
  /** Replaces the planned soft cap for this run; the plan must have enabled it. */
  logitsSoftCap?: number;
}

interface Plan extends EnginePlanArgs {
  rows: number;
  kernelOptions: PrefillKernelOptions;
  /** Without and with sinks. */
  /** Compiled variants by `${sinks}/${narrow}`. */
  kernels: Map<string, CompiledKernel>;
  /** `narrow`: K/V rows not on 16-byte boundaries (the tensor-core kernel's wide loads can't). */
  compile: (sinks: boolean, narrow: boolean) => CompiledKernel;
  path: 'tensor-core' | 'simt';
  tile: [number, number];
  /** Invocations a workgroup of the chosen kernel. */
  workgroupSize: number;
  numWork: number;
  numSlots: number;
  indicesOffset: number;
  slotIndptrOffset: number;
  /** Everything recorded dispatches depend on (graph mode keeps them valid while it holds). */
  shapeKey: string;
  regions: { partialO: WorkspaceRegion; partialLse: WorkspaceRegion } | undefined;
}

export class PrefillEngine {
  private readonly workspace: Workspace;
  private readonly dispatch: DispatchCache;
  private readonly mergeDispatch: DispatchCache;
  private readonly planBuf: GrowableBuffer;
  private readonly maskBuf: GrowableBuffer;
  private readonly lseScratch: GrowableBuffer;
  private current: Plan | undefined;
  /** Any re-plan can move buffers and change uniforms, so it invalidates recorded dispatches. */
  private token: CaptureToken;

  constructor(
    readonly ctx: GpuContext,
    workspaceBuffer: Tensor | GPUBuffer,
    private readonly label: string,
  ) {
    this.workspace = new Workspace(ctx, workspaceBuffer);
    this.dispatch = new DispatchCache(ctx, `${label}/params`);
    this.mergeDispatch = new DispatchCache(ctx, `${label}/merge`);
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
    this.planBuf = new GrowableBuffer(ctx, `${label}/plan`, storage, 4096);
    this.maskBuf = new GrowableBuffer(ctx, `${label}/mask`, storage, 4096);
    this.lseScratch = new GrowableBuffer(ctx, `${label}/lse-scratch`, GPUBufferUsage.STORAGE);
    this.token = new CaptureToken(label);
  }

  get plan(): Plan | undefined {
    return this.current;
  }

  makePlan(a: EnginePlanArgs): void {
    const ctx = this.ctx;
    const group = a.numQoHeads / a.numKvHeads;
    const maskMode: MaskMode = a.mask ? 'custom' : a.causal ? 'causal' : 'none';
    const kernelOptions: PrefillKernelOptions = {
      headDimQk: a.headDimQk,
      headDimVo: a.headDimVo,
      groupSize: group,
      qDtype: a.qDtype,
      kvDtype: a.kvDtype,
      oDtype: a.oDtype,
      posEncoding: a.posEncoding,
      softCap: a.softCap > 0,
      maskMode,
      nativeF16: ctx.hasF16,
      ...(Number.isInteger(Math.log2(a.pageSize)) ? { pageShift: Math.log2(a.pageSize) } : {}),
    };
    // Workgroups of 128 packed rows the plan would make: enough to fill the device -> the larger
    // tensor-core workgroup (shape only, so graph-mode re-plans keep their kernel).
    const bigTiles = Math.ceil((a.qoIndptr[a.qoIndptr.length - 1] * group) / 128) * a.numKvHeads;
    const subgroups = a.tensorCoreSubgroups ?? (bigTiles >= (a.targetWorkgroups ?? DEFAULT_TARGET_WORKGROUPS) ? [8, 4] : [4]);
    const { path, tile, workgroupSize, compile } = this.chooseKernel(kernelOptions, a.useTensorCores, a.tile, subgroups, a.tensorCoreSkip, a.simtSkip, a.simtTuning, a.tensorCoreKeys);
    // Compiled now (errors surface at plan); the variant with sinks on first use.
    const kernels = new Map([['false/false', compile(false, false)]]);
    if (a.mask && a.mask.packed.length * 8 >= 2 ** 32) {
      throw new ValueError('the custom masks hold 2^32 bits or more; plan fewer requests at a time', 'customMask');
    }
    const maskBits = a.mask ? Float64Array.from(a.mask.byteIndptr.subarray(0, -1), (x) => x * 8) : undefined;
    const sched = scheduleTiles({
      qoIndptr: a.qoIndptr,
      kvLens: a.kvLens,
      pageBase: a.pageBase,
      maskBits,
      groupSize: group,
      numKvHeads: a.numKvHeads,
      rowsPerTile: tile[0],
      keysPerTile: tile[1],
      causal: maskMode === 'causal',
      windowLeft: a.windowLeft,
      targetWorkgroups: a.targetWorkgroups ?? DEFAULT_TARGET_WORKGROUPS,
      fixedSplitSize: a.fixedSplitSize,
      disableSplitKv: a.disableSplitKv,
      skip: a.skip,
    });
    const rows = a.qoIndptr[a.qoIndptr.length - 1];
    const graph = a.graphIndicesCapacity !== undefined;
    const cap = graph
      ? graphTileCapacity(rows, a.kvLens.length, group, tile[0], a.numKvHeads, a.targetWorkgroups ?? DEFAULT_TARGET_WORKGROUPS, a.graphIndicesCapacity! * a.pageSize)
      : { work: sched.numWork, slots: sched.numSlots };
    if (sched.numWork > cap.work || sched.numSlots > cap.slots) {
      throw new ValueError(
        `the split makes ${sched.numWork} work items and ${sched.numSlots} partial states, more than a graph-mode schedule holds (${cap.work}, ${cap.slots}); use a larger fixedSplitSize`,
        'fixedSplitSize',
      );
    }
    // Plan buffer (u32 words): work items | page indices | slot indptr. Padding items have
    // qo_len 0 (no real item does) and exit at once.
    const indicesOffset = Math.max(1, cap.work) * WORK_ITEM_WORDS;
    const slotIndptrOffset = indicesOffset + (graph ? a.graphIndicesCapacity! : a.indices.length);
    const words = new Uint32Array(Math.ceil((slotIndptrOffset + rows + 1) / 4) * 4);
    words.set(sched.work.subarray(0, sched.numWork * WORK_ITEM_WORDS), 0);
    words.set(a.indices, indicesOffset);
    words.set(sched.slotIndptr, slotIndptrOffset);
    this.planBuf.upload(words);
    if (a.mask) {
      const bytes = new Uint8Array(Math.max(16, Math.ceil(a.mask.packed.length / 16) * 16));
      bytes.set(a.mask.packed);
      this.maskBuf.upload(new Uint32Array(bytes.buffer));
    }
    const regions = this.workspace.carveSplitKV(cap.slots, a.numQoHeads, a.headDimVo, ctx.limits.maxStorageBufferBindingSize);
    const plan: Plan = {
      ...a,
      rows,
      kernelOptions,
      kernels,
      compile,
      path,
      tile,
      workgroupSize,
      numWork: cap.work,
      numSlots: cap.slots,
      indicesOffset,
      slotIndptrOffset,
      regions,
      shapeKey: '',
    };
    plan.shapeKey = shapeKey(plan);
    // Recorded dispatches survive a re-plan only in graph mode, and only with the same shape.
    if (!graph || this.current?.shapeKey !== plan.shapeKey) {
      this.token.invalidate('the wrapper was planned again with a different shape');
      this.token = new CaptureToken(this.label);
    }
    this.current = plan;
  }

  /**
   * The kernel for a plan: as FlashInfer picks its tensor-core kernels, the subgroup-matrix kernel
   * wherever the device has it and the config fits (`useTensorCores` unset), else the f32 kernel.
   * `useTensorCores: true` never falls back: it is an error where the tensor-core kernel can't run.
   */
  private chooseKernel(o: PrefillKernelOptions, useTensorCores: boolean | undefined, forceTile: [number, number, ('none' | 'kv' | 'all' | 'k')?] | undefined, subgroups: number | number[], skip?: TensorCorePrefillConfig['debugSkip'], simtSkip?: SimtPrefillConfig['debugSkip'], simtTuning: SimtTuning = {}, tensorCoreKeys?: 16 | 32) {
    const ctx = this.ctx;
    const limit = ctx.limits.maxComputeWorkgroupStorageSize;
    if (useTensorCores !== false && !forceTile) {
      // The first subgroup count (16 rows each) whose tiles fit the device's workgroup memory, with
      // 32-key tiles or else 16 (which let 8 subgroups fit 32 KB).
      let why = tensorCoreSupport(ctx, o);
      const shapes = (why === undefined ? [subgroups].flat() : []).flatMap((n) => (tensorCoreKeys ? [tensorCoreKeys] : [32, 16]).map((keys) => [n, keys] as const));
      for (const [n, keys] of shapes) {
        const config: TensorCorePrefillConfig = { ...o, subgroupSize: ctx.subgroupMinSize, subgroups: n, ...(keys === 16 ? { keysPerTile: 16 as const } : {}), ...(skip?.length ? { debugSkip: skip } : {}) };
        const L = tensorCoreLayout(config);
        if (L.WG > ctx.limits.maxComputeInvocationsPerWorkgroup) {
          why = `a workgroup of ${L.WG} invocations is over the device's ${ctx.limits.maxComputeInvocationsPerWorkgroup}`;
          continue;
        }
        if (L.smemBytes > limit) {
          why = `its tiles need ${L.smemBytes} bytes of workgroup memory; the device has ${limit}`;
          continue;
        }
        const compile = (sinks: boolean, narrow: boolean) =>
          getKernel(ctx, {
            id: 'prefill/tensor-core',
            config: { ...config, ...(sinks ? { sinks } : {}), ...(o.kvDtype === 'f16' && !narrow ? { wideKV: true } : {}) },
            wgsl: tensorCorePrefillWgsl,
            bindings: PREFILL_BINDINGS,
          });
        return { path: 'tensor-core' as const, tile: [L.BR, L.BC] as [number, number], workgroupSize: (L.BR / 16) * ctx.subgroupMinSize, compile };
      }
      if (useTensorCores === true) throw new UnsupportedFeatureError(`the tensor-core path is unavailable: ${why}`, 'useTensorCores');
    }
    // CPU adapters take tiles of at most 32 rows: SwiftShader (Chromium's software WebGPU) spends
    // minutes compiling the 64-row kernel with RoPE and its GPU process is dropped, and lavapipe
    // compiles the smaller micro-tiles much faster (CI time); speed is not the point there.
    const software = ctx.isSoftwareAdapter;
    const subgroupSoftmax = ctx.hasSubgroups && ctx.subgroupMinSize >= 8;
    // With subgroups, P stays in registers, which lets 128-row tiles in workgroups of 256 fit (H100,
    // causal 4096: 6.15 -> 5.21 ms, BENCHMARKS.md session 10) and, at 64 rows, an f32 K tile
    // (6.88 -> 6.25 ms, session 8). A forced tile takes pInRegisters and the workgroup size from
    // the tuning only, so the tests of each forced layout keep testing it.
    const regs = subgroupSoftmax && (forceTile ? simtTuning.pInRegisters === true : simtTuning.pInRegisters !== false);
    const candidates = forceTile ? [forceTile] : [...(regs ? SIMT_TILES_P_IN_REGISTERS : []), ...SIMT_TILES].filter(([rows]) => !software || rows <= 32);
    const maxInvocations = Math.min(ctx.limits.maxComputeInvocationsPerWorkgroup, ctx.limits.maxComputeWorkgroupSizeX);
    for (const [rowsPerTile, keysPerTile, wide, workgroupSize, layout] of candidates as readonly (readonly [number, number, ('none' | 'kv' | 'all' | 'k')?, number?, 'swizzled'?])[]) {
      const invocations = simtTuning.workgroupSize ?? workgroupSize ?? SIMT_WORKGROUP;
      if (invocations > maxInvocations) continue;
      const base: SimtPrefillConfig = {
        ...o,
        rowsPerTile,
        keysPerTile,
        ...(workgroupSize ? { workgroupSize } : {}),
        ...(wide && wide !== 'none' ? { wide } : {}),
        ...(subgroupSoftmax ? { subgroupSoftmax } : {}),
        ...(simtSkip?.length ? { debugSkip: simtSkip } : {}),
        // Masks are tested only on tiles that need them. Loops written out 4 steps at a time: the
        // H100's causal 4096 goes 7.68 -> 6.88 ms (BENCHMARKS.md, session 6; 8 and more are slower).
        // CPU adapters (lavapipe, SwiftShader) keep the loops: there only compile time counts.
        // The next tile's K/V loads issued after the softmax (their registers live only during P V):
        // 6.25 -> 6.14 ms on the H100's causal 4096 (session 8).
        fullTiles: true,
        lateFetch: true,
        ...(ctx.isSoftwareAdapter ? {} : { qkUnroll: 4, pvUnroll: 4 }),
        ...Object.fromEntries(Object.entries(simtTuning).filter(([k, v]) => v !== undefined && k !== 'pInRegisters' && k !== 'swizzle')),
      };
      // P in registers where this tile's thread mapping allows it, Q/K rows swizzled instead of
      // padded where only that fits (64 x 32 in 32 KB; D 256's 32 x 32 in 48 KB), else P in
      // workgroup memory. Tiles picked here keep O within 16 units (64 registers) a thread.
      const padded = { ...base, pInRegisters: true, swizzle: false };
      const swizzled = { ...padded, swizzle: true };
      const withRegs = simtTuning.swizzle === true || (layout === 'swizzled' && simtTuning.swizzle === undefined) ? [swizzled] : simtTuning.swizzle === false ? [padded] : [padded, swizzled];
      const config = [...(regs ? withRegs : []), base].find((cfg) => {
        const L = simtLayout(cfg);
        return L.valid && L.smemBytes <= limit && (forceTile !== undefined || L.U <= 16);
      });
      if (!config) continue;
      const compile = (sinks: boolean, _narrow: boolean) =>
        getKernel(ctx, { id: 'prefill/simt', config: { ...config, ...(sinks ? { sinks } : {}) }, wgsl: simtPrefillWgsl, bindings: PREFILL_BINDINGS });
      return { path: 'simt' as const, tile: [rowsPerTile, keysPerTile] as [number, number], workgroupSize: config.workgroupSize ?? SIMT_WORKGROUP, compile };
    }
    throw new UnsupportedFeatureError(
      `head dims ${o.headDimQk}/${o.headDimVo} with ${o.qDtype} need more workgroup memory than the device's ${limit} bytes`,
      'headDimQk',
    );
  }

  run(r: EngineRunArgs): Tensor | [Tensor, Tensor] {
    const ctx = this.ctx;
    const p = this.current;
    if (!p) throw new PlanMismatchError('call plan() before run()', 'plan');
    const { q } = r;
    q.expect('q', [p.qDtype], [p.rows, p.numQoHeads, p.headDimQk]);
    if (q.strides[2] !== 1) throw new LayoutError('the head dimension of q must be contiguous', 'q');
    for (const [name, t, off, strides] of [
      ['q', q, q.offset, [q.strides[0], q.strides[1]]],
      ['k', r.k.tensor, r.k.addr.offset, [r.k.addr.stridePage, r.k.addr.strideSlot, r.k.addr.strideHead]],
      ['v', r.v.tensor, r.v.addr.offset, [r.v.addr.stridePage, r.v.addr.strideSlot, r.v.addr.strideHead]],
    ] as const) {
      // 4-element loads: rows must start on multiples of 4 elements.
      if ([off, ...strides].some((x) => x % 4 !== 0)) {
        throw new LayoutError(`${name} rows must start at multiples of 4 elements (offset and strides)`, name === 'q' ? 'q' : t === r.k.tensor ? 'k' : 'v');
      }
    }
    const qScale = parseScale(r.qScale, 'qScale');
    const kScale = parseScale(r.kScale, 'kScale');
    const vScale = parseScale(r.vScale, 'vScale');
    const oShape = [p.rows, p.numQoHeads, p.headDimVo];
    const out = r.out ?? ctx.empty(oShape, p.oDtype, `${this.label}/out`);
    if (r.out) {
      r.out.expect('out', [p.oDtype], oShape);
      if (!r.out.isContiguous() || r.out.offset % 4 !== 0) throw new LayoutError('must be contiguous and start at a multiple of 4 elements', 'out');
    }
    const wantLse = r.returnLse || r.lse !== undefined;
    const lse = r.lse ?? (wantLse ? ctx.empty([p.rows, p.numQoHeads], 'f32', `${this.label}/lse`) : undefined);
    if (r.lse) {
      r.lse.expect('lse', ['f32'], [p.rows, p.numQoHeads]);
      if (!r.lse.isContiguous()) throw new LayoutError('must be contiguous', 'lse');
    }
    if (r.sinks) {
      r.sinks.expect('sinks', ['f32'], [p.numQoHeads]);
      if (!r.sinks.isContiguous() || r.sinks.offset !== 0) throw new LayoutError('must be a contiguous tensor at offset 0', 'sinks');
    }
    const withSinks = r.sinks !== undefined;
    // 16-byte K/V loads need rows on multiples of 8 elements; other layouts get 8-byte loads.
    const narrow = [r.k.addr, r.v.addr].some((a) => [a.offset, a.stridePage, a.strideSlot, a.strideHead].some((x) => x % 8 !== 0));
    const variant = `${withSinks}/${narrow}`;
    let kernel = p.kernels.get(variant);
    if (!kernel) {
      kernel = p.compile(withSinks, narrow);
      p.kernels.set(variant, kernel);
    }
    const kBind = r.k.tensor.binding('k');
    const vBind = r.v.tensor.binding('v');
    const qBind = q.binding('q');
    if (r.smScale !== undefined && !(Number.isFinite(r.smScale) && r.smScale > 0)) throw new ValueError(`must be a finite number > 0, got ${r.smScale}`, 'smScale');
    if (r.logitsSoftCap !== undefined) {
      if (!(Number.isFinite(r.logitsSoftCap) && r.logitsSoftCap >= 0)) throw new ValueError(`must be a finite number >= 0, got ${r.logitsSoftCap}`, 'logitsSoftCap');
      if ((r.logitsSoftCap > 0) !== (p.softCap > 0)) {
        throw new PlanMismatchError(`logitsSoftCap ${r.logitsSoftCap} at run but ${p.softCap} at plan: enable or disable the cap in both`, 'logitsSoftCap');
      }
    }
    const sm = (r.smScale ?? p.smScale) * qScale * kScale;
    const groups = foldWorkgroups(ctx, p.numWork * p.numKvHeads);
    const wsBase = this.workspace.base;
    const uniform = this.dispatch.uniform(
      prefillUniforms.pack({
        num_work: p.numWork,
        num_kv_heads: p.numKvHeads,
        num_qo_heads: p.numQoHeads,
        page_size: p.pageSize,
        ...pagedAddressingValues('k', { ...r.k.addr, offset: r.k.addr.offset - r.k.tensor.offset + kBind.elementOffset }),
        ...pagedAddressingValues('v', { ...r.v.addr, offset: r.v.addr.offset - r.v.tensor.offset + vBind.elementOffset }),
        q_offset: qBind.elementOffset,
        q_stride_row: q.strides[0],
        q_stride_head: q.strides[1],
        o_offset: out.offset,
        lse_offset: lse ? lse.offset : 0,
        part_o_offset: p.regions ? (p.regions.partialO.offset - wsBase) / 4 : 0,
        part_lse_offset: p.regions ? (p.regions.partialLse.offset - wsBase) / 4 : 0,
        indices_offset: p.indicesOffset,
        slot_indptr_offset: p.slotIndptrOffset,
        window_left: p.windowLeft,
        sm_scale: sm,
        sm_scale_log2: sm * Math.LOG2E,
        soft_cap: r.logitsSoftCap ?? p.softCap,
        v_scale: vScale,
        rope_rcp_scale: 1 / p.ropeScale,
        rope_log2_theta: Math.log2(p.ropeTheta),
        groups_x: groups[0],
      }),
      Boolean(r.encoder),
    );
    const lseBinding = lse ? lse.buffer : this.lseScratch.reserve(p.rows * p.numQoHeads * 4);
    const wsBinding = this.workspace.kernelBinding(ctx.limits.maxStorageBufferBindingSize);
    const whole = (buffer: GPUBuffer): GPUBufferBinding => ({ buffer });
    const sinksBind = r.sinks?.binding('sinks');
    const group = this.dispatch.bindGroup(kernel, [
      whole(uniform),
      qBind.binding,
      kBind.binding,
      vBind.binding,
      whole(this.planBuf.buffer!),
      whole(this.maskBuf.buffer ?? this.planBuf.buffer!),
      whole(out.buffer),
      whole(lseBinding),
      wsBinding,
      sinksBind ? sinksBind.binding : whole(this.planBuf.buffer!),
    ]);
    const encoder = r.encoder ?? ctx.device.createCommandEncoder({ label: this.label });
    noteCapture(r.encoder, this.token);
    if (p.numWork > 0) encodeDispatch(encoder, kernel, group, groups);
    let mergeUniform: GPUBuffer | undefined;
    if (p.regions) {
      mergeUniform = encodeSplitKVMerge(ctx, encoder, {
        partialO: this.workspace.binding(p.regions.partialO),
        partialLse: this.workspace.binding(p.regions.partialLse),
        indptr: this.planBuf.buffer!,
        indptrOffset: p.slotIndptrOffset,
        numRows: p.rows,
        numHeads: p.numQoHeads,
        headDim: p.headDimVo,
        outDtype: p.oDtype,
        out,
        lse: lseBinding,
        lseOffset: lse ? lse.offset : 0,
        sinks: sinksBind?.binding,
        vScale,
        cache: this.mergeDispatch,
        external: Boolean(r.encoder),
      });
    }
    if (!r.encoder) {
      ctx.submit([encoder.finish()]);
      mergeUniform?.destroy();
    }
    return r.returnLse ? [out, lse!] : out;
  }

  destroy(): void {
    this.token.invalidate('the wrapper was destroyed');
    this.planBuf.destroy();
    this.maskBuf.destroy();
    this.lseScratch.destroy();
    this.dispatch.destroy();
    this.mergeDispatch.destroy();
    this.current = undefined;
  }
}

/** The plan minus its request tables: what the recorded uniforms, buffers and dispatches depend on. */
function shapeKey(p: Plan): string {
  const { qoIndptr: _q, kvLens: _k, pageBase: _p, indices: _i, mask, skip, kernels: _c, compile: _f, shapeKey: _s, regions, ...shape } = p;
  return JSON.stringify({ ...shape, mask: mask !== undefined, skip: skip && Array.from(skip), regions: regions && [regions.partialO.offset, regions.partialLse.offset] });
}
