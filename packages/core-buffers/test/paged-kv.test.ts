import { appendPagedRef, permutation, randn, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DType,
  type GpuContext,
  IndexRangeError,
  LayoutError,
  ShapeError,
  ValueError,
  appendPagedKVCache,
  blockTablesToPagedKV,
  createContext,
  decodeArray,
  encodeArray,
  getBatchIndicesPositions,
  getSeqLens,
  pagedKVToBlockTables,
  resolvePagedKVCache,
  validatePagedKVIndices,
} from '../src';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

const ok = { indptr: [0, 2, 2, 5], indices: [4, 1, 0, 2, 3], lastPageLen: [3, 0, 1], pageSize: 4, maxNumPages: 5 };

describe('page-table validation (one test per error)', () => {
  it('accepts a valid table and derives kv lengths (empty request included)', () => {
    expect(Array.from(validatePagedKVIndices(ok).kvLens)).toEqual([7, 0, 9]);
    expect(Array.from(getSeqLens(ok.indptr, ok.lastPageLen, 4))).toEqual([7, 0, 9]);
  });
  it('indptr must start at 0', () => {
    expect(() => validatePagedKVIndices({ ...ok, indptr: [1, 2, 2, 5] })).toThrow(/indptr: must start at 0/);
  });
  it('indptr must be non-decreasing', () => {
    expect(() => validatePagedKVIndices({ ...ok, indptr: [0, 3, 2, 5] })).toThrow(/indptr: must be non-decreasing/);
  });
  it('indptr may not run past indices', () => {
    expect(() => validatePagedKVIndices({ ...ok, indptr: [0, 2, 2, 6] })).toThrow(/indptr: last entry 6 exceeds/);
  });
  it('indptr needs B+1 entries', () => {
    expect(() => validatePagedKVIndices({ ...ok, indptr: [] })).toThrow(ShapeError);
  });
  it('lastPageLen needs B entries', () => {
    expect(() => validatePagedKVIndices({ ...ok, lastPageLen: [3, 1] })).toThrow(/lastPageLen: has 2 entries, expected batch_size = 3/);
  });
  it('page ids must be inside the cache', () => {
    expect(() => validatePagedKVIndices({ ...ok, indices: [4, 1, 0, 2, 5] })).toThrow(IndexRangeError);
    expect(() => validatePagedKVIndices({ ...ok, indices: [4, -1, 0, 2, 3] })).toThrow(/indices: page id -1/);
    // the id past the last group of four, and negative ids with no cache size given
    expect(() => validatePagedKVIndices({ ...ok, indices: [4, 1, 0, 2, 7] })).toThrow(/indices: page id 7 at position 4/);
    const { maxNumPages: _, ...noLimit } = ok;
    expect(() => validatePagedKVIndices({ ...noLimit, indices: [4, 1, 0, 2, -2] })).toThrow(/indices: page id -2 at position 4/);
    expect(validatePagedKVIndices({ ...noLimit, indices: [4, 1, 9, 2, 3] }).maxPageId).toBe(9);
    expect(validatePagedKVIndices({ ...ok, indptr: [0, 0, 0, 0], lastPageLen: [0, 0, 0] }).maxPageId).toBe(-1);
  });
  it('last page length must be in [1, page_size]', () => {
    expect(() => validatePagedKVIndices({ ...ok, lastPageLen: [0, 0, 1] })).toThrow(/request 0: last page length 0/);
    expect(() => validatePagedKVIndices({ ...ok, lastPageLen: [5, 0, 1] })).toThrow(/must be in \[1, page_size=4\]/);
  });
  it('page size must be positive', () => {
    expect(() => validatePagedKVIndices({ ...ok, pageSize: 0 })).toThrow(ValueError);
  });
  it('indices must be int32', () => {
    expect(() => validatePagedKVIndices({ ...ok, indices: [4, 1.5, 0, 2, 3] })).toThrow(/indices: element 1/);
  });
});

describe('block tables', () => {
  it('convert to indptr/indices/last_page_len and back', () => {
    const blockTables = [3, 1, 9, /**/ 7, 0, 0, /**/ 2, 4, 6];
    const conv = blockTablesToPagedKV({ blockTables, batchSize: 3, seqLens: [9, 0, 12], pageSize: 4 });
    expect(Array.from(conv.indptr)).toEqual([0, 3, 3, 6]);
    expect(Array.from(conv.indices)).toEqual([3, 1, 9, 2, 4, 6]);
    expect(Array.from(conv.lastPageLen)).toEqual([1, 0, 4]);
    const back = pagedKVToBlockTables({ ...conv, pageSize: 4, pad: -1 });
    expect(back.maxPagesPerSeq).toBe(3);
    expect(Array.from(back.blockTables)).toEqual([3, 1, 9, -1, -1, -1, 2, 4, 6]);
    expect(Array.from(back.seqLens)).toEqual([9, 0, 12]);
  });
  it('reject a sequence longer than its block table row', () => {
    expect(() => blockTablesToPagedKV({ blockTables: [1, 2], batchSize: 1, seqLens: [9], pageSize: 4 })).toThrow(
      /seqLens: request 0 needs 3 pages/,
    );
  });
  it('batch indices and positions of appended rows', () => {
    const { batchIndices, positions } = getBatchIndicesPositions([0, 2, 2, 5], [7, 0, 9], 5);
    expect(Array.from(batchIndices)).toEqual([0, 0, 2, 2, 2]);
    expect(Array.from(positions)).toEqual([5, 6, 6, 7, 8]);
    expect(() => getBatchIndicesPositions([0, 3], [2], 3)).toThrow(/appends 3 rows but its length is 2/);
  });
});

describe('resolvePagedKVCache', () => {
  it('splits the one-tensor form and checks shapes', () => {
    const nhd = resolvePagedKVCache(ctx.empty([6, 2, 4, 2, 8], 'f16'), 'NHD');
    expect([nhd.maxNumPages, nhd.pageSize, nhd.numKvHeads, nhd.headDimQk]).toEqual([6, 4, 2, 8]);
    expect(nhd.vAddr.offset).toBe(4 * 2 * 8);
    const hnd = resolvePagedKVCache(ctx.empty([6, 2, 2, 4, 8], 'f16'), 'HND');
    expect([hnd.pageSize, hnd.numKvHeads]).toEqual([4, 2]);
    expect(hnd.kAddr.strideSlot).toBe(8);
    expect(() => resolvePagedKVCache(ctx.empty([6, 3, 4, 2, 8], 'f16'), 'NHD')).toThrow(/pagedKvCache: expected \[max_pages, 2/);
    expect(() => resolvePagedKVCache({ k: ctx.empty([6, 4, 2, 8], 'f16'), v: ctx.empty([6, 4, 2, 8], 'bf16') }, 'NHD')).toThrow(LayoutError);
    expect(() => resolvePagedKVCache({ k: ctx.empty([6, 4, 2, 8], 'f16'), v: ctx.empty([5, 4, 2, 8], 'f16') }, 'NHD')).toThrow(ShapeError);
    const t = ctx.empty([6, 4, 2, 8], 'f16').transpose(2, 3);
    expect(() => resolvePagedKVCache({ k: t, v: t }, 'NHD')).toThrow(/head dimension must be contiguous/);
  });
});

interface AppendCase {
  dtype: DType;
  layout: 'NHD' | 'HND';
  form: 'one' | 'pair';
  pageSize: number;
  gpuIndices: boolean;
}

const appendCases: AppendCase[] = [
  { dtype: 'f16', layout: 'NHD', form: 'one', pageSize: 16, gpuIndices: false },
  { dtype: 'f16', layout: 'HND', form: 'pair', pageSize: 5, gpuIndices: false },
  { dtype: 'bf16', layout: 'HND', form: 'one', pageSize: 1, gpuIndices: true },
  { dtype: 'f32', layout: 'NHD', form: 'pair', pageSize: 3, gpuIndices: false },
  { dtype: 'fp8_e4m3', layout: 'NHD', form: 'one', pageSize: 4, gpuIndices: true },
  { dtype: 'fp8_e5m2', layout: 'HND', form: 'pair', pageSize: 8, gpuIndices: false },
];

describe('appendPagedKVCache on the GPU', () => {
  it.each(appendCases)('$dtype $layout $form page $pageSize (gpu indices: $gpuIndices)', async (c) => {
    const seed = testSeed();
    const r = rng(seed);
    const [heads, dim] = [2, 8];
    // requests: existing lengths, then rows appended (the new rows are the last of each request)
    const oldLens = [0, 7, 3, 13];
    const appendLens = [5, 1, 0, 6];
    const seqLens = oldLens.map((l, i) => l + appendLens[i]);
    const pagesPer = seqLens.map((l) => Math.ceil(l / c.pageSize));
    const maxPages = pagesPer.reduce((a, b) => a + b) + 3;
    const perm = permutation(r, maxPages);
    const indptr = [0];
    for (const p of pagesPer) indptr.push(indptr[indptr.length - 1] + p);
    const indices = Array.from(perm.slice(0, indptr[indptr.length - 1]));
    const lastPageLen = seqLens.map((l, i) => (pagesPer[i] === 0 ? 0 : l - (pagesPer[i] - 1) * c.pageSize));
    const appendIndptr = [0];
    for (const a of appendLens) appendIndptr.push(appendIndptr[appendIndptr.length - 1] + a);
    const nnz = appendIndptr[appendIndptr.length - 1];
    const { batchIndices, positions } = getBatchIndicesPositions(appendIndptr, seqLens, nnz);

    // the cache starts with random contents; rows are values the dtype holds exactly
    const cacheElems = maxPages * c.pageSize * heads * dim;
    const exact = (n: number) => decodeArray(encodeArray(randn(r, n), c.dtype), c.dtype) as Float32Array;
    const kHost = exact(cacheElems);
    const vHost = exact(cacheElems);
    const newK = exact(nnz * heads * dim);
    const newV = exact(nnz * heads * dim);
    const pageShape = c.layout === 'NHD' ? [c.pageSize, heads, dim] : [heads, c.pageSize, dim];
    let cache: Parameters<typeof appendPagedKVCache>[5];
    let readBack: () => Promise<[Float32Array, Float32Array]>;
    if (c.form === 'pair') {
      const k = ctx.tensor(kHost, [maxPages, ...pageShape], c.dtype);
      const v = ctx.tensor(vHost, [maxPages, ...pageShape], c.dtype);
      cache = { k, v };
      readBack = async () => [(await k.toArray()) as Float32Array, (await v.toArray()) as Float32Array];
    } else {
      const one = new Float32Array(2 * cacheElems);
      const per = c.pageSize * heads * dim;
      for (let p = 0; p < maxPages; p++) {
        one.set(kHost.subarray(p * per, (p + 1) * per), 2 * p * per);
        one.set(vHost.subarray(p * per, (p + 1) * per), (2 * p + 1) * per);
      }
      const t = ctx.tensor(one, [maxPages, 2, ...pageShape], c.dtype);
      cache = t;
      readBack = async () => [(await t.select(1, 0).toArray()) as Float32Array, (await t.select(1, 1).toArray()) as Float32Array];
    }
    const kRows = ctx.tensor(newK, [nnz, heads, dim], c.dtype);
    const vRows = ctx.tensor(newV, [nnz, heads, dim], c.dtype);
    const idx = (a: ArrayLike<number>) => (c.gpuIndices ? ctx.tensor(Int32Array.from(a), [a.length], 'i32') : Int32Array.from(a));
    await ctx.checkErrors(() =>
      appendPagedKVCache(ctx, kRows, vRows, idx(batchIndices), idx(positions), cache, idx(indices), idx(indptr), idx(lastPageLen), {
        kvLayout: c.layout,
      }),
    );
    const meta = { layout: c.layout, pageSize: c.pageSize, numHeads: heads, headDim: dim };
    appendPagedRef({ ...meta, data: kHost }, newK, batchIndices, positions, indptr, indices);
    appendPagedRef({ ...meta, data: vHost }, newV, batchIndices, positions, indptr, indices);
    const [kGot, vGot] = await readBack();
    expect(Array.from(kGot), `seed ${seed}`).toEqual(Array.from(kHost));
    expect(Array.from(vGot), `seed ${seed}`).toEqual(Array.from(vHost));
  });

  it('rejects bad rows and positions before any GPU work', () => {
    const cache = ctx.empty([4, 2, 2, 1, 4], 'f16');
    const rows = ctx.empty([2, 1, 4], 'f16');
    const table = { indices: [0, 1], indptr: [0, 2], last: [2] };
    const run = (bi: number[], pos: number[], k = rows) =>
      appendPagedKVCache(ctx, k, rows, bi, pos, cache, table.indices, table.indptr, table.last);
    expect(() => run([0, 1], [0, 1])).toThrow(/batchIndices: row 1: request 1 is outside \[0, 1\)/);
    expect(() => run([0, 0], [0, 4])).toThrow(/positions: row 1: position 4 is outside request 0's \[0, 4\)/);
    expect(() => run([0], [0])).toThrow(/batchIndices: has 1 entries, expected nnz = 2/);
    expect(() => run([0, 0], [0, 1], ctx.empty([2, 1, 4], 'f32'))).toThrow(/appendKey: dtype f32 not accepted/);
    expect(() => run([0, 0], [0, 1], ctx.empty([2, 2, 4], 'f16'))).toThrow(/appendKey: shape/);
    expect(() =>
      appendPagedKVCache(ctx, rows, rows, [0, 0], [0, 1], cache, [0, 9], table.indptr, table.last),
    ).toThrow(/indices: page id 9/);
  });
});
