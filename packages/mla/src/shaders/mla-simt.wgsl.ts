/**
 * MLA attention in f32 (every device). One latent KV head serves all query heads, so a work item's
 * rows are packed (token, head) pairs — heads are the M dimension — and each compressed KV row
 * (ckv | kpe) is loaded once per tile for all of them:
 *   S = q_nope·ckvᵀ + q_pe·kpeᵀ (scaled), online softmax, O += P·ckv.
 * A workgroup of 256 invocations owns BM = 32 rows: invocation (g = lid / 32, lane = lid % 32)
 * computes S for rows 4g..4g+3 at key `lane` and O for the same rows at dims 4·(lane + 32u).
 * Q and K stream through workgroup memory 64 dims at a time (rows padded by one vec4, so stores
 * and reads are free of bank conflicts), V 8 keys at a time; the reads every invocation of a
 * 32-wide group shares (q, p) are broadcasts.
 */
import {
  type FloatDType,
  UniformSchema,
  WORK_ITEM_WORDS,
  DIRECT,
  elementsPerWord,
  pagedAddressingUniforms,
  wgslAttentionCommon,
  wgslDtypeHelpers,
  wgslEnables,
  wgslLoadVec4,
  wgslPackHelpers,
  wgslPagedAddress,
} from '@webinfer/core-buffers';

export const mlaUniforms = new UniformSchema('MlaParams', {
  num_work: 'u32',
  num_heads: 'u32',
  page_size: 'u32',
  ...pagedAddressingUniforms('ckv'),
  ...pagedAddressingUniforms('kpe'),
  ...pagedAddressingUniforms('val'),
  qn_offset: 'u32',
  qn_stride_tok: 'u32',
  qn_stride_head: 'u32',
  qp_offset: 'u32',
  qp_stride_tok: 'u32',
  qp_stride_head: 'u32',
  o_offset: 'u32',
  lse_offset: 'u32',
  part_o_offset: 'u32',
  part_lse_offset: 'u32',
  indices_offset: 'u32',
  slot_indptr_offset: 'u32',
  sm_scale_log2: 'f32',
  v_scale: 'f32',
  groups_x: 'u32',
});

export interface MlaShaderConfig {
  /** ckv width (V width too): 128, 256 or 512. */
  headDimCkv: number;
  /** kpe width: a multiple of 64, or 0. */
  headDimKpe: number;
  qDtype: FloatDType;
  kvDtype: FloatDType;
  oDtype: FloatDType;
  causal: boolean;
  nativeF16: boolean;
  /** vec4 in the V stage: 1024 (8 keys of 512) where workgroup memory allows, else 512. */
  vStageVec4: 512 | 1024;
  /** Bench only: drop a phase to see what it costs (results are wrong). */
  debugSkip?: 'S' | 'softmax' | 'PV';
}

/** Workgroup memory of the kernel in bytes. */
export function mlaSmemBytes(vStageVec4: number): number {
  return 16 * ROW_VEC4 * (MLA_ROWS + MLA_KEYS) + 16 * vStageVec4 + 4 * MLA_KEYS * MLA_ROWS + 4 * 6 * 32 + 64;
}

export const MLA_ROWS = 32;
export const MLA_KEYS = 32;
const KC = 64; // dims per Q/K stage
// Q and K stage rows hold KC dims plus one vec4 of padding: the 8 invocations that store (and the
// ones that read) a row's vec4 then fall on distinct banks.
const ROW_VEC4 = KC / 4 + 1;
const WG = 256;

export const MLA_BINDINGS = [
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
 * The bindings both MLA kernels declare (MLA_BINDINGS). `wideKV` views ckv/kpe as 16-byte words.
 * `val` holds the V rows: the ckv rows themselves (MLA) or a separate cache (xqaMla).
 */
export function mlaBindingsWgsl(wideKV: boolean): string {
  const kv = wideKV ? 'vec4<u32>' : 'u32';
  return `@group(0) @binding(0) var<uniform> params: MlaParams;
@group(0) @binding(1) var<storage, read> q_nope: array<u32>;
@group(0) @binding(2) var<storage, read> q_pe: array<u32>;
@group(0) @binding(3) var<storage, read> ckv: array<${kv}>;
@group(0) @binding(4) var<storage, read> kpe: array<${kv}>;
@group(0) @binding(5) var<storage, read> plan: array<u32>;
@group(0) @binding(6) var<storage, read_write> o_out: array<u32>;
@group(0) @binding(7) var<storage, read_write> lse_out: array<u32>;
@group(0) @binding(8) var<storage, read_write> ws: array<f32>;
@group(0) @binding(9) var<storage, read> val: array<u32>;`;
}

export function mlaSimtWgsl(c: MlaShaderConfig): string {
  const DC = c.headDimCkv;
  const DP = c.headDimKpe;
  const VK = (c.vStageVec4 * 4) / DC; // keys per V stage
  const nopeChunks = DC / KC;
  const chunks = nopeChunks + DP / KC;
  const U = DC / 128; // vec4 of O per row per invocation
  const VLOADS = c.vStageVec4 / 256; // V stage vec4 per invocation
  // Q and K of chunk \`ch\` into registers pq, pk (zeros outside the valid rows and keys).
  const fetchQK = (chunk: string) => {
    const ch = `(${chunk})`;
    return `for (var v = 0u; v < 2u; v++) {
      let d = ld_d + 32u * v;
      pq[v] = vec4<f32>(0.0);
      pk[v] = vec4<f32>(0.0);
      if (${ch} < ${nopeChunks}u) {
        if (ld_valid) { pq[v] = load_qn(qn_base + ${ch} * ${KC}u + d); }
        if (key_ok) { pk[v] = load_ckv(my_ckv + ${ch} * ${KC}u + d); }
      } else {
        if (ld_valid) { pq[v] = load_qp(qp_base + (${ch} - ${nopeChunks}u) * ${KC}u + d); }
        if (key_ok) { pk[v] = load_kpe(my_kpe + (${ch} - ${nopeChunks}u) * ${KC}u + d); }
      }
    }`;
  };
  // V rows of key group \`kb\` into registers pv.
  const fetchV = (group: string) => {
    const kb = `(${group})`;
    return `for (var v = 0u; v < ${VLOADS}u; v++) {
      let idx = lid + 256u * v;
      let k = idx / ${DC / 4}u;
      pv[v] = vec4<f32>(0.0);
      if (t0 + ${kb} * ${VK}u + k < kv_hi) { pv[v] = load_val(val_row[${kb} * ${VK}u + k] + (idx % ${DC / 4}u) * 4u); }
    }`;
  };
  const oPer = elementsPerWord(c.oDtype);
  const store =
    oPer === 1
      ? 'o_out[w] = bitcast<u32>(val.x); o_out[w + 1u] = bitcast<u32>(val.y); o_out[w + 2u] = bitcast<u32>(val.z); o_out[w + 3u] = bitcast<u32>(val.w);'
      : `o_out[w] = pack_${c.oDtype}(val.xy); o_out[w + 1u] = pack_${c.oDtype}(val.zw);`;
  return `${wgslEnables({ nativeF16: c.nativeF16 })}
${mlaUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslDtypeHelpers([c.qDtype, c.kvDtype], { nativeF16: c.nativeF16 })}
${c.oDtype === 'f32' ? '' : wgslPackHelpers([c.oDtype], { nativeF16: c.nativeF16 })}

struct WorkItem { qo_start: u32, qo_len: u32, kv_len: u32, page_base: u32, tile: u32, kv_start: u32, kv_end: u32, chunk: u32 }

${mlaBindingsWgsl(false)}

${wgslLoadVec4('load_qn', 'q_nope', c.qDtype)}
${wgslLoadVec4('load_qp', 'q_pe', c.qDtype)}
${wgslLoadVec4('load_ckv', 'ckv', c.kvDtype)}
${wgslLoadVec4('load_kpe', 'kpe', c.kvDtype)}
${wgslPagedAddress('ckv')}
${wgslPagedAddress('kpe')}
${wgslPagedAddress('val')}
${wgslLoadVec4('load_val', 'val', c.kvDtype)}

var<workgroup> item: WorkItem;
// S phase: Q chunk [${KC} dims][${MLA_ROWS} rows] as vec4 of 4 rows and K chunk [${KC}][${MLA_KEYS} keys];
// PV phase: V [${VK} keys][${DC} dims].
var<workgroup> qs: array<vec4<f32>, ${ROW_VEC4 * MLA_ROWS}>;
var<workgroup> ks: array<vec4<f32>, ${ROW_VEC4 * MLA_KEYS}>;
var<workgroup> vs: array<vec4<f32>, ${c.vStageVec4}>;
var<workgroup> ps: array<vec4<f32>, ${(MLA_KEYS * MLA_ROWS) / 4}>;
var<workgroup> m_s: array<f32, ${MLA_ROWS}>;
var<workgroup> l_s: array<f32, ${MLA_ROWS}>;
var<workgroup> alpha_s: array<f32, ${MLA_ROWS}>;
var<workgroup> ckv_row: array<u32, ${MLA_KEYS}>;
var<workgroup> kpe_row: array<u32, ${MLA_KEYS}>;
var<workgroup> val_row: array<u32, ${MLA_KEYS}>;

/** Element index of dim 0 of key j's ckv, kpe and V rows. */
fn key_rows(wi: WorkItem, j: u32) -> vec3<u32> {
  let page = plan[params.indices_offset + wi.page_base + j / params.page_size];
  let slot = j % params.page_size;
  return vec3<u32>(ckv_elem(page, slot, 0u), kpe_elem(page, slot, 0u), val_elem(page, slot, 0u));
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let work = wg.x + wg.y * params.groups_x;
  if (work >= params.num_work) { return; }
  if (lid == 0u) {
    let b = work * ${WORK_ITEM_WORDS}u;
    item = WorkItem(plan[b], plan[b + 1u], plan[b + 2u], plan[b + 3u], plan[b + 4u], plan[b + 5u], plan[b + 6u], plan[b + 7u]);
  }
  let wi = workgroupUniformLoad(&item);
  if (wi.qo_len == 0u) { return; } // padding of a graph-mode schedule
  let H = params.num_heads;
  let g = lid / 32u;
  let lane = lid % 32u;
  // Visible keys of the tile: causal clips at the last row's diagonal (bottom-right).
  let last_tok = min((wi.tile + ${MLA_ROWS - 1}u) / H, wi.qo_len - 1u);
  let delta = i32(wi.kv_len) - i32(wi.qo_len);
  var kv_hi = wi.kv_end;
  ${c.causal ? 'kv_hi = min(kv_hi, u32(max(i32(last_tok) + delta + 1, 0)));' : ''}
  if (lid < ${MLA_ROWS}u) {
    m_s[lid] = NEG_BIG;
    l_s[lid] = 0.0;
  }
  var o: array<array<vec4<f32>, ${U}>, 4>;
  for (var i = 0u; i < 4u; i++) {
    for (var u = 0u; u < ${U}u; u++) { o[i][u] = vec4<f32>(0.0); }
  }
  // Loader roles: Q rows and K keys by lid / 8, 4 dims at (lid % 8)*4 + 32*v.
  let ld_r = lid / 8u;
  let ld_d = (lid % 8u) * 4u;
  let ld_tok = (wi.tile + ld_r) / H;
  let ld_head = (wi.tile + ld_r) % H;
  let ld_valid = ld_tok < wi.qo_len;
  let qn_base = params.qn_offset + (wi.qo_start + ld_tok) * params.qn_stride_tok + ld_head * params.qn_stride_head;
  let qp_base = params.qp_offset + (wi.qo_start + ld_tok) * params.qp_stride_tok + ld_head * params.qp_stride_head;

  for (var t0 = wi.kv_start; t0 < kv_hi; t0 += ${MLA_KEYS}u) {
    workgroupBarrier();
    if (lid < ${MLA_KEYS}u) {
      let rows = key_rows(wi, min(t0 + lid, kv_hi - 1u));
      ckv_row[lid] = rows.x;
      kpe_row[lid] = rows.y;
      val_row[lid] = rows.z;
    }
    workgroupBarrier();
    // S phase. Global loads of the next 64-dim chunk are issued before the current one is
    // multiplied, so their latency hides behind the FMAs.
    let key_ok = t0 + ld_r < kv_hi;
    let my_ckv = ckv_row[ld_r];
    let my_kpe = kpe_row[ld_r];
    var pq: array<vec4<f32>, 2>;
    var pk: array<vec4<f32>, 2>;
    ${fetchQK('0u')}
    var acc = vec4<f32>(0.0);
    for (var ch = 0u; ch < ${chunks}u; ch++) {
      workgroupBarrier();
      for (var v = 0u; v < 2u; v++) {
        let d4 = (ld_d + 32u * v) / 4u;
        qs[ld_r * ${ROW_VEC4}u + d4] = pq[v];
        ks[ld_r * ${ROW_VEC4}u + d4] = pk[v];
      }
      workgroupBarrier();
      if (ch + 1u < ${chunks}u) {
        ${fetchQK('ch + 1u')}
      }
      // Rows 4g.. are the same for the whole 32-wide group (broadcast reads); keys differ by lane.
      for (var d4 = 0u; d4 < ${c.debugSkip === 'S' ? '0' : KC / 4}u; d4++) {
        let k4 = ks[lane * ${ROW_VEC4}u + d4];
        acc += vec4<f32>(
          dot(qs[(4u * g) * ${ROW_VEC4}u + d4], k4),
          dot(qs[(4u * g + 1u) * ${ROW_VEC4}u + d4], k4),
          dot(qs[(4u * g + 2u) * ${ROW_VEC4}u + d4], k4),
          dot(qs[(4u * g + 3u) * ${ROW_VEC4}u + d4], k4),
        );
      }
    }
    // The first V keys load while the softmax runs.
    var pv: array<vec4<f32>, ${VLOADS}>;
    ${fetchV('0u')}
    // Logits of rows 4g.. at key t0 + lane, base 2; masked ones NEG_BIG.
    let j = t0 + lane;
    var s = acc * params.sm_scale_log2;
    for (var i = 0u; i < 4u; i++) {
      let tok = (wi.tile + 4u * g + i) / H;
      var ok = j < kv_hi && tok < wi.qo_len;
      ${c.causal ? 'ok = ok && i32(j) <= i32(tok) + delta;' : ''}
      if (!ok) { s[i] = NEG_BIG; }
    }
    ps[lane * 8u + g] = s;
    workgroupBarrier();
    if (lid < ${c.debugSkip === 'softmax' ? 0 : MLA_ROWS}u) {
      let r = lid;
      let m_old = m_s[r];
      var mt = m_old;
      for (var n = 0u; n < ${MLA_KEYS}u; n++) { mt = max(mt, ps[n * 8u + r / 4u][r % 4u]); }
      var sum = 0.0;
      for (var n = 0u; n < ${MLA_KEYS}u; n++) {
        let x = ps[n * 8u + r / 4u][r % 4u];
        let p = select(exp2(x - mt), 0.0, x <= NEG_BIG);
        ps[n * 8u + r / 4u][r % 4u] = p;
        sum += p;
      }
      let alpha = select(exp2(m_old - mt), 0.0, m_old <= NEG_BIG);
      alpha_s[r] = alpha;
      l_s[r] = l_s[r] * alpha + sum;
      m_s[r] = mt;
    }
    workgroupBarrier();
    for (var i = 0u; i < 4u; i++) {
      let a = alpha_s[4u * g + i];
      for (var u = 0u; u < ${U}u; u++) { o[i][u] *= a; }
    }
    for (var kb = 0u; kb < ${MLA_KEYS / VK}u; kb++) {
      workgroupBarrier();
      for (var v = 0u; v < ${VLOADS}u; v++) { vs[lid + 256u * v] = pv[v]; }
      workgroupBarrier();
      if (kb + 1u < ${MLA_KEYS / VK}u) {
        ${fetchV('kb + 1u')}
      }
      for (var k = 0u; k < ${c.debugSkip === 'PV' ? 0 : VK}u; k++) {
        let p = ps[(kb * ${VK}u + k) * 8u + g];
        for (var u = 0u; u < ${U}u; u++) {
          let vv = vs[k * ${DC / 4}u + lane + 32u * u];
          o[0][u] += p.x * vv;
          o[1][u] += p.y * vv;
          o[2][u] += p.z * vv;
          o[3][u] += p.w * vv;
        }
      }
    }
  }
  workgroupBarrier();
  for (var i = 0u; i < 4u; i++) {
    let r = 4u * g + i;
    let tok = (wi.tile + r) / H;
    if (tok >= wi.qo_len) { continue; }
    let h = (wi.tile + r) % H;
    let grow = wi.qo_start + tok;
    let m = m_s[r];
    let l = l_s[r];
    let inv = select(0.0, 1.0 / l, l > 0.0);
    if (wi.chunk == ${DIRECT}u) {
      for (var u = 0u; u < ${U}u; u++) {
        let val = o[i][u] * (inv * params.v_scale);
        let w = (params.o_offset + (grow * H + h) * ${DC}u + (lane + 32u * u) * 4u) / ${oPer}u;
        ${store}
      }
      if (lane == 0u) { lse_out[params.lse_offset + grow * H + h] = lse_bits(m, l); }
    } else {
      let slot = plan[params.slot_indptr_offset + grow] + wi.chunk;
      for (var u = 0u; u < ${U}u; u++) {
        let at = params.part_o_offset + (slot * H + h) * ${DC}u + (lane + 32u * u) * 4u;
        let val = o[i][u] * inv;
        ws[at] = val.x; ws[at + 1u] = val.y; ws[at + 2u] = val.z; ws[at + 3u] = val.w;
      }
      if (lane == 0u) { ws[params.part_lse_offset + slot * H + h] = bitcast<f32>(lse_bits(m, l)); }
    }
  }
}`;
}
