/**
 * The decode schedule built on the GPU from GPU-resident sequence lengths (XQA's calling
 * convention: page table and seq_lens live on the device, so no CPU plan can read them). One
 * thread per (request, split): it writes the work item the decode kernels read, cutting the
 * visible range [lo, len) into `splits` chunks. Lengths are clamped to the page-table row, so a bad
 * length cannot address past it.
 */
import { UniformSchema } from '@webinfer/core-buffers';
import { DIRECT_SLOT, WORK_ITEM_WORDS } from './decode-common';

export const deviceScheduleUniforms = new UniformSchema('DeviceScheduleParams', {
  batch: 'u32',
  splits: 'u32',
  pages_per_seq: 'u32',
  page_size: 'u32',
  /** Tokens visible before the last (sliding window size), or 0 for all. */
  window: 'u32',
  seq_offset: 'u32',
  seq_stride: 'u32',
  q_len: 'u32',
});

export function deviceScheduleWgsl(): string {
  return `${deviceScheduleUniforms.wgsl()}
@group(0) @binding(0) var<uniform> params: DeviceScheduleParams;
@group(0) @binding(1) var<storage, read> seq_lens: array<u32>;
@group(0) @binding(2) var<storage, read_write> plan: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let id = gid.x;
  if (id >= params.batch * params.q_len * params.splits) { return; }
  let c = id % params.splits;
  let r = id / params.splits;
  let b = r / params.q_len;
  let len = min(seq_lens[params.seq_offset + b * params.seq_stride], params.pages_per_seq * params.page_size);
  var lo = 0u;
  if (params.window > 0u && len > params.window) { lo = len - params.window; }
  // Chunks of whole 16-token groups; trailing chunks of short requests are empty (the merge
  // gives their -inf LSE no weight).
  let chunk = max(16u, ((len - lo + params.splits - 1u) / params.splits + 15u) / 16u * 16u);
  let start = min(len, lo + c * chunk);
  let end = min(len, start + chunk);
  let w = id * ${WORK_ITEM_WORDS}u;
  plan[w] = r;
  plan[w + 1u] = start;
  plan[w + 2u] = end;
  plan[w + 3u] = select(${DIRECT_SLOT}u, id, params.splits > 1u);
  plan[w + 4u] = b * params.pages_per_seq;
  plan[w + 5u] = len;
  plan[w + 6u] = 0u;
  plan[w + 7u] = 0u;
}`;
}
