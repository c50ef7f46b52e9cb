/**
 * cuDNN's LSE layout: `[B, maxTokenPerSequence, Hq]`, natural log, one block per request. The
 * kernels write base-2 LSEs packed by qo_indptr; this scatters and rescales them. Padding rows
 * hold -inf.
 */
import { bindGroup, encodeDispatch, foldWorkgroups, type GpuContext, getKernel, type Tensor, UniformSchema } from '@webinfer/core-buffers';

const padUniforms = new UniformSchema('PadParams', { batch: 'u32', max_t: 'u32', heads: 'u32', groups_x: 'u32' });
const WG = 64;

function padWgsl(): string {
  return `${padUniforms.wgsl()}
@group(0) @binding(0) var<uniform> params: PadParams;
@group(0) @binding(1) var<storage, read> lse: array<u32>;
@group(0) @binding(2) var<storage, read> indptr: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = (wg.x + wg.y * params.groups_x) * ${WG}u + lid;
  if (id >= params.batch * params.max_t * params.heads) { return; }
  let h = id % params.heads;
  let i = (id / params.heads) % params.max_t;
  let b = id / (params.heads * params.max_t);
  let len = indptr[b + 1u] - indptr[b];
  var bits = 0xff800000u;
  if (i < len) {
    let v = lse[(indptr[b] + i) * params.heads + h];
    // -inf (nothing visible) passes through as bits; finite base-2 values become natural log.
    bits = select(bitcast<u32>(bitcast<f32>(v) * 0.6931471805599453), v, (v & 0x7fffffffu) >= 0x7f800000u);
  }
  out[id] = bits;
}`;
}

export function padLse(ctx: GpuContext, lse: Tensor, qoIndptr: Int32Array, maxT: number, encoder?: GPUCommandEncoder): Tensor {
  const batch = qoIndptr.length - 1;
  const heads = lse.shape[1];
  const out = ctx.empty([batch, maxT, heads], 'f32', 'prefill/lse-padded');
  const indptr = ctx.tensor(Uint32Array.from(qoIndptr), [qoIndptr.length], 'u32', 'prefill/lse-indptr');
  const kernel = getKernel(ctx, { id: 'prefill/lse-pad', config: {}, wgsl: padWgsl, bindings: ['uniform', 'read-only-storage', 'read-only-storage', 'storage'] });
  const total = batch * maxT * heads;
  const groups = foldWorkgroups(ctx, Math.ceil(total / WG));
  const uniform = padUniforms.createBuffer(ctx.device, { batch, max_t: maxT, heads, groups_x: groups[0] }, 'prefill/lse-pad');
  const group = bindGroup(ctx, kernel, [uniform, lse.buffer, indptr.buffer, out.buffer]);
  const enc = encoder ?? ctx.device.createCommandEncoder({ label: 'prefill/lse-pad' });
  if (total > 0) encodeDispatch(enc, kernel, group, groups);
  if (!encoder) {
    ctx.submit([enc.finish()]);
    uniform.destroy();
    indptr.destroy();
  }
  return out;
}
