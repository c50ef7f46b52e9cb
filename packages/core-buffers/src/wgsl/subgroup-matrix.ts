/**
 * What the tensor-core (subgroup-matrix) kernels of every family share: the device check and the
 * small WGSL builders their generators use.
 */
import type { GpuContext } from '../context';

/**
 * Why `ctx` can't run a 16x16x16 f16 -> f32 subgroup-matrix kernel with one fixed subgroup size,
 * or undefined when it can. Families add their own dtype and size checks after this.
 */
export function subgroupMatrixF16Support(ctx: GpuContext): string | undefined {
  if (!ctx.features.has('chromium-experimental-subgroup-matrix')) return 'the device offers no subgroup matrices';
  if (!ctx.hasF16 || !ctx.hasSubgroups) return 'it needs the shader-f16 and subgroups features';
  const ok = ctx.subgroupMatrixConfigs.some((m) => m.M === 16 && m.N === 16 && m.K === 16 && m.componentType === 'f16' && m.resultComponentType === 'f32');
  if (!ok) return 'the device has no 16x16x16 f16->f32 subgroup-matrix config';
  if (ctx.subgroupMinSize !== ctx.subgroupMaxSize || ![16, 32, 64].includes(ctx.subgroupMinSize)) {
    return 'it needs one fixed subgroup size of 16, 32 or 64';
  }
  return undefined;
}

/** WGSL statements reducing `v` (max or sum) over `lanes` consecutive lanes (a power of two). */
export function wgslShuffleReduce(v: string, op: 'max' | '+', lanes: number): string {
  const lines: string[] = [];
  for (let m = 1; m < lanes; m *= 2) {
    lines.push(op === 'max' ? `${v} = max(${v}, subgroupShuffleXor(${v}, ${m}u));` : `${v} += subgroupShuffleXor(${v}, ${m}u);`);
  }
  return lines.join(' ');
}

/** WGSL expression: two vec4<f32> as 8 f16 in one 16-byte word (vec4<u32>). */
export function wgslPackF16x8(a: string, b: string): string {
  return `vec4<u32>(pack2x16float(${a}.xy), pack2x16float(${a}.zw), pack2x16float(${b}.xy), pack2x16float(${b}.zw))`;
}
