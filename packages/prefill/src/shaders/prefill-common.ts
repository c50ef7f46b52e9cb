/**
 * What both prefill kernels share: the uniforms, the work-item record, the bindings, and WGSL for
 * the per-element mask and logit transform.
 *
 * Query rows are *packed* per kv head as FlashInfer does for GQA: packed row pr = i * G + g is
 * query row i of qo head kvh * G + g, so one tile of packed rows (all heads of a group) shares
 * every K/V tile it loads.
 */
import { DIRECT, type FloatDType, type PosEncodingMode, pagedAddressingUniforms, UniformSchema, WORK_ITEM_WORDS, wgslPagedAddress } from '@webinfer/core-buffers';

export type MaskMode = 'none' | 'causal' | 'custom';

/** Options that shape either kernel's code. */
export interface PrefillKernelOptions {
  headDimQk: number;
  headDimVo: number;
  /** Query heads per kv head. */
  groupSize: number;
  qDtype: FloatDType;
  kvDtype: FloatDType;
  oDtype: FloatDType;
  posEncoding: PosEncodingMode;
  softCap: boolean;
  maskMode: MaskMode;
  nativeF16: boolean;
  /** Per-head sink logits (natural log, f32 `[Hq]`) join each row's softmax denominator. */
  sinks?: boolean;
  /** log2 of the page size when it is a power of two: page and slot by shift and mask. */
  pageShift?: number;
}

export const prefillUniforms = new UniformSchema('PrefillParams', {
  num_work: 'u32',
  num_kv_heads: 'u32',
  num_qo_heads: 'u32',
  page_size: 'u32',
  ...pagedAddressingUniforms('k'),
  ...pagedAddressingUniforms('v'),
  q_offset: 'u32',
  q_stride_row: 'u32',
  q_stride_head: 'u32',
  o_offset: 'u32',
  lse_offset: 'u32',
  part_o_offset: 'u32',
  part_lse_offset: 'u32',
  indices_offset: 'u32',
  slot_indptr_offset: 'u32',
  window_left: 'i32',
  sm_scale: 'f32',
  sm_scale_log2: 'f32',
  soft_cap: 'f32',
  v_scale: 'f32',
  rope_rcp_scale: 'f32',
  rope_log2_theta: 'f32',
  groups_x: 'u32',
});

/** The work-item record (core-buffers' tile schedule) the prefill kernels read. */
export { DIRECT, WORK_ITEM_WORDS };

export const PREFILL_BINDINGS = [
  'uniform',
  'read-only-storage',
  'read-only-storage',
  'read-only-storage',
  'read-only-storage',
  'read-only-storage',
  'storage',
  'storage',
  'storage',
  'read-only-storage',
] as const;

/**
 * Bindings, the work item and the K/V row addressing. `kvVec4` views the K/V caches as 16-byte
 * words (the tensor-core kernel's wide loads; rows must start at multiples of 8 f16).
 * `workgroupItem` declares the workgroup copy of the work item that loadWorkItemWgsl fills.
 */
export function prefillBindingsWgsl(c: PrefillKernelOptions, kvVec4 = false, workgroupItem = true): string {
  const kvWord = kvVec4 ? 'vec4<u32>' : 'u32';
  const at = (j: string) =>
    c.pageShift === undefined
      ? `plan[params.indices_offset + base + ${j} / params.page_size], ${j} % params.page_size`
      : `plan[params.indices_offset + base + (${j} >> ${c.pageShift}u)], ${j} & ${(2 ** c.pageShift - 1) >>> 0}u`;
  return `struct WorkItem { qo_start: u32, qo_len: u32, kv_len: u32, page_base: u32, tile: u32, kv_start: u32, kv_end: u32, chunk: u32, mask_bit: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> params: PrefillParams;
@group(0) @binding(1) var<storage, read> q_in: array<u32>;
@group(0) @binding(2) var<storage, read> k_cache: array<${kvWord}>;
@group(0) @binding(3) var<storage, read> v_cache: array<${kvWord}>;
@group(0) @binding(4) var<storage, read> plan: array<u32>;
@group(0) @binding(5) var<storage, read> mask: array<u32>;
@group(0) @binding(6) var<storage, read_write> o_out: array<u32>;
@group(0) @binding(7) var<storage, read_write> lse_out: array<u32>;
@group(0) @binding(8) var<storage, read_write> ws: array<f32>;
@group(0) @binding(9) var<storage, read> sinks: array<f32>;

${
  workgroupItem
    ? `// 48 bytes, a multiple of 16: the driver may place workgroup variables in any order, and
// subgroup-matrix tiles after a smaller one would lose their 16-byte alignment.
var<workgroup> item: WorkItem;`
    : ''
}

${wgslPagedAddress('k')}
${wgslPagedAddress('v')}
fn k_row(j: u32, base: u32, kvh: u32) -> u32 {
  return k_elem(${at('j')}, kvh);
}
fn v_row(j: u32, base: u32, kvh: u32) -> u32 {
  return v_elem(${at('j')}, kvh);
}
fn kv_rows(j: u32, base: u32, kvh: u32) -> vec2<u32> {
  return vec2<u32>(k_row(j, base, kvh), v_row(j, base, kvh));
}`;
}

/**
 * Loads work item `work` into `wi` (uniform across the workgroup: loop bounds depend on it).
 * `direct`: every invocation reads it from the plan (a read-only binding, so the value is uniform
 * without a workgroup copy, and the kernel's workgroup memory is all its tiles').
 */
export function loadWorkItemWgsl(work: string, direct = false): string {
  if (direct) {
    return `let wb = ${work} * ${WORK_ITEM_WORDS}u;
  let wi = WorkItem(plan[wb], plan[wb + 1u], plan[wb + 2u], plan[wb + 3u], plan[wb + 4u], plan[wb + 5u], plan[wb + 6u], plan[wb + 7u], plan[wb + 8u], 0u, 0u, 0u);
  if (wi.qo_len == 0u) { return; } // padding of a graph-mode schedule`;
  }
  return `if (lid == 0u) {
    let b = ${work} * ${WORK_ITEM_WORDS}u;
    item = WorkItem(plan[b], plan[b + 1u], plan[b + 2u], plan[b + 3u], plan[b + 4u], plan[b + 5u], plan[b + 6u], plan[b + 7u], plan[b + 8u], 0u, 0u, 0u);
  }
  let wi = workgroupUniformLoad(&item);
  if (wi.qo_len == 0u) { return; } // padding of a graph-mode schedule`;
}

/**
 * The KV range a tile of packed rows can see, as uniform values `kv_lo`, `kv_hi` (so whole K/V tiles
 * outside the causal diagonal or the window are skipped, not just masked).
 */
export function tileKvRangeWgsl(c: PrefillKernelOptions, rowsPerTile: number): string {
  const G = c.groupSize;
  return `let first_row = wi.tile / ${G}u;
  let last_row = min((wi.tile + ${rowsPerTile - 1}u) / ${G}u, max(wi.qo_len, 1u) - 1u);
  let delta = i32(wi.kv_len) - i32(wi.qo_len);
  var kv_lo = wi.kv_start;
  var kv_hi = wi.kv_end;
  ${c.maskMode === 'causal' ? 'kv_hi = min(kv_hi, u32(max(i32(last_row) + delta + 1, 0)));' : ''}
  if (params.window_left >= 0) {
    kv_lo = max(kv_lo, u32(max(i32(first_row) + delta - params.window_left, 0)));
  }`;
}

/** WGSL `fn keep(row, j, wi_...) -> bool`: FlashInfer's mask for query row `row`, key `j`. */
export function keepFnWgsl(c: PrefillKernelOptions): string {
  return `fn keep(row: u32, j: u32, qo_len: u32, kv_len: u32, kv_hi: u32, mask_bit: u32) -> bool {
  let p = i32(row) + i32(kv_len) - i32(qo_len);
  var ok = row < qo_len && j < kv_hi;
  ${c.maskMode === 'causal' ? 'ok = ok && i32(j) <= p;' : ''}
  ${c.maskMode === 'custom' ? 'if (ok) { let e = mask_bit + row * kv_len + j; ok = ((mask[e >> 5u] >> (e & 31u)) & 1u) == 1u; }' : ''}
  if (params.window_left >= 0) { ok = ok && i32(j) >= p - params.window_left; }
  return ok;
}`;
}

/** Base-2 logit of raw dot product `acc` for qo head `h`, query row `row`, key `j`. */
export function logitExpr(c: PrefillKernelOptions): string {
  if (c.posEncoding === 'ALIBI') {
    return '(acc * params.sm_scale + alibi_slope(h, params.num_qo_heads) * (f32(j) - f32(row))) * LOG2E';
  }
  if (c.softCap) return 'soft_cap(acc * params.sm_scale, params.soft_cap) * LOG2E';
  return 'acc * params.sm_scale_log2';
}

/** Storage dtype of a tile in workgroup memory: fp8 is widened once at load (to f16). */
export function tileDtype(d: FloatDType): 'f32' | 'f16' | 'bf16' {
  return d === 'fp8_e4m3' || d === 'fp8_e5m2' ? 'f16' : d;
}

/**
 * Output writing for one (row, 4-wide unit) of normalised `o`: straight to `o_out` (unsplit) or to
 * a partial slot in the workspace (split), plus the LSE from the thread that owns unit 0.
 */
export function writeOutputWgsl(c: PrefillKernelOptions): string {
  const Dv = c.headDimVo;
  const per = { f32: 1, f16: 2, bf16: 2, fp8_e4m3: 4, fp8_e5m2: 4 }[c.oDtype];
  const store =
    per === 1
      ? 'for (var e = 0u; e < 4u; e++) { o_out[w + e] = bitcast<u32>(val[e]); }'
      : `o_out[w] = pack_${c.oDtype}(val.xy); o_out[w + 1u] = pack_${c.oDtype}(val.zw);`;
  // A sink adds exp(sink) to the denominator (no value): rescale to the joint max first. Split
  // rows leave it to the merge, which adds it once.
  const sink = c.sinks
    ? `var m2 = m;
    var l2 = l;
    var scale = 1.0;
    {
      let sk = sinks[h] * LOG2E;
      let mj = max(m, sk);
      scale = select(0.0, exp2(m - mj), m > NEG_BIG);
      l2 = l * scale + exp2(sk - mj);
      m2 = mj;
    }`
    : 'let m2 = m;\n    let l2 = l;\n    let scale = 1.0;';
  return `fn write_out(wi: WorkItem, row: u32, h: u32, unit: u32, o: vec4<f32>, m: f32, l: f32) {
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let grow = wi.qo_start + row;
  if (wi.chunk == ${DIRECT}u) {
    ${sink}
    let val = o * (select(0.0, scale / l2, l2 > 0.0) * params.v_scale);
    let w = (params.o_offset + (grow * params.num_qo_heads + h) * ${Dv}u + unit * 4u) / ${per}u;
    ${store}
    if (unit == 0u) { lse_out[params.lse_offset + grow * params.num_qo_heads + h] = lse_bits(m2, l2); }
  } else {
    let slot = plan[params.slot_indptr_offset + grow] + wi.chunk;
    let at = params.part_o_offset + (slot * params.num_qo_heads + h) * ${Dv}u + unit * 4u;
    let val = o * inv;
    ws[at] = val.x; ws[at + 1u] = val.y; ws[at + 2u] = val.z; ws[at + 3u] = val.w;
    if (unit == 0u) { ws[params.part_lse_offset + slot * params.num_qo_heads + h] = bitcast<f32>(lse_bits(m, l)); }
  }
}`;
}
