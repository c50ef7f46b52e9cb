/**
 * The tensor-core kernel cannot run on lavapipe (no subgroup matrices), so CI checks what can be
 * checked without one: every workgroup variable of the generated WGSL is a multiple of 16 bytes
 * (a smaller one placed before a matrix tile broke the matrix loads' alignment on NVIDIA, with no
 * error) and the tiles fit the 48 KB the kernel is planned against.
 */
import { wgslWorkgroupVariables as workgroupVariables } from '@webinfer/reference';
import { describe, expect, it } from 'vitest';
import { tensorCorePrefillWgsl } from '../src';
import type { TensorCorePrefillConfig } from '../src/shaders/prefill-tc.wgsl';
import { tensorCoreLayout } from '../src/shaders/prefill-tc.wgsl';

const base = { groupSize: 4, qDtype: 'f16', kvDtype: 'f16', oDtype: 'f16', posEncoding: 'NONE', softCap: false, maskMode: 'causal', nativeF16: true, subgroupSize: 32 } as const;
const configs: TensorCorePrefillConfig[] = [];
for (const [dq, dv] of [[64, 64], [128, 128], [192, 128], [256, 256]]) {
  for (const subgroups of [4, 8]) {
    for (const extra of [{}, { posEncoding: 'ROPE_LLAMA' as const }, { kvDtype: 'fp8_e4m3' as const, wideKV: false }, { wideKV: true, pageShift: 4 }, { maskMode: 'custom' as const, sinks: true }, { keysPerTile: 16 as const }, { keysPerTile: 16 as const, posEncoding: 'ROPE_LLAMA' as const }]) {
      if (extra && 'posEncoding' in extra && dq !== dv) continue;
      configs.push({ ...base, headDimQk: dq, headDimVo: dv, subgroups, ...extra });
    }
  }
}

describe('tensor-core prefill WGSL', () => {
  it.each(configs.map((c) => [`${c.headDimQk}/${c.headDimVo} x${c.subgroups} ${c.posEncoding} ${c.kvDtype} wide ${c.wideKV} ${c.maskMode}`, c] as const))('%s: workgroup variables are 16-byte multiples', (_, c) => {
    const L = tensorCoreLayout(c);
    const vars = workgroupVariables(tensorCorePrefillWgsl(c));
    expect(vars.length).toBeGreaterThan(2);
    for (const v of vars) expect(v.bytes % 16, `${v.name}: ${v.bytes} bytes`).toBe(0);
    const total = vars.reduce((a, v) => a + v.bytes, 0);
    // The layout's estimate (what the engine checks against the device limit) covers them all.
    expect(total).toBeLessThanOrEqual(L.smemBytes);
  });

  it('8 subgroups at D=128 fit 32 KB with 16-key tiles only', () => {
    const c = { ...base, headDimQk: 128, headDimVo: 128, subgroups: 8 };
    expect(tensorCoreLayout(c).smemBytes).toBeGreaterThan(32768);
    expect(tensorCoreLayout({ ...c, keysPerTile: 16 }).smemBytes).toBeLessThanOrEqual(32768);
  });

  it('the 4-subgroup D=128 and 8-subgroup D=128 kernels fit 48 KB; 8 subgroups at D=256 do not (4 are chosen)', () => {
    const c = { ...base, headDimQk: 128, headDimVo: 128 };
    expect(tensorCoreLayout({ ...c, subgroups: 4 }).smemBytes).toBeLessThanOrEqual(49152);
    expect(tensorCoreLayout({ ...c, subgroups: 8 }).smemBytes).toBeLessThanOrEqual(49152);
    const d = { ...base, headDimQk: 256, headDimVo: 256 };
    expect(tensorCoreLayout({ ...d, subgroups: 8 }).smemBytes).toBeGreaterThan(49152);
    expect(tensorCoreLayout({ ...d, subgroups: 4, posEncoding: 'ROPE_LLAMA' }).smemBytes).toBeLessThanOrEqual(49152);
  });
});
