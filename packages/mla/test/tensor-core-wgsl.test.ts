/**
 * The MLA tensor-core kernel cannot run on lavapipe (no subgroup matrices): CI checks that every
 * workgroup variable of its WGSL is a multiple of 16 bytes (see the prefill kernel: a smaller one
 * before a matrix tile broke the matrix loads on NVIDIA) and that it fits 48 KB.
 */
import { wgslWorkgroupVariables } from '@webinfer/reference';
import { describe, expect, it } from 'vitest';
import { mlaTcLayout, mlaTcWgsl } from '../src/shaders/mla-tc.wgsl';

describe('MLA tensor-core WGSL', () => {
  const cases = [0, 64].flatMap((kpe) =>
    [1, 2, 4].flatMap((rowBlocks) => [true, false].flatMap((wideKV) => [16, 32].map((qStageRows) => ({ kpe, rowBlocks: rowBlocks as 1 | 2 | 4, wideKV, qStageRows: qStageRows as 16 | 32 })))),
  );
  it.each(cases)('kpe $kpe, $rowBlocks row blocks, wide $wideKV, Q staged $qStageRows rows a pass', ({ kpe, rowBlocks, wideKV, qStageRows }) => {
    const wgsl = mlaTcWgsl({ headDimCkv: 512, headDimKpe: kpe, qDtype: 'f16', kvDtype: 'f16', oDtype: 'bf16', causal: true, nativeF16: true, subgroupSize: 32, rowBlocks, wideKV, pageShift: 6, qStageRows });
    const vars = wgslWorkgroupVariables(wgsl);
    expect(vars.length).toBeGreaterThan(2);
    for (const v of vars) expect(v.bytes % 16, `${v.name}: ${v.bytes} bytes`).toBe(0);
    const total = vars.reduce((a, v) => a + v.bytes, 0);
    expect(total).toBeLessThanOrEqual(mlaTcLayout(512 + kpe, rowBlocks, qStageRows).smemBytes);
    expect(total).toBeLessThanOrEqual(49152);
  });

  it('the default 32-row kernel fits 32 KB with Q staged 16 rows a pass, not 32', () => {
    expect(mlaTcLayout(576, 2, 32).smemBytes).toBeGreaterThan(32768);
    expect(mlaTcLayout(576, 2, 16).smemBytes).toBeLessThanOrEqual(32768);
  });
});
