/** Prefill suite: causal single prefill, batch paged prefill and append, on both kernel paths. */
import { type GpuContext, median, type Tensor, timeGpu } from '@webinfer/core-buffers';
import { BatchPrefillWithPagedKVCacheWrapper, BatchPrefillWithRaggedKVCacheWrapper } from '@webinfer/prefill';
import { attentionRef, compareClose } from '@webinfer/reference';
import { fillValue, gpuFill } from '../fill';
import { type CaseResult, type SuiteOptions, WARMUP_MS } from '../types';

interface PrefillCase {
  name: string;
  kind: 'single' | 'paged';
  batch: number;
  qoLen: number;
  kvLen: number;
  heads: number;
  /** KV heads (default `heads`). */
  kvHeads?: number;
  headDim: number;
  /** V head dim when it differs from headDim (DeepSeek's 192/128; single prefill only). */
  headDimVo?: number;
  /** true: tensor cores, false: f32 path. */
  tc: boolean;
  /** Tensor-core subgroups per workgroup (16 rows each). */
  subgroups?: number;
  /** Keys per tensor-core K/V tile. */
  tcKeys?: 16 | 32;
  /** Tensor-core phases left out (profiling; not verified). */
  skip?: ('load' | 'store' | 'qk' | 'softmax' | 'pv')[];
  /** f32-kernel phases left out (profiling; not verified). */
  simtSkip?: ('load' | 'qk' | 'pv')[];
  simtLoadMode?: 'loop' | 'batch' | 'prefetch';
  /** f32 path tile [rows, keys, wide] (profiling). */
  tile?: [number, number, 'none' | 'kv' | 'all' | 'k'];
  /** f32 path loop unrolling / full-tile mask skip (profiling). */
  simtTuning?: { qkUnroll?: number; pvUnroll?: number; fullTiles?: boolean; pInRegisters?: boolean; lateFetch?: boolean; swizzle?: boolean; workgroupSize?: number };
}

const c = (kind: PrefillCase['kind'], batch: number, qoLen: number, kvLen: number, tc: boolean, heads = 32, headDim = 128): PrefillCase => ({
  name: `${kind === 'single' ? 'single' : `paged B=${batch}`} causal qo=${qoLen} kv=${kvLen} H=${heads} D=${headDim} f16 ${tc ? 'tensor-core' : 'f32 path'}`,
  kind,
  batch,
  qoLen,
  kvLen,
  heads,
  headDim,
  tc,
});

export function prefillCases(quick: boolean, hasTensorCores: boolean): PrefillCase[] {
  const tc = hasTensorCores;
  const both = (k: PrefillCase['kind'], b: number, qo: number, kv: number) => [...(tc ? [c(k, b, qo, kv, true)] : []), c(k, b, qo, kv, false)];
  if (quick) return [...both('single', 1, 128, 128), ...both('paged', 2, 64, 96)];
  if (process.env.WEBINFER_BENCH_TC_PROFILE) {
    // Experiment: the tensor-core kernel's time with phases left out.
    const skips: ('load' | 'store' | 'qk' | 'softmax' | 'pv')[][] = [[], ['store'], ['load'], ['qk'], ['softmax'], ['pv'], ['qk', 'pv'], ['load', 'qk', 'pv'], ['load', 'qk', 'softmax', 'pv']];
    return skips.map((skip) => ({ ...c('single', 1, 4096, 4096, true), skip, name: `single causal 4096 tensor-core skip [${skip.join(',')}]` }));
  }
  if (process.env.WEBINFER_BENCH_TC_DECODE) {
    // Experiment: decode-shaped batches (one query row per request, GQA 8) through the prefill kernels.
    return [true, false].flatMap((tc) =>
      [64, 128].map((b) => ({ ...c('paged', b, 1, b === 64 ? 4096 : 2048, tc, 64), kvHeads: 8, name: `decode-shaped paged B=${b} qo=1 kv=${b === 64 ? 4096 : 2048} H=64/8 D=128 f16 ${tc ? 'tensor-core' : 'f32 path'}` })),
    );
  }
  if (process.env.WEBINFER_BENCH_SIMT_PROFILE) {
    // Experiment: the f32 kernel's time with phases left out.
    const skips: ('load' | 'qk' | 'pv')[][] = [[], ['load'], ['qk'], ['pv'], ['qk', 'pv'], ['load', 'qk', 'pv']];
    return skips.map((simtSkip) => ({ ...c('single', 1, 4096, 4096, false), simtSkip, name: `single causal 4096 f32 path skip [${simtSkip.join(',')}]` }));
  }
  if (process.env.WEBINFER_BENCH_SIMT_LOAD) {
    // Experiment: the f32 kernel's K/V load modes.
    return (['loop', 'batch', 'prefetch'] as const).flatMap((simtLoadMode) =>
      [c('single', 1, 4096, 4096, false), c('paged', 8, 2048, 2048, false)].map((k) => ({ ...k, simtLoadMode, name: `${k.name} load ${simtLoadMode}` })),
    );
  }
  if (process.env.WEBINFER_BENCH_SIMT_VARIANTS) {
    // Experiment: f32-kernel variants (earlier sessions: unrolling, tiles, P in registers; see BENCHMARKS.md).
    const base = c('single', 1, 4096, 4096, false);
    const v = (name: string, simtTuning: PrefillCase['simtTuning'], k = base): PrefillCase => ({ ...k, simtTuning, name: `${k.name} ${name}` });
    const paged = c('paged', 8, 2048, 2048, false);
    // Session 9: 64-key tiles (64 x 64 with swizzled f16 Q/K/V fills 48 KB at D 128): half the
    // per-tile softmax, barriers and load issue per key, more registers for S and P.
    const t = (tile: PrefillCase['tile'], name: string, simtTuning: PrefillCase['simtTuning'], k = base): PrefillCase => ({ ...v(`tile ${tile!.join('x')} ${name}`, simtTuning, k), tile });
    const swz = { pInRegisters: true, swizzle: true };
    const t64: PrefillCase['tile'] = [64, 64, 'none'];
    const d64 = c('single', 1, 4096, 4096, false, 32, 64);
    return [
      v('default', {}),
      t(t64, 'swizzled', swz),
      t(t64, 'swizzled qk x2', { ...swz, qkUnroll: 2 }),
      t(t64, 'swizzled qk x1', { ...swz, qkUnroll: 1 }),
      t(t64, 'swizzled pv x16', { ...swz, pvUnroll: 16 }),
      t(t64, 'swizzled early fetch', { ...swz, lateFetch: false }),
      { ...t(t64, 'swizzled batch loads', swz), simtLoadMode: 'batch' },
      { ...t(t64, 'swizzled batch loads qk x2', { ...swz, qkUnroll: 2 }), simtLoadMode: 'batch' },
      v('default', {}, d64),
      t([64, 64, 'k'], 'padded', { pInRegisters: true, swizzle: false }, d64),
      t([64, 64, 'k'], 'padded qk x2', { pInRegisters: true, swizzle: false, qkUnroll: 2 }, d64),
      v('default', {}, paged),
      t(t64, 'swizzled', swz, paged),
    ];
  }
  if (process.env.WEBINFER_BENCH_SIMT_WIDE) {
    // Session 10: the f32 path's 128-row tiles in workgroups of 256 (now the default where they
    // fit) against the previous default, 64 x 32 with an f32 K tile in workgroups of 128.
    const gqa = { ...c('single', 1, 4096, 4096, false), kvHeads: 8, name: 'single causal qo=4096 kv=4096 H=32/8 D=128 f16 f32 path' };
    const shapes = [
      c('single', 1, 4096, 4096, false),
      c('paged', 8, 2048, 2048, false),
      c('single', 1, 128, 4096, false),
      c('single', 1, 1024, 1024, false),
      c('single', 1, 4096, 4096, false, 32, 64),
      c('single', 1, 2048, 2048, false, 32, 256),
      gqa,
      { ...c('paged', 16, 256, 1024, false), kvHeads: 8, name: 'paged B=16 causal qo=256 kv=1024 H=32/8 D=128 f16 f32 path' },
    ];
    return shapes.flatMap((k) => [
      { ...k, name: `${k.name} default` },
      // (D 256 keeps its 32 x 32 tiles: neither fits 128 rows nor 64 x 32 in 48 KB.)
      ...(k.headDim === 256 ? [] : [{ ...k, tile: [64, 32, 'k'] as PrefillCase['tile'], simtTuning: { pInRegisters: true, swizzle: false }, name: `${k.name} 64 x 32 f32 K (session 9 default)` }]),
    ]);
  }
  if (process.env.WEBINFER_BENCH_TC_SUBGROUPS) {
    // Experiment: tensor-core subgroups (16 rows each) per workgroup.
    // (8 subgroups take 16-key tiles where 32-key ones don't fit: D 256 at 48 KB, D 128 at 32 KB.)
    const deepseek = { ...c('single', 1, 4096, 4096, true, 32, 192), headDimVo: 128, name: 'single causal qo=4096 kv=4096 H=32 D=192/128 f16 tensor-core' };
    const shapes = [c('single', 1, 4096, 4096, true), c('paged', 8, 2048, 2048, true), c('single', 1, 1024, 1024, true), c('single', 1, 4096, 4096, true, 32, 256), c('single', 1, 1024, 1024, true, 32, 256), deepseek];
    if (process.env.WEBINFER_BENCH_TC_SUBGROUPS === 'keys') {
      // 8 subgroups with 16-key tiles, and 16 subgroups (256 rows), where 32-key tiles also fit.
      const d128 = [c('single', 1, 4096, 4096, true), c('paged', 8, 2048, 2048, true)];
      return [
        ...d128.map((k) => ({ ...k, subgroups: 8, tcKeys: 16 as const, name: `${k.name} 8 subgroups, 16 keys` })),
        ...d128.map((k) => ({ ...k, subgroups: 16, name: `${k.name} 16 subgroups` })),
        ...d128.map((k) => ({ ...k, name: `${k.name} default` })),
        { ...c('single', 1, 4096, 4096, true, 32, 64), subgroups: 16, name: 'single causal qo=4096 kv=4096 H=32 D=64 f16 tensor-core 16 subgroups' },
        { ...c('single', 1, 4096, 4096, true, 32, 64), name: 'single causal qo=4096 kv=4096 H=32 D=64 f16 tensor-core default' },
      ];
    }
    return [4, 8].flatMap((n) => shapes.map((k) => ({ ...k, subgroups: n, name: `${k.name} ${n} subgroups` })));
  }
  return [...both('single', 1, 4096, 4096), ...both('paged', 8, 2048, 2048), ...both('single', 1, 128, 4096), ...both('single', 1, 1024, 1024)];
}

/** Query/key pairs a causal (bottom-right) request computes. */
function causalPairs(qo: number, kv: number): number {
  let n = 0;
  for (let i = 0; i < qo; i++) n += Math.max(0, Math.min(kv, kv - qo + i + 1));
  return n;
}

/** f32-path tile experiments on the causal 4096 case (bench --suite profile-prefill). */
export async function profilePrefill(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  const tiles: [number, number, 'none' | 'kv' | 'all' | 'k'][] = [
    [64, 32, 'none'],
    [64, 16, 'none'],
    [64, 16, 'kv'],
    [32, 32, 'kv'],
    [32, 16, 'kv'],
    [32, 16, 'all'],
    [32, 32, 'none'],
  ];
  const results: CaseResult[] = [];
  for (const [i, tile] of tiles.entries()) {
    const k = { ...c('single', 1, opts.quick ? 256 : 4096, opts.quick ? 256 : 4096, false), tile };
    k.name = `${k.name} tile ${tile.join('x')}`;
    opts.progress(`profile-prefill ${i + 1}/${tiles.length}: ${k.name}`);
    results.push(await runCase(ctx, k, opts));
  }
  return results;
}

export async function runPrefillSuite(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  const cases = prefillCases(opts.quick, ctx.hasSubgroupMatrixF16).filter((k) => !opts.filter || k.name.includes(opts.filter));
  const results: CaseResult[] = [];
  for (const [i, k] of cases.entries()) {
    opts.progress(`prefill ${i + 1}/${cases.length}: ${k.name}`);
    results.push(await runCase(ctx, k, opts));
  }
  return results;
}

async function runCase(ctx: GpuContext, k: PrefillCase, opts: SuiteOptions): Promise<CaseResult> {
  const { batch: B, qoLen, kvLen, heads: H, headDim: D } = k;
  const DV = k.headDimVo ?? D;
  if (DV !== D && k.kind !== 'single') throw new Error('headDimVo: single prefill only');
  const Hk = k.kvHeads ?? H;
  const seeds = { q: 21, k: 22, v: 23 };
  const page = 16;
  const rows = B * qoLen;
  const q = ctx.empty([rows, H, D], 'f16', 'bench/q');
  gpuFill(ctx, q, seeds.q);
  const out = ctx.empty([rows, H, DV], 'f16', 'bench/o');
  const lse = ctx.empty([rows, H], 'f32', 'bench/lse');
  const workspace = ctx.empty([256 << 20], 'u8', 'bench/ws');
  const tensors: Tensor[] = [q, out, lse, workspace];
  const qoIndptr = Int32Array.from({ length: B + 1 }, (_, b) => b * qoLen);
  const plan = { qoIndptr, numQoHeads: H, numKvHeads: Hk, headDimQk: D, headDimVo: DV, causal: true, useTensorCores: k.tc, ...(k.subgroups ? { debugTensorCoreSubgroups: k.subgroups } : {}), ...(k.tcKeys ? { debugTensorCoreKeys: k.tcKeys } : {}), ...(k.skip?.length ? { debugTensorCoreSkip: k.skip } : {}), ...(k.simtSkip?.length ? { debugSimtSkip: k.simtSkip } : {}), ...(k.simtLoadMode ? { debugSimtLoadMode: k.simtLoadMode } : {}), ...(k.tile ? { debugTile: k.tile } : {}), ...(k.simtTuning ? { debugSimtTuning: k.simtTuning } : {}) };
  let encodeRun: (enc: GPUCommandEncoder) => void;
  // Token j of request b: where its K and V rows start (elements), for --verify.
  let kvRow: (b: number, j: number) => [number, number];
  let kvTensor: Tensor;
  let wrapperInfo: () => string;
  try {
    if (k.kind === 'single') {
      const kv = ctx.empty([2, kvLen, Hk, D], 'f16', 'bench/kv');
      gpuFill(ctx, kv, seeds.k);
      tensors.push(kv);
      const w = new BatchPrefillWithRaggedKVCacheWrapper(ctx, workspace);
      await ctx.checkErrors(() => w.plan({ ...plan, kvIndptr: [0, kvLen] }));
      const kk = kv.select(0, 0);
      // V: the first DV dims of each row of the second half (rows keep their D stride).
      const vv = DV === D ? kv.select(0, 1) : kv.select(0, 1).slice(2, 0, DV);
      encodeRun = (enc) => w.run(q, kk, vv, { out, lse, encoder: enc });
      kvRow = (_b, j) => [j * Hk * D, (kvLen + j) * Hk * D];
      kvTensor = kv;
      wrapperInfo = () => JSON.stringify(w.planInfo);
    } else {
      const pagesPer = Math.ceil(kvLen / page);
      const numPages = B * pagesPer;
      const perm = Int32Array.from({ length: numPages }, (_, i) => i);
      for (let i = numPages - 1; i > 0; i--) {
        const j = (Math.imul(i, 2654435761) >>> 0) % (i + 1);
        [perm[i], perm[j]] = [perm[j], perm[i]];
      }
      const cache = ctx.empty([numPages, 2, page, Hk, D], 'f16', 'bench/cache');
      gpuFill(ctx, cache, seeds.k);
      tensors.push(cache);
      const w = new BatchPrefillWithPagedKVCacheWrapper(ctx, workspace);
      await ctx.checkErrors(() => w.plan({
        ...plan,
        pagedKvIndptr: Int32Array.from({ length: B + 1 }, (_, b) => b * pagesPer),
        pagedKvIndices: perm,
        pagedKvLastPageLen: new Int32Array(B).fill(kvLen - (pagesPer - 1) * page),
        pageSize: page,
      }));
      encodeRun = (enc) => w.run(q, cache, { out, lse, encoder: enc });
      kvRow = (b, j) => {
        const p = perm[b * pagesPer + Math.floor(j / page)];
        const base = ((p * 2) * page + (j % page)) * Hk * D;
        return [base, base + page * Hk * D];
      };
      kvTensor = cache;
      wrapperInfo = () => JSON.stringify(w.planInfo);
    }
    await ctx.checkErrors(async () => {
      const enc = ctx.device.createCommandEncoder();
      encodeRun(enc);
      ctx.submit([enc.finish()]);
      await ctx.synchronize();
    });
    const timing = await timeGpu(ctx, encodeRun, { warmup: opts.quick ? 1 : 5, warmupMs: opts.quick ? 0 : WARMUP_MS, iterations: opts.quick ? 3 : 20 });
    const ms = median(timing.samples);
    const flops = 2 * B * causalPairs(qoLen, kvLen) * H * (D + DV);
    const bytes = 2 * (rows * H * (D + DV) + B * kvLen * Hk * (D + DV));
    let verified: string | undefined;
    // Cases with phases left out compute wrong results by design.
    if (opts.verify && !k.skip?.length && !k.simtSkip?.length) {
      const oHost = (await out.toArray()) as Float32Array;
      const lseHost = (await lse.toArray()) as Float32Array;
      verified = verifyRows(k, oHost, lseHost, kvRow, seeds, kvTensor) ?? `ok (3 rows, ${wrapperInfo()})`;
    }
    const sorted = [...timing.samples].sort((a, b) => a - b);
    return {
      suite: 'prefill',
      name: k.name,
      timeMs: ms,
      p10Ms: sorted[Math.floor(sorted.length * 0.1)],
      p90Ms: sorted[Math.floor(sorted.length * 0.9)],
      gbs: bytes / (ms * 1e-3) / 1e9,
      tflops: flops / (ms * 1e-3) / 1e12,
      bytes,
      flops,
      planCpuUs: Number.NaN,
      runCpuUs: Number.NaN,
      timing: timing.source,
      verified,
      shape: { batch: k.batch, kvLen: k.kvLen, numQoHeads: k.heads, numKvHeads: Hk, headDim: k.headDim, kvDtype: 'f16', qoLen: k.qoLen, causal: true },
    };
  } catch (e) {
    const nan = Number.NaN;
    return { suite: 'prefill', name: k.name, timeMs: nan, p10Ms: nan, p90Ms: nan, gbs: nan, tflops: nan, bytes: 0, flops: 0, planCpuUs: nan, runCpuUs: nan, timing: 'queue', verified: `ERROR ${String(e).slice(0, 600)}` };
  } finally {
    for (const t of tensors) t.destroy();
  }
}

/** Reference check of three query rows (first, middle, last of the last request). */
function verifyRows(
  k: PrefillCase,
  o: Float32Array,
  lse: Float32Array,
  kvRow: (b: number, j: number) => [number, number],
  seeds: { q: number; k: number },
  _kv: Tensor,
): string | undefined {
  const { batch: B, qoLen, kvLen, heads: H, headDim: D } = k;
  const DV = k.headDimVo ?? D;
  const Hk = k.kvHeads ?? H;
  const b = B - 1;
  for (const i of [0, qoLen >> 1, qoLen - 1]) {
    const row = b * qoLen + i;
    const visible = kvLen - qoLen + i + 1; // causal, bottom-right
    const q = Float64Array.from({ length: H * D }, (_, e) => fillValue(seeds.q, row * H * D + e, 'f16'));
    const kk = new Float64Array(visible * Hk * D);
    const vv = new Float64Array(visible * Hk * DV);
    for (let j = 0; j < visible; j++) {
      const [kb, vb] = kvRow(b, j);
      for (let e = 0; e < Hk * D; e++) kk[j * Hk * D + e] = fillValue(seeds.k, kb + e, 'f16');
      // V rows keep K's stride D; their first DV dims are the values.
      for (let h = 0; h < Hk; h++) for (let e = 0; e < DV; e++) vv[(j * Hk + h) * DV + e] = fillValue(seeds.k, vb + h * D + e, 'f16');
    }
    const want = attentionRef({ q, k: kk, v: vv, qoLen: 1, kvLen: visible, numQoHeads: H, numKvHeads: Hk, headDimQk: D, headDimVo: DV });
    const ro = compareClose(o.subarray(row * H * DV, (row + 1) * H * DV), want.o, { rtol: 2e-3, atol: 2e-3 });
    const rl = compareClose(lse.subarray(row * H, (row + 1) * H), want.lse, { rtol: 1e-3, atol: 1e-3 });
    if (!ro.ok || !rl.ok) return `FAILED row ${row}: o ${JSON.stringify(ro.first)} (max ${ro.maxAbsError.toExponential(2)}) lse ${JSON.stringify(rl.first)}`;
  }
  return undefined;
}
