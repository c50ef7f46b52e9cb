/**
 * Host-side paged KV helpers for tests: read one request's K/V out of a host copy of the cache,
 * and apply an append, both following FlashInfer's layout rules.
 */

import { permutation } from './random';

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

/** A random paged cache for tests: requests scattered over permuted pages (two spare pages). */
export interface PagedFixture {
  indptr: number[];
  indices: number[];
  lastPageLen: number[];
  maxPages: number;
  /** Per request: contiguous [kvLen, Hkv, D] K and V (float). */
  k: Float32Array[];
  v: Float32Array[];
  /** Host copies of the cache, [maxPages, page, Hkv, D] (NHD) or [maxPages, Hkv, page, D] (HND). */
  kCache: Float32Array;
  vCache: Float32Array;
}

/** Random requests scattered over random pages; unused slots hold random values too. */
export function makePagedFixture(
  r: () => number,
  kvLens: number[],
  pageSize: number,
  numKvHeads: number,
  headDim: number,
  layout: KVLayoutRef,
  values: (n: number) => Float32Array,
): PagedFixture {
  const pages = kvLens.map((l) => Math.ceil(l / pageSize));
  const maxPages = pages.reduce((a, b) => a + b, 0) + 2;
  const perm = permutation(r, maxPages);
  const indptr = [0];
  for (const p of pages) indptr.push(indptr[indptr.length - 1] + p);
  const indices = Array.from(perm.slice(0, indptr[indptr.length - 1]));
  const lastPageLen = kvLens.map((l, b) => (pages[b] === 0 ? 0 : l - (pages[b] - 1) * pageSize));
  const cacheElems = maxPages * pageSize * numKvHeads * headDim;
  const kCache = values(cacheElems);
  const vCache = values(cacheElems);
  const meta = { layout, pageSize, numHeads: numKvHeads, headDim };
  const k: Float32Array[] = [];
  const v: Float32Array[] = [];
  kvLens.forEach((len, b) => {
    const kb = new Float32Array(len * numKvHeads * headDim);
    const vb = new Float32Array(len * numKvHeads * headDim);
    for (let j = 0; j < len; j++) {
      const page = indices[indptr[b] + Math.floor(j / pageSize)];
      for (let h = 0; h < numKvHeads; h++) {
        const src = pagedIndex({ ...meta, data: kCache }, page, j % pageSize, h);
        const dst = (j * numKvHeads + h) * headDim;
        kb.set(kCache.subarray(src, src + headDim), dst);
        vb.set(vCache.subarray(src, src + headDim), dst);
      }
    }
    k.push(kb);
    v.push(vb);
  });
  return { indptr, indices, lastPageLen, maxPages, k, v, kCache, vCache };
}

