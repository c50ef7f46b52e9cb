/**
 * MLA decode's schedule built on the GPU from GPU-resident lengths (xqaMla's calling convention).
 * One query token per request; one thread per (request, row tile, split) writes the work item
 * the MLA kernel reads. Lengths are clamped to the page-table row.
 */
import { DIRECT, UniformSchema, WORK_ITEM_WORDS } from '@webinfer/core-buffers';

export const mlaScheduleUniforms = new UniformSchema('MlaScheduleParams', {
  batch: 'u32',
  tiles: 'u32',
  splits: 'u32',
  pages_per_seq: 'u32',
  page_size: 'u32',
  rows_per_tile: 'u32',
  seq_offset: 'u32',
  seq_stride: 'u32',
});

export function mlaScheduleWgsl(): string {
  return `${mlaScheduleUniforms.wgsl()}
@group(0) @binding(0) var<uniform> params: MlaScheduleParams;
@group(0) @binding(1) var<storage, read> seq_lens: array<u32>;
@group(0) @binding(2) var<storage, read_write> plan: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let id = gid.x;
  if (id >= params.batch * params.tiles * params.splits) { return; }
  let c = id % params.splits;
  let t = (id / params.splits) % params.tiles;
  let b = id / (params.splits * params.tiles);
  let len = min(seq_lens[params.seq_offset + b * params.seq_stride], params.pages_per_seq * params.page_size);
  let chunk = max(32u, ((len + params.splits - 1u) / params.splits + 31u) / 32u * 32u);
  let start = min(len, c * chunk);
  let w = id * ${WORK_ITEM_WORDS}u;
  plan[w] = b;
  plan[w + 1u] = 1u;
  plan[w + 2u] = len;
  plan[w + 3u] = b * params.pages_per_seq;
  plan[w + 4u] = t * params.rows_per_tile;
  plan[w + 5u] = start;
  plan[w + 6u] = min(len, start + chunk);
  plan[w + 7u] = select(${DIRECT}u, c, params.splits > 1u);
  plan[w + 8u] = 0u;
}`;
}
