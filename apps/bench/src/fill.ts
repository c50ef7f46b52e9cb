/**
 * Deterministic GPU fill for large benchmark tensors: element i gets k/scale with
 * k = hash(seed, i) mod (2*range+1) - range, a value every dtype in use holds exactly. The CPU
 * computes the same values for --verify, so gigabyte caches never cross the bus.
 */
import {
  bindGroup,
  elementsPerWord,
  encodeDispatch,
  type FloatDType,
  foldWorkgroups,
  type GpuContext,
  getKernel,
  type Tensor,
  UniformSchema,
  wgslPackHelpers,
} from '@webinfer/core-buffers';

/** Exact grids per dtype: (range, scale) so |k| <= range fits the mantissa. */
export function valueGrid(dtype: FloatDType): { range: number; scale: number } {
  switch (dtype) {
    case 'fp8_e4m3':
      return { range: 16, scale: 8 };
    case 'fp8_e5m2':
      return { range: 8, scale: 4 };
    default:
      return { range: 128, scale: 128 };
  }
}

/** 32-bit integer hash (lowbias32), identical in WGSL. */
export function hash32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

export function fillValue(seed: number, index: number, dtype: FloatDType): number {
  const { range, scale } = valueGrid(dtype);
  const k = (hash32((index ^ Math.imul(seed, 0x9e3779b9)) >>> 0) % (2 * range + 1)) - range;
  return k / scale;
}

const fillUniforms = new UniformSchema('FillParams', { count_words: 'u32', seed_mix: 'u32', range: 'u32', scale: 'f32', groups_x: 'u32' });

function fillWgsl(c: { dtype: FloatDType }): string {
  const per = elementsPerWord(c.dtype);
  const vals = Array.from({ length: per }, (_, e) => `value(w * ${per}u + ${e}u)`).join(', ');
  const packed = per === 1 ? `bitcast<u32>(${vals})` : `pack_${c.dtype}(vec${per}<f32>(${vals}))`;
  return `${fillUniforms.wgsl()}
${wgslPackHelpers([c.dtype])}
@group(0) @binding(0) var<uniform> params: FillParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
fn hash32(x: u32) -> u32 {
  var h = x;
  h ^= h >> 16u; h *= 0x7feb352du; h ^= h >> 15u; h *= 0x846ca68bu; h ^= h >> 16u;
  return h;
}
fn value(i: u32) -> f32 {
  let k = i32(hash32(i ^ params.seed_mix) % (2u * params.range + 1u)) - i32(params.range);
  return f32(k) / params.scale;
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = (wg.x + wg.y * params.groups_x) * 256u + lid;
  if (w >= params.count_words) { return; }
  out[w] = ${packed};
}`;
}

/** Fills a contiguous tensor (from element 0 of its buffer) with fillValue(seed, i). */
export function gpuFill(ctx: GpuContext, t: Tensor, seed: number): void {
  const dtype = t.dtype as FloatDType;
  const per = elementsPerWord(dtype);
  const words = Math.ceil(t.numel / per);
  const kernel = getKernel(ctx, { id: 'bench/fill', config: { dtype }, wgsl: fillWgsl, bindings: ['uniform', 'storage'] });
  const groups = foldWorkgroups(ctx, Math.ceil(words / 256));
  const { range, scale } = valueGrid(dtype);
  const uniform = fillUniforms.createBuffer(ctx.device, { count_words: words, seed_mix: Math.imul(seed, 0x9e3779b9) >>> 0, range, scale, groups_x: groups[0] });
  const enc = ctx.device.createCommandEncoder({ label: 'bench/fill' });
  encodeDispatch(enc, kernel, bindGroup(ctx, kernel, [uniform, t.buffer]), groups);
  ctx.submit([enc.finish()]);
  uniform.destroy();
}
