/**
 * The tensor-core decode kernel needs subgroup matrices, which lavapipe lacks: its reference
 * cases live in batch-decode.test.ts and run on GPU hosts (the bench's device-test bundles). Here:
 * the generated WGSL's workgroup variables (each a 16-byte multiple; a smaller one before a matrix
 * area broke the matrix loads' alignment on NVIDIA) and the errors where it can't run.
 */
import { type GpuContext, UnsupportedFeatureError, createContext, subgroupMatrixF16Support } from '@webinfer/core-buffers';
import { wgslWorkgroupVariables } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchDecodeWithPagedKVCacheWrapper, singleDecodeWithKVCache } from '../src';
import { type TensorCoreDecodeConfig, tensorCoreDecodeLayout, tensorCoreDecodeWgsl } from '../src/shaders/tc-decode.wgsl';
import { type StagedTensorCoreDecodeConfig, stagedTensorCoreDecodeLayout, stagedTensorCoreDecodeWgsl } from '../src/shaders/tc-staged-decode.wgsl';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

const base = { groupSize: 8, oDtype: 'f16', posEncoding: 'NONE', softCap: false, sinks: false, pagePow2: true } as const;
const configs: TensorCoreDecodeConfig[] = [];
for (const headDim of [32, 64, 128, 256]) {
  for (const subgroupSize of [16, 32, 64]) {
    configs.push({ ...base, headDim, subgroupSize });
  }
}
configs.push({ ...base, headDim: 128, subgroupSize: 32, groupSize: 20, oDtype: 'bf16', posEncoding: 'ALIBI', softCap: true, sinks: true, pagePow2: false, specMask: true });

describe('tensor-core decode WGSL', () => {
  it.each(configs.map((c) => [`D ${c.headDim} subgroup ${c.subgroupSize} group ${c.groupSize} ${c.posEncoding}`, c] as const))('%s: workgroup variables are 16-byte multiples', (_, c) => {
    const vars = wgslWorkgroupVariables(tensorCoreDecodeWgsl(c));
    expect(vars.map((v) => v.name).sort()).toEqual(['flag', 'item', 'smem']);
    for (const v of vars) expect(v.bytes % 16, `${v.name}: ${v.bytes} bytes`).toBe(0);
    expect(vars.reduce((a, v) => a + v.bytes, 0)).toBeLessThanOrEqual(tensorCoreDecodeLayout(c).smemBytes);
    expect(tensorCoreDecodeLayout(c).smemBytes).toBeLessThanOrEqual(16384);
  });
});

const stagedConfigs: StagedTensorCoreDecodeConfig[] = (['f16', 'fp8_e4m3', 'fp8_e5m2'] as const).flatMap((kvDtype) =>
  [64, 128].flatMap((headDim) => [2, 4].map((subgroups) => ({ ...base, headDim, subgroupSize: 32, subgroups, kvDtype }))),
);
stagedConfigs.push({ ...base, headDim: 128, subgroupSize: 32, subgroups: 4, kvDtype: 'fp8_e4m3', groupSize: 20, oDtype: 'bf16', posEncoding: 'ALIBI', softCap: true, sinks: true, pagePow2: false, specMask: true });

describe('staged tensor-core decode WGSL', () => {
  it.each(stagedConfigs.map((c) => [`D ${c.headDim} ${c.kvDtype} ${c.subgroups} subgroups group ${c.groupSize} ${c.posEncoding}`, c] as const))('%s: workgroup variables are 16-byte multiples within 48 KB', (_, c) => {
    const L = stagedTensorCoreDecodeLayout(c);
    expect(L.valid).toBe(true);
    const vars = wgslWorkgroupVariables(stagedTensorCoreDecodeWgsl(c));
    expect(vars.map((v) => v.name).sort()).toEqual(['flag', 'item', 'ml', 'smem']);
    for (const v of vars) expect(v.bytes % 16, `${v.name}: ${v.bytes} bytes`).toBe(0);
    expect(vars.reduce((a, v) => a + v.bytes, 0)).toBeLessThanOrEqual(L.smemBytes);
    expect(L.smemBytes).toBeLessThanOrEqual(49152);
  });

  it('does not take head dims whose tiles do not fit', () => {
    expect(stagedTensorCoreDecodeLayout({ ...stagedConfigs[0], subgroups: 4, headDim: 256 }).smemBytes).toBeGreaterThan(49152);
    expect(() => stagedTensorCoreDecodeWgsl({ ...stagedConfigs[0], headDim: 48 })).toThrow(/invalid/);
  });
});

describe('useTensorCores', () => {
  const plan = { indptr: [0, 1], indices: [0], lastPageLen: [5], numQoHeads: 8, numKvHeads: 2, headDim: 128, pageSize: 16 };

  it('names why the tensor-core kernel cannot run on this device', () => {
    const why = subgroupMatrixF16Support(ctx);
    if (why === undefined) return; // a device with subgroup matrices runs it (batch-decode.test.ts)
    const ws = ctx.empty([1 << 20], 'u8');
    const w = new BatchDecodeWithPagedKVCacheWrapper(ctx, ws, { useTensorCores: true });
    expect(() => w.plan(plan)).toThrow(UnsupportedFeatureError);
    expect(() => w.plan(plan)).toThrow(`useTensorCores: the tensor-core decode kernel is unavailable: ${why}`);
    const q = ctx.empty([8, 128], 'f16');
    const kv = ctx.empty([20, 2, 128], 'f16');
    expect(() => singleDecodeWithKVCache(q, kv, kv, { useTensorCores: true })).toThrow(UnsupportedFeatureError);
    w.destroy();
    ws.destroy();
  });

  it('rejects what the kernel does not support before any GPU work, on any device', () => {
    const ws = ctx.empty([1 << 20], 'u8');
    const w = new BatchDecodeWithPagedKVCacheWrapper(ctx, ws, { useTensorCores: true });
    expect(() => w.plan({ ...plan, posEncodingMode: 'ROPE_LLAMA' })).toThrow(/useTensorCores/);
    expect(() => w.plan({ ...plan, kvDataType: 'bf16', qDataType: 'bf16' })).toThrow(/useTensorCores/);
    // Pages of 8 tokens: the staged kernel takes them where it runs (32-lane subgroup matrices);
    // elsewhere the cache-reading kernel refuses them.
    const paged8 = { ...plan, indptr: [0, 2], indices: [0, 1], pageSize: 8, lastPageLen: [3] };
    if (subgroupMatrixF16Support(ctx) === undefined && ctx.subgroupMinSize === 32) {
      w.plan(paged8);
      expect(w.planInfo!.kernel).toBe('tensor-core-staged');
      w.plan({ ...paged8, kvDataType: 'fp8_e4m3' });
      expect(w.planInfo!.kernel).toBe('tensor-core-staged');
      w.plan({ ...plan, headDim: 256 }); // 48 KB can't stage D 256: the cache-reading kernel
      expect(w.planInfo!.kernel).toBe('tensor-core');
    } else {
      expect(() => w.plan(paged8)).toThrow(/useTensorCores/);
    }
    w.destroy();
    ws.destroy();
  });
});
