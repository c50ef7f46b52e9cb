/** Decode suite: batch and single decode on the usual serving shapes. */
import { type FloatDType, type GpuContext, median, type Tensor, timeGpu } from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper, singleDecodeWithKVCache } from '@webinfer/decode';
import { attentionRef, compareClose } from '@webinfer/reference';
import { fillValue, gpuFill } from '../fill';
import { type CaseResult, type SuiteOptions, WARMUP_MS } from '../types';

interface DecodeCase {
  name: string;
  kind: 'batch' | 'single';
  batch: number;
  kvLen: number;
  numQoHeads: number;
  numKvHeads: number;
  headDim: number;
  pageSize: number;
  kvDtype: FloatDType;
}

const c = (
  kind: DecodeCase['kind'],
  batch: number,
  kvLen: number,
  numQoHeads: number,
  numKvHeads: number,
  pageSize: number,
  kvDtype: FloatDType = 'f16',
  headDim = 128,
): DecodeCase => ({
  name: `${kind} B=${batch} kv=${kvLen} H=${numQoHeads}/${numKvHeads} D=${headDim} page=${pageSize} ${kvDtype}`,
  kind,
  batch,
  kvLen,
  numQoHeads,
  numKvHeads,
  headDim,
  pageSize,
  kvDtype,
});

export function decodeCases(quick: boolean): DecodeCase[] {
  if (quick) {
    return [c('batch', 4, 256, 8, 2, 16), c('batch', 4, 256, 8, 2, 16, 'fp8_e4m3'), c('single', 1, 512, 8, 8, 512)];
  }
  return [
    c('batch', 64, 4096, 32, 8, 16),
    c('batch', 64, 4096, 32, 8, 16, 'fp8_e4m3'),
    c('batch', 64, 4096, 32, 8, 16, 'fp8_e5m2'),
    c('batch', 64, 4096, 16, 8, 16),
    c('batch', 64, 4096, 32, 8, 1),
    c('batch', 64, 4096, 32, 8, 64),
    c('batch', 64, 4096, 64, 8, 16),
    c('batch', 1, 4096, 32, 8, 16),
    c('batch', 16, 4096, 32, 8, 16),
    c('batch', 128, 2048, 32, 8, 16),
    c('batch', 256, 512, 32, 8, 16),
    c('batch', 8, 32768, 32, 8, 16),
    c('single', 1, 32768, 32, 32, 32768),
    c('single', 1, 4096, 32, 32, 4096),
  ];
}

const BYTES: Record<FloatDType, number> = { f32: 4, f16: 2, bf16: 2, fp8_e4m3: 1, fp8_e5m2: 1 };

/** Reference check of a few rows, with the cache values recomputed from the fill hash. */
function verifyRows(
  k: DecodeCase,
  rows: number[],
  o: Float32Array,
  lse: Float32Array,
  pageOf: (b: number, j: number) => number,
  seeds: { q: number; cache: number },
): string | undefined {
  const { numQoHeads: hq, numKvHeads: hkv, headDim: d, pageSize: ps, kvLen } = k;
  for (const b of rows) {
    const q = Float64Array.from({ length: hq * d }, (_, i) => fillValue(seeds.q, b * hq * d + i, 'f16'));
    const kk = new Float64Array(kvLen * hkv * d);
    const vv = new Float64Array(kvLen * hkv * d);
    for (let j = 0; j < kvLen; j++) {
      const page = pageOf(b, j);
      for (let h = 0; h < hkv; h++) {
        for (let e = 0; e < d; e++) {
          // one-tensor NHD cache: [page, 2, slot, head, dim]
          const kIdx = (((page * 2 + 0) * ps + (j % ps)) * hkv + h) * d + e;
          const vIdx = (((page * 2 + 1) * ps + (j % ps)) * hkv + h) * d + e;
          kk[(j * hkv + h) * d + e] = fillValue(seeds.cache, kIdx, k.kvDtype);
          vv[(j * hkv + h) * d + e] = fillValue(seeds.cache, vIdx, k.kvDtype);
        }
      }
    }
    const want = attentionRef({ q, k: kk, v: vv, qoLen: 1, kvLen, numQoHeads: hq, numKvHeads: hkv, headDimQk: d });
    const ro = compareClose(o.subarray(b * hq * d, (b + 1) * hq * d), want.o, { rtol: 2e-3, atol: 2e-3 });
    const rl = compareClose(lse.subarray(b * hq, (b + 1) * hq), want.lse, { rtol: 1e-3, atol: 1e-3 });
    if (!ro.ok || !rl.ok) return `row ${b}: o ${JSON.stringify(ro.first)} lse ${JSON.stringify(rl.first)}`;
  }
  return undefined;
}

export async function runDecodeSuite(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  const cases = decodeCases(opts.quick).filter((k) => !opts.filter || k.name.includes(opts.filter));
  // One KV arena for every case: allocating and freeing a gigabyte per case left later cases
  // running up to 2x slower on the H100 (placement/fragmentation), so cases share one buffer.
  const arenaBytes = Math.max(16, ...cases.map((k) => cacheBytes(k)));
  const arena = ctx.device.createBuffer({ label: 'bench/kv-arena', size: Math.ceil(arenaBytes / 16) * 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  try {
    for (const [i, k] of cases.entries()) {
      opts.progress(`decode ${i + 1}/${cases.length}: ${k.name}`);
      results.push(await runCase(ctx, k, opts, undefined, arena));
    }
  } finally {
    arena.destroy();
  }
  return results;
}

/** Bytes of the one-tensor paged cache of a case. */
function cacheBytes(k: DecodeCase): number {
  return k.batch * Math.ceil(k.kvLen / k.pageSize) * 2 * k.pageSize * k.numKvHeads * k.headDim * BYTES[k.kvDtype];
}

async function runCase(
  ctx: GpuContext,
  k: DecodeCase,
  opts: SuiteOptions,
  debug?: Record<string, unknown>,
  arena?: GPUBuffer,
): Promise<CaseResult> {
  const { batch, kvLen, numQoHeads: hq, numKvHeads: hkv, headDim: d, pageSize: ps } = k;
  const pagesPerReq = Math.ceil(kvLen / ps);
  const numPages = batch * pagesPerReq;
  const seeds = { q: 11, cache: 12 };
  // Pages of all requests in a scattered (but fixed) order, as an allocator would leave them.
  const perm = Int32Array.from({ length: numPages }, (_, i) => i);
  for (let i = numPages - 1; i > 0; i--) {
    const j = (Math.imul(i, 2654435761) >>> 0) % (i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const indptr = Int32Array.from({ length: batch + 1 }, (_, b) => b * pagesPerReq);
  const lastPageLen = new Int32Array(batch).fill(kvLen - (pagesPerReq - 1) * ps);
  const cacheShape = [numPages, 2, ps, hkv, d];
  const cache = arena ? ctx.fromBuffer(arena, cacheShape, k.kvDtype) : ctx.empty(cacheShape, k.kvDtype, 'bench/kv-cache');
  gpuFill(ctx, cache, seeds.cache);
  const q = ctx.empty([batch, hq, d], 'f16', 'bench/q');
  gpuFill(ctx, q, seeds.q);
  const out = ctx.empty([batch, hq, d], 'f16');
  const lse = ctx.empty([batch, hq], 'f32');
  const workspace = ctx.empty([128 << 20], 'u8');
  const tensors: Tensor[] = [...(arena ? [] : [cache]), q, out, lse, workspace];
  try {
    let encodeRun: (enc: GPUCommandEncoder) => void;
    let planCpuUs = Number.NaN;
    let runCpuUs = Number.NaN;
    let outSingle: Tensor | undefined;
    if (k.kind === 'batch') {
      const wrapper = new BatchDecodeWithPagedKVCacheWrapper(ctx, workspace);
      const { targetWorkgroups, ...planDebug } = (debug ?? {}) as { targetWorkgroups?: number };
      const planArgs = { indptr, indices: perm, lastPageLen, numQoHeads: hq, numKvHeads: hkv, headDim: d, pageSize: ps, kvDataType: k.kvDtype, targetWorkgroups, debug: planDebug };
      // CPU cost after the JIT has warmed up, as in a serving loop.
      for (let i = 0; i < (opts.quick ? 1 : 300); i++) wrapper.plan(planArgs);
      const planTimes: number[] = [];
      for (let i = 0; i < (opts.quick ? 3 : 200); i++) {
        const t0 = performance.now();
        wrapper.plan(planArgs);
        planTimes.push(performance.now() - t0);
      }
      planCpuUs = median(planTimes) * 1e3;
      opts.progress(`  plan ${JSON.stringify(wrapper.planInfo)}`);
      const runTimes: number[] = [];
      for (let i = 0; i < (opts.quick ? 3 : 400); i++) {
        const enc = ctx.device.createCommandEncoder();
        const t0 = performance.now();
        wrapper.run(q, cache, { out, lse, encoder: enc });
        runTimes.push(performance.now() - t0);
        ctx.submit([enc.finish()]);
        // Keep the GPU queue short (untimed): a long backlog makes Dawn's uniform writes wait,
        // which is not the encoding cost being measured.
        if (i % 8 === 7) await ctx.synchronize();
      }
      runCpuUs = median(runTimes.slice(opts.quick ? 0 : 200)) * 1e3;
      encodeRun = (enc) => wrapper.run(q, cache, { out, lse, encoder: enc });
    } else {
      // singleDecodeWithKVCache is the batch kernel over one page holding every token: time that
      // kernel with the plan made once (as an engine reuses it per layer), so per-call planning on
      // the CPU does not leave the GPU idle between timed runs and drop its clocks.
      const k3 = cache.select(1, 0).reshape([numPages * ps, hkv, d]);
      const v3c = ctx.fromBuffer(cache.buffer, [kvLen, hkv, d], k.kvDtype, { offset: cache.select(1, 1).offset });
      const q2 = q.reshape([hq, d]);
      outSingle = out.reshape([hq, d]);
      const asPage = (t: Tensor) => ctx.fromBuffer(t.buffer, [1, kvLen, hkv, d], t.dtype, { offset: t.offset, strides: [t.span(), ...t.strides] });
      const wrapper = new BatchDecodeWithPagedKVCacheWrapper(ctx, workspace);
      const { fixedSplitSize, perCallApi, ...dbg } = (debug ?? {}) as { fixedSplitSize?: number; perCallApi?: boolean };
      wrapper.plan({ indptr: [0, 1], indices: [0], lastPageLen: [kvLen], numQoHeads: hq, numKvHeads: hkv, headDim: d, pageSize: kvLen, kvDataType: k.kvDtype, fixedSplitSize, debug: dbg });
      const pageCache = { k: asPage(k3), v: asPage(v3c) };
      encodeRun = perCallApi
        ? (enc) => {
            singleDecodeWithKVCache(q2, k3, v3c, { out: outSingle, encoder: enc });
          }
        : (enc) => {
            wrapper.run(q, pageCache, { out, encoder: enc });
          };
      // The public entry point must give the same result (checked under --verify below).
      void q2;
    }
    await ctx.synchronize();
    const kvBytes = batch * kvLen * hkv * d * BYTES[k.kvDtype] * 2;
    const bytes = kvBytes + 2 * batch * hq * d * 2;
    // Working sets far beyond the H100's 50 MB L2 run 4 times per sample, back to back, so the GPU
    // stays at full clock between samples; smaller ones run once (repeats would hit in L2).
    const repeat = !opts.quick && bytes >= 256 << 20 ? 4 : 1;
    const timing = await timeGpu(ctx, encodeRun, { warmup: opts.quick ? 2 : 10, warmupMs: opts.quick ? 0 : WARMUP_MS, iterations: opts.quick ? 5 : 50, repeat });
    const ms = median(timing.samples);
    const flops = batch * kvLen * hq * d * 4;
    let verified: string | undefined;
    if (opts.verify) {
      let lseHost: Float32Array;
      if (k.kind === 'batch') {
        lseHost = (await lse.toArray()) as Float32Array;
      } else {
        const [, l] = singleDecodeWithKVCache(q.reshape([hq, d]), cache.select(1, 0).reshape([numPages * ps, hkv, d]),
          ctx.fromBuffer(cache.buffer, [kvLen, hkv, d], k.kvDtype, { offset: cache.select(1, 1).offset }), { out: outSingle, returnLse: true });
        lseHost = (await l.toArray()) as Float32Array;
      }
      const oHost = (await out.toArray()) as Float32Array;
      const rows = [...new Set([0, batch >> 1, batch - 1])];
      const pageOf = (b: number, j: number) => perm[indptr[b] + Math.floor(j / ps)];
      const err = verifyRows(k, rows, oHost, lseHost, pageOf, seeds);
      verified = err ? `FAILED ${err}` : `ok (${rows.length} rows)`;
    }
    const sorted = [...timing.samples].sort((a, b) => a - b);
    return {
      suite: 'decode',
      name: k.name,
      timeMs: ms,
      p10Ms: sorted[Math.floor(sorted.length * 0.1)],
      p90Ms: sorted[Math.floor(sorted.length * 0.9)],
      gbs: bytes / (ms * 1e-3) / 1e9,
      tflops: flops / (ms * 1e-3) / 1e12,
      bytes,
      flops,
      planCpuUs,
      runCpuUs,
      timing: timing.source,
      verified,
      shape: { batch, kvLen, numQoHeads: hq, numKvHeads: hkv, headDim: d, kvDtype: k.kvDtype },
    };
  } finally {
    for (const t of tensors) t.destroy();
  }
}

/** Kernel-shape and phase-cost experiments on one case (bench --profile decode). */
export async function profileDecode(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  const single = c('single', 1, 32768, 32, 32, 32768);
  const f16 = c('batch', 64, 4096, 32, 8, 16);
  const fp8 = c('batch', 64, 4096, 32, 8, 16, 'fp8_e4m3');
  // WEBINFER_BENCH_FP8=1: fp8 e4m3 against f16 at the batch shape, with kernel shapes varied.
  const tc = (k: DecodeCase): [DecodeCase, string, Record<string, unknown>][] => [
    [k, 'subgroup kernel', {}],
    [k, 'tensor-core kernel', { kernel: 'tensor-core' }],
    [k, 'tensor-core kernel, caches as array<f16>', { kernel: 'tensor-core', tensorCoreF16Cache: true }],
  ];
  const scatter = (k: DecodeCase, extra: Record<string, unknown> = {}, label = ''): [DecodeCase, string, Record<string, unknown>][] => [
    [k, `reduce-scatter softmax${label}`, extra],
    [k, `butterfly${label}`, { ...extra, scatterSoftmax: false }],
  ];
  const lazy = (k: DecodeCase, extra: Record<string, unknown> = {}, label = ''): [DecodeCase, string, Record<string, unknown>][] => [
    [k, `lazy rescale${label}`, extra],
    [k, `rescale every step${label}`, { ...extra, lazyRescale: false }],
  ];
  // WEBINFER_BENCH_LAZY=1: the subgroup kernel's lazy rescale against rescaling every step.
  // WEBINFER_BENCH_SCATTER=1: the subgroup kernel's reduce-scatter softmax against the butterfly.
  // WEBINFER_BENCH_DECODE_TC=1: the tensor-core kernel against the default one.
  const sweep = (k: DecodeCase, us = [2, 4, 8]): [DecodeCase, string, Record<string, unknown>][] =>
    us.map((u): [DecodeCase, string, Record<string, unknown>] => [k, `U=${u}`, { tokensPerStep: u }]);
  // WEBINFER_BENCH_U_SWEEP=1: tokens per lane step with the reduce-scatter softmax.
  const gqa8 = c('batch', 128, 2048, 64, 8, 16);
  const e5m2 = c('batch', 64, 4096, 32, 8, 16, 'fp8_e5m2');
  const runs: [DecodeCase, string, Record<string, unknown>][] = process.env.WEBINFER_BENCH_LAZY
    ? [
        ...lazy(f16),
        ...lazy(fp8, { tokensPerStep: 2 }, ', U=2'),
        ...lazy(fp8, { tokensPerStep: 4 }, ', U=4'),
        ...lazy(e5m2),
        ...lazy(gqa8),
        ...lazy(gqa8, { tokensPerStep: 8 }, ', U=8'),
        ...lazy(c('batch', 64, 4096, 64, 8, 16)),
        ...lazy(single),
        ...lazy(c('batch', 8, 32768, 32, 8, 16)),
      ]
    : process.env.WEBINFER_BENCH_U_SWEEP
    ? [
        ...sweep(f16),
        ...sweep(fp8),
        ...sweep(c('batch', 64, 4096, 32, 8, 16, 'fp8_e5m2')),
        ...sweep(c('batch', 128, 2048, 64, 8, 16)),
        ...sweep(c('batch', 64, 4096, 64, 8, 16)),
        ...sweep(c('batch', 8, 32768, 32, 8, 16)),
        ...sweep(c('batch', 16, 4096, 32, 8, 16)),
        [c('batch', 128, 2048, 64, 8, 16), '8 heads a workgroup, U=4', { headsPerWorkgroup: 8, tokensPerStep: 4 }],
        [c('batch', 128, 2048, 64, 8, 16), '8 heads a workgroup, U=2', { headsPerWorkgroup: 8, tokensPerStep: 2 }],
      ]
    : process.env.WEBINFER_BENCH_SCATTER
    ? [
        ...scatter(f16),
        ...scatter(fp8),
        ...scatter(c('batch', 64, 4096, 32, 8, 16, 'fp8_e5m2')),
        ...scatter(c('batch', 128, 2048, 64, 8, 16)),
        ...scatter(c('batch', 128, 2048, 64, 8, 16), { headsPerWorkgroup: 8 }, ', 8 heads a workgroup'),
        ...scatter(c('batch', 64, 4096, 32, 8, 16), { tokensPerStep: 4 }, ', U=4'),
        ...scatter(fp8, { tokensPerStep: 4 }, ', U=4'),
      ]
    : process.env.WEBINFER_BENCH_DECODE_TC
    ? [...tc(f16), ...tc(c('batch', 128, 2048, 64, 8, 16)), ...tc(c('batch', 8, 32768, 32, 8, 16))]
    : process.env.WEBINFER_BENCH_STAGED
    ? // Session 9: the staged tensor-core kernel (K/V through workgroup memory) against the others.
      [gqa8, f16].flatMap((k): [DecodeCase, string, Record<string, unknown>][] => [
        [k, 'default', {}],
        ...(k.kvDtype === 'f16' ? [[k, 'tensor-core', { kernel: 'tensor-core' }] as [DecodeCase, string, Record<string, unknown>]] : []),
        [k, 'staged tensor-core', { kernel: 'tensor-core-staged' }],
        [k, 'staged tensor-core, target 528 (one chunk a request at GQA 8)', { kernel: 'tensor-core-staged', targetWorkgroups: 528 }],
        [k, 'staged tensor-core, 4 subgroups', { kernel: 'tensor-core-staged', stagedSubgroups: 4 }],
      ])
    : process.env.WEBINFER_BENCH_STAGED_COST
    ? // Session 10: what each phase of the staged tensor-core kernel costs, fp8 against f16.
      [fp8, e5m2, f16].flatMap((k): [DecodeCase, string, Record<string, unknown>][] => [
        [k, 'default', {}],
        [k, 'staged', { kernel: 'tensor-core-staged' }],
        ...(['widen', 'fetch', 'qk', 'pv'] as const)
          .filter((skip) => skip !== 'widen' || k.kvDtype !== 'f16')
          .map((skip): [DecodeCase, string, Record<string, unknown>] => [k, `staged without ${skip}`, { kernel: 'tensor-core-staged', stagedProfileSkip: skip }]),
        [k, 'staged, target 2112', { kernel: 'tensor-core-staged', targetWorkgroups: 2112 }],
      ])
    : process.env.WEBINFER_BENCH_COMPUTE_FLOOR
    ? // Session 10: each kernel's time with its K/V reads hitting cache (every token reads the
      // chunk's first row; results wrong) against the real run: what the arithmetic alone costs.
      [f16, fp8, e5m2].flatMap((k): [DecodeCase, string, Record<string, unknown>][] => [
        [k, 'default', {}],
        [k, 'default, loads from cache', { subgroupProfileSkip: 'loads' }],
        [k, 'staged tensor-core', { kernel: 'tensor-core-staged' }],
        [k, 'staged tensor-core, without the next block fetch', { kernel: 'tensor-core-staged', stagedProfileSkip: 'fetch' }],
      ])
    : process.env.WEBINFER_BENCH_E5M2
    ? // Session 10: e5m2 (the cheapest fp8 widening) with more bytes in flight a lane.
      ([
        [f16, 'f16 default', {}],
        [e5m2, 'default (U=8)', {}],
        [e5m2, 'U=4', { tokensPerStep: 4 }],
        [e5m2, 'U=16', { tokensPerStep: 16 }],
        [e5m2, '16-byte loads, U=2', { wideFp8Loads: true, tokensPerStep: 2 }],
        [e5m2, '16-byte loads, U=4', { wideFp8Loads: true, tokensPerStep: 4 }],
        [e5m2, '16-byte loads, 2 heads, U=4', { wideFp8Loads: true, headsPerWorkgroup: 2, tokensPerStep: 4 }],
        [e5m2, '16-byte loads, 2 heads, U=8', { wideFp8Loads: true, headsPerWorkgroup: 2, tokensPerStep: 8 }],
        [e5m2, 'workgroups of 64', { workgroupSize: 64 }],
        [e5m2, 'workgroups of 256', { workgroupSize: 256 }],
        [e5m2, 'split target 1056', { targetWorkgroups: 1056 }],
        [e5m2, 'split target 2112, workgroups of 64', { targetWorkgroups: 2112, workgroupSize: 64 }],
        [e5m2, 'every-step rescale, U=4', { lazyRescale: false, tokensPerStep: 4 }],
        [fp8, 'e4m3 default', {}],
        [fp8, 'e4m3 U=8', { tokensPerStep: 8 }],
        [fp8, 'e4m3 16-byte loads, U=2', { wideFp8Loads: true, tokensPerStep: 2 }],
      ] as [DecodeCase, string, Record<string, unknown>][])
    : process.env.WEBINFER_BENCH_FP8_SHAPES
    ? // Session 10: fp8 against f16 where each K/V byte serves fewer query heads (less arithmetic a byte).
      [
        c('single', 1, 32768, 32, 32, 32768),
        c('single', 1, 32768, 32, 32, 32768, 'fp8_e4m3'),
        c('single', 1, 32768, 32, 32, 32768, 'fp8_e5m2'),
        c('batch', 16, 4096, 32, 32, 16),
        c('batch', 16, 4096, 32, 32, 16, 'fp8_e4m3'),
        c('batch', 16, 4096, 32, 32, 16, 'fp8_e5m2'),
        c('batch', 64, 4096, 16, 8, 16),
        c('batch', 64, 4096, 16, 8, 16, 'fp8_e4m3'),
        f16,
        fp8,
        e5m2,
      ].map((k): [DecodeCase, string, Record<string, unknown>] => [k, 'default', {}])
    : process.env.WEBINFER_BENCH_GQA2
    ? // Session 10: GQA 2 (H 16/8) read the same KV as GQA 4 17% slower at 4 tokens a lane step;
      // 8 tokens a step (and other shapes) against 4 where the group is small.
      [
        c('batch', 64, 4096, 8, 8, 16),
        c('batch', 64, 4096, 16, 8, 16),
        c('batch', 64, 4096, 24, 8, 16),
        f16,
        c('batch', 64, 4096, 16, 8, 16, 'bf16'),
        c('batch', 64, 4096, 16, 8, 16, 'fp8_e4m3'),
        c('batch', 64, 4096, 16, 8, 16, 'f16', 64),
        c('batch', 64, 4096, 32, 8, 16, 'f16', 64),
        c('batch', 8, 32768, 16, 8, 16),
        c('batch', 8, 32768, 32, 8, 16),
        c('batch', 16, 4096, 16, 8, 16),
        single,
        c('batch', 128, 2048, 16, 8, 16),
        c('batch', 64, 4096, 16, 8, 1),
      ].flatMap((k): [DecodeCase, string, Record<string, unknown>][] => [
        [k, 'default', {}],
        [k, 'U=4', { tokensPerStep: 4 }],
        [k, 'U=8', { tokensPerStep: 8 }],
      ])
    : process.env.WEBINFER_BENCH_GQA8
    ? // Session 10: GQA 8 (two workgroups a KV head, 4 heads each) and GQA 6/16 with kernel shapes varied.
      [c('batch', 64, 4096, 64, 8, 16), c('batch', 128, 2048, 64, 8, 16), c('batch', 64, 4096, 48, 4, 16), c('batch', 32, 4096, 64, 4, 16)].flatMap(
        (k): [DecodeCase, string, Record<string, unknown>][] => [
          [k, 'default', {}],
          [k, 'U=2', { tokensPerStep: 2 }],
          [k, 'U=8', { tokensPerStep: 8 }],
          [k, '2 heads a workgroup, U=8', { headsPerWorkgroup: 2, tokensPerStep: 8 }],
          [k, '2 heads a workgroup, U=4', { headsPerWorkgroup: 2, tokensPerStep: 4 }],
          [k, 'workgroups of 256', { workgroupSize: 256 }],
          [k, 'workgroups of 64', { workgroupSize: 64 }],
          [k, 'lazy rescale', { lazyRescale: true }],
        ],
      )
    : process.env.WEBINFER_BENCH_FP8_SPLIT
    ? // Session 9: the default split (twice the target where chunks stay >= 1024 tokens, balanced
      // chunks) against the target alone, per KV dtype and shape.
      [
        c('batch', 64, 4096, 32, 8, 16),
        fp8,
        e5m2,
        c('batch', 8, 32768, 32, 8, 16, 'fp8_e4m3'),
        c('batch', 16, 4096, 32, 8, 16, 'fp8_e4m3'),
        c('batch', 128, 2048, 64, 8, 16, 'fp8_e4m3'),
        c('batch', 256, 512, 32, 8, 16, 'fp8_e4m3'),
        c('batch', 128, 2048, 32, 8, 16, 'fp8_e4m3'),
        c('batch', 16, 4096, 32, 8, 16),
        c('batch', 8, 32768, 32, 8, 16),
        single,
      ].flatMap((k) => [[k, 'default', {}] as [DecodeCase, string, Record<string, unknown>], ...[528, 1056].map((t): [DecodeCase, string, Record<string, unknown>] => [k, `split target ${t}`, { targetWorkgroups: t }])])
    : process.env.WEBINFER_BENCH_FP8
    ? [
        [f16, 'f16 default', {}],
        [fp8, 'default (lazy rescale, U=4)', {}],
        [fp8, 'U=2', { tokensPerStep: 2 }],
        [fp8, 'U=8', { tokensPerStep: 8 }],
        [fp8, '2 heads a workgroup', { headsPerWorkgroup: 2 }],
        [fp8, 'workgroups of 256', { workgroupSize: 256 }],
        [fp8, 'workgroups of 64', { workgroupSize: 64 }],
        [fp8, '16-byte loads, 4 heads, U=2', { wideFp8Loads: true, headsPerWorkgroup: 4, tokensPerStep: 2 }],
        [fp8, '16-byte loads, 4 heads, U=4', { wideFp8Loads: true, headsPerWorkgroup: 4, tokensPerStep: 4 }],
        [fp8, '16-byte loads, 2 heads, U=4', { wideFp8Loads: true, headsPerWorkgroup: 2, tokensPerStep: 4 }],
        [fp8, 'butterfly', { scatterSoftmax: false }],
        [e5m2, 'e5m2 default', {}],
        [e5m2, 'e5m2 lazy, U=4', { lazyRescale: true }],
        [e5m2, 'e5m2 lazy, U=8', { lazyRescale: true, tokensPerStep: 8 }],
        // Session 9: more (split) workgroups than the default 528, and GQA 8 (xqa's shape) likewise.
        [fp8, 'split target 1056', { targetWorkgroups: 1056 }],
        [fp8, 'split target 2112', { targetWorkgroups: 2112 }],
        [fp8, 'workgroups of 64, split target 2112', { workgroupSize: 64, targetWorkgroups: 2112 }],
        [gqa8, 'GQA 8 default', {}],
        [gqa8, 'GQA 8 split target 4096', { targetWorkgroups: 4096 }],
        [gqa8, 'GQA 8 workgroups of 64', { workgroupSize: 64 }],
        [gqa8, 'GQA 8 workgroups of 256', { workgroupSize: 256 }],
      ]
    : [
    [single, 'wrapper, auto split', {}],
    [single, 'per-call singleDecodeWithKVCache', { perCallApi: true }],
    [single, 'split 1024', { fixedSplitSize: 1024 }],
    [single, 'split 4096', { fixedSplitSize: 4096 }],
    [single, 'split 512', { fixedSplitSize: 512 }],
    [single, 'tile kernel', { kernel: 'tile' }],
    [single, 'U=4', { tokensPerStep: 4 }],
      ];
  const results: CaseResult[] = [];
  for (const [k, label, debug] of runs) {
    opts.progress(`profile ${k.name} ${label}`);
    const r = await runCase(ctx, k, { ...opts, verify: false }, debug);
    results.push({ ...r, name: `${k.name} [${label}]` });
  }
  return results;
}
