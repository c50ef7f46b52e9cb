/**
 * Host-side paged KV helpers for tests: read one request's K/V out of a host copy of the cache,
 * and apply an append, both following FlashInfer's layout rules.
 */

export type KVLayoutRef = 'NHD' | 'HND';

export interface PagedCacheRef {
  /** Host copy of K (or V): logical `[maxPages, pageSize, H, D]` (NHD) or `[maxPages, H, pageSize, D]` (HND), contiguous. */
  data: ArrayLike<number>;
  layout: KVLayoutRef;
  pageSize: number;
  numHeads: number;
  headDim: number;
}

/** Element index of (page, slot, head, 0) in a contiguous cache. */
export function pagedIndex(c: PagedCacheRef, page: number, slot: number, head: number): number {
  return c.layout === 'NHD'
    ? ((page * c.pageSize + slot) * c.numHeads + head) * c.headDim
    : ((page * c.numHeads + head) * c.pageSize + slot) * c.headDim;
}

/** Request b's rows as a contiguous `[kvLen, H, D]` Float64Array. */
export function gatherPagedRef(
  c: PagedCacheRef,
  indptr: ArrayLike<number>,
  indices: ArrayLike<number>,
  kvLen: number,
  b: number,
): Float64Array {
  const out = new Float64Array(kvLen * c.numHeads * c.headDim);
  for (let j = 0; j < kvLen; j++) {
    const page = indices[indptr[b] + Math.floor(j / c.pageSize)];
    const slot = j % c.pageSize;
    for (let h = 0; h < c.numHeads; h++) {
      const src = pagedIndex(c, page, slot, h);
      const dst = (j * c.numHeads + h) * c.headDim;
      for (let d = 0; d < c.headDim; d++) out[dst + d] = c.data[src + d];
    }
  }
  return out;
}

/** Writes rows `[nnz, H, D]` into a host cache copy (mutates `cache`), as appendPagedKVCache does. */
export function appendPagedRef(
  cache: { data: Float64Array | Float32Array | Uint16Array | Uint8Array } & Omit<PagedCacheRef, 'data'>,
  rows: ArrayLike<number>,
  batchIndices: ArrayLike<number>,
  positions: ArrayLike<number>,
  indptr: ArrayLike<number>,
  indices: ArrayLike<number>,
): void {
  const { numHeads, headDim, pageSize } = cache;
  for (let i = 0; i < batchIndices.length; i++) {
    const b = batchIndices[i];
    const pos = positions[i];
    const page = indices[indptr[b] + Math.floor(pos / pageSize)];
    for (let h = 0; h < numHeads; h++) {
      const dst = pagedIndex({ ...cache, data: cache.data }, page, pos % pageSize, h);
      for (let d = 0; d < headDim; d++) cache.data[dst + d] = rows[(i * numHeads + h) * headDim + d];
    }
  }
}
