/**
 * xqaMla: XQA's MLA decode entry point (spec §5): q `[B, 1, 128, 576]` (f16, bf16 or fp8 e4m3;
 * caches the same set, output f16 or bf16), one latent head in caches
 * `[P, page, 1, 576]` (K: all 576 dims; V: the first 512 of the V cache); logit scale
 * qScale·kvScale (no 1/√D), output × kvScale. The page table and lengths stay on the GPU; the MLA
 * kernel of @webinfer/mla runs on a schedule a GPU pre-pass builds from them.
 */
import { DTypeError, ShapeError, type Tensor, ValueError, parseScale } from '@webinfer/core-buffers';
import { BatchMLAPagedAttentionWrapper } from '@webinfer/mla';
import { WrapperCache } from './wrapper-cache';

export interface XqaMlaOptions {
  /** 16, 32, 64 or 128 tokens. */
  pageSize: number;
  /** Multiplies the logit scale (default 1). */
  qScale?: number;
  /** Multiplies the logit scale and the output (default 1). */
  kvScale?: number;
  /** Encode into this encoder (the caller submits) instead of submitting at once. */
  encoder?: GPUCommandEncoder;
}

const PAGE_SIZES = [16, 32, 64, 128];
const [HEADS, DK, DV] = [128, 576, 512];

const wrappers = new WrapperCache((ctx, ws) => new BatchMLAPagedAttentionWrapper(ctx, ws));

/**
 * @example
 * xqaMla(q, cache, cache, pageTable, seqLens, out, workspace, { pageSize: 64, qScale: 1 / Math.sqrt(192) });
 */
export function xqaMla(
  q: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  pageTable: Tensor,
  seqLens: Tensor,
  output: Tensor,
  workspace: Tensor | GPUBuffer,
  options: XqaMlaOptions,
): void {
  const ctx = q.ctx;
  if (q.rank !== 4 || q.shape[1] !== 1 || q.shape[2] !== HEADS || q.shape[3] !== DK) {
    throw new ShapeError(`expected [batch, 1, ${HEADS}, ${DK}], got [${q.shape.join(', ')}]`, 'q');
  }
  if (!['f16', 'bf16', 'fp8_e4m3'].includes(q.dtype)) throw new DTypeError(`must be f16, bf16 or fp8_e4m3, got ${q.dtype}`, 'q');
  const batch = q.shape[0];
  const { pageSize } = options;
  if (!PAGE_SIZES.includes(pageSize)) throw new ValueError(`must be one of ${PAGE_SIZES.join(', ')}, got ${pageSize}`, 'pageSize');
  if (kCache.rank !== 4) throw new ShapeError(`expected [num_pages, page_size, 1, ${DK}], got [${kCache.shape.join(', ')}]`, 'kCache');
  kCache.expect('kCache', ['f16', 'bf16', 'fp8_e4m3'], [null, pageSize, 1, DK]);
  vCache.expect('vCache', [kCache.dtype], [...kCache.shape]);
  if (pageTable.rank !== 2) throw new ShapeError(`expected [batch, pages_per_seq], got [${pageTable.shape.join(', ')}]`, 'pageTable');
  pageTable.expect('pageTable', ['i32', 'u32'], [batch, null]);
  output.expect('output', ['f16', 'bf16'], [batch, 1, HEADS, DV]);
  const qScale = parseScale(options.qScale, 'qScale');
  const kvScale = parseScale(options.kvScale, 'kvScale');

  const q3 = q.reshape([batch, HEADS, DK]);
  const rows = kCache.reshape([kCache.shape[0], pageSize, DK]);
  const vRows = vCache.reshape([vCache.shape[0], pageSize, DK]);
  const plan = {
    qoIndptr: [],
    kvIndptr: [],
    kvIndices: [],
    kvLenArr: [],
    numHeads: HEADS,
    headDimCkv: DV,
    headDimKpe: DK - DV,
    pageSize,
    causal: false,
    smScale: qScale * kvScale,
    qDataType: q.dtype,
    kvDataType: kCache.dtype,
    oDataType: output.dtype,
    deviceSchedule: { batchSize: batch, pagesPerSeq: pageTable.shape[1] },
  };
  const wrapper = wrappers.get(ctx, workspace, JSON.stringify(plan), (w) => w.plan(plan));
  wrapper.run(q3.slice(2, 0, DV), q3.slice(2, DV, DK), rows.slice(2, 0, DV), rows.slice(2, DV, DK), {
    out: output.reshape([batch, HEADS, DV]),
    vScale: kvScale,
    vCache: vRows.slice(2, 0, DV),
    encoder: options.encoder,
    deviceSchedule: { pageTable, seqLens },
  });
}
