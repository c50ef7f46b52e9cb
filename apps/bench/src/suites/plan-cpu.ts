/**
 * CPU cost of the decode wrapper's plan() and run() encoding, with no GPU timing (bench --suite
 * plan-cpu): B=64, kv 4096, H 32/8, D 128, pages of 16 scattered over a small cache. Medians of
 * 2000 calls after 300 warm-up calls; run() encodes into encoders that are finished, not submitted.
 */
import type { GpuContext } from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper } from '@webinfer/decode';
import type { CaseResult, SuiteOptions } from '../types';

export async function runPlanCpuSuite(ctx: GpuContext, _opts: SuiteOptions): Promise<CaseResult[]> {
  const [B, kv, page, cachePages] = [64, 4096, 16, 512];
  const pagesPer = kv / page;
  const indptr = Int32Array.from({ length: B + 1 }, (_, b) => b * pagesPer);
  const indices = Int32Array.from({ length: B * pagesPer }, (_, i) => (i * 7919) % cachePages);
  const lastPageLen = new Int32Array(B).fill(page);
  const workspace = ctx.empty([64 << 20], 'u8');
  const q = ctx.empty([B, 32, 128], 'f16');
  const cache = ctx.empty([cachePages, 2, page, 8, 128], 'f16');
  const out = ctx.empty([B, 32, 128], 'f16');
  const w = new BatchDecodeWithPagedKVCacheWrapper(ctx, workspace);
  const args = { indptr, indices, lastPageLen, numQoHeads: 32, numKvHeads: 8, headDim: 128, pageSize: page, qDataType: 'f16', kvDataType: 'f16' };
  // Cheap (well under a second) and noisy with fewer calls, so even --quick runs the full count.
  const [warm, n] = [300, 2000];
  const medianUs = (f: () => void) => {
    for (let i = 0; i < warm; i++) f();
    const t: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      f();
      t.push(performance.now() - t0);
    }
    return t.sort((a, b) => a - b)[t.length >> 1] * 1e3;
  };
  const planUs = medianUs(() => w.plan(args));
  const enc = ctx.device.createCommandEncoder();
  const runUs = medianUs(() => w.run(q, cache, { out, encoder: enc }));
  enc.finish();
  for (const t of [workspace, q, cache, out]) t.destroy();
  w.destroy();
  const nan = Number.NaN;
  return [
    {
      suite: 'plan-cpu',
      name: `decode plan/run CPU, B=${B} kv=${kv} H=32/8 D=128 page=${page}`,
      timeMs: nan,
      p10Ms: nan,
      p90Ms: nan,
      gbs: nan,
      tflops: nan,
      bytes: 0,
      flops: 0,
      planCpuUs: planUs,
      runCpuUs: runUs,
      timing: 'queue',
      verified: 'ok (CPU timing only; decode results are verified by the decode suite)',
    },
  ];
}
