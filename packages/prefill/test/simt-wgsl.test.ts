/**
 * The f32 kernel's workgroup memory as planned (simtLayout) against what its WGSL declares. With P
 * in registers the plan has no slack (the work item is read from the plan, not copied to workgroup
 * memory), so a 64 x 32 tile with swizzled Q/K rows fills a 32 KB device exactly: an undercount
 * here would fail pipeline creation there.
 */
import { wgslWorkgroupVariables } from '@webinfer/reference';
import { describe, expect, it } from 'vitest';
import { type SimtPrefillConfig, simtLayout, simtPrefillWgsl } from '../src/shaders/prefill-simt.wgsl';

const base = { groupSize: 4, qDtype: 'f16', kvDtype: 'f16', oDtype: 'f16', posEncoding: 'NONE', softCap: false, maskMode: 'causal', nativeF16: true, subgroupSoftmax: true } as const;
const configs: SimtPrefillConfig[] = [];
for (const d of [64, 128, 256]) {
  for (const [rowsPerTile, keysPerTile, wide] of [[64, 32, 'k'], [64, 32, 'none'], [32, 32, 'none'], [32, 16, 'none']] as const) {
    for (const swizzle of [false, true]) {
      for (const extra of [{}, { posEncoding: 'ROPE_LLAMA' as const }]) {
        configs.push({ ...base, headDimQk: d, headDimVo: d, rowsPerTile, keysPerTile, wide, pInRegisters: true, swizzle, ...extra });
      }
    }
  }
}

describe('f32 prefill WGSL', () => {
  it.each(configs.map((c) => [`D ${c.headDimQk} ${c.rowsPerTile}x${c.keysPerTile} ${c.wide} swizzle ${c.swizzle} ${c.posEncoding}`, c] as const))('%s: the plan counts every workgroup byte', (_, c) => {
    const vars = wgslWorkgroupVariables(simtPrefillWgsl(c));
    const total = vars.reduce((a, v) => a + v.bytes, 0);
    expect(vars.map((v) => v.name)).not.toContain('item');
    expect(total).toBeLessThanOrEqual(simtLayout(c).smemBytes);
  });

  it('64 x 32 tiles of D 128 fit 32 KB exactly with swizzled rows, not with padded ones', () => {
    const c: SimtPrefillConfig = { ...base, headDimQk: 128, headDimVo: 128, rowsPerTile: 64, keysPerTile: 32, pInRegisters: true };
    expect(simtLayout({ ...c, swizzle: true }).smemBytes).toBe(32768);
    expect(simtLayout(c).smemBytes).toBeGreaterThan(32768);
    expect(wgslWorkgroupVariables(simtPrefillWgsl({ ...c, swizzle: true })).reduce((a, v) => a + v.bytes, 0)).toBe(32768);
  });
});
