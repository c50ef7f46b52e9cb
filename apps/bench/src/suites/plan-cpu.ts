/**
 * CPU cost of the decode wrapper's plan() and run() encoding, with no GPU timing (bench --suite
 * plan-cpu): B=64, kv 4096, H 32/8, D 128, pages of 16 scattered over a small cache. Medians of
 * 2000 calls after 300 warm-up calls; run() encodes into a fresh encoder per call (finished, not
 * submitted). A second row times plan and run as a decode loop calls them, one after the other.
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
  // Median of n timed calls of f after warm-up; `around` runs untimed before and after each call.
  const medianUs = (f: () => void, around?: { before: () => void; after: () => void }) => {
    const t: number[] = [];
    for (let i = 0; i < warm + n; i++) {
      around?.before();
      const t0 = performance.now();
      f();
      const t1 = performance.now();
      around?.after();
      if (i >= warm) t.push(t1 - t0);
    }
    return t.sort((a, b) => a - b)[t.length >> 1] * 1e3;
  };
  const planUs = medianUs(() => w.plan(args));
  // A fresh encoder per call (untimed), as an engine encodes a step: thousands of dispatches in
  // one encoder grow Dawn's command and usage lists, which is not what one step costs.
  let enc: GPUCommandEncoder | undefined;
  const runUs = medianUs(() => w.run(q, cache, { out, encoder: enc }), {
    before: () => {
      enc = ctx.device.createCommandEncoder();
    },
    after: () => enc!.finish(),
  });
  // As a decode loop calls them: plan, then run into that step's encoder (medians of each).
  const stepPlan: number[] = [];
  const stepRun: number[] = [];
  for (let i = 0; i < warm + n; i++) {
    const e = ctx.device.createCommandEncoder();
    const t0 = performance.now();
    w.plan(args);
    const t1 = performance.now();
    w.run(q, cache, { out, encoder: e });
    const t2 = performance.now();
    e.finish();
    if (i >= warm) {
      stepPlan.push(t1 - t0);
      stepRun.push(t2 - t1);
    }
  }
  const medUs = (t: number[]) => t.sort((a, b) => a - b)[t.length >> 1] * 1e3;
  for (const t of [workspace, q, cache, out]) t.destroy();
  w.destroy();
  const nan = Number.NaN;
  const row = (name: string, planCpuUs: number, runCpuUs: number): CaseResult => ({
    suite: 'plan-cpu',
    name,
    timeMs: nan,
    p10Ms: nan,
    p90Ms: nan,
    gbs: nan,
    tflops: nan,
    bytes: 0,
    flops: 0,
    planCpuUs,
    runCpuUs,
    timing: 'queue',
    verified: 'ok (CPU timing only; decode results are verified by the decode suite)',
  });
  return [
    row(`decode plan/run CPU, B=${B} kv=${kv} H=32/8 D=128 page=${page}`, planUs, runUs),
    row(`decode plan then run each step, B=${B} kv=${kv} H=32/8 D=128 page=${page}`, medUs(stepPlan), medUs(stepRun)),
  ];
}
