import { type GpuContext, createContext } from '@webinfer/core-buffers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchDecodeWithPagedKVCacheWrapper } from '../src';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

const table = { indptr: [0, 2, 3], indices: [0, 1, 2], lastPageLen: [3, 4] };
const dims = { numQoHeads: 8, numKvHeads: 2, headDim: 64, pageSize: 4 };

function planned() {
  const w = new BatchDecodeWithPagedKVCacheWrapper(ctx, ctx.empty([1 << 20], 'u8'));
  w.plan({ ...table, ...dims });
  return w;
}

describe('bad input fails before any GPU work, naming the argument', () => {
  const cache = () => ctx.empty([3, 2, 4, 2, 64], 'f16');
  const q = () => ctx.empty([2, 8, 64], 'f16');

  it('run before plan', () => {
    const w = new BatchDecodeWithPagedKVCacheWrapper(ctx, ctx.empty([1 << 20], 'u8'));
    expect(() => w.run(q(), cache())).toThrow(/plan: call plan\(\) before run\(\)/);
  });
  it('q dtype differs from qDataType (default f16)', () => {
    expect(() => planned().run(ctx.empty([2, 8, 64], 'f32'), cache())).toThrow(/q: dtype f32 not accepted; expected f16/);
  });
  it('q shape differs from the plan', () => {
    expect(() => planned().run(ctx.empty([3, 8, 64], 'f16'), cache())).toThrow(/q: shape \[3, 8, 64\]/);
  });
  it('cache dtype, page size, heads and head dim must match the plan', () => {
    expect(() => planned().run(q(), ctx.empty([3, 2, 4, 2, 64], 'bf16'))).toThrow(/pagedKvCache: cache is bf16/);
    expect(() => planned().run(q(), ctx.empty([3, 2, 8, 2, 64], 'f16'))).toThrow(/page size 8/);
    expect(() => planned().run(q(), ctx.empty([3, 2, 4, 1, 64], 'f16'))).toThrow(/1 kv heads/);
    expect(() => planned().run(q(), ctx.empty([3, 2, 4, 2, 128], 'f16'))).toThrow(/head dim 128/);
    expect(() => planned().run(q(), ctx.empty([3, 3, 4, 2, 64], 'f16'))).toThrow(/pagedKvCache: expected \[max_pages, 2/);
  });
  it('page ids beyond the cache', () => {
    expect(() => planned().run(q(), ctx.empty([2, 2, 4, 2, 64], 'f16'))).toThrow(/indices: planned page id 2 is outside the cache's 2 pages/);
  });
  it('windowLeft at run must equal the plan', () => {
    expect(() => planned().run(q(), cache(), { windowLeft: 5 })).toThrow(/windowLeft: windowLeft 5 differs from the planned -1/);
  });
  it('out, lse and sinks are checked', () => {
    expect(() => planned().run(q(), cache(), { out: ctx.empty([2, 8, 64], 'bf16') })).toThrow(/out: dtype bf16/);
    expect(() => planned().run(q(), cache(), { lse: ctx.empty([2, 4], 'f32') })).toThrow(/lse: shape/);
    expect(() => planned().run(q(), cache(), { sinks: ctx.empty([4], 'f32') })).toThrow(/sinks: shape/);
    expect(() => planned().run(q(), cache(), { vScale: Number.NaN })).toThrow(/vScale: must be finite/);
  });
  it('a cache view whose rows are not 16-byte aligned', () => {
    const base = ctx.empty([3 * 2 * 4 * 2 * 64 + 4], 'f16');
    const view = ctx.fromBuffer(base.buffer, [3, 2, 4, 2, 64], 'f16', { offset: 4 });
    expect(() => planned().run(q(), view)).toThrow(/pagedKvCache: k rows must start on 16-byte boundaries/);
  });
  it('plan arguments', () => {
    const w = new BatchDecodeWithPagedKVCacheWrapper(ctx, ctx.empty([1 << 20], 'u8'));
    expect(() => w.plan({ ...table, ...dims, numQoHeads: 6, numKvHeads: 4 })).toThrow(/numQoHeads: 6 query heads/);
    expect(() => w.plan({ ...table, ...dims, headDim: 80 })).toThrow(/headDim: head_dim 80 is not supported/);
    expect(() => w.plan({ ...table, ...dims, posEncodingMode: 'ALIBI', logitsSoftCap: 5 })).toThrow(/logitsSoftCap: ALiBi/);
    expect(() => w.plan({ ...table, ...dims, posEncodingMode: 'ROPE' as never })).toThrow(/posEncodingMode: expected/);
    expect(() => w.plan({ ...table, ...dims, windowLeft: -2 })).toThrow(/windowLeft: must be -1/);
    expect(() => w.plan({ ...table, ...dims, qDataType: 'int32' })).toThrow(/qDataType: i32 is not supported/);
    expect(() => w.plan({ ...table, ...dims, kvDataType: 'float64' })).toThrow(/kvDataType: unknown dtype/);
    expect(() => w.plan({ ...dims, indptr: [0, 1] } as never)).toThrow(/plan needs indptr, indices and lastPageLen/);
    expect(() => w.plan({ ...table, ...dims, lastPageLen: [5, 4] })).toThrow(/lastPageLen: request 0: last page length 5/);
    expect(() => w.plan({ ...table, ...dims, seqLens: [9, 4] })).toThrow(/seqLens: request 0: length 9 does not fit/);
    expect(() => w.plan({ ...table, ...dims, qLenPerReq: 5 })).toThrow(/seqLens: request 1 has 4 KV tokens, fewer than qLenPerReq = 5/);
    expect(() => w.plan({ ...table, ...dims, smScale: 0 })).toThrow(/smScale: must be a finite number > 0/);
    expect(() => w.plan({ ...table, ...dims, workgroupSize: 96 })).toThrow(/workgroupSize: must be 64, 128 or 256/);
  });
  it('use after destroy', () => {
    const w = planned();
    w.destroy();
    expect(() => w.run(q(), cache())).toThrow(/wrapper was destroyed/);
  });
});
