import { type GpuContext, type KVLayout, type Tensor, createContext, decodeArray, encodeArray } from '@webinfer/core-buffers';
import { type AttentionRefOptions, type PagedFixture, attentionRef, compareClose, makePagedFixture, randn, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchAttention, BatchAttentionWithAttentionSinkWrapper } from '../src';

let ctx: GpuContext;
let workspace: Tensor;
beforeAll(async () => {
  ctx = await createContext();
  workspace = ctx.empty([32 << 20], 'u8');
});
afterAll(() => ctx?.dispose());

const exact = (r: () => number, n: number) => decodeArray(encodeArray(randn(r, n), 'f16'), 'f16') as Float32Array;

function cumsum(xs: readonly number[]): number[] {
  const out = [0];
  for (const x of xs) out.push(out[out.length - 1] + x);
  return out;
}

function upload(f: PagedFixture, layout: KVLayout, page: number, hkv: number, d: number) {
  const shape = layout === 'NHD' ? [f.maxPages, page, hkv, d] : [f.maxPages, hkv, page, d];
  return { k: ctx.tensor(f.kCache, shape, 'f16'), v: ctx.tensor(f.vCache, shape, 'f16') };
}

/** The float64 expectation of a batch, rows concatenated. */
function expected(q: Float32Array, f: PagedFixture, qoLens: number[], kvLens: number[], hq: number, hkv: number, d: number, opts: AttentionRefOptions) {
  const qo = cumsum(qoLens);
  const o = new Float64Array(qo[qoLens.length] * hq * d);
  const lse = new Float64Array(qo[qoLens.length] * hq);
  qoLens.forEach((l, b) => {
    const res = attentionRef({ ...opts, q: q.subarray(qo[b] * hq * d, qo[b + 1] * hq * d), k: f.k[b], v: f.v[b], qoLen: l, kvLen: kvLens[b], numQoHeads: hq, numKvHeads: hkv, headDimQk: d });
    o.set(res.o, qo[b] * hq * d);
    lse.set(res.lse, qo[b] * hq);
  });
  return { o, lse };
}

interface MixedCase {
  name: string;
  qoLens: number[];
  kvLens: number[];
  page: number;
  hq: number;
  hkv: number;
  d: number;
  layout: KVLayout;
  causal: boolean;
  softCap?: number;
  vScale?: number;
  /** Expected run of requests served by the decode kernel. */
  decodes?: { first: number; count: number };
  decodeKernel?: boolean;
  fuse?: boolean;
  /** Expected: the two kernels went out as one dispatch. */
  fused?: boolean;
}

const mixed: MixedCase[] = [
  { name: 'decodes + appends + a prefill', qoLens: [1, 1, 37, 1, 5], kvLens: [54, 1, 97, 200, 5], page: 16, hq: 8, hkv: 2, d: 128, layout: 'NHD', causal: true, fused: false },
  { name: 'decodes + a prefill, one fused dispatch (D 64)', qoLens: [1, 1, 21, 1], kvLens: [54, 1, 40, 17], page: 16, hq: 4, hkv: 1, d: 64, layout: 'HND', causal: true, vScale: 0.5, fuse: true, fused: true },
  { name: 'decode only, soft cap 50', qoLens: [1, 1, 1], kvLens: [17, 300, 1], page: 8, hq: 8, hkv: 1, d: 64, layout: 'HND', causal: true, softCap: 50, fuse: true, fused: false },
  { name: 'chunked prefill, qo > kv, group 7, vScale 2', qoLens: [34, 10], kvLens: [2, 60], page: 1, hq: 7, hkv: 1, d: 256, layout: 'NHD', causal: true, vScale: 2 },
  { name: 'not causal, group 1', qoLens: [9, 20], kvLens: [30, 45], page: 16, hq: 4, hkv: 4, d: 64, layout: 'NHD', causal: false },
  { name: 'a prefill then a run of decodes (decode kernel), bf16 out', qoLens: [37, 5, 1, 1, 1, 1], kvLens: [60, 9, 54, 1, 300, 17], page: 16, hq: 8, hkv: 2, d: 128, layout: 'HND', causal: true, vScale: 0.5, decodes: { first: 2, count: 4 } },
  { name: 'the same run of decodes left to the prefill kernel (decodeKernel: false)', qoLens: [37, 5, 1, 1, 1, 1], kvLens: [60, 9, 54, 1, 300, 17], page: 16, hq: 8, hkv: 2, d: 128, layout: 'NHD', causal: true, decodeKernel: false },
];

describe('BatchAttention', () => {
  it.each(mixed)('$name', async (c) => {
    const seed = testSeed();
    const r = rng(seed);
    const f = makePagedFixture(r, c.kvLens, c.page, c.hkv, c.d, c.layout, (n) => exact(r, n));
    const rows = c.qoLens.reduce((a, b) => a + b);
    const q = exact(r, rows * c.hq * c.d);
    const attn = new BatchAttention(ctx, { kvLayout: c.layout, workspaceBuffer: workspace });
    attn.plan({
      qoIndptr: cumsum(c.qoLens),
      kvIndptr: f.indptr,
      kvIndices: f.indices,
      kvLenArr: c.kvLens,
      numQoHeads: c.hq,
      numKvHeads: c.hkv,
      headDimQk: c.d,
      headDimVo: c.d,
      pageSize: c.page,
      causal: c.causal,
      logitsSoftCap: c.softCap,
      qDataType: 'f16',
      decodeKernel: c.decodeKernel,
      fuse: c.fuse,
    });
    if (c.decodes) expect(attn.decodeRequests).toEqual(c.decodes);
    if (c.decodeKernel === false) expect(attn.decodeRequests).toBe(undefined);
    if (c.name.startsWith('decode only')) expect(attn.decodeRequests).toEqual({ first: 0, count: 3 });
    const out = ctx.full([rows, c.hq, c.d], 'f16', Number.NaN);
    const lsePoisoned = ctx.full([rows, c.hq], 'f32', Number.NaN);
    const [o, lse] = await ctx.checkErrors(() =>
      attn.run(ctx.tensor(q, [rows, c.hq, c.d], 'f16'), upload(f, c.layout, c.page, c.hkv, c.d), { out, lse: lsePoisoned, vScale: c.vScale, logitsSoftCap: c.softCap }),
    );
    if (c.fused !== undefined) expect(attn.lastRunFused, attn.lastRunUnfusedReason).toBe(c.fused);
    const want = expected(q, f, c.qoLens, c.kvLens, c.hq, c.hkv, c.d, { causal: c.causal, logitsSoftCap: c.softCap, vScale: c.vScale });
    const ro = compareClose(await o.toArray(), want.o, { rtol: 2e-3, atol: 2e-3 });
    const rl = compareClose(await lse.toArray(), want.lse, { rtol: 1e-3, atol: 2e-3 });
    expect(ro.ok, `seed ${seed}: ${JSON.stringify(ro)}`).toBe(true);
    expect(rl.ok, `seed ${seed}: ${JSON.stringify(rl)}`).toBe(true);
    attn.destroy();
  });

  it("runs the seed example's flow (plan with kvLenArr, forward(q, k, v))", async () => {
    const r = rng(testSeed());
    // flashinfer.BatchAttention docs: 3 requests of 64 rows over 100 pages each, kv_len 100, page 16.
    const [hq, hkv, d, page] = [32, 8, 128, 16];
    const qoIndptr = [0, 64, 128, 192];
    const kvIndptr = [0, 100, 200, 300];
    const kvIndices = Array.from({ length: 300 }, (_, i) => i);
    const kvLenArr = [100, 100, 100];
    const attn = new BatchAttention(ctx, { kvLayout: 'NHD', workspaceBuffer: workspace });
    attn.plan({ qoIndptr, kvIndptr, kvIndices, kvLenArr, numQoHeads: hq, numKvHeads: hkv, headDimQk: d, headDimVo: d, pageSize: page, causal: true, qDataType: 'f16' });
    const q = exact(r, 192 * hq * d);
    const kHost = exact(r, 300 * page * hkv * d);
    const vHost = exact(r, 300 * page * hkv * d);
    const o = await attn.forward(ctx.tensor(q, [192, hq, d], 'f16'), ctx.tensor(kHost, [300, page, hkv, d], 'f16'), ctx.tensor(vHost, [300, page, hkv, d], 'f16')).toArray();
    // Request b uses pages 100b.. in order: its first 100 tokens are rows 1600b .. 1600b + 99.
    for (const b of [0, 2]) {
      const tok = (t: number) => (100 * b * page + t) * hkv * d;
      const res = attentionRef({
        q: q.subarray(64 * b * hq * d, 64 * (b + 1) * hq * d),
        k: kHost.subarray(tok(0), tok(100)),
        v: vHost.subarray(tok(0), tok(100)),
        qoLen: 64,
        kvLen: 100,
        numQoHeads: hq,
        numKvHeads: hkv,
        headDimQk: d,
        causal: true,
      });
      const rep = compareClose(o.subarray(64 * b * hq * d, 64 * (b + 1) * hq * d), res.o, { rtol: 2e-3, atol: 2e-3 });
      expect(rep.ok, JSON.stringify(rep)).toBe(true);
    }
    attn.destroy();
  });

  it('rejects bad input', () => {
    const attn = new BatchAttention(ctx, { workspaceBuffer: workspace });
    const base = { qoIndptr: [0, 1], kvIndptr: [0, 1], kvIndices: [0], kvLenArr: [4], numQoHeads: 2, numKvHeads: 2, headDimQk: 64, headDimVo: 64, pageSize: 4, qDataType: 'f16' };
    expect(() => attn.run(ctx.empty([1, 2, 64], 'f16'), ctx.empty([1, 2, 4, 2, 64], 'f16'))).toThrow(/plan: call plan\(\) before run\(\)/);
    expect(() => attn.plan({ ...base, kvLenArr: [5] })).toThrow(/kvLenArr: request 0: length 5 does not fit/);
    expect(() => attn.plan({ ...base, kvLenArr: [4, 4] })).toThrow(/kvLenArr: has 2 entries/);
    expect(() => attn.plan({ ...base, headDimQk: 512, headDimVo: 512 })).toThrow(/head dims above 256/);
    attn.plan(base);
    expect(() => attn.run(ctx.empty([1, 2, 64], 'f16'), ctx.empty([1, 2, 4, 2, 64], 'f16'), { logitsSoftCap: 30 })).toThrow(/logitsSoftCap 30 differs from the planned 0/);
    attn.destroy();
  });
});

describe('BatchAttentionWithAttentionSinkWrapper', () => {
  it.each([
    { windowLeft: -1, causal: true, pos: 'NONE' as const },
    { windowLeft: 128, causal: true, pos: 'ROPE_LLAMA' as const },
    { windowLeft: 128, causal: false, pos: 'NONE' as const },
    { windowLeft: -1, causal: false, pos: 'NONE' as const },
  ])('window $windowLeft causal $causal $pos', async (c) => {
    const seed = testSeed();
    const r = rng(seed);
    const [hq, hkv, d, page] = [8, 2, 64, 16];
    const qoLens = [1, 16, 4];
    const kvLens = [200, 150, 4];
    const f = makePagedFixture(r, kvLens, page, hkv, d, 'NHD', (n) => exact(r, n));
    const rows = 21;
    const q = exact(r, rows * hq * d);
    const sinks = Float32Array.from({ length: hq }, () => r() * 5);
    const w = new BatchAttentionWithAttentionSinkWrapper(ctx, workspace, { qDataType: 'f16', headDimQk: d, headDimVo: d, windowLeft: c.windowLeft, posEncodingMode: c.pos });
    w.plan({ qoIndptr: cumsum(qoLens), pagedKvIndptr: f.indptr, pagedKvIndices: f.indices, pagedKvLastPageLen: f.lastPageLen, numQoHeads: hq, numKvHeads: hkv, headDimQk: d, pageSize: page, causal: c.causal });
    const smScale = 0.1;
    const [o, lse] = await ctx.checkErrors(() => w.runReturnLse(ctx.tensor(q, [rows, hq, d], 'f16'), upload(f, 'NHD', page, hkv, d), ctx.tensor(sinks, [hq], 'f32'), smScale, {
        out: ctx.full([rows, hq, d], 'f16', Number.NaN),
        lse: ctx.full([rows, hq], 'f32', Number.NaN),
      }));
    const want = expected(q, f, qoLens, kvLens, hq, hkv, d, { causal: c.causal, windowLeft: c.windowLeft, posEncodingMode: c.pos, smScale, sinks });
    const tol = c.pos === 'ROPE_LLAMA' ? 4e-3 : 2e-3;
    const ro = compareClose(await o.toArray(), want.o, { rtol: tol, atol: tol });
    const rl = compareClose(await lse.toArray(), want.lse, { rtol: 1e-3, atol: 2e-3 });
    expect(ro.ok, `seed ${seed}: ${JSON.stringify(ro)}`).toBe(true);
    expect(rl.ok, `seed ${seed}: ${JSON.stringify(rl)}`).toBe(true);
    w.destroy();
  });

  it('checks the plan against the constructor', () => {
    const w = new BatchAttentionWithAttentionSinkWrapper(ctx, workspace, { qDataType: 'f16', headDimQk: 64, windowLeft: 32 });
    const base = { qoIndptr: [0, 1], pagedKvIndptr: [0, 1], pagedKvIndices: [0], pagedKvLastPageLen: [4], numQoHeads: 2, numKvHeads: 2, headDimQk: 64, pageSize: 4 };
    expect(() => w.plan({ ...base, windowLeft: 16 })).toThrow(/windowLeft: 16 differs from the constructor's 32/);
    expect(() => w.plan({ ...base, headDimQk: 128 })).toThrow(/headDimQk: 128 differs/);
    expect(() => w.plan({ ...base, logitsSoftCap: 30 })).toThrow(/soft cap/);
    w.plan(base);
    expect(() => w.run(ctx.empty([1, 2, 64], 'f16'), ctx.empty([1, 2, 4, 2, 64], 'f16'), ctx.empty([3], 'f32'))).toThrow(/sinks: shape/);
    w.destroy();
  });
});
