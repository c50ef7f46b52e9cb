/**
 * Paged KV cache: layouts, validation of the page tables, block-table conversion and addressing.
 *
 * Layouts (FlashInfer's): one tensor `[max_pages, 2, page_size, Hkv, D]` (NHD) or
 * `[max_pages, 2, Hkv, page_size, D]` (HND), where `[:, 0]` is K and `[:, 1]` is V; or a pair
 * `{k, v}` of `[max_pages, page_size, Hkv, D]` (NHD) / `[max_pages, Hkv, page_size, D]` (HND).
 * Token j of request b sits in page `indices[indptr[b] + j / page_size]`, slot `j % page_size`.
 */
import type { DType } from './dtype';
import { IndexRangeError, LayoutError, ShapeError, ValueError } from './errors';
import { maxUnsigned } from './max-unsigned';
import type { Tensor } from './tensor';

export type KVLayout = 'NHD' | 'HND';

export function parseKVLayout(layout: string, argument = 'kvLayout'): KVLayout {
  if (layout === 'NHD' || layout === 'HND') return layout;
  throw new LayoutError(`expected 'NHD' or 'HND', got '${layout}'`, argument);
}

/** A paged cache as users pass it: the one-tensor form, or K and V apart. */
export type PagedKVCacheInput = Tensor | { k: Tensor; v: Tensor } | readonly [Tensor, Tensor];

/** Element strides of one of K or V, as kernels address it. */
export interface PagedAddressing {
  /** Offset of page 0, slot 0, head 0, dim 0 (elements). */
  offset: number;
  stridePage: number;
  strideSlot: number;
  strideHead: number;
}

/** A validated paged cache. */
export interface PagedKVCache {
  k: Tensor;
  v: Tensor;
  layout: KVLayout;
  dtype: DType;
  maxNumPages: number;
  pageSize: number;
  numKvHeads: number;
  headDimQk: number;
  headDimVo: number;
  kAddr: PagedAddressing;
  vAddr: PagedAddressing;
}

function addressing(t: Tensor, layout: KVLayout): PagedAddressing {
  const [sPage, s1, s2] = t.strides;
  return layout === 'NHD'
    ? { offset: t.offset, stridePage: sPage, strideSlot: s1, strideHead: s2 }
    : { offset: t.offset, stridePage: sPage, strideSlot: s2, strideHead: s1 };
}

/**
 * Splits and checks a paged cache. Head dims must be contiguous (stride 1); other strides are
 * free, so views into an engine's cache work.
 *
 * @example
 * const cache = ctx.empty([numPages, 2, pageSize, numKvHeads, headDim], 'f16');
 * const { k, v, pageSize: ps } = resolvePagedKVCache(cache, 'NHD');
 */
export function resolvePagedKVCache(
  cache: PagedKVCacheInput,
  layout: KVLayout,
  argument = 'pagedKvCache',
): PagedKVCache {
  let k: Tensor;
  let v: Tensor;
  if ('k' in cache && 'v' in cache) {
    k = cache.k;
    v = cache.v;
  } else if (Array.isArray(cache)) {
    [k, v] = cache as readonly [Tensor, Tensor];
  } else {
    const t = cache as Tensor;
    t.assertLive(argument);
    if (t.rank !== 5 || t.shape[1] !== 2) {
      const want = layout === 'NHD' ? '[max_pages, 2, page_size, Hkv, D]' : '[max_pages, 2, Hkv, page_size, D]';
      throw new ShapeError(`expected ${want}, got [${t.shape.join(', ')}]`, argument);
    }
    k = t.select(1, 0);
    v = t.select(1, 1);
  }
  k.assertLive(`${argument}.k`);
  v.assertLive(`${argument}.v`);
  for (const [name, t] of [
    ['k', k],
    ['v', v],
  ] as const) {
    if (t.rank !== 4) {
      const want = layout === 'NHD' ? '[max_pages, page_size, Hkv, D]' : '[max_pages, Hkv, page_size, D]';
      throw new ShapeError(`expected ${want}, got [${t.shape.join(', ')}]`, `${argument}.${name}`);
    }
    if (t.strides[3] !== 1) {
      throw new LayoutError('the head dimension must be contiguous (stride 1)', `${argument}.${name}`);
    }
  }
  if (k.dtype !== v.dtype) {
    throw new LayoutError(`k is ${k.dtype} but v is ${v.dtype}`, argument);
  }
  const [kPages, k1, k2, dQk] = k.shape;
  const [vPages, v1, v2, dVo] = v.shape;
  if (kPages !== vPages || k1 !== v1 || k2 !== v2) {
    throw new ShapeError(`k [${k.shape.join(', ')}] and v [${v.shape.join(', ')}] disagree`, argument);
  }
  const pageSize = layout === 'NHD' ? k1 : k2;
  const numKvHeads = layout === 'NHD' ? k2 : k1;
  return {
    k,
    v,
    layout,
    dtype: k.dtype,
    maxNumPages: kPages,
    pageSize,
    numKvHeads,
    headDimQk: dQk,
    headDimVo: dVo,
    kAddr: addressing(k, layout),
    vAddr: addressing(v, layout),
  };
}

/** Host int arrays accepted for indptr/indices/lengths. */
export type IntArray = Int32Array | Uint32Array | readonly number[];

function toInt32(a: IntArray, argument: string): Int32Array {
  if (a instanceof Int32Array) return a;
  const out = new Int32Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
      throw new IndexRangeError(`element ${i} (${v}) is not an int32`, argument);
    }
    out[i] = v;
  }
  return out;
}

/** Checks an indptr: length B+1, starts at 0, non-decreasing, ends within `total` when given. */
export function validateIndptr(indptr: IntArray, argument: string, total?: number): Int32Array {
  const p = toInt32(indptr, argument);
  if (p.length < 1) throw new ShapeError('needs at least one entry (batch_size + 1)', argument);
  if (p[0] !== 0) throw new IndexRangeError(`must start at 0, got ${p[0]}`, argument);
  for (let i = 1; i < p.length; i++) {
    if (p[i] < p[i - 1]) {
      throw new IndexRangeError(`must be non-decreasing, but [${i - 1}]=${p[i - 1]} > [${i}]=${p[i]}`, argument);
    }
  }
  if (total !== undefined && p[p.length - 1] > total) {
    throw new IndexRangeError(`last entry ${p[p.length - 1]} exceeds the ${total} entries available`, argument);
  }
  return p;
}

export interface PagedKVIndices {
  indptr: Int32Array;
  indices: Int32Array;
  lastPageLen: Int32Array;
  /** KV length of each request in tokens. */
  kvLens: Int32Array;
  /** Largest page id used (-1 when no pages). */
  maxPageId: number;
}

/**
 * Validates FlashInfer's page table (`kv_indptr`, `kv_indices`, `kv_last_page_len`) and returns
 * it as Int32Arrays with each request's KV length. Requests with no pages are empty (kv_len 0,
 * last_page_len may be 0); otherwise 1 <= last_page_len <= page_size.
 */
export function validatePagedKVIndices(args: {
  indptr: IntArray;
  indices: IntArray;
  lastPageLen: IntArray;
  pageSize: number;
  /** Pages in the cache; page ids must be below it. */
  maxNumPages?: number;
}): PagedKVIndices {
  const { pageSize, maxNumPages } = args;
  if (!Number.isInteger(pageSize) || pageSize < 1) {
    throw new ValueError(`must be a positive integer, got ${pageSize}`, 'pageSize');
  }
  const indices = toInt32(args.indices, 'indices');
  const indptr = validateIndptr(args.indptr, 'indptr', indices.length);
  const lastPageLen = toInt32(args.lastPageLen, 'lastPageLen');
  const batch = indptr.length - 1;
  if (lastPageLen.length !== batch) {
    throw new ShapeError(`has ${lastPageLen.length} entries, expected batch_size = ${batch}`, 'lastPageLen');
  }
  const used = indptr[batch];
  const limit = maxNumPages ?? 0x7fffffff;
  // One pass for the range (plan runs every step; SIMD where the runtime has it), the offender
  // looked up only on error. Ids read unsigned, so a negative one is a huge one.
  const maxId = maxUnsigned(indices, used);
  if (maxId >= limit) {
    let bad = 0;
    while (indices[bad] >= 0 && indices[bad] < limit) bad++;
    throw new IndexRangeError(`page id ${indices[bad]} at position ${bad} is outside [0, ${maxNumPages ?? 'inf'})`, 'indices');
  }
  const kvLens = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    const pages = indptr[b + 1] - indptr[b];
    const last = lastPageLen[b];
    if (pages === 0) {
      if (last < 0 || last > pageSize) {
        throw new IndexRangeError(`request ${b} has no pages; last page length ${last} must be 0`, 'lastPageLen');
      }
      kvLens[b] = 0;
      continue;
    }
    if (last < 1 || last > pageSize) {
      throw new IndexRangeError(
        `request ${b}: last page length ${last} must be in [1, page_size=${pageSize}]`,
        'lastPageLen',
      );
    }
    kvLens[b] = (pages - 1) * pageSize + last;
  }
  return { indptr, indices, lastPageLen, kvLens, maxPageId: maxId };
}

/** KV length of each request: `(pages - 1) * page_size + last_page_len`, 0 for no pages. */
export function getSeqLens(indptr: IntArray, lastPageLen: IntArray, pageSize: number): Int32Array {
  const p = toInt32(indptr, 'indptr');
  const last = toInt32(lastPageLen, 'lastPageLen');
  const out = new Int32Array(p.length - 1);
  for (let b = 0; b < out.length; b++) {
    const pages = p[b + 1] - p[b];
    out[b] = pages === 0 ? 0 : (pages - 1) * pageSize + last[b];
  }
  return out;
}

/**
 * vLLM-style block tables (`[B, maxPagesPerSeq]`, row-major) plus sequence lengths to FlashInfer's
 * indptr/indices/last_page_len. Entries past a request's `ceil(seqLen / pageSize)` pages are ignored.
 */
export function blockTablesToPagedKV(args: {
  blockTables: IntArray;
  batchSize: number;
  seqLens: IntArray;
  pageSize: number;
}): { indptr: Int32Array; indices: Int32Array; lastPageLen: Int32Array } {
  const { batchSize, pageSize } = args;
  const table = toInt32(args.blockTables, 'blockTables');
  const seqLens = toInt32(args.seqLens, 'seqLens');
  if (seqLens.length !== batchSize) {
    throw new ShapeError(`has ${seqLens.length} entries, expected batch_size = ${batchSize}`, 'seqLens');
  }
  if (batchSize > 0 && table.length % batchSize !== 0) {
    throw new ShapeError(`has ${table.length} entries, not a multiple of batch_size = ${batchSize}`, 'blockTables');
  }
  const width = batchSize > 0 ? table.length / batchSize : 0;
  const indptr = new Int32Array(batchSize + 1);
  const lastPageLen = new Int32Array(batchSize);
  const pages: number[] = [];
  for (let b = 0; b < batchSize; b++) {
    const len = seqLens[b];
    if (len < 0) throw new IndexRangeError(`request ${b} has negative length ${len}`, 'seqLens');
    const n = Math.ceil(len / pageSize);
    if (n > width) {
      throw new IndexRangeError(
        `request ${b} needs ${n} pages for ${len} tokens but block tables hold ${width}`,
        'seqLens',
      );
    }
    for (let j = 0; j < n; j++) pages.push(table[b * width + j]);
    indptr[b + 1] = indptr[b] + n;
    lastPageLen[b] = n === 0 ? 0 : len - (n - 1) * pageSize;
  }
  return { indptr, indices: Int32Array.from(pages), lastPageLen };
}

/** The inverse of blockTablesToPagedKV: rows padded with `pad` (default 0) to the longest request. */
export function pagedKVToBlockTables(args: {
  indptr: IntArray;
  indices: IntArray;
  lastPageLen: IntArray;
  pageSize: number;
  pad?: number;
}): { blockTables: Int32Array; maxPagesPerSeq: number; seqLens: Int32Array } {
  const indptr = toInt32(args.indptr, 'indptr');
  const indices = toInt32(args.indices, 'indices');
  const batch = indptr.length - 1;
  let width = 0;
  for (let b = 0; b < batch; b++) width = Math.max(width, indptr[b + 1] - indptr[b]);
  const blockTables = new Int32Array(batch * width).fill(args.pad ?? 0);
  for (let b = 0; b < batch; b++) {
    for (let j = indptr[b]; j < indptr[b + 1]; j++) blockTables[b * width + (j - indptr[b])] = indices[j];
  }
  return { blockTables, maxPagesPerSeq: width, seqLens: getSeqLens(indptr, args.lastPageLen, args.pageSize) };
}

/**
 * FlashInfer's `get_batch_indices_positions`: for appended rows given by `appendIndptr`, the
 * request of each row and its position in that request's KV (the new rows are its last ones).
 */
export function getBatchIndicesPositions(
  appendIndptr: IntArray,
  seqLens: IntArray,
  nnz: number,
): { batchIndices: Int32Array; positions: Int32Array } {
  const indptr = validateIndptr(appendIndptr, 'appendIndptr');
  const lens = toInt32(seqLens, 'seqLens');
  const batch = indptr.length - 1;
  if (lens.length !== batch) {
    throw new ShapeError(`has ${lens.length} entries, expected batch_size = ${batch}`, 'seqLens');
  }
  if (indptr[batch] !== nnz) {
    throw new ShapeError(`appendIndptr ends at ${indptr[batch]} but nnz = ${nnz}`, 'nnz');
  }
  const batchIndices = new Int32Array(nnz);
  const positions = new Int32Array(nnz);
  for (let b = 0; b < batch; b++) {
    const appendLen = indptr[b + 1] - indptr[b];
    if (appendLen > lens[b]) {
      throw new IndexRangeError(`request ${b} appends ${appendLen} rows but its length is ${lens[b]}`, 'seqLens');
    }
    for (let i = indptr[b]; i < indptr[b + 1]; i++) {
      batchIndices[i] = b;
      positions[i] = lens[b] - appendLen + (i - indptr[b]);
    }
  }
  return { batchIndices, positions };
}

/** WGSL struct fields describing one of K/V's addressing (used with UniformSchema). */
export function pagedAddressingUniforms(prefix: string) {
  return {
    [`${prefix}_offset`]: 'u32',
    [`${prefix}_stride_page`]: 'u32',
    [`${prefix}_stride_slot`]: 'u32',
    [`${prefix}_stride_head`]: 'u32',
  } as const;
}

/** Values for pagedAddressingUniforms(prefix). */
export function pagedAddressingValues(prefix: string, a: PagedAddressing): Record<string, number> {
  return {
    [`${prefix}_offset`]: a.offset,
    [`${prefix}_stride_page`]: a.stridePage,
    [`${prefix}_stride_slot`]: a.strideSlot,
    [`${prefix}_stride_head`]: a.strideHead,
  };
}

/**
 * `fn <prefix>_elem(page: u32, slot: u32, head: u32) -> u32`: element index of dim 0 of that row,
 * from the uniforms of pagedAddressingUniforms(prefix) in struct `params`.
 */
export function wgslPagedAddress(prefix: string, params = 'params'): string {
  return `fn ${prefix}_elem(page: u32, slot: u32, head: u32) -> u32 {
  return ${params}.${prefix}_offset + page * ${params}.${prefix}_stride_page + slot * ${params}.${prefix}_stride_slot + head * ${params}.${prefix}_stride_head;
}`;
}

/**
 * Geometry of a paged cache given in any of its forms (one tensor `[P, 2, ...]`, `{k, v}` or a
 * pair), read from K: what the block-table entry points need before they plan.
 */
export function pagedCacheGeometry(
  kvCache: PagedKVCacheInput,
  layout: KVLayout,
): { k: Tensor; numKvHeads: number; pageSize: number; headDim: number } {
  const k = 'k' in kvCache ? kvCache.k : Array.isArray(kvCache) ? kvCache[0] : (kvCache as Tensor).select(1, 0);
  if (k.rank !== 4) throw new ShapeError(`expected K pages of rank 4, got [${k.shape.join(', ')}]`, 'kvCache');
  const [, a, b, headDim] = k.shape;
  return { k, numKvHeads: layout === 'HND' ? a : b, pageSize: layout === 'HND' ? b : a, headDim };
}

/** FlashInfer's last_page_len for KV lengths over page-level `indptr` (0 for requests with no pages). */
export function lastPageLensOf(kvLens: ArrayLike<number>, indptr: ArrayLike<number>, pageSize: number): Int32Array {
  return Int32Array.from({ length: kvLens.length }, (_, b) => {
    const pages = indptr[b + 1] - indptr[b];
    return pages === 0 ? 0 : kvLens[b] - (pages - 1) * pageSize;
  });
}
