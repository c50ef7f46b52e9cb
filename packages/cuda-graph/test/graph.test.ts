import { createContext, DisposedError, decodeArray, encodeArray, type GpuContext, PlanMismatchError, ShapeError, type Tensor, ValueError } from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper } from '@webinfer/decode';
import { BatchPrefillWithPagedKVCacheWrapper } from '@webinfer/prefill';
import { attentionRef, compareClose, gatherPagedRef, randn, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CUDAGraphBatchDecodeWithPagedKVCacheWrapper, capture } from '../src';
import { randomPageTable } from './helpers';

const pageTable = (r: () => number, kvLens: number[]) => randomPageTable(r, kvLens, PAGE, NUM_PAGES);

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

const [HQ, HKV, D, PAGE] = [8, 2, 128, 16];
const MAX_PAGES_PER_SEQ = 40; // 640 tokens: long enough that the planner splits rows
const B = 4;
const NUM_PAGES = B * MAX_PAGES_PER_SEQ + 3;

/** f16-exact random values. */
function exact(r: () => number, n: number): Float32Array {
  return decodeArray(encodeArray(randn(r, n), 'f16'), 'f16') as Float32Array;
}

/** One layer's cache: K and V host copies `[P, page, Hkv, D]` and the GPU tensor `[P, 2, page, Hkv, D]`. */
function makeLayer(r: () => number) {
  const per = PAGE * HKV * D;
  const k = exact(r, NUM_PAGES * per);
  const v = exact(r, NUM_PAGES * per);
  const both = new Float32Array(2 * NUM_PAGES * per);
  for (let p = 0; p < NUM_PAGES; p++) {
    both.set(k.subarray(p * per, (p + 1) * per), 2 * p * per);
    both.set(v.subarray(p * per, (p + 1) * per), (2 * p + 1) * per);
  }
  return { k, v, cache: ctx.tensor(both, [NUM_PAGES, 2, PAGE, HKV, D], 'f16') };
}


function expected(layer: ReturnType<typeof makeLayer>, q: Float32Array, kvLens: number[], t: ReturnType<typeof pageTable>) {
  const o = new Float64Array(kvLens.length * HQ * D);
  for (let b = 0; b < kvLens.length; b++) {
    const c = { layout: 'NHD' as const, pageSize: PAGE, numHeads: HKV, headDim: D };
    const res = attentionRef({
      q: q.subarray(b * HQ * D, (b + 1) * HQ * D),
      k: gatherPagedRef({ ...c, data: layer.k }, t.indptr, t.indices, kvLens[b], b),
      v: gatherPagedRef({ ...c, data: layer.v }, t.indptr, t.indices, kvLens[b], b),
      qoLen: 1,
      kvLen: kvLens[b],
      numQoHeads: HQ,
      numKvHeads: HKV,
      headDimQk: D,
    });
    o.set(res.o, b * HQ * D);
  }
  return o;
}

const planArgs = (t: ReturnType<typeof pageTable>) => ({ ...t, numQoHeads: HQ, numKvHeads: HKV, headDim: D, pageSize: PAGE });

function graphWrapper(workspace: Tensor, kernel?: 'subgroup' | 'tile', indirectDispatch = false) {
  const w = new CUDAGraphBatchDecodeWithPagedKVCacheWrapper(
    ctx,
    workspace,
    ctx.empty([B + 1], 'i32'),
    ctx.empty([B * MAX_PAGES_PER_SEQ], 'i32'),
    ctx.empty([B], 'i32'),
    { indirectDispatch },
  );
  return { w, plan: (t: ReturnType<typeof pageTable>) => w.plan({ ...planArgs(t), debug: kernel ? { kernel } : undefined }) };
}

describe.each([
  ['subgroup', false],
  ['tile', false],
  ['subgroup', true],
] as const)('CUDAGraphBatchDecodeWithPagedKVCacheWrapper (%s kernel, indirect dispatch %s)', (kernel, indirect) => {
  it('captures two layers once and replays them with new lengths (1-3 pages, then full)', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const layers = [makeLayer(r), makeLayer(r)];
    const qHost = layers.map(() => exact(r, B * HQ * D));
    const q = qHost.map((h) => ctx.tensor(h, [B, HQ, D], 'f16'));
    const workspace = ctx.empty([16 << 20], 'u8');
    const { w, plan } = graphWrapper(workspace, kernel, indirect);
    const plain = new BatchDecodeWithPagedKVCacheWrapper(ctx, ctx.empty([16 << 20], 'u8'));

    const lengthsOf = (pages: number) => Array.from({ length: B }, () => (pages - 1) * PAGE + 1 + Math.floor(r() * PAGE));
    const steps = [lengthsOf(1), lengthsOf(2), lengthsOf(3), Array(B).fill(MAX_PAGES_PER_SEQ * PAGE), [1, 0, 333, 17]];
    let graph: ReturnType<typeof capture<Tensor[]>> | undefined;
    for (const [i, kvLens] of steps.entries()) {
      const t = pageTable(r, kvLens);
      plan(t);
      if (!graph) {
        graph = capture(ctx, (rec) => layers.map((l, j) => w.run(q[j], l.cache, { encoder: rec })));
        expect(graph.dispatchCount).toBe(4); // decode + merge per layer, lengths notwithstanding
      }
      for (const o of graph.outputs) o.fill(Number.NaN);
      await ctx.checkErrors(() => graph!.replay());
      plain.plan({ ...planArgs(t), debug: { kernel } });
      for (const [j, l] of layers.entries()) {
        const got = await graph.outputs[j].toArray();
        const res = compareClose(got, expected(l, qHost[j], kvLens, t), { rtol: 2e-3, atol: 2e-3 });
        expect(res.ok, `seed ${seed} step ${i} layer ${j}: ${JSON.stringify(res)}`).toBe(true);
        // The padded schedule splits exactly as the plain wrapper does: identical bits.
        const want = await plain.run(q[j], l.cache).toBits();
        expect(Array.from(await graph.outputs[j].toBits())).toEqual(Array.from(want));
      }
    }
    w.destroy();
    plain.destroy();
  });
});

describe('graph-mode errors', () => {
  it('rejects a different batch size, over-long indices, missing buffers and out-of-range pages', () => {
    const r = rng(testSeed());
    const workspace = ctx.empty([4 << 20], 'u8');
    const { w } = graphWrapper(workspace);
    expect(() => w.plan(planArgs(pageTable(r, [16, 16, 16])))).toThrow(/fixed batch size 4/);
    expect(() => w.plan(planArgs(pageTable(r, [16, 16, 16])))).toThrow(ValueError);
    const long = pageTable(r, [16, 16, 16, 16]);
    long.indptr[4] = B * MAX_PAGES_PER_SEQ + 1;
    long.indices = Array.from({ length: B * MAX_PAGES_PER_SEQ + 1 }, (_, i) => i % NUM_PAGES);
    expect(() => w.plan(planArgs(long))).toThrow(/indices: .*do not fit/);
    expect(() => new BatchDecodeWithPagedKVCacheWrapper(ctx, workspace, { useCudaGraph: true })).toThrow(/is required with useCudaGraph/);
    expect(
      () => new CUDAGraphBatchDecodeWithPagedKVCacheWrapper(ctx, workspace, ctx.empty([B], 'i32'), ctx.empty([8], 'i32'), ctx.empty([B], 'i32')),
    ).toThrow(ShapeError);
    // After a run on a cache of N pages, a plan naming page N fails before any GPU work.
    const layer = makeLayer(r);
    w.plan(planArgs(pageTable(r, [16, 16, 16, 16])));
    w.run(ctx.tensor(exact(r, B * HQ * D), [B, HQ, D], 'f16'), layer.cache);
    const bad = pageTable(r, [16, 16, 16, 16]);
    bad.indices[0] = NUM_PAGES;
    expect(() => w.plan(planArgs(bad))).toThrow(/page id/);
    w.destroy();
  });

  it('refuses to replay after destroy, a destroyed buffer or a re-plan of another shape', async () => {
    const r = rng(testSeed());
    const layer = makeLayer(r);
    const q = ctx.tensor(exact(r, B * HQ * D), [B, HQ, D], 'f16');
    const { w, plan } = graphWrapper(ctx.empty([4 << 20], 'u8'));
    plan(pageTable(r, [20, 40, 60, 80]));
    const graph = capture(ctx, (rec) => w.run(q, layer.cache, { encoder: rec }));
    await ctx.checkErrors(() => graph.replay());
    // Same shape, new lengths: still valid.
    plan(pageTable(r, [200, 1, 2, 3]));
    await ctx.checkErrors(() => graph.replay());
    // Another head count: the recorded uniforms no longer describe the plan.
    w.plan({ ...planArgs(pageTable(r, [5, 6, 7, 8])), numQoHeads: 4 });
    expect(() => graph.replay()).toThrow(PlanMismatchError);

    plan(pageTable(r, [20, 40, 60, 80]));
    const g2 = capture(ctx, (rec) => w.run(q, layer.cache, { encoder: rec }));
    g2.replay();
    g2.outputs.destroy();
    expect(() => g2.replay()).toThrow(DisposedError);

    const g3 = capture(ctx, (rec) => w.run(q, layer.cache, { encoder: rec }));
    g3.destroy();
    expect(() => g3.replay()).toThrow(/replay after destroy/);

    const g4 = capture(ctx, (rec) => w.run(q, layer.cache, { encoder: rec }));
    w.destroy();
    expect(() => g4.replay()).toThrow(/destroyed/);
    await ctx.synchronize();
  });
});

describe('capture of plain wrappers', () => {
  it('replays a plain decode and a prefill run; a re-plan invalidates them', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const layer = makeLayer(r);
    const kvLens = [37, 100, 5, 64];
    const t = pageTable(r, kvLens);
    const qHost = exact(r, B * HQ * D);
    const q = ctx.tensor(qHost, [B, HQ, D], 'f16');

    const decode = new BatchDecodeWithPagedKVCacheWrapper(ctx, ctx.empty([4 << 20], 'u8'));
    decode.plan(planArgs(t));
    const prefill = new BatchPrefillWithPagedKVCacheWrapper(ctx, ctx.empty([4 << 20], 'u8'));
    prefill.plan({ qoIndptr: [0, 1, 2, 3, 4], pagedKvIndptr: t.indptr, pagedKvIndices: t.indices, pagedKvLastPageLen: t.lastPageLen, numQoHeads: HQ, numKvHeads: HKV, headDimQk: D, pageSize: PAGE, causal: true });
    const graph = capture(ctx, (rec) => [decode.run(q, layer.cache, { encoder: rec }), prefill.run(q, layer.cache, { encoder: rec })]);
    for (const o of graph.outputs) o.fill(Number.NaN);
    await ctx.checkErrors(() => graph.replay());
    const want = expected(layer, qHost, kvLens, t);
    for (const o of graph.outputs) {
      const res = compareClose(await o.toArray(), want, { rtol: 2e-3, atol: 2e-3 });
      expect(res.ok, `seed ${seed}: ${JSON.stringify(res)}`).toBe(true);
    }
    decode.plan(planArgs(t));
    expect(() => graph.replay()).toThrow(/BatchDecodeWithPagedKVCacheWrapper cannot replay/);
    decode.destroy();
    prefill.destroy();
  });

  it('records no merge for a batch that fills the GPU on its own', async () => {
    const r = rng(testSeed());
    const layer = makeLayer(r);
    const { w } = graphWrapper(ctx.empty([4 << 20], 'u8'));
    w.plan({ ...planArgs(pageTable(r, [300, 40, 60, 80])), targetWorkgroups: 1 });
    const graph = capture(ctx, (rec) => w.run(ctx.tensor(exact(r, B * HQ * D), [B, HQ, D], 'f16'), layer.cache, { encoder: rec }));
    expect(graph.dispatchCount).toBe(1);
    await ctx.checkErrors(() => graph.replay());
    w.destroy();
  });

  it('replays into a caller encoder and rejects what a recorder cannot hold', async () => {
    const graph = capture(ctx, (rec) => {
      expect(() => rec.finish()).toThrow(/not submitted/);
      expect(() => rec.beginComputePass({ timestampWrites: { querySet: {} as GPUQuerySet } })).toThrow(/timestamp/);
      return 1;
    });
    expect(graph.dispatchCount).toBe(0);
    const enc = ctx.device.createCommandEncoder();
    graph.replay(enc);
    ctx.submit([enc.finish()]);
    expect(() => capture(ctx, (rec) => rec.beginComputePass())).toThrow(/end the compute pass/);
    await ctx.synchronize();
  });
});
