/**
 * BatchAttention: FlashInfer's unified attention over a mixed batch (decodes, appends, prefills)
 * on a paged KV cache. plan() takes per-request KV lengths (`kvLenArr`) instead of last-page
 * lengths and cuts every request into query tiles × KV chunks; run() is one dispatch over all of
 * them plus one merge pass for the split chunks, and always returns `[o, lse]`.
 *
 * Decode requests (one query row) that sit next to each other in the batch go to the decode
 * kernel instead, encoded in the same command buffer: the prefill kernel's tiles of 64 packed rows
 * would spend most of their FMAs on empty rows for them.
 */
import {
  DispatchCache,
  type DivertedDispatch,
  type DType,
  divertDispatches,
  encodeDispatch,
  encodeFusedDispatch,
  type GpuContext,
  type IntArray,
  type KVLayout,
  type PagedKVCacheInput,
  PlanMismatchError,
  ShapeError,
  type Tensor,
  UnsupportedFeatureError,
  ValueError,
  dtypeBytes,
  parseDType,
  validateIndptr,
} from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper } from '@webinfer/decode';
import { BatchPrefillWithPagedKVCacheWrapper } from '@webinfer/prefill';

/** Head dims the decode kernel serves (BatchAttention routes decode rows to it). */
const DECODE_HEAD_DIMS = [64, 128, 256];

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
  /**
   * webinfer extension: serve a run of one-row requests with the decode kernel (default true) or
   * leave every request to the prefill kernel (one dispatch).
   */
  decodeKernel?: boolean;
  /**
   * webinfer extension: run the prefill and decode kernels as one dispatch where the device
   * allows it, so the decode's memory traffic can overlap the prefill's math (`lastRunFused` says
   * whether it did). Default false: on the H100 (Dawn/Vulkan) the fused kernel is slower, 4.97
   * against 4.30 ms on a 1 × 8192 prefill + 127 decodes batch, most likely because one kernel gets the
   * register budget of its heavier body and fewer prefill workgroups then fit a multiprocessor
   * (BENCHMARKS.md, session 6). Other GPUs may differ: measure.
   */
  fuse?: boolean;
  /** Tests only: the f32 prefill kernel's tile [rows, keys]. */
  debugPrefillTile?: [number, number];
  /** Bench only: the decode kernel's workgroups every this many ids of the fused dispatch (1: first). */
  debugFusedStride?: number;
  /** Bench only: the decode wrapper's debug plan options. */
  debugDecode?: { tokensPerStep?: number; headsPerWorkgroup?: number; workgroupSize?: number };
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
  private readonly decoder: BatchDecodeWithPagedKVCacheWrapper;
  private readonly ownWorkspace: Tensor | undefined;
  private readonly decodeWorkspace: Tensor;
  /** Uniform and bind group of the fused dispatch. */
  private readonly fusedDispatch: DispatchCache;
  /** Whether the last run() encoded the two kernels as one dispatch (diagnostics, tests, bench). */
  lastRunFused = false;
  /** Why the last run() did not fuse them, when it tried. */
  lastRunUnfusedReason: string | undefined;
  /** The decode kernel's o and lse (its own buffers, so it shares none it writes with the prefill kernel). */
  private decodeOut: Tensor | undefined;
  private decodeLse: Tensor | undefined;
  private planned:
    | {
        rows: number;
        numQoHeads: number;
        headDimVo: number;
        oDtype: DType;
        softCap: number;
        decodes: { first: number; count: number } | undefined;
        /** Query row of the first decode request. */
        decodeRow: number;
        /** Try one dispatch for both kernels. */
        fuse: boolean;
        fusedStride: number | undefined;
      }
    | undefined;

  constructor(ctx: GpuContext, options: BatchAttentionOptions = {}) {
    ctx.assertLive();
    this.ctx = ctx;
    this.kvLayout = options.kvLayout ?? 'NHD';
    this.ownWorkspace = options.workspaceBuffer ? undefined : ctx.empty([Math.min(WORKSPACE_BYTES, ctx.limits.maxBufferSize)], 'u8', 'attention/workspace');
    this.wrapper = new BatchPrefillWithPagedKVCacheWrapper(ctx, options.workspaceBuffer ?? this.ownWorkspace!, { kvLayout: this.kvLayout });
    // The decode kernel's split-KV partials get their own region, so both kernels can be in flight.
    this.decodeWorkspace = ctx.empty([32 << 20], 'u8', 'attention/decode-workspace');
    this.decoder = new BatchDecodeWithPagedKVCacheWrapper(ctx, this.decodeWorkspace, { kvLayout: this.kvLayout });
    this.fusedDispatch = new DispatchCache(ctx, 'attention/fused');
  }

  /** Which requests the decode kernel serves: a run of consecutive one-row requests, if any. */
  get decodeRequests(): { first: number; count: number } | undefined {
    return this.planned?.decodes;
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
    const decodes = args.decodeKernel === false ? undefined : decodeRun(args, B);
    const skip = new Uint8Array(B);
    if (decodes) skip.fill(1, decodes.first, decodes.first + decodes.count);
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
      skipRequests: decodes ? skip : undefined,
      ...(args.debugPrefillTile ? { debugTile: args.debugPrefillTile, useTensorCores: false } : {}),
    });
    // A fused dispatch needs one workgroup size: the decode kernel takes the prefill kernel's.
    const info = this.wrapper.planInfo!;
    const fuse = args.fuse === true && decodes !== undefined && info.numWork > 0;
    const prefillWorkgroup = info.workgroupSize;
    if (decodes) {
      const { first, count } = decodes;
      const base = indptr[first];
      this.decoder.plan({
        indptr: Array.from({ length: count + 1 }, (_, i) => indptr[first + i] - base),
        indices: Array.from(args.kvIndices as ArrayLike<number>).slice(base, indptr[first + count]),
        lastPageLen: lastPageLen.slice(first, first + count),
        seqLens: Array.from(args.kvLenArr as ArrayLike<number>).slice(first, first + count),
        numQoHeads: args.numQoHeads,
        numKvHeads: args.numKvHeads,
        headDim: args.headDimQk,
        pageSize: args.pageSize,
        smScale: args.smScale,
        logitsSoftCap: args.logitsSoftCap,
        qDataType: args.qDataType ?? 'bf16',
        kvDataType: args.kvDataType,
        oDataType: args.oDataType,
        ...(fuse ? { workgroupSize: prefillWorkgroup } : {}),
        ...(args.debugDecode ? { debug: args.debugDecode } : {}),
      });
    }
    const qo = validateIndptr(args.qoIndptr, 'qoIndptr');
    const oDtype = parseDType(args.oDataType ?? args.qDataType ?? 'bf16', 'oDataType');
    if (decodes) this.reserveDecodeOutputs(decodes.count, args.numQoHeads, args.headDimVo, oDtype);
    this.planned = {
      rows: qo[qo.length - 1],
      numQoHeads: args.numQoHeads,
      headDimVo: args.headDimVo,
      oDtype,
      softCap: args.logitsSoftCap ?? 0,
      decodes,
      decodeRow: decodes ? qo[decodes.first] : 0,
      fuse,
      fusedStride: args.debugFusedStride,
    };
  }

  /** Returns `[o, lse]` (lse `[T, Hq]` f32, base 2), always. */
  run(q: Tensor, kvCache: PagedKVCacheInput, options: BatchAttentionRunOptions = {}): [Tensor, Tensor] {
    const p = this.planned;
    if (!p) throw new PlanMismatchError('call plan() before run()', 'plan');
    if (p.decodes && options.logitsSoftCap !== undefined && options.logitsSoftCap !== p.softCap) {
      throw new PlanMismatchError(`logitsSoftCap ${options.logitsSoftCap} differs from the planned ${p.softCap}`, 'logitsSoftCap');
    }
    const ctx = this.ctx;
    const out = options.out ?? ctx.empty([p.rows, p.numQoHeads, p.headDimVo], p.oDtype, 'attention/out');
    const lse = options.lse ?? ctx.empty([p.rows, p.numQoHeads], 'f32', 'attention/lse');
    if (p.decodes && (q.strides[0] !== q.shape[1] * q.shape[2] || q.strides[1] !== q.shape[2])) throw new ShapeError('q must be contiguous', 'q');
    if (!out.isContiguous() || !lse.isContiguous()) throw new ShapeError('out and lse must be contiguous', out.isContiguous() ? 'lse' : 'out');
    const encoder = options.encoder ?? ctx.device.createCommandEncoder({ label: 'attention' });
    const common = { kScale: options.kScale, vScale: options.vScale, encoder };
    // The prefill kernel writes o/lse in place; the decode kernel writes the decode rows into its
    // own buffers (so the two write no buffer in common), copied into place after.
    const runPrefill = () => this.wrapper.run(q, kvCache, { ...common, out, lse, logitsSoftCap: options.logitsSoftCap, returnLse: true });
    const runDecode = () => {
      const { count } = p.decodes!;
      const qRows = ctx.fromBuffer(q.buffer, [count, q.shape[1], q.shape[2]], q.dtype, { offset: q.offset + p.decodeRow * q.strides[0] });
      this.decoder.run(qRows, kvCache, { ...common, out: this.decodeOut!.slice(0, 0, count), lse: this.decodeLse!.slice(0, 0, count) });
    };
    this.lastRunFused = false;
    this.lastRunUnfusedReason = undefined;
    if (p.decodes && p.fuse) {
      // Both wrappers' dispatches are collected, then their main kernels go out as one dispatch
      // (WebGPU would order two dispatches, as the decode's writes follow earlier writes), and
      // each wrapper's split-KV merge, if any, after it.
      const prefill: DivertedDispatch[] = [];
      const decode: DivertedDispatch[] = [];
      divertDispatches(encoder, (d) => prefill.push(d), runPrefill);
      divertDispatches(encoder, (d) => decode.push(d), runDecode);
      const [a, b] = [prefill[0], decode[0]];
      const fused = a !== undefined && b !== undefined ? encodeFusedDispatch(ctx, encoder, a, b, this.fusedDispatch, p.fusedStride) : 'one kernel has no work';
      this.lastRunFused = fused === true;
      this.lastRunUnfusedReason = fused === true ? undefined : fused;
      for (const d of this.lastRunFused ? [...prefill.slice(1), ...decode.slice(1)] : [...prefill, ...decode]) encodeDispatch(encoder, d.kernel, d.group, d.workgroups);
    } else {
      runPrefill();
      if (p.decodes) runDecode();
    }
    if (p.decodes) {
      const { count } = p.decodes;
      const copyRows = (src: Tensor, dst: Tensor, width: number) => {
        const bytes = dtypeBytes(dst.dtype);
        encoder.copyBufferToBuffer(src.buffer, src.offset * bytes, dst.buffer, (dst.offset + p.decodeRow * width) * bytes, count * width * bytes);
      };
      copyRows(this.decodeOut!, out, p.numQoHeads * p.headDimVo);
      copyRows(this.decodeLse!, lse, p.numQoHeads);
    }
    if (!options.encoder) ctx.submit([encoder.finish()]);
    return [out, lse];
  }

  /** Grows the decode kernel's o/lse buffers to `rows` (kept across plans). */
  private reserveDecodeOutputs(rows: number, heads: number, headDim: number, dtype: DType): void {
    const o = this.decodeOut;
    if (o && o.dtype === dtype && o.shape[0] >= rows && o.shape[1] === heads && o.shape[2] === headDim) return;
    this.decodeOut?.destroy();
    this.decodeLse?.destroy();
    this.decodeOut = this.ctx.empty([rows, heads, headDim], dtype, 'attention/decode-out');
    this.decodeLse = this.ctx.empty([rows, heads], 'f32', 'attention/decode-lse');
  }

  /** The seed example's call: `forward(q, k, v)` with paged K and V; returns o. */
  forward(q: Tensor, k: Tensor, v: Tensor): Tensor {
    const [o, lse] = this.run(q, { k, v });
    lse.destroy(); // submitted already; WebGPU frees it once the work is done
    return o;
  }

  /** Releases the wrapper's buffers and the workspace it made (not a caller's). */
  destroy(): void {
    this.wrapper.destroy();
    this.decoder.destroy();
    this.decodeWorkspace.destroy();
    this.decodeOut?.destroy();
    this.decodeLse?.destroy();
    this.fusedDispatch.destroy();
    this.ownWorkspace?.destroy();
  }
}

/** The longest run of consecutive one-row requests, when the decode kernel can serve them. */
function decodeRun(args: BatchAttentionPlanArgs, batch: number): { first: number; count: number } | undefined {
  if (args.headDimQk !== args.headDimVo || !DECODE_HEAD_DIMS.includes(args.headDimQk)) return undefined;
  const qo = args.qoIndptr;
  let best: { first: number; count: number } | undefined;
  for (let b = 0; b < batch; ) {
    if (qo[b + 1] - qo[b] !== 1) {
      b++;
      continue;
    }
    let e = b;
    while (e < batch && qo[e + 1] - qo[e] === 1) e++;
    if (!best || e - b > best.count) best = { first: b, count: e - b };
    b = e;
  }
  return best;
}
