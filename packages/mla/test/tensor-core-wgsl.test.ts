/**
 * The MLA tensor-core kernel cannot run on lavapipe (no subgroup matrices): CI checks that every
 * workgroup variable of its WGSL is a multiple of 16 bytes (see the prefill kernel: a smaller one
 * before a matrix tile broke the matrix loads on NVIDIA) and that it fits 48 KB.
 */
import { wgslWorkgroupVariables } from '@webinfer/reference';
import { describe, expect, it } from 'vitest';
import { mlaTcLayout, mlaTcWgsl } from '../src/shaders/mla-tc.wgsl';

describe('MLA tensor-core WGSL', () => {
  const cases = [0, 64].flatMap((kpe) => [1, 2, 4].flatMap((rowBlocks) => [true, false].map((wideKV) => ({ kpe, rowBlocks: rowBlocks as 1 | 2 | 4, wideKV }))));
  it.each(cases)('kpe $kpe, $rowBlocks row blocks, wide $wideKV', ({ kpe, rowBlocks, wideKV }) => {
    const wgsl = mlaTcWgsl({ headDimCkv: 512, headDimKpe: kpe, qDtype: 'f16', kvDtype: 'f16', oDtype: 'bf16', causal: true, nativeF16: true, subgroupSize: 32, rowBlocks, wideKV, pageShift: 6 });
    const vars = wgslWorkgroupVariables(wgsl);
    expect(vars.length).toBeGreaterThan(2);
    for (const v of vars) expect(v.bytes % 16, `${v.name}: ${v.bytes} bytes`).toBe(0);
    const total = vars.reduce((a, v) => a + v.bytes, 0);
    expect(total).toBeLessThanOrEqual(mlaTcLayout(512 + kpe, rowBlocks).smemBytes);
    expect(total).toBeLessThanOrEqual(49152);
  });
});
