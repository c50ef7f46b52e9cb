import { createContext, decodeArray, encodeArray, type GpuContext, UnsupportedFeatureError, ValueError } from '@webinfer/core-buffers';
import { BatchPrefillWithPagedKVCacheWrapper, BatchPrefillWithRaggedKVCacheWrapper } from '@webinfer/prefill';
import { attentionRef, compareClose, gatherPagedRef, randn, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capture } from '../src';
import { randomPageTable } from './helpers';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

const [HQ, HKV, D, PAGE] = [4, 2, 64, 16];
const B = 3;
const ROWS = 24; // total query rows: part of the graph's shape
const MAX_PAGES_PER_SEQ = 24; // 384 tokens
const NUM_PAGES = B * MAX_PAGES_PER_SEQ + 2;

function pageTable(r: () => number, kvLens: number[]) {
  const t = randomPageTable(r, kvLens, PAGE, NUM_PAGES);
  return { pagedKvIndptr: t.indptr, pagedKvIndices: t.indices, pagedKvLastPageLen: t.lastPageLen };
}

const exact = (r: () => number, n: number) => decodeArray(encodeArray(randn(r, n), 'f16'), 'f16') as Float32Array;


function graphBuffers() {
  return {
    useCudaGraph: true,
    qoIndptrBuf: ctx.empty([B + 1], 'i32'),
    pagedKvIndptrBuf: ctx.empty([B + 1], 'i32'),
    pagedKvIndicesBuf: ctx.empty([B * MAX_PAGES_PER_SEQ], 'i32'),
    pagedKvLastPageLenBuf: ctx.empty([B], 'i32'),
  };
}

describe('BatchPrefillWithPagedKVCacheWrapper in graph mode', () => {
  it('replays one capture with new query splits, KV lengths and page tables', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const per = PAGE * HKV * D;
    const kHost = exact(r, NUM_PAGES * per);
    const vHost = exact(r, NUM_PAGES * per);
    const cache = { k: ctx.tensor(kHost, [NUM_PAGES, PAGE, HKV, D], 'f16'), v: ctx.tensor(vHost, [NUM_PAGES, PAGE, HKV, D], 'f16') };
    const qHost = exact(r, ROWS * HQ * D);
    const q = ctx.tensor(qHost, [ROWS, HQ, D], 'f16');
    const w = new BatchPrefillWithPagedKVCacheWrapper(ctx, ctx.empty([16 << 20], 'u8'), graphBuffers());
    const plain = new BatchPrefillWithPagedKVCacheWrapper(ctx, ctx.empty([16 << 20], 'u8'));
    // [qo lengths, kv lengths]: 1-3 pages, then full, then a split long request and an empty one.
    const steps: [number[], number[]][] = [
      [[8, 8, 8], [9, 20, 40]],
      [[1, 20, 3], [16, 33, 47]],
      [[12, 6, 6], [40, 20, 30]],
      [[8, 8, 8], Array(B).fill(MAX_PAGES_PER_SEQ * PAGE)],
      [[20, 4, 0], [380, 5, 0]],
    ];
    let graph: ReturnType<typeof capture<ReturnType<typeof w.run>>> | undefined;
    for (const [i, [qoLens, kvLens]] of steps.entries()) {
      const qoIndptr = [0];
      for (const n of qoLens) qoIndptr.push(qoIndptr[qoIndptr.length - 1] + n);
      const args = { qoIndptr, ...pageTable(r, kvLens), numQoHeads: HQ, numKvHeads: HKV, headDimQk: D, pageSize: PAGE, causal: true };
      w.plan(args);
      graph ??= capture(ctx, (rec) => w.run(q, cache, { encoder: rec }));
      graph.outputs.fill(Number.NaN);
      await ctx.checkErrors(() => graph!.replay());
      const got = await graph.outputs.toArray();
      plain.plan(args);
      expect(Array.from(await graph.outputs.toBits()), `step ${i}: replay = plain wrapper`).toEqual(Array.from(await plain.run(q, cache).toBits()));
      const c = { layout: 'NHD' as const, pageSize: PAGE, numHeads: HKV, headDim: D };
      for (let b = 0; b < B; b++) {
        const rows = qoLens[b];
        if (rows === 0) continue;
        const ref = attentionRef({
          q: qHost.subarray(qoIndptr[b] * HQ * D, qoIndptr[b + 1] * HQ * D),
          k: gatherPagedRef({ ...c, data: kHost }, args.pagedKvIndptr, args.pagedKvIndices, kvLens[b], b),
          v: gatherPagedRef({ ...c, data: vHost }, args.pagedKvIndptr, args.pagedKvIndices, kvLens[b], b),
          qoLen: rows,
          kvLen: kvLens[b],
          numQoHeads: HQ,
          numKvHeads: HKV,
          headDimQk: D,
          causal: true,
        });
        const res = compareClose(got.subarray(qoIndptr[b] * HQ * D, qoIndptr[b + 1] * HQ * D), ref.o, { rtol: 2e-3, atol: 2e-3 });
        expect(res.ok, `seed ${seed} step ${i} request ${b}: ${JSON.stringify(res)}`).toBe(true);
      }
    }
    // Another total of query rows changes the graph's shape.
    w.plan({ qoIndptr: [0, 8, 8, 9], ...pageTable(r, [9, 9, 9]), numQoHeads: HQ, numKvHeads: HKV, headDimQk: D, pageSize: PAGE, causal: true });
    expect(() => graph!.replay()).toThrow(/different shape/);
    w.destroy();
    plain.destroy();
  });

  it('rejects another batch size, over-long indices, masks, missing buffers and ragged graph mode', () => {
    const r = rng(testSeed());
    const ws = ctx.empty([4 << 20], 'u8');
    const w = new BatchPrefillWithPagedKVCacheWrapper(ctx, ws, graphBuffers());
    const base = { numQoHeads: HQ, numKvHeads: HKV, headDimQk: D, pageSize: PAGE, causal: true };
    expect(() => w.plan({ qoIndptr: [0, 4, 8], ...pageTable(r, [9, 9]), ...base })).toThrow(/fixed batch size 3/);
    const long = pageTable(r, [9, 9, 9]);
    long.pagedKvIndptr[3] = B * MAX_PAGES_PER_SEQ + 1;
    long.pagedKvIndices = Array.from({ length: B * MAX_PAGES_PER_SEQ + 1 }, (_, i) => i % NUM_PAGES);
    expect(() => w.plan({ qoIndptr: [0, 1, 2, 3], ...long, ...base })).toThrow(ValueError);
    const mask = new Uint8Array(3 * 9).fill(1);
    expect(() => w.plan({ qoIndptr: [0, 1, 2, 3], ...pageTable(r, [9, 9, 9]), ...base, causal: false, customMask: mask })).toThrow(UnsupportedFeatureError);
    expect(() => new BatchPrefillWithPagedKVCacheWrapper(ctx, ws, { useCudaGraph: true })).toThrow(/qoIndptrBuf: is required/);
    expect(() => new BatchPrefillWithRaggedKVCacheWrapper(ctx, ws, { useCudaGraph: true })).toThrow(UnsupportedFeatureError);
    w.destroy();
  });
});
