/**
 * Attention suite: a mixed batch (one long prefill + many decodes) through one BatchAttention run,
 * against the prefill wrapper and the decode wrapper encoded back to back on the same inputs.
 * --verify compares the two results with each other (both are tested against the reference).
 */

import { BatchAttention } from '@webinfer/attention';
import { type GpuContext, median, type Tensor, timeGpu } from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper } from '@webinfer/decode';
import { BatchPrefillWithPagedKVCacheWrapper } from '@webinfer/prefill';
import { compareClose } from '@webinfer/reference';
import { gpuFill } from '../fill';
import { type CaseResult, type SuiteOptions, WARMUP_MS } from '../types';

export async function runAttentionSuite(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  const [prefillLen, decodes, decodeKv] = opts.quick ? [256, 7, 128] : [8192, 127, 4096];
  const [hq, hkv, d, page] = [32, 8, 128, 16];
  const name = `mixed: 1 x ${prefillLen} prefill + ${decodes} decodes at kv ${decodeKv}, H=${hq}/${hkv} D=${d}`;
  opts.progress(`attention 1/1: ${name}`);
  const kvLens = [prefillLen, ...Array.from({ length: decodes }, () => decodeKv)];
  const pagesOf = kvLens.map((l) => Math.ceil(l / page));
  const kvIndptr = [0];
  for (const p of pagesOf) kvIndptr.push(kvIndptr[kvIndptr.length - 1] + p);
  const numPages = kvIndptr[kvIndptr.length - 1];
  const kvIndices = Int32Array.from({ length: numPages }, (_, i) => i);
  const rows = prefillLen + decodes;
  const qoIndptr = [0, prefillLen, ...Array.from({ length: decodes }, (_, i) => prefillLen + i + 1)];
  // K and V as two tensors: together they pass one binding's 2 GiB.
  const cache = { k: ctx.empty([numPages, page, hkv, d], 'f16', 'bench/mixed-k'), v: ctx.empty([numPages, page, hkv, d], 'f16', 'bench/mixed-v') };
  gpuFill(ctx, cache.k, 31);
  gpuFill(ctx, cache.v, 33);
  const q = ctx.empty([rows, hq, d], 'f16', 'bench/mixed-q');
  gpuFill(ctx, q, 32);
  const outA = ctx.empty([rows, hq, d], 'f16');
  const lseA = ctx.empty([rows, hq], 'f32');
  const outB = ctx.empty([rows, hq, d], 'f16');
  const wsA = ctx.empty([256 << 20], 'u8');
  const wsP = ctx.empty([128 << 20], 'u8');
  const wsD = ctx.empty([128 << 20], 'u8');
  const tensors: Tensor[] = [cache.k, cache.v, q, outA, lseA, outB, wsA, wsP, wsD];
  const nan = Number.NaN;
  try {
    const attn = new BatchAttention(ctx, { workspaceBuffer: wsA });
    attn.plan({ qoIndptr, kvIndptr, kvIndices, kvLenArr: kvLens, numQoHeads: hq, numKvHeads: hkv, headDimQk: d, headDimVo: d, pageSize: page, causal: true, qDataType: 'f16' });
    const prefill = new BatchPrefillWithPagedKVCacheWrapper(ctx, wsP);
    prefill.plan({
      qoIndptr: [0, prefillLen],
      pagedKvIndptr: [0, pagesOf[0]],
      pagedKvIndices: kvIndices.subarray(0, pagesOf[0]),
      pagedKvLastPageLen: [prefillLen - (pagesOf[0] - 1) * page],
      numQoHeads: hq,
      numKvHeads: hkv,
      headDimQk: d,
      pageSize: page,
      causal: true,
    });
    const decode = new BatchDecodeWithPagedKVCacheWrapper(ctx, wsD);
    decode.plan({
      indptr: kvIndptr.slice(1).map((x) => x - pagesOf[0]),
      indices: kvIndices.subarray(pagesOf[0]),
      lastPageLen: kvLens.slice(1).map((l, i) => l - (pagesOf[i + 1] - 1) * page),
      numQoHeads: hq,
      numKvHeads: hkv,
      headDim: d,
      pageSize: page,
    });
    const view = (t: Tensor, first: number, n: number) => ctx.fromBuffer(t.buffer, [n, hq, d], t.dtype, { offset: t.offset + first * hq * d });
    const qP = view(q, 0, prefillLen);
    const qD = view(q, prefillLen, decodes);
    const oP = view(outB, 0, prefillLen);
    const oD = view(outB, prefillLen, decodes);
    const runA = (enc: GPUCommandEncoder) => void attn.run(q, cache, { out: outA, lse: lseA, encoder: enc });
    const runB = (enc: GPUCommandEncoder) => {
      prefill.run(qP, cache, { out: oP, encoder: enc });
      decode.run(qD, cache, { out: oD, encoder: enc });
    };
    await ctx.checkErrors(async () => {
      for (const run of [runA, runB]) {
        const enc = ctx.device.createCommandEncoder();
        run(enc);
        ctx.submit([enc.finish()]);
      }
      await ctx.synchronize();
    });
    const timing = { warmup: opts.quick ? 1 : 3, warmupMs: opts.quick ? 0 : WARMUP_MS, iterations: opts.quick ? 3 : 10 };
    const tA = await timeGpu(ctx, runA, timing);
    const tB = await timeGpu(ctx, runB, timing);
    // Every request through the prefill kernel: one dispatch, decode rows on the tensor-core/f32 kernel.
    const attn1 = new BatchAttention(ctx);
    attn1.plan({ qoIndptr, kvIndptr, kvIndices, kvLenArr: kvLens, numQoHeads: hq, numKvHeads: hkv, headDimQk: d, headDimVo: d, pageSize: page, causal: true, qDataType: 'f16', decodeKernel: false });
    const outC = ctx.empty([rows, hq, d], 'f16', 'bench/attn-one');
    const lseC = ctx.empty([rows, hq], 'f32', 'bench/attn-one-lse');
    tensors.push(outC, lseC);
    const tC = await timeGpu(ctx, (enc) => void attn1.run(q, cache, { out: outC, lse: lseC, encoder: enc }), timing);
    attn1.destroy();
    // The two kernels as one fused dispatch (decode workgroups spread through it, or first).
    const variant = async (extra: Record<string, unknown>) => {
      const a = new BatchAttention(ctx, { workspaceBuffer: wsA });
      a.plan({ qoIndptr, kvIndptr, kvIndices, kvLenArr: kvLens, numQoHeads: hq, numKvHeads: hkv, headDimQk: d, headDimVo: d, pageSize: page, causal: true, qDataType: 'f16', ...extra });
      const t = await timeGpu(ctx, (enc) => void a.run(q, cache, { out: outC, lse: lseC, encoder: enc }), timing);
      let check = 'not run';
      if (opts.verify) {
        const rep = compareClose(await outC.toArray(), await outB.toArray(), { rtol: 2e-3, atol: 2e-3 });
        check = rep.ok ? 'ok' : `FAILED ${JSON.stringify(rep.first)}`;
      }
      const info = `${check}; fused: ${a.lastRunFused}${a.lastRunUnfusedReason ? ` (${a.lastRunUnfusedReason})` : ''}`;
      a.destroy();
      return { ms: median(t.samples), info };
    };
    const fusedRun = await variant({ fuse: true });
    const first = await variant({ fuse: true, debugFusedStride: 1 });
    const extra = process.env.WEBINFER_BENCH_FUSED_VARIANTS
      ? [
          ['two dispatches, decode workgroups of 256', { debugDecode: { workgroupSize: 256 } }],
          ['fused, decode 2 heads a workgroup', { fuse: true, debugDecode: { headsPerWorkgroup: 2 } }],
        ]
      : [];
    const extraRows: [string, { ms: number; info: string }][] = [];
    for (const [label, plan] of extra as [string, Record<string, unknown>][]) extraRows.push([label, await variant(plan)]);
    // Which body the fused pipeline slows: the long prefill with 1 decode, and a 16-row append on
    // the long request's KV with every decode, each fused and not.
    const sub = async (label: string, qo0: number, n: number, fuse: boolean) => {
      const subRows = qo0 + n;
      const q2 = ctx.empty([subRows, hq, d], 'f16', 'bench/sub-q');
      gpuFill(ctx, q2, 34);
      const o2 = ctx.empty([subRows, hq, d], 'f16');
      const l2 = ctx.empty([subRows, hq], 'f32');
      const a = new BatchAttention(ctx, { workspaceBuffer: wsA });
      a.plan({
        qoIndptr: [0, qo0, ...Array.from({ length: n }, (_, i) => qo0 + i + 1)],
        kvIndptr: kvIndptr.slice(0, n + 2),
        kvIndices: kvIndices.subarray(0, kvIndptr[n + 1]),
        kvLenArr: kvLens.slice(0, n + 1),
        numQoHeads: hq,
        numKvHeads: hkv,
        headDimQk: d,
        headDimVo: d,
        pageSize: page,
        causal: true,
        qDataType: 'f16',
        fuse,
      });
      const t = await timeGpu(ctx, (enc) => void a.run(q2, cache, { out: o2, lse: l2, encoder: enc }), timing);
      extraRows.push([`${label}${fuse ? ', fused' : ', two dispatches'}`, { ms: median(t.samples), info: `not verified; fused: ${a.lastRunFused}${a.lastRunUnfusedReason ? ` (${a.lastRunUnfusedReason})` : ''}` }]);
      a.destroy();
      for (const x of [q2, o2, l2]) x.destroy();
    };
    if (process.env.WEBINFER_BENCH_FUSED_VARIANTS) {
      for (const fuse of [false, true]) await sub(`sub-batch: ${prefillLen}-row prefill + 1 decode`, prefillLen, 1, fuse);
      for (const fuse of [false, true]) await sub(`sub-batch: 128-row append on kv ${prefillLen} + ${decodes} decodes`, 128, decodes, fuse);
    }
    // Each part alone: how much of the sum the one run saves by overlapping them.
    const tP = await timeGpu(ctx, (enc) => prefill.run(qP, cache, { out: oP, encoder: enc }), timing);
    const tD = await timeGpu(ctx, (enc) => decode.run(qD, cache, { out: oD, encoder: enc }), timing);
    const msA = median(tA.samples);
    const msB = median(tB.samples);
    let verified: string | undefined;
    let verifiedC = 'not run';
    if (opts.verify) {
      const rep = compareClose(await outA.toArray(), await outB.toArray(), { rtol: 2e-3, atol: 2e-3 });
      verified = rep.ok ? 'ok (BatchAttention = prefill + decode wrappers)' : `FAILED ${JSON.stringify(rep.first)}`;
      const repC = compareClose(await outC.toArray(), await outB.toArray(), { rtol: 2e-3, atol: 2e-3 });
      verifiedC = repC.ok ? 'ok' : `FAILED ${JSON.stringify(repC.first)}`;
    }
    const flops = 4 * hq * d * ((prefillLen * (prefillLen + 1)) / 2 + decodes * decodeKv);
    // Bytes that must move: every request's K and V once, q and o.
    const bytes = kvLens.reduce((a, l) => a + l, 0) * hkv * d * 2 * 2 + 2 * rows * hq * d * 2;
    const row = (label: string, ms: number, extra: string): CaseResult => ({
      suite: 'attention',
      name: `${name}: ${label}`,
      timeMs: ms,
      p10Ms: nan,
      p90Ms: nan,
      gbs: bytes / (ms * 1e-3) / 1e9,
      tflops: flops / (ms * 1e-3) / 1e12,
      bytes,
      flops,
      planCpuUs: nan,
      runCpuUs: nan,
      timing: tA.source,
      verified: extra,
    });
    attn.destroy();
    prefill.destroy();
    decode.destroy();
    return [
      row('one BatchAttention run', msA, `${verified ?? 'not run'}; fused: ${attn.lastRunFused}${attn.lastRunUnfusedReason ? ` (${attn.lastRunUnfusedReason})` : ''}`),
      row('BatchAttention, one fused dispatch (fuse: true)', fusedRun.ms, `${fusedRun.info}; time / wrappers time = ${(fusedRun.ms / msB).toFixed(3)}`),
      row('BatchAttention, fused, decode workgroups first', first.ms, `${first.info}; time / wrappers time = ${(first.ms / msB).toFixed(3)}`),
      ...extraRows.map(([label, r]) => row(`BatchAttention, ${label}`, r.ms, `${r.info}; time / wrappers time = ${(r.ms / msB).toFixed(3)}`)),
      row('prefill + decode wrappers back to back', msB, `${verified ? `${verified}; ` : ''}BatchAttention time / wrappers time = ${(msA / msB).toFixed(3)}`),
      row('one BatchAttention run, decode rows on the prefill kernel too (decodeKernel: false)', median(tC.samples), `${verifiedC}; time / wrappers time = ${(median(tC.samples) / msB).toFixed(3)}`),
      row('the prefill wrapper alone', median(tP.samples), verified ? `${verified}; timed alone` : 'not run'),
      row('the decode wrapper alone', median(tD.samples), verified ? `${verified}; timed alone` : 'not run'),
    ];
  } finally {
    for (const t of tensors) t.destroy();
  }
}
