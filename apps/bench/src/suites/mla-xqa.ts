/**
 * MLA and XQA suites (issue targets): MLA decode B=64, kv 4096, 128 heads, page 64, f16 (reported
 * as TFLOP/s and GB/s: about 240 FLOP per byte, so compute-bound); xqa B=128, kv 2048, Hq 64,
 * Hkv 8, D 128 (bandwidth-bound). --verify recomputes a few rows on the CPU from the fill hash.
 */
import { type GpuContext, median, type Tensor, timeGpu } from '@webinfer/core-buffers';
import { BatchMLAPagedAttentionWrapper } from '@webinfer/mla';
import { attentionRef, compareClose, mlaRef } from '@webinfer/reference';
import { xqa } from '@webinfer/xqa';
import { fillValue, gpuFill } from '../fill';
import { type CaseResult, type SuiteOptions, WARMUP_MS } from '../types';

/** A fixed scattered page order, as an allocator would leave it. */
function scatteredPages(n: number): Int32Array {
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = (Math.imul(i, 2654435761) >>> 0) % (i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return perm;
}

function result(suite: string, name: string, samples: number[], source: 'timestamp' | 'queue', bytes: number, flops: number, verified: string | undefined, shape?: CaseResult['shape']): CaseResult {
  const ms = median(samples);
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    suite,
    name,
    timeMs: ms,
    p10Ms: sorted[Math.floor(sorted.length * 0.1)],
    p90Ms: sorted[Math.floor(sorted.length * 0.9)],
    gbs: bytes / (ms * 1e-3) / 1e9,
    tflops: flops / (ms * 1e-3) / 1e12,
    bytes,
    flops,
    planCpuUs: Number.NaN,
    runCpuUs: Number.NaN,
    timing: source,
    verified,
    shape,
  };
}

/** Phase costs of the MLA kernel (bench --suite profile-mla). */
export function profileMla(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  return runMlaSuite(ctx, { ...opts, verify: false, profile: true });
}

export async function runMlaSuite(ctx: GpuContext, opts: SuiteOptions & { profile?: boolean }): Promise<CaseResult[]> {
  // [batch, kvLen, heads, page, targetWorkgroups (undefined: the default split), phase to skip (f32 kernel), kernel]
  type Kernel = { tc?: boolean; rowBlocks?: 1 | 2 | 4; prefetch?: boolean; skip?: ('load' | 'qk' | 'softmax' | 'pv')[] };
  type Shape = [number, number, number, number, number?, ('S' | 'softmax' | 'PV')?, Kernel?];
  const f32: Kernel = { tc: false };
  const shapes: Shape[] = opts.quick
    ? [[2, 256, 16, 16], [2, 256, 16, 16, undefined, undefined, f32]]
    : opts.profile
      ? [[64, 4096, 128, 64, undefined, undefined, f32], [64, 4096, 128, 64, undefined, 'S', f32], [64, 4096, 128, 64, undefined, 'softmax', f32], [64, 4096, 128, 64, undefined, 'PV', f32]]
      : process.env.WEBINFER_BENCH_MLA_TC_PROFILE
        ? ([[], ['load'], ['qk'], ['softmax'], ['pv'], ['qk', 'pv'], ['load', 'qk', 'pv'], ['load', 'qk', 'softmax', 'pv']] as const).map((sk): Shape => [64, 4096, 128, 64, undefined, undefined, { tc: true, rowBlocks: 2, skip: [...sk] }])
        : process.env.WEBINFER_BENCH_MLA_VARIANTS
        ? ([[64, 4096, 128, undefined, 2], [64, 4096, 128, undefined, 4], [64, 4096, 128, 132, 4], [64, 4096, 128, 264, 4], [64, 4096, 128, 528, 4], [8, 8192, 128, undefined, 2], [8, 8192, 128, undefined, 4], [128, 1024, 16, undefined, 4]] as const).map(
            ([b, kv, h, target, rowBlocks]): Shape => [b, kv, h, 64, target, undefined, { tc: true, rowBlocks }],
          )
        : [[64, 4096, 128, 64], [64, 4096, 128, 64, undefined, undefined, f32], [64, 4096, 128, 64, 1], [8, 8192, 128, 64], [128, 1024, 16, 64]];
  const results: CaseResult[] = [];
  for (const [batch, kvLen, H, page, target, skip, kernel] of shapes) {
    const kname = kernel?.tc === false ? ' f32 kernel' : kernel?.rowBlocks ? ` tensor-core ${16 * kernel.rowBlocks} rows${kernel.prefetch === false ? ', no prefetch' : ''}${kernel.skip ? ` skip [${kernel.skip.join(',')}]` : ''}` : '';
    const name = `decode B=${batch} kv=${kvLen} heads=${H} page=${page} f16 (512+64)${target === 1 ? ', no split' : target ? `, target ${target} workgroups` : ''}${kname}${skip ? ` [without ${skip}]` : ''}`;
    if (opts.filter && !name.includes(opts.filter)) continue;
    opts.progress(`mla: ${name}`);
    const [DC, DP] = [512, 64];
    const pagesPer = Math.ceil(kvLen / page);
    const numPages = batch * pagesPer;
    const perm = scatteredPages(numPages);
    const kvIndptr = Array.from({ length: batch + 1 }, (_, b) => b * pagesPer);
    const qoIndptr = Array.from({ length: batch + 1 }, (_, b) => b);
    const seeds = { ckv: 51, kpe: 52, qn: 53, qp: 54 };
    const ckv = ctx.empty([numPages, page, DC], 'f16');
    const kpe = ctx.empty([numPages, page, DP], 'f16');
    const qn = ctx.empty([batch, H, DC], 'f16');
    const qp = ctx.empty([batch, H, DP], 'f16');
    gpuFill(ctx, ckv, seeds.ckv);
    gpuFill(ctx, kpe, seeds.kpe);
    gpuFill(ctx, qn, seeds.qn);
    gpuFill(ctx, qp, seeds.qp);
    const out = ctx.empty([batch, H, DC], 'f16');
    const lse = ctx.empty([batch, H], 'f32');
    const ws = ctx.empty([256 << 20], 'u8');
    const tensors: Tensor[] = [ckv, kpe, qn, qp, out, lse, ws];
    try {
      const w = new BatchMLAPagedAttentionWrapper(ctx, ws);
      const smScale = 1 / Math.sqrt(192);
      w.plan({ qoIndptr, kvIndptr, kvIndices: perm, kvLenArr: Array(batch).fill(kvLen), numHeads: H, headDimCkv: DC, headDimKpe: DP, pageSize: page, causal: false, smScale, qDataType: 'f16', kvDataType: 'f16', targetWorkgroups: target, debugSkip: skip, ...(kernel?.tc !== undefined ? { useTensorCores: kernel.tc } : {}), ...(kernel?.rowBlocks ? { debugTensorCore: { rowBlocks: kernel.rowBlocks, prefetch: kernel.prefetch, ...(kernel.skip?.length ? { skip: kernel.skip } : {}) } } : {}) });
      const encode = (enc: GPUCommandEncoder) => void w.run(qn, qp, ckv, kpe, { out, lse, encoder: enc });
      await ctx.checkErrors(async () => {
        const enc = ctx.device.createCommandEncoder();
        encode(enc);
        ctx.submit([enc.finish()]);
        await ctx.synchronize();
      });
      const t = await timeGpu(ctx, encode, { warmup: opts.quick ? 1 : 5, warmupMs: opts.quick ? 0 : WARMUP_MS, iterations: opts.quick ? 3 : 30 });
      let verified: string | undefined;
      if (opts.verify && !skip) {
        const o = (await out.toArray()) as Float32Array;
        const l = (await lse.toArray()) as Float32Array;
        verified = `ok (requests 0 and ${batch - 1})`;
        for (const b of [0, batch - 1]) {
          const rows = (seed: number, width: number) => {
            const x = new Float64Array(kvLen * width);
            for (let j = 0; j < kvLen; j++) {
              const p = perm[kvIndptr[b] + Math.floor(j / page)];
              for (let d = 0; d < width; d++) x[j * width + d] = fillValue(seed, (p * page + (j % page)) * width + d, 'f16');
            }
            return x;
          };
          const qOf = (seed: number, width: number) => Float64Array.from({ length: H * width }, (_, i) => fillValue(seed, b * H * width + i, 'f16'));
          const ref = mlaRef({ qNope: qOf(seeds.qn, DC), qPe: qOf(seeds.qp, DP), ckv: rows(seeds.ckv, DC), kpe: rows(seeds.kpe, DP), qoLen: 1, kvLen, numHeads: H, headDimCkv: DC, headDimKpe: DP, smScale });
          const ro = compareClose(o.subarray(b * H * DC, (b + 1) * H * DC), ref.o, { rtol: 2e-3, atol: 2e-3 });
          const rl = compareClose(l.subarray(b * H, (b + 1) * H), ref.lse, { rtol: 1e-3, atol: 1e-3 });
          if (!ro.ok || !rl.ok) verified = `FAILED request ${b}: ${JSON.stringify(ro.ok ? rl.first : ro.first)}`;
        }
      }
      // Bytes that must move: every compressed KV row once, q and o; FLOPs: H x (576 + 512) MACs per key.
      const bytes = batch * kvLen * (DC + DP) * 2 + batch * H * (DC + DP + DC) * 2;
      const flops = 2 * batch * kvLen * H * (DC + DP + DC);
      results.push(result('mla', name, t.samples, t.source, bytes, flops, verified));
      w.destroy();
    } finally {
      for (const x of tensors) x.destroy();
    }
  }
  return results;
}

export async function runXqaSuite(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  const shapes = opts.quick ? [[4, 256, 16, 2]] : [[128, 2048, 64, 8], [64, 4096, 32, 8]];
  type Variant = [string, number | undefined, { kernel?: 'subgroup' | 'tile' | 'tensor-core-staged'; tokensPerStep?: number }?];
  const variants: Variant[] = opts.quick
    ? [['default', undefined]]
    : process.env.WEBINFER_BENCH_XQA_VARIANTS === '1'
      ? [['default', undefined], ['tile kernel', undefined, { kernel: 'tile' }], ['2 heads per workgroup', 2], ['4 heads, 1 token per step', 4, { tokensPerStep: 1 }], ['4 heads, 4 tokens per step', 4, { tokensPerStep: 4 }], ['8 heads, 1 token per step', -1, { tokensPerStep: 1 }]]
      : [['default', undefined], ['f32 kernel (subgroup)', undefined, { kernel: 'subgroup' }], ['whole group per workgroup (f32 kernel)', -1]];
  const results: CaseResult[] = [];
  for (const [batch, kvLen, hq, hkv] of shapes) {
    for (const [label, hpw, kernelDebug] of variants) {
      const [D, page] = [128, 16];
      const name = `B=${batch} kv=${kvLen} H=${hq}/${hkv} D=${D} page=${page} f16, ${label}`;
      if (opts.filter && !name.includes(opts.filter)) continue;
      opts.progress(`xqa: ${name}`);
      const pagesPer = Math.ceil(kvLen / page);
      const numPages = batch * pagesPer;
      const perm = scatteredPages(numPages);
      const seeds = { k: 61, v: 62, q: 63 };
      const kCache = ctx.empty([numPages, page, hkv, D], 'f16');
      const vCache = ctx.empty([numPages, page, hkv, D], 'f16');
      const q = ctx.empty([batch, 1, hq, D], 'f16');
      gpuFill(ctx, kCache, seeds.k);
      gpuFill(ctx, vCache, seeds.v);
      gpuFill(ctx, q, seeds.q);
      const table = ctx.tensor(perm, [batch, pagesPer], 'i32');
      const lens = ctx.tensor(new Uint32Array(batch).fill(kvLen), [batch, 1], 'u32');
      const out = ctx.empty([batch, 1, hq, D], 'f16');
      const ws = ctx.empty([128 << 20], 'u8');
      const tensors: Tensor[] = [kCache, vCache, q, table, lens, out, ws];
      try {
        const encode = (enc: GPUCommandEncoder) =>
          xqa(q, kCache, vCache, table, lens, out, ws, { numKvHeads: hkv, pageSize: page, encoder: enc, debugHeadsPerWorkgroup: hpw === -1 ? hq / hkv : hpw, debugKernel: kernelDebug });
        await ctx.checkErrors(async () => {
          const enc = ctx.device.createCommandEncoder();
          encode(enc);
          ctx.submit([enc.finish()]);
          await ctx.synchronize();
        });
        const kvBytes = batch * kvLen * hkv * D * 2 * 2;
        const bytes = kvBytes + 2 * batch * hq * D * 2;
        const repeat = !opts.quick && bytes >= 256 << 20 ? 4 : 1;
        const t = await timeGpu(ctx, encode, { warmup: opts.quick ? 1 : 10, warmupMs: opts.quick ? 0 : WARMUP_MS, iterations: opts.quick ? 3 : 50, repeat });
        let verified: string | undefined;
        if (opts.verify) {
          const o = (await out.toArray()) as Float32Array;
          verified = `ok (requests 0 and ${batch - 1})`;
          for (const b of [0, batch - 1]) {
            const rows = (seed: number) => {
              const x = new Float64Array(kvLen * hkv * D);
              for (let j = 0; j < kvLen; j++) {
                const p = perm[b * pagesPer + Math.floor(j / page)];
                for (let e = 0; e < hkv * D; e++) x[j * hkv * D + e] = fillValue(seed, (p * page + (j % page)) * hkv * D + e, 'f16');
              }
              return x;
            };
            const qb = Float64Array.from({ length: hq * D }, (_, i) => fillValue(seeds.q, b * hq * D + i, 'f16'));
            const ref = attentionRef({ q: qb, k: rows(seeds.k), v: rows(seeds.v), qoLen: 1, kvLen, numQoHeads: hq, numKvHeads: hkv, headDimQk: D });
            const rep = compareClose(o.subarray(b * hq * D, (b + 1) * hq * D), ref.o, { rtol: 2e-3, atol: 2e-3 });
            if (!rep.ok) verified = `FAILED request ${b}: ${JSON.stringify(rep.first)}`;
          }
        }
        const shape = { batch, kvLen, numQoHeads: hq, numKvHeads: hkv, headDim: D, kvDtype: 'f16' };
        results.push(result('xqa', name, t.samples, t.source, bytes, batch * kvLen * hq * D * 4, verified, shape));
      } finally {
        for (const x of tensors) x.destroy();
      }
    }
  }
  return results;
}
