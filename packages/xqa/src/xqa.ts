/**
 * xqa: TensorRT-LLM's XQA decode entry point as FlashInfer exposes it (spec §5). The page table
 * and sequence lengths stay on the GPU: the decode wrapper's device-scheduled plan builds the work
 * items in a GPU pre-pass, so a call does no CPU work that depends on the lengths (and can be
 * recorded by @webinfer/cuda-graph). Each workgroup serves several query heads of one KV head
 * (the decode kernel's choice), so a K/V row is read once per group of heads; groups of 8 or more
 * with f16 KV run on tensor cores where the device has them (the staged decode kernel).
 */
import {
  DTypeError,
  type KVLayout,
  ShapeError,
  type Tensor,
  UnsupportedFeatureError,
  ValueError,
  parseKVLayout,
  parseScale,
} from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper, stagedTensorCoreDecodeUnavailable } from '@webinfer/decode';
import { WrapperCache } from './wrapper-cache';

export interface XqaOptions {
  numKvHeads: number;
  /** 16, 32, 64 or 128 tokens. */
  pageSize: number;
  /** f32 `[Hkv, group]`: per-head sink logits (natural log) added to the softmax denominator. */
  sinks?: Tensor;
  /** Multiplies the logit scale (default 1). */
  qScale?: number;
  /** Multiplies the logit scale and the output (default 1). */
  kvScale?: number;
  /** Keep only the last W tokens (FlashInfer windowLeft = W - 1); 0 (default) keeps all. */
  slidingWinSize?: number;
  kvLayout?: KVLayout;
  /** Query tokens per request (speculative decoding when > 1; q is then `[B, 1, qSeqLen, Hq, D]`). */
  qSeqLen?: number;
  /**
   * Required with qSeqLen > 1: u32 `[B, qSeqLen, ceil(qSeqLen / 32)]` — FlashInfer's bit-packed
   * uint16 `[B, qSeqLen, 2 * ceil(qSeqLen / 32)]` mask read as little-endian u32 words. Bit t of
   * query row i lets it see draft token t (the last qSeqLen keys); earlier keys are always visible.
   */
  mask?: Tensor;
  /** Encode into this encoder (the caller submits) instead of submitting at once. */
  encoder?: GPUCommandEncoder;
  /** Bench only: query heads per workgroup (default: the decode kernel's choice). */
  debugHeadsPerWorkgroup?: number;
  /** Bench only: force the decode kernel and its tokens per lane step. */
  debugKernel?: { kernel?: 'subgroup' | 'tile' | 'tensor-core-staged'; tokensPerStep?: number };
}

const PAGE_SIZES = [16, 32, 64, 128];

const wrappers = new WrapperCache((ctx, ws) => new BatchDecodeWithPagedKVCacheWrapper(ctx, ws, { kvLayout: 'NHD' }));
const hndWrappers = new WrapperCache((ctx, ws) => new BatchDecodeWithPagedKVCacheWrapper(ctx, ws, { kvLayout: 'HND' }));
const tcWrappers = new WrapperCache((ctx, ws) => new BatchDecodeWithPagedKVCacheWrapper(ctx, ws, { kvLayout: 'NHD', useTensorCores: true }));
const tcHndWrappers = new WrapperCache((ctx, ws) => new BatchDecodeWithPagedKVCacheWrapper(ctx, ws, { kvLayout: 'HND', useTensorCores: true }));

/**
 * Groups of at least this many query heads run on tensor cores (f16 KV) where the device has them,
 * as TensorRT-LLM's XQA does: the heads are the rows of the matrices and P is rounded to f16 for
 * P V, as there (the staged decode kernel; BENCHMARKS.md "Session 9" has the H100 numbers).
 */
const TENSOR_CORE_GROUP = 8;

/**
 * Decode attention of `q` `[B, 1, Hq, D]` (or `[B, 1, qSeqLen, Hq, D]` with a speculative mask) over paged `kCache`/`vCache` `[P, page, Hkv, D]` (NHD)
 * or `[P, Hkv, page, D]` (HND), writing `output` of q's shape. logits = q·k · qScale·kvScale/√D,
 * output = softmax·V · kvScale.
 *
 * @example
 * xqa(q, kCache, vCache, pageTable, seqLens, out, workspace, { numKvHeads: 8, pageSize: 16 });
 * const o = await out.toArray();
 */
export function xqa(
  q: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  pageTable: Tensor,
  seqLens: Tensor,
  output: Tensor,
  workspace: Tensor | GPUBuffer,
  options: XqaOptions,
): void {
  const ctx = q.ctx;
  const layout = parseKVLayout(options.kvLayout ?? 'NHD');
  const qSeqLen = options.qSeqLen ?? 1;
  if (!Number.isInteger(qSeqLen) || qSeqLen < 1) throw new ValueError(`must be a positive integer, got ${qSeqLen}`, 'qSeqLen');
  const spec = qSeqLen > 1;
  if (spec && !options.mask) throw new ValueError('is required when qSeqLen > 1', 'mask');
  if (!spec && options.mask) throw new ValueError('is only read with qSeqLen > 1', 'mask');
  if (spec && (options.slidingWinSize ?? 0) > 0) {
    throw new UnsupportedFeatureError('a sliding window with speculative decoding is not available', 'slidingWinSize');
  }
  const qShape = spec ? 'batch, 1, qSeqLen, num_qo_heads, head_dim' : 'batch, 1, num_qo_heads, head_dim';
  if (q.rank !== (spec ? 5 : 4) || q.shape[1] !== 1 || (spec && q.shape[2] !== qSeqLen)) {
    throw new ShapeError(`expected [${qShape}], got [${q.shape.join(', ')}]`, 'q');
  }
  if (q.dtype !== 'f16' && q.dtype !== 'bf16') throw new DTypeError(`must be f16 or bf16, got ${q.dtype}`, 'q');
  const batch = q.shape[0];
  const [numQoHeads, headDim] = q.shape.slice(-2);
  const maskWords = Math.ceil(qSeqLen / 32);
  if (spec) options.mask!.expect('mask', ['u32', 'i32'], [batch, qSeqLen, maskWords]);
  const { numKvHeads, pageSize } = options;
  if (!PAGE_SIZES.includes(pageSize)) throw new ValueError(`must be one of ${PAGE_SIZES.join(', ')}, got ${pageSize}`, 'pageSize');
  if (!Number.isInteger(numKvHeads) || numKvHeads < 1 || numQoHeads % numKvHeads !== 0) {
    throw new ValueError(`must be a positive divisor of num_qo_heads ${numQoHeads}, got ${numKvHeads}`, 'numKvHeads');
  }
  const group = numQoHeads / numKvHeads;
  const pageShape = layout === 'NHD' ? [pageSize, numKvHeads, headDim] : [numKvHeads, pageSize, headDim];
  if (kCache.rank !== 4) throw new ShapeError(`expected a rank-4 paged cache, got [${kCache.shape.join(', ')}]`, 'kCache');
  kCache.expect('kCache', [q.dtype, 'fp8_e4m3'], [null, ...pageShape]);
  vCache.expect('vCache', [kCache.dtype], [...kCache.shape]);
  if (pageTable.rank !== 2) throw new ShapeError(`expected [batch, pages_per_seq], got [${pageTable.shape.join(', ')}]`, 'pageTable');
  pageTable.expect('pageTable', ['i32', 'u32'], [batch, null]);
  output.expect('output', [q.dtype], [...q.shape]);
  const slidingWinSize = options.slidingWinSize ?? 0;
  if (!Number.isInteger(slidingWinSize) || slidingWinSize < 0) throw new ValueError(`must be an integer >= 0, got ${slidingWinSize}`, 'slidingWinSize');
  const qScale = parseScale(options.qScale, 'qScale');
  const kvScale = parseScale(options.kvScale, 'kvScale');
  let sinks: Tensor | undefined;
  if (options.sinks) {
    options.sinks.expect('sinks', ['f32'], [numKvHeads, group]);
    sinks = options.sinks.reshape([numQoHeads]);
  }

  // The decode kernel's own choice of heads per workgroup: serving a whole group of 8 from one
  // workgroup (each K/V row read once) measured slower on the H200 (1342 vs 1562 GB/s at B=128,
  // kv 2048, 64/8 heads): the kernel is bound by per-head shuffles, not by reads (L2 serves the
  // second read). BENCHMARKS.md has both.
  const headsPerWorkgroup = options.debugHeadsPerWorkgroup;
  const plan = {
    numQoHeads,
    numKvHeads,
    headDim,
    pageSize,
    windowLeft: slidingWinSize > 0 ? slidingWinSize - 1 : -1,
    qDataType: q.dtype,
    kvDataType: kCache.dtype,
    oDataType: q.dtype,
    qLenPerReq: qSeqLen,
    deviceSchedule: { batchSize: batch, pagesPerSeq: pageTable.shape[1], ...(spec ? { maskWords } : {}) },
    debug:
      (headsPerWorkgroup && ctx.hasSubgroups) || options.debugKernel
        ? { ...(headsPerWorkgroup && ctx.hasSubgroups ? { headsPerWorkgroup } : {}), ...options.debugKernel }
        : undefined,
  };
  const tensorCores =
    options.debugKernel?.kernel === undefined &&
    headsPerWorkgroup === undefined &&
    group >= TENSOR_CORE_GROUP &&
    kCache.dtype === 'f16' &&
    stagedTensorCoreDecodeUnavailable(ctx, { headDim, groupSize: group, qDtype: q.dtype, kvDtype: kCache.dtype }) === undefined;
  const cache = tensorCores ? (layout === 'NHD' ? tcWrappers : tcHndWrappers) : layout === 'NHD' ? wrappers : hndWrappers;
  const wrapper = cache.get(ctx, workspace, JSON.stringify(plan), (w) => w.plan(plan));
  wrapper.run(q.reshape([batch * qSeqLen, numQoHeads, headDim]), { k: kCache, v: vCache }, {
    out: output.reshape([batch * qSeqLen, numQoHeads, headDim]),
    qScale,
    kScale: kvScale,
    vScale: kvScale,
    sinks,
    encoder: options.encoder,
    deviceSchedule: { pageTable, seqLens, mask: options.mask },
  });
}
