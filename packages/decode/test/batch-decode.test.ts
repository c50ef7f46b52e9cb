import { type FloatDType, type GpuContext, type KVLayout, createContext, subgroupMatrixF16Support } from '@webinfer/core-buffers';
import { type PosEncodingMode, compareClose, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchDecodeWithPagedKVCacheWrapper, DEFAULT_TARGET_WORKGROUPS } from '../src';
import { exactRandn, expectedDecode, makePagedFixture, tolerance, uploadCache } from './helpers';

let ctx: GpuContext;
let workspace: ReturnType<GpuContext['empty']>;
beforeAll(async () => {
  ctx = await createContext();
  workspace = ctx.empty([8 << 20], 'u8');
});
afterAll(() => ctx?.dispose());

interface Case {
  name: string;
  kvLens: number[];
  pageSize: number;
  numQoHeads: number;
  numKvHeads: number;
  headDim: number;
  layout?: KVLayout;
  form?: 'one' | 'pair';
  qDtype?: FloatDType;
  kvDtype?: FloatDType;
  oDtype?: FloatDType;
  posEncodingMode?: PosEncodingMode;
  windowLeft?: number;
  logitsSoftCap?: number;
  qScale?: number;
  kScale?: number;
  vScale?: number;
  split?: 'auto' | 'force' | 'off';
  qLenPerReq?: number;
  sinks?: boolean;
  ropeScale?: number;
  ropeTheta?: number;
  /** Plan with these KV lengths (seqLens) instead of those the last pages imply. */
  seqLensOverride?: number[];
  /** fp8 KV in 16-byte loads (subgroup kernel). */
  wideFp8Loads?: boolean;
  /** Tensor-core kernel with the caches bound as array<f16>. */
  f16Cache?: boolean;
  /** Tensor-core kernel: V matrices loaded after the softmax instead of with K. */
  lateV?: boolean;
  /** Staged tensor-core kernel: Q matrices loaded from workgroup memory every block. */
  qInSmem?: boolean;
  /** Subgroup kernel: tokens a lane step (a CPU adapter defaults to 1; GPUs to 2 or 4). */
  tokensPerStep?: number;
  /** Subgroup kernel: lazy rescale (the default only for e4m3 KV). */
  lazyRescale?: boolean;
  /** Plan option: invocations per workgroup (default 128). */
  workgroupSize?: number;
  /** Plan option: the split target (a small one splits small batches into even chunks). */
  targetWorkgroups?: number;
  /** Staged tensor-core kernel: subgroups a workgroup. */
  stagedSubgroups?: number;
  /** One V element of request 0 (token 0, kv head 0) is NaN: its heads' outputs must be NaN. */
  vNaN?: boolean;
  /** One K element of request 0 (token 0, kv head 0) is NaN: its heads' logits, so outputs and LSE, are NaN. */
  kNaN?: boolean;
}

// The FlashInfer grid in miniature (spec §12): odd lengths, partial last pages, page sizes 1/5/16,
// GQA 1/4/7/8, NHD/HND, each position encoding, window, soft cap, every dtype, split both ways.
const cases: Case[] = [
  // qScale 6 spreads the logits over tens of log2 units: the lazy running max moves many times.
  { name: 'mha page16 NHD f16, large logits, lazy rescale', kvLens: [1, 54, 97], pageSize: 16, numQoHeads: 4, numKvHeads: 4, headDim: 64, qScale: 6, lazyRescale: true },
  { name: 'workgroups of 256, gqa4 page5, unsplit', kvLens: [54, 97, 1, 300], pageSize: 5, numQoHeads: 8, numKvHeads: 2, headDim: 64, split: 'off', workgroupSize: 256 },
  { name: 'workgroups of 64, gqa8 HND', kvLens: [33, 7], pageSize: 16, numQoHeads: 8, numKvHeads: 1, headDim: 64, layout: 'HND', workgroupSize: 64 },
  { name: 'gqa4 page5 HND rope, 4 tokens a step, large logits, lazy rescale', kvLens: [54, 97, 5], pageSize: 5, numQoHeads: 8, numKvHeads: 2, headDim: 128, layout: 'HND', posEncodingMode: 'ROPE_LLAMA', tokensPerStep: 4, qScale: 6, lazyRescale: true },
  { name: 'gqa8 page1 alibi, empty request', kvLens: [33, 0, 17], pageSize: 1, numQoHeads: 8, numKvHeads: 1, headDim: 64, posEncodingMode: 'ALIBI' },
  { name: 'gqa7 pair form', kvLens: [20, 9], pageSize: 8, numQoHeads: 7, numKvHeads: 1, headDim: 64, form: 'pair' },
  { name: 'window 13', kvLens: [54, 97, 3], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, windowLeft: 13 },
  { name: 'soft cap bf16', kvLens: [97, 40], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, qDtype: 'bf16', kvDtype: 'bf16', logitsSoftCap: 30 },
  { name: 'fp8 e4m3 kv with scales', kvLens: [54, 97], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, kvDtype: 'fp8_e4m3', kScale: 0.5, vScale: 2, qScale: 1.5, tokensPerStep: 2 },
  { name: 'fp8 e4m3 kv split into chunks', kvLens: [54, 1, 97], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 64, kvDtype: 'fp8_e4m3', vScale: 0.5, split: 'force' },
  { name: 'fp8 e4m3 16-byte loads, rope', kvLens: [54, 97], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, kvDtype: 'fp8_e4m3', posEncodingMode: 'ROPE_LLAMA', kScale: 0.5, wideFp8Loads: true },
  { name: 'fp8 e5m2 16-byte loads, split', kvLens: [54, 1, 97], pageSize: 16, numQoHeads: 4, numKvHeads: 1, headDim: 64, kvDtype: 'fp8_e5m2', split: 'force', wideFp8Loads: true },
  { name: 'fp8 e4m3 NaN in V reaches the output', kvLens: [37, 20], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, kvDtype: 'fp8_e4m3', vNaN: true },
  // GPUs run GQA 2 with 16-bit KV at 8 tokens a step (lavapipe at 1): the reduce-scatter over 2 heads.
  { name: 'gqa2 bf16 page 5, 8 tokens a step', kvLens: [54, 97, 1], pageSize: 5, numQoHeads: 4, numKvHeads: 2, headDim: 64, qDtype: 'bf16', kvDtype: 'bf16', tokensPerStep: 8 },
  { name: 'fp8 e4m3 NaN in K makes its heads NaN, 4 tokens a step', kvLens: [37, 20], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, kvDtype: 'fp8_e4m3', kNaN: true, tokensPerStep: 4 },
  // 8 tokens a lane step: the GPU default for e5m2 (lazy rescale), partial last steps included.
  { name: 'fp8 e5m2 kv HND, 8 tokens a step', kvLens: [31, 64, 100], pageSize: 16, numQoHeads: 4, numKvHeads: 1, headDim: 64, kvDtype: 'fp8_e5m2', layout: 'HND', tokensPerStep: 8 },
  { name: 'f32 q/kv/o, head dim 256', kvLens: [17, 40], pageSize: 8, numQoHeads: 4, numKvHeads: 2, headDim: 256, qDtype: 'f32', kvDtype: 'f32' },
  { name: 'f16 in, f32 out', kvLens: [29], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, oDtype: 'f32' },
  { name: 'split forced, rope + sinks', kvLens: [200, 97, 1, 0], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, split: 'force', posEncodingMode: 'ROPE_LLAMA', sinks: true, tokensPerStep: 4 },
  { name: 'split forced, window', kvLens: [150, 60], pageSize: 5, numQoHeads: 4, numKvHeads: 4, headDim: 64, split: 'force', windowLeft: 100 },
  { name: 'split disabled, long', kvLens: [300], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, split: 'off' },
  { name: 'split auto (single long request)', kvLens: [700], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 64 },
  // A small split target: chunks of the target's size would be about 670 + 330 tokens; even, 500 + 500.
  { name: 'split auto into even chunks (target 3)', kvLens: [1000, 1000], pageSize: 16, numQoHeads: 4, numKvHeads: 1, headDim: 64, targetWorkgroups: 3 },
  { name: 'qLenPerReq 3 (causal multi-token)', kvLens: [10, 23], pageSize: 4, numQoHeads: 8, numKvHeads: 2, headDim: 64, qLenPerReq: 3 },
  { name: 'rope scale 2, theta 5e5', kvLens: [77, 30], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 64, posEncodingMode: 'ROPE_LLAMA', ropeScale: 2, ropeTheta: 5e5 },
  { name: 'seqLens override', kvLens: [40, 33], pageSize: 16, numQoHeads: 4, numKvHeads: 2, headDim: 64, seqLensOverride: [35, 20] },
  { name: 'head dim 512', kvLens: [12, 5], pageSize: 4, numQoHeads: 2, numKvHeads: 1, headDim: 512 },
];

// The tensor-core kernel's grid (f16, no RoPE, pages of 16k tokens; GPU hosts with subgroup
// matrices only: tensor-core-decode.test.ts checks its WGSL and its error on lavapipe).
const tensorCoreCases: Case[] = [
  { name: 'tc gqa8 odd lengths, empty request', kvLens: [1, 54, 97, 0, 16], pageSize: 16, numQoHeads: 16, numKvHeads: 2, headDim: 128 },
  { name: 'tc gqa4 HND split forced, sinks', kvLens: [200, 97, 1, 33], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, layout: 'HND', split: 'force', sinks: true },
  { name: 'tc gqa16 page 32, window 13', kvLens: [54, 97, 3], pageSize: 32, numQoHeads: 16, numKvHeads: 1, headDim: 64, windowLeft: 13 },
  { name: 'tc group 20 (two head groups), soft cap, f32 out', kvLens: [70, 31], pageSize: 16, numQoHeads: 20, numKvHeads: 1, headDim: 128, logitsSoftCap: 30, oDtype: 'f32' },
  { name: 'tc mha alibi, scales, pair form', kvLens: [45, 130], pageSize: 64, numQoHeads: 4, numKvHeads: 4, headDim: 256, posEncodingMode: 'ALIBI', qScale: 1.5, kScale: 0.5, vScale: 2, form: 'pair' },
  { name: 'tc qLenPerReq 2 (causal multi-token)', kvLens: [40, 33], pageSize: 16, numQoHeads: 8, numKvHeads: 1, headDim: 128, qLenPerReq: 2 },
  { name: 'tc long request split auto', kvLens: [3000], pageSize: 16, numQoHeads: 8, numKvHeads: 1, headDim: 128 },
  { name: 'tc caches as f16 arrays, split forced', kvLens: [1, 54, 97, 200], pageSize: 16, numQoHeads: 16, numKvHeads: 2, headDim: 128, split: 'force', f16Cache: true },
  { name: 'tc V loaded after the softmax, window, sinks', kvLens: [97, 1, 54], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, windowLeft: 30, sinks: true, lateV: true },
  { name: 'tc caches as f16 arrays, HND page 32', kvLens: [33, 70], pageSize: 32, numQoHeads: 8, numKvHeads: 2, headDim: 64, layout: 'HND', f16Cache: true },
];

// The staged tensor-core kernel (K/V through workgroup memory, fp8 widened there): any page size,
// f16 and fp8 KV, head dims 64/128; GPU hosts with subgroup matrices only.
const stagedCases: Case[] = [
  { name: 'staged gqa8 odd lengths, empty request', kvLens: [1, 54, 97, 0, 16], pageSize: 16, numQoHeads: 16, numKvHeads: 2, headDim: 128 },
  { name: 'staged gqa4 HND page 5, split forced, sinks', kvLens: [200, 97, 1, 33], pageSize: 5, numQoHeads: 8, numKvHeads: 2, headDim: 128, layout: 'HND', split: 'force', sinks: true },
  { name: 'staged gqa16 page 1, window 13', kvLens: [54, 97, 3], pageSize: 1, numQoHeads: 16, numKvHeads: 1, headDim: 64, windowLeft: 13 },
  { name: 'staged group 20 (two head groups), soft cap, f32 out', kvLens: [70, 31], pageSize: 16, numQoHeads: 20, numKvHeads: 1, headDim: 128, logitsSoftCap: 30, oDtype: 'f32' },
  { name: 'staged mha alibi, scales, pair form', kvLens: [45, 130], pageSize: 64, numQoHeads: 4, numKvHeads: 4, headDim: 64, posEncodingMode: 'ALIBI', qScale: 1.5, kScale: 0.5, vScale: 2, form: 'pair' },
  { name: 'staged qLenPerReq 2 (causal multi-token)', kvLens: [40, 33], pageSize: 16, numQoHeads: 8, numKvHeads: 1, headDim: 128, qLenPerReq: 2 },
  { name: 'staged long request split auto', kvLens: [3000, 700], pageSize: 16, numQoHeads: 8, numKvHeads: 1, headDim: 128 },
  { name: 'staged fp8 e4m3 gqa8, scales, large logits', kvLens: [54, 97, 1], pageSize: 16, numQoHeads: 16, numKvHeads: 2, headDim: 128, kvDtype: 'fp8_e4m3', qDtype: 'f16', kScale: 0.5, vScale: 2, qScale: 6 },
  { name: 'staged fp8 e4m3 NaN in V reaches the output', kvLens: [37, 20], pageSize: 16, numQoHeads: 8, numKvHeads: 2, headDim: 128, kvDtype: 'fp8_e4m3', qDtype: 'f16', vNaN: true },
  { name: 'staged fp8 e5m2 HND page 5, split forced', kvLens: [54, 1, 97], pageSize: 5, numQoHeads: 8, numKvHeads: 1, headDim: 64, kvDtype: 'fp8_e5m2', qDtype: 'f16', layout: 'HND', split: 'force' },
  { name: 'staged Q from workgroup memory, gqa8 window, sinks', kvLens: [130, 7, 64], pageSize: 16, numQoHeads: 16, numKvHeads: 2, headDim: 128, windowLeft: 40, sinks: true, qInSmem: true },
  { name: 'staged 4 subgroups (64-key blocks), split forced', kvLens: [130, 7, 64, 300], pageSize: 16, numQoHeads: 16, numKvHeads: 2, headDim: 128, split: 'force', stagedSubgroups: 4 },
];

// The tile kernel (devices without subgroups) skips the cases about subgroup-kernel knobs (wide
// fp8 loads, the e4m3 scale fold) and plan-level ones that are the same for both kernels.
const subgroupOnly = new Set([
  'gqa2 bf16 page 5, 8 tokens a step',
  // The tile kernel's atomic max turns a NaN logit into an LSE of -inf (its outputs are NaN).
  'fp8 e4m3 NaN in K makes its heads NaN, 4 tokens a step',
  'fp8 e4m3 16-byte loads, rope',
  'fp8 e5m2 16-byte loads, split',
  'fp8 e4m3 kv split into chunks',
  'split disabled, long',
  'split auto (single long request)',
  'rope scale 2, theta 5e5',
  'seqLens override',
  'workgroups of 64, gqa8 HND',
]);

const kernels = [
  ['subgroup', cases],
  ['tile', cases.filter((c) => !subgroupOnly.has(c.name))],
  ['tensor-core', tensorCoreCases],
  ['tensor-core-staged', stagedCases],
] as const;

describe.each(kernels)('BatchDecodeWithPagedKVCacheWrapper (%s kernel) vs the float64 reference', (kernel, list) => {
  it.each(list)('$name', async (c) => {
    if ((kernel === 'tensor-core' || kernel === 'tensor-core-staged') && subgroupMatrixF16Support(ctx) !== undefined) return;
    const seed = testSeed();
    const r = rng(seed);
    const layout = c.layout ?? 'NHD';
    const qDtype = c.qDtype ?? 'f16';
    const kvDtype = c.kvDtype ?? qDtype;
    const oDtype = c.oDtype ?? qDtype;
    const qLen = c.qLenPerReq ?? 1;
    const rows = c.kvLens.length * qLen;
    const f = makePagedFixture(r, c.kvLens, c.pageSize, c.numKvHeads, c.headDim, layout, kvDtype);
    if (c.vNaN) f.vCache[f.indices[f.indptr[0]] * c.pageSize * c.numKvHeads * c.headDim + 3] = Number.NaN;
    if (c.kNaN) f.kCache[f.indices[f.indptr[0]] * c.pageSize * c.numKvHeads * c.headDim + 5] = Number.NaN;
    const pageShape = layout === 'NHD' ? [c.pageSize, c.numKvHeads, c.headDim] : [c.numKvHeads, c.pageSize, c.headDim];
    const cache = uploadCache(ctx, f, c.form ?? 'one', pageShape, kvDtype);
    const qHost = exactRandn(r, rows * c.numQoHeads * c.headDim, qDtype);
    const q = ctx.tensor(qHost, [rows, c.numQoHeads, c.headDim], qDtype);
    const sinksHost = c.sinks ? Float32Array.from({ length: c.numQoHeads }, () => r() * 5) : undefined;

    const wrapper = new BatchDecodeWithPagedKVCacheWrapper(ctx, workspace, { kvLayout: layout });
    wrapper.plan({
      indptr: f.indptr,
      indices: f.indices,
      lastPageLen: f.lastPageLen,
      numQoHeads: c.numQoHeads,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      pageSize: c.pageSize,
      posEncodingMode: c.posEncodingMode,
      windowLeft: c.windowLeft,
      logitsSoftCap: c.logitsSoftCap,
      qDataType: qDtype,
      kvDataType: kvDtype,
      oDataType: oDtype,
      fixedSplitSize: c.split === 'force' ? 16 : undefined,
      disableSplitKv: c.split === 'off',
      qLenPerReq: qLen,
      ropeScale: c.ropeScale,
      ropeTheta: c.ropeTheta,
      seqLens: c.seqLensOverride,
      workgroupSize: c.workgroupSize,
      targetWorkgroups: c.targetWorkgroups,
      debug: { kernel, wideFp8Loads: c.wideFp8Loads, tensorCoreF16Cache: c.f16Cache, stagedQInSmem: c.qInSmem, stagedSubgroups: c.stagedSubgroups, tokensPerStep: c.tokensPerStep, lazyRescale: c.lazyRescale, ...(c.lateV ? { tensorCoreEarlyV: false } : {}) },
    });
    expect(wrapper.planInfo!.kernel).toBe(kernel);
    if (c.workgroupSize) expect(wrapper.planInfo!.workgroupSize).toBe(c.workgroupSize);
    if (c.split === 'force') expect(wrapper.planInfo!.numSlots).toBeGreaterThan(0);
    if (c.split === 'off') expect(wrapper.planInfo!.numSlots).toBe(0);
    if (c.targetWorkgroups) expect(wrapper.planInfo!.numSlots).toBeGreaterThan(0);
    const out = ctx.full([rows, c.numQoHeads, c.headDim], oDtype, Number.NaN);
    const lse = ctx.full([rows, c.numQoHeads], 'f32', Number.NaN);
    await ctx.checkErrors(() =>
      wrapper.run(q, cache, {
        out,
        lse,
        qScale: c.qScale,
        kScale: c.kScale,
        vScale: c.vScale,
        sinks: sinksHost ? ctx.tensor(sinksHost, [c.numQoHeads], 'f32') : undefined,
      }),
    );
    const want = expectedDecode({
      q: qHost,
      f,
      kvLens: c.seqLensOverride ?? c.kvLens,
      qLenPerReq: qLen,
      numQoHeads: c.numQoHeads,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      smScale: (1 / Math.sqrt(c.headDim)) * (c.qScale ?? 1) * (c.kScale ?? 1),
      posEncodingMode: c.posEncodingMode ?? 'NONE',
      windowLeft: c.windowLeft ?? -1,
      logitsSoftCap: c.logitsSoftCap ?? 0,
      vScale: c.vScale ?? 1,
      sinks: sinksHost,
      ropeScale: c.ropeScale,
      ropeTheta: c.ropeTheta,
    });
    if (c.vNaN) {
      // The reference reads the finite fixture: the NaN reaches element 3 of row 0's heads of kv head 0.
      const group = c.numQoHeads / c.numKvHeads;
      for (let h = 0; h < group; h++) want.o[h * c.headDim + 3] = Number.NaN;
    }
    if (c.kNaN) {
      // Likewise: token 0's logit is NaN for every head of kv head 0 in row 0 (FlashInfer's max
      // skips it, but its exp2 makes the sum and every output element NaN).
      const group = c.numQoHeads / c.numKvHeads;
      want.o.fill(Number.NaN, 0, group * c.headDim);
      want.lse.fill(Number.NaN, 0, group);
    }
    const gotO = await out.toArray();
    const gotLse = await lse.toArray();
    const ro = compareClose(gotO, want.o, tolerance(oDtype));
    const rl = compareClose(gotLse, want.lse, { rtol: 1e-3, atol: 1e-3 });
    expect(ro.ok, `seed ${seed}: o ${JSON.stringify(ro)}`).toBe(true);
    expect(rl.ok, `seed ${seed}: lse ${JSON.stringify(rl)}`).toBe(true);
    wrapper.destroy();
  });
});

describe('caches inside buffers larger than one binding', () => {
  it('binds only the cache range and rebases offsets', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const [hq, hkv, d, page] = [8, 2, 64, 16];
    const kvLens = [40, 17];
    const f = makePagedFixture(r, kvLens, page, hkv, d, 'NHD', 'f16');
    const maxBinding = ctx.limits.maxStorageBufferBindingSize;
    // A buffer one binding cannot cover, with the cache placed near its end.
    const big = ctx.empty([Math.ceil(maxBinding / 2) + (1 << 20)], 'f16');
    const perPage = page * hkv * d;
    const cacheElems = 2 * f.maxPages * perPage;
    const offset = Math.floor((big.numel - cacheElems - 4096) / 8) * 8; // rows on 16-byte boundaries
    const view = ctx.fromBuffer(big.buffer, [f.maxPages, 2, page, hkv, d], 'f16', { offset });
    const one = new Float32Array(cacheElems);
    for (let p = 0; p < f.maxPages; p++) {
      one.set(f.kCache.subarray(p * perPage, (p + 1) * perPage), 2 * p * perPage);
      one.set(f.vCache.subarray(p * perPage, (p + 1) * perPage), (2 * p + 1) * perPage);
    }
    view.write(one);
    expect(big.buffer.size).toBeGreaterThan(maxBinding);
    const qHost = exactRandn(r, kvLens.length * hq * d, 'f16');
    const wrapper = new BatchDecodeWithPagedKVCacheWrapper(ctx, workspace);
    wrapper.plan({ indptr: f.indptr, indices: f.indices, lastPageLen: f.lastPageLen, numQoHeads: hq, numKvHeads: hkv, headDim: d, pageSize: page });
    const out = ctx.full([kvLens.length, hq, d], 'f16', Number.NaN);
    await ctx.checkErrors(() => wrapper.run(ctx.tensor(qHost, [kvLens.length, hq, d], 'f16'), view, { out }));
    const want = expectedDecode({ q: qHost, f, kvLens, qLenPerReq: 1, numQoHeads: hq, numKvHeads: hkv, headDim: d, smScale: 1 / Math.sqrt(d), posEncodingMode: 'NONE', windowLeft: -1, logitsSoftCap: 0, vScale: 1 });
    const ro = compareClose(await out.toArray(), want.o, tolerance('f16'));
    expect(ro.ok, `seed ${seed}: ${JSON.stringify(ro)}`).toBe(true);
    wrapper.destroy();
    big.destroy();
  });
});

describe('run() with a different cache each call', () => {
  it('reads the cache it is given, not the one of the previous run (run() keeps the last resolved cache)', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const [hq, hkv, d, page] = [8, 2, 64, 16];
    const kvLens = [40, 17];
    const f = makePagedFixture(r, kvLens, page, hkv, d, 'NHD', 'f16');
    const pageShape = [page, hkv, d];
    const cacheA = uploadCache(ctx, f, 'one', pageShape, 'f16');
    // V doubled (exact in f16): o doubles, lse stays.
    const cacheB = uploadCache(ctx, { ...f, vCache: f.vCache.map((x) => 2 * x) }, 'one', pageShape, 'f16');
    const q = ctx.tensor(exactRandn(r, kvLens.length * hq * d, 'f16'), [kvLens.length, hq, d], 'f16');
    const wrapper = new BatchDecodeWithPagedKVCacheWrapper(ctx, workspace);
    // f32 output: doubling is exact there (in f16 a subnormal output may round differently).
    wrapper.plan({ indptr: f.indptr, indices: f.indices, lastPageLen: f.lastPageLen, numQoHeads: hq, numKvHeads: hkv, headDim: d, pageSize: page, qDataType: 'f16', oDataType: 'f32' });
    const runOn = async (cache: typeof cacheA) => {
      const out = ctx.full([kvLens.length, hq, d], 'f32', Number.NaN);
      await ctx.checkErrors(() => wrapper.run(q, cache, { out }));
      return (await out.toArray()) as Float32Array;
    };
    const a1 = await runOn(cacheA);
    const b = await runOn(cacheB);
    const a2 = await runOn(cacheA);
    const doubled = compareClose(b, Float64Array.from(a1, (x) => 2 * x), { rtol: 0, atol: 0 });
    const same = compareClose(a2, Float64Array.from(a1), { rtol: 0, atol: 0 });
    expect(JSON.stringify({ seed, doubled: doubled.ok ? 'ok' : doubled, same: same.ok ? 'ok' : same })).toBe(JSON.stringify({ seed, doubled: 'ok', same: 'ok' }));
    wrapper.destroy();
  });
});

describe('split-KV schedule of the batch decode plan', () => {
  // Plans only (no kernel runs): how many partial slots, i.e. chunks, each request gets.
  const slotsPerRow = (batch: number, kvLen: number, targetWorkgroups?: number) => {
    const pageSize = 16;
    const pages = kvLen / pageSize;
    const w = new BatchDecodeWithPagedKVCacheWrapper(ctx, workspace);
    w.plan({
      indptr: Array.from({ length: batch + 1 }, (_, b) => b * pages),
      indices: Array.from({ length: batch * pages }, (_, i) => i),
      lastPageLen: Array.from({ length: batch }, () => pageSize),
      numQoHeads: 32,
      numKvHeads: 8,
      headDim: 128,
      pageSize,
      targetWorkgroups,
    });
    const slots = w.planInfo!.numSlots / batch;
    w.destroy();
    return slots;
  };

  it('aims for twice the target where chunks stay long, and evens chunks out', () => {
    // B=8, kv 32768: the target alone gives 8 or 9 chunks a request; twice it, about 17 of ~1950.
    const doubled = slotsPerRow(8, 32768);
    const single = slotsPerRow(8, 32768, DEFAULT_TARGET_WORKGROUPS);
    expect(doubled).toBeGreaterThan(single);
    expect(32768 / doubled).toBeGreaterThanOrEqual(1536 - 64);
    // B=16, kv 4096: twice the target would cut 512-token chunks; the target's own plan stays.
    expect(slotsPerRow(16, 4096)).toBe(slotsPerRow(16, 4096, DEFAULT_TARGET_WORKGROUPS));
    // B=64, kv 4096: two even chunks of 2048 (the target's size alone was 3984 + 112).
    expect(slotsPerRow(64, 4096)).toBe(2);
  });
});

describe('tokens a lane step of the subgroup decode kernel (GPU hosts)', () => {
  const stepOf = (numQoHeads: number, kvDataType: 'f16' | 'bf16' | 'fp8_e4m3' | 'fp8_e5m2', headDim = 128) => {
    const w = new BatchDecodeWithPagedKVCacheWrapper(ctx, workspace);
    w.plan({ indptr: [0, 4], indices: [0, 1, 2, 3], lastPageLen: [16], numQoHeads, numKvHeads: 8, headDim, pageSize: 16, kvDataType });
    const info = w.planInfo!;
    w.destroy();
    return info.kernel === 'subgroup' ? info.tokensPerStep : undefined;
  };

  it('takes 8 tokens for GQA 2 with 16-bit KV, 4 for other groups', () => {
    // A CPU adapter always takes 1 (compile time); devices without subgroups run the tile kernel.
    if (ctx.isSoftwareAdapter || !ctx.hasSubgroups) return;
    expect([stepOf(16, 'f16'), stepOf(16, 'bf16'), stepOf(16, 'f16', 64)]).toEqual([8, 8, 8]);
    expect([stepOf(8, 'f16'), stepOf(24, 'f16'), stepOf(32, 'f16'), stepOf(32, 'f16', 64)]).toEqual([4, 4, 4, 4]);
    // fp8 keeps its own (lazy rescale: e4m3 4, e5m2 8).
    expect([stepOf(16, 'fp8_e4m3'), stepOf(16, 'fp8_e5m2')]).toEqual([4, 8]);
  });
});
