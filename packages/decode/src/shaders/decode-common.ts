/**
 * WGSL shared by the two decode kernels: the work-item record, the bind group (both kernels take
 * the same bindings, so the wrapper binds them the same way), the work-item load and the logit
 * transform.
 */
import { type FloatDType, type PosEncodingMode, UniformSchema, elementsPerWord, pagedAddressingUniforms, wgslPagedAddress } from '@webinfer/core-buffers';

export type { PosEncodingMode } from '@webinfer/core-buffers';

/** What every tensor-core decode kernel config shares: output dtype, logit transform and masks. */
export interface TensorCoreDecodeOutputs {
  oDtype: FloatDType;
  posEncoding: PosEncodingMode;
  softCap: boolean;
  sinks: boolean;
  pagePow2: boolean;
  specMask?: boolean;
}

export const decodeUniforms = new UniformSchema('DecodeParams', {
  num_work: 'u32',
  num_kv_heads: 'u32',
  num_qo_heads: 'u32',
  page_size: 'u32',
  page_shift: 'u32',
  ...pagedAddressingUniforms('k'),
  ...pagedAddressingUniforms('v'),
  q_offset: 'u32',
  q_stride_row: 'u32',
  q_stride_head: 'u32',
  o_offset: 'u32',
  lse_offset: 'u32',
  part_o_offset: 'u32',
  part_lse_offset: 'u32',
  work_offset: 'u32',
  indices_offset: 'u32',
  window_left: 'i32',
  sm_scale: 'f32',
  sm_scale_log2: 'f32',
  soft_cap: 'f32',
  v_scale: 'f32',
  rope_rcp_scale: 'f32',
  rope_log2_theta: 'f32',
  groups_x: 'u32',
  spec_q_len: 'u32',
  mask_offset: 'u32',
  mask_words: 'u32',
});

/** u32 fields per work item in the plan buffer. */
export const WORK_ITEM_WORDS = 8;
/** Slot value of a chunk whose row is not split. */
export const DIRECT_SLOT = 0xffffffff;
/** Row of a padding work item (graph-mode schedules have a fixed length); its workgroups exit. */
export const PADDING_ROW = 0xffffffff;

/** Work-item struct and the bindings of both decode kernels; K/V arrays of `kvLoadType`. */
export function decodeBindingsWgsl(kvLoadType: string): string {
  return `struct WorkItem { row: u32, start: u32, end: u32, slot: u32, page_base: u32, kv_len: u32, alibi_row: u32, pad: u32 }

@group(0) @binding(0) var<uniform> params: DecodeParams;
@group(0) @binding(1) var<storage, read> q_in: array<u32>;
@group(0) @binding(2) var<storage, read> k_cache: array<${kvLoadType}>;
@group(0) @binding(3) var<storage, read> v_cache: array<${kvLoadType}>;
@group(0) @binding(4) var<storage, read> plan: array<u32>;
@group(0) @binding(5) var<storage, read> sinks: array<f32>;
@group(0) @binding(6) var<storage, read_write> o_out: array<u32>;
@group(0) @binding(7) var<storage, read_write> lse_out: array<u32>;
@group(0) @binding(8) var<storage, read_write> ws: array<f32>;

var<workgroup> item: WorkItem;

${wgslPagedAddress('k')}
${wgslPagedAddress('v')}`;
}

/**
 * The start of a head-grouped kernel: workgroup `linear` serves head group `hg` (of `headGroups`)
 * of KV head `kvh` for work item `work`, read into `wi` (padding items and the folded grid's
 * spare workgroups return).
 */
export function headGroupPrologueWgsl(headGroups: number): string {
  return `let linear = wgid.x + wgid.y * params.groups_x;
  if (linear >= params.num_work * params.num_kv_heads * ${headGroups}u) { return; }
  let hg = linear % ${headGroups}u;
  let kvh = (linear / ${headGroups}u) % params.num_kv_heads;
  let work = linear / (${headGroups}u * params.num_kv_heads);
  ${loadWorkItemWgsl('work')}`;
}

/**
 * WGSL staging the 16 query rows of head group `hg` (heads past the group are zero) as f16 into
 * `smem` (16-byte words, rows `stride` words apart from word `base`), `threads` invocations
 * sharing the work; the tensor-core kernels load them as left matrices after a barrier.
 */
export function stageQRowsF16Wgsl(o: { headDim: number; groupSize: number; threads: number; base: number; stride: number }): string {
  const U8 = o.headDim / 8;
  return `for (var idx = lid; idx < ${16 * U8}u; idx += ${o.threads}u) {
    let qr = idx / ${U8}u;
    let u = idx % ${U8}u;
    var w = vec4<u32>(0u);
    if (hg * 16u + qr < ${o.groupSize}u) {
      let b = params.q_offset + wi.row * params.q_stride_row + (kvh * ${o.groupSize}u + hg * 16u + qr) * params.q_stride_head + u * 8u;
      w = vec4<u32>(pack2x16float(vec2<f32>(load_q(b), load_q(b + 1u))), pack2x16float(vec2<f32>(load_q(b + 2u), load_q(b + 3u))),
                    pack2x16float(vec2<f32>(load_q(b + 4u), load_q(b + 5u))), pack2x16float(vec2<f32>(load_q(b + 6u), load_q(b + 7u))));
    }
    smem[${o.base}u + qr * ${o.stride}u + u] = w;
  }`;
}

/** Reads work item `work` into `wi`, uniform across the workgroup (loop bounds need that). */
export function loadWorkItemWgsl(work: string): string {
  return `if (lid == 0u) {
    let b = params.work_offset + ${work} * ${WORK_ITEM_WORDS}u;
    item = WorkItem(plan[b], plan[b + 1u], plan[b + 2u], plan[b + 3u], plan[b + 4u], plan[b + 5u], plan[b + 6u], 0u);
  }
  let wi = workgroupUniformLoad(&item);
  if (wi.row == ${PADDING_ROW}u) { return; }`;
}

/**
 * `fn spec_masked(row, kv_len, j) -> bool` for speculative decoding (xqa's mask): the last
 * spec_q_len keys of a request are the draft tokens; query row i of the request sees draft key t
 * only where bit t of its mask row is set (u32 words at plan[mask_offset], one row per query row).
 * Keys before the drafts are always visible.
 */
export function specMaskWgsl(enabled: boolean | undefined): string {
  if (!enabled) return '';
  return `fn spec_masked(row: u32, kv_len: u32, j: u32) -> bool {
  let t = i32(j) - (i32(kv_len) - i32(params.spec_q_len));
  if (t < 0) { return false; }
  let w = plan[params.mask_offset + row * params.mask_words + u32(t) / 32u];
  return ((w >> (u32(t) % 32u)) & 1u) == 0u;
}`;
}

/** The masking term a kernel adds for speculative decoding (empty without it). */
export function specMaskTerm(enabled: boolean | undefined, j: string): string {
  return enabled ? ` || spec_masked(wi.row, wi.kv_len, ${j})` : '';
}

/** Logit of a raw dot product `acc` for qo head `h` and key position `j`, in base 2. */
export function decodeLogitExpr(posEncoding: PosEncodingMode, softCap: boolean): string {
  if (posEncoding === 'ALIBI') {
    return '(acc * params.sm_scale + alibi_slope(h, params.num_qo_heads) * (f32(j) - f32(wi.alibi_row))) * LOG2E';
  }
  if (softCap) return 'soft_cap(acc * params.sm_scale, params.soft_cap) * LOG2E';
  return 'acc * params.sm_scale_log2';
}

/**
 * WGSL finishing query head `h` of work item `wi` from its state `m` / `den` (vars): a direct
 * write folds the sink in (and sets `sc`, the factor it puts on O) and stores the LSE; a split
 * chunk stores its LSE in its partial slot. `lead` is the condition of the one lane that stores.
 */
export function decodeFinishStateWgsl(sinks: boolean, lead: string): string {
  return `var sc = 1.0;
  if (wi.slot == ${DIRECT_SLOT}u) {
    ${
      sinks
        ? `let sk = sinks[h] * LOG2E;
    let m2 = max(m, sk);
    sc = exp2(m - m2);
    den = den * sc + exp2(sk - m2);
    m = m2;`
        : ''
    }
    if (${lead}) { lse_out[params.lse_offset + wi.row * params.num_qo_heads + h] = lse_bits(m, den); }
  } else if (${lead}) {
    ws[params.part_lse_offset + wi.slot * params.num_qo_heads + h] = bitcast<f32>(lse_bits(m, den));
  }`;
}

/**
 * WGSL storing `o` (elements e..e+3 of head `h`, not yet divided by `den`): to the output in its
 * dtype (times `sc` and v_scale), or to the chunk's partial slot.
 */
export function decodeStoreO4Wgsl(oDtype: FloatDType, headDim: number, o: string, e: string): string {
  const per = elementsPerWord(oDtype);
  const store =
    per === 1
      ? 'for (var i = 0u; i < 4u; i++) { o_out[w + i] = bitcast<u32>(res[i]); }'
      : per === 2
        ? `o_out[w] = pack_${oDtype}(res.xy); o_out[w + 1u] = pack_${oDtype}(res.zw);`
        : `o_out[w] = pack_${oDtype}(res);`;
  return `{
        var res = vec4<f32>(0.0);
        if (wi.slot == ${DIRECT_SLOT}u) {
          // !(den <= 0): a NaN sum (NaN in K or V) reaches the output; an empty row stays 0.
          if (!(den <= 0.0)) { res = ${o} * sc / den * params.v_scale; }
          let w = (params.o_offset + (wi.row * params.num_qo_heads + h) * ${headDim}u + ${e}) / ${per}u;
          ${store}
        } else {
          if (!(den <= 0.0)) { res = ${o} / den; }
          let b = params.part_o_offset + (wi.slot * params.num_qo_heads + h) * ${headDim}u + ${e};
          ws[b] = res.x; ws[b + 1u] = res.y; ws[b + 2u] = res.z; ws[b + 3u] = res.w;
        }
      }`;
}
