/**
 * FlashInfer's `return_lse_base_on_e`: the kernels and the merge write base-2 LSEs; this rescales
 * a finished LSE tensor to natural log in place (-inf stays -inf).
 */
import { type GpuContext, type Tensor, UniformSchema, bindGroup, encodeDispatch, foldWorkgroups, getKernel } from '@webinfer/core-buffers';

const lnUniforms = new UniformSchema('LnParams', { count: 'u32', offset: 'u32', groups_x: 'u32' });
const WG = 64;

function lnWgsl(): string {
  return `${lnUniforms.wgsl()}
@group(0) @binding(0) var<uniform> params: LnParams;
@group(0) @binding(1) var<storage, read_write> lse: array<u32>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = (wg.x + wg.y * params.groups_x) * ${WG}u + lid;
  if (id >= params.count) { return; }
  let v = lse[params.offset + id];
  if ((v & 0x7fffffffu) < 0x7f800000u) { lse[params.offset + id] = bitcast<u32>(bitcast<f32>(v) * 0.6931471805599453); }
}`;
}

/** Encodes the rescale; returns the uniform buffer to destroy after submit. */
export function encodeLseToNatural(ctx: GpuContext, encoder: GPUCommandEncoder, lse: Tensor): GPUBuffer[] {
  const kernel = getKernel(ctx, { id: 'mla/lse-natural', config: {}, wgsl: lnWgsl, bindings: ['uniform', 'storage'] });
  const count = lse.numel;
  const groups = foldWorkgroups(ctx, Math.ceil(count / WG));
  const uniform = lnUniforms.createBuffer(ctx.device, { count, offset: lse.offset, groups_x: groups[0] }, 'mla/lse-natural');
  if (count > 0) encodeDispatch(encoder, kernel, bindGroup(ctx, kernel, [uniform, lse.buffer]), groups);
  return [uniform];
}
