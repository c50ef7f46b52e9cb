/**
 * The tensor-core prefill kernel, on `chromium-experimental-subgroup-matrix` (16x16x16 f16 -> f32).
 * A workgroup is NSG subgroups; subgroup s owns 16 packed query rows (BR = 16 * NSG) and all of
 * them share each K/V tile of BC keys in workgroup memory.
 *
 *   Q      staged once (RoPE applied, f16) in the K/V area; each subgroup keeps its 16 rows as
 *          left matrices in registers for the whole KV loop
 *   S      S = Q Kᵀ per 16x16 block (K read column-major from the K tile), stored to the
 *          subgroup's f32 S area
 *   soft   SG/16 lanes per row: mask, logit transform, row max, p = exp2(s - m_ref) as f16 into
 *          the subgroup's P area
 *   P V    P times V accumulates into f32 result matrices that stay in registers
 *
 * Result matrices cannot be scaled per row, so the running max is lazy (as in FlashAttention-4):
 * p = exp2(s - m_ref) with a per-row reference m_ref that only moves when some row's max passes it
 * by more than 8 (p <= 256, exact enough in f16). Then, and only then, P is rewritten and every O
 * block is stored, scaled per row and reloaded. m_ref + log2(l) is still the exact LSE; l sums the
 * f16-rounded p that P V uses.
 *
 * Matrix offsets depend on the subgroup id, so the subgroup-matrix uniformity diagnostic is off
 * (each subgroup's offsets are uniform within the subgroup, which is what the hardware needs).
 * Every workgroup variable is a multiple of 16 bytes: the driver may lay them out in any order,
 * and a matrix tile placed after a smaller variable loses the 16-byte alignment the matrix loads
 * assume (on the H100/H200 that gave wrong products and no error).
 */
import {
  type GpuContext,
  subgroupMatrixF16Support,
  wgslAttentionCommon,
  wgslDtypeHelpers,
  wgslLazyMaxHelpers,
  wgslLazyMaxStep,
  wgslLoadVec4,
  wgslPackF16x8,
  wgslPackHelpers,
  wgslShuffleReduce,
  wgslStagedResultPairs,
  wgslWriteP16,
} from '@webinfer/core-buffers';
import {
  loadWorkItemWgsl,
  logitExpr,
  type PrefillKernelOptions,
  prefillBindingsWgsl,
  prefillUniforms,
  tileKvRangeWgsl,
  writeOutputWgsl,
} from './prefill-common';
import { ropeRotateWgsl } from './prefill-simt.wgsl';

export interface TensorCorePrefillConfig extends PrefillKernelOptions {
  subgroupSize: number;
  /** Subgroups per workgroup, 16 query rows each (default 4). */
  subgroups?: number;
  /** Keys per K/V tile (default 32; 16 lets 8 subgroups fit 32 KB of workgroup memory). */
  keysPerTile?: 16 | 32;
  /** f16 K/V read 16 bytes at a time (the caches viewed as vec4<u32>; rows on multiples of 8 elements). */
  wideKV?: boolean;
  /** Bench profiling only: phases left out (wrong results, the time of the rest). */
  debugSkip?: ('load' | 'store' | 'qk' | 'softmax' | 'pv')[];
}

/** Why the tensor-core kernel cannot run this config on `ctx`, or undefined when it can. */
export function tensorCoreSupport(ctx: GpuContext, o: PrefillKernelOptions): string | undefined {
  const device = subgroupMatrixF16Support(ctx);
  if (device !== undefined) return device;
  if (o.qDtype !== 'f16') return 'q must be f16 (bf16 and f32 q use the f32 path)';
  if (o.kvDtype !== 'f16' && o.kvDtype !== 'fp8_e4m3' && o.kvDtype !== 'fp8_e5m2') return 'KV must be f16 or fp8';
  if (o.headDimQk % 16 !== 0 || o.headDimVo % 32 !== 0) return 'head dims must be multiples of 16 (qk) and 32 (vo)';
  return undefined;
}

/** Rounds a count of 16-bit elements up to whole 16-byte units. */
const up8 = (x: number) => Math.ceil(x / 8) * 8;

export function tensorCoreLayout(c: TensorCorePrefillConfig) {
  const NSG = c.subgroups ?? 4;
  const BC = c.keysPerTile ?? 32;
  const BR = 16 * NSG;
  const DQ = c.headDimQk;
  const DV = c.headDimVo;
  // Row strides padded by 16 bytes (fewer bank conflicts) and kept multiples of 16 bytes.
  const QST = DQ + 8;
  const KST = DQ + 8;
  const VST = DV + 8;
  const SST = BC + 4; // f32
  const PST = BC + 8; // f16
  const K_OFF = 0;
  const V_OFF = K_OFF + BC * KST;
  // One workgroup array of 16-byte words: K and V tiles, then every subgroup's S (f32) and P
  // (f16) areas. Q is staged from word 0 over the K/V and S areas before the KV loop, as many
  // 16-row blocks at a time as fit.
  const kvWords = up8(V_OFF + BC * VST) / 8;
  const S0 = kvWords;
  const P0 = S0 + (NSG * 16 * SST) / 4;
  const words = P0 + (NSG * 16 * PST) / 8;
  const qChunk = Math.min(BR, Math.max(16, Math.floor((P0 * 8) / QST / 16) * 16));
  const rope = c.posEncoding === 'ROPE_LLAMA';
  const total = Math.max(words, up8(qChunk * QST) / 8);
  // The array, RoPE frequencies, the 48-byte work item and the 16-byte flag.
  const smemBytes = total * 16 + (rope ? (DQ / 2) * 4 : 0) + 48 + 16;
  return { NSG, BR, BC, QST, KST, VST, SST, PST, K_OFF, V_OFF, S0, P0, words: total, qChunk, smemBytes, WG: NSG * c.subgroupSize };
}

export function tensorCorePrefillWgsl(c: TensorCorePrefillConfig): string {
  const L = tensorCoreLayout(c);
  const { NSG, BR, BC, QST, KST, VST, SST, PST, K_OFF, V_OFF, S0, P0, words, qChunk, WG } = L;
  const SG = c.subgroupSize;
  const SST4 = SST / 4; // S rows in 16-byte words
  const PST8 = PST / 8; // P rows in 16-byte words
  const LPR = SG / 16; // lanes per row in the softmax
  const CPL = BC / LPR; // S columns per lane: lr * CPL ..
  const G = c.groupSize;
  const DQ = c.headDimQk;
  const DV = c.headDimVo;
  const NQ = DQ / 16;
  const NV = DV / 16;
  const rope = c.posEncoding === 'ROPE_LLAMA';
  const skip = new Set(c.debugSkip ?? []);
  const left = 'subgroup_matrix_left<f16, 16, 16>';
  const right = 'subgroup_matrix_right<f16, 16, 16>';
  const result = 'subgroup_matrix_result<f32, 16, 16>';
  const reduce = (v: string, op: 'max' | '+') => wgslShuffleReduce(v, op, LPR);
  // Tiles live in workgroup memory as 16-byte words (8 f16): matrix offsets and strides are in
  // those words, and every tile row and unit is one 16-byte store.
  const w8 = (elems: number) => {
    if (elems % 8 !== 0) throw new Error(`tile offset ${elems} is not a multiple of 8 elements`);
    return elems / 8;
  };
  const pack8 = wgslPackF16x8;
  // Q rows are staged in units of 8 elements (a pair of units d and d + D/2 with RoPE).
  const qPer = rope ? DQ / 16 : DQ / 8;
  const iters = (units: number) => Math.ceil(units / WG);
  const guard = (units: number) => (units % WG === 0 ? 'true' : `idx < ${units}u`);

  // This subgroup's O blocks through its S area, two at a time (one with 16-key tiles, whose S rows
  // are 16 columns); `body` sees the lane's row `rr`, the 4-wide unit `unit` in D_vo and `o`.
  const perStage = BC >= 32 ? 2 : 1;
  const staged = (body: string, reload: boolean) =>
    wgslStagedResultPairs({ blocks: NV, base: 's_base', stride: SST4, lanesPerRow: LPR, column: (st) => `let unit = ${st * 4 * perStage}u + q4;`, body, reload, perStage });

  // K/V tiles go through registers: every thread fetches its units of 8 elements of the next
  // tile (one 16-byte load where rows allow, else 8-byte words, or 8 fp8 bytes; independent loads)
  // while the current tile is in use, then stores each unit as one 16-byte word. With RoPE a unit
  // is a pair: elements d.. and d + D/2...
  const wide = Boolean(c.wideKV) && c.kvDtype === 'f16';
  const fp8 = c.kvDtype !== 'f16';
  const raw = fp8 ? 'vec2<u32>' : 'vec4<u32>';
  const kPer = rope ? DQ / 16 : DQ / 8;
  const vPer = DV / 8;
  const kUnits = BC * kPer;
  const vUnits = BC * vPer;
  const itK = Math.ceil(kUnits / WG);
  const itV = Math.ceil(vUnits / WG);
  const kvRegs = [
    ...Array.from({ length: itK }, (_, i) => `var kr_${i} = ${raw}(0u);${rope ? ` var ky_${i} = ${raw}(0u);` : ''}`),
    ...Array.from({ length: itV }, (_, i) => `var vr_${i} = ${raw}(0u);`),
  ].join('\n  ');
  const unit = (i: number, per: number, total: number) =>
    `let idx = lid + ${i * WG}u; let kc = idx / ${per}u; let u = idx % ${per}u;${total % WG === 0 ? ' let inside = true;' : ` let inside = idx < ${total}u;`}`;
  // Without RoPE and with Dqk = Dvo a thread's K and V units are the same keys: one page lookup.
  const fused = !rope && kPer === vPer;
  const fetchTile = (t: string) =>
    fused
      ? Array.from({ length: itK }, (_, i) => `{
      ${unit(i, kPer, kUnits)} let j = ${t} + kc;
      kr_${i} = ${raw}(0u);
      vr_${i} = ${raw}(0u);
      if (inside && j < kv_hi) { let e = kv_rows(j, wi.page_base, kvh) + u * 8u; kr_${i} = raw_k(e.x); vr_${i} = raw_v(e.y); }
    }`).join('\n    ')
      : [
      ...Array.from({ length: itK }, (_, i) => `{
      ${unit(i, kPer, kUnits)} let j = ${t} + kc;
      kr_${i} = ${raw}(0u);${rope ? ` ky_${i} = ${raw}(0u);` : ''}
      if (inside && j < kv_hi) { let e = k_row(j, wi.page_base, kvh) + u * 8u; kr_${i} = raw_k(e);${rope ? ` ky_${i} = raw_k(e + ${DQ / 2}u);` : ''} }
    }`),
      ...Array.from({ length: itV }, (_, i) => `{
      ${unit(i, vPer, vUnits)} let j = ${t} + kc;
      vr_${i} = ${raw}(0u);
      if (inside && j < kv_hi) { vr_${i} = raw_v(v_row(j, wi.page_base, kvh) + u * 8u); }
    }`),
    ].join('\n    ');
  const putTile = [
    ...Array.from({ length: itK }, (_, i) => `{
      ${unit(i, kPer, kUnits)}
      if (inside) {
        ${
          rope
            ? `let x = cvt8(kr_${i});
        let y = cvt8(ky_${i});
        let a = rope4(x[0], y[0], f32(t0 + kc), u * 8u);
        let b = rope4(x[1], y[1], f32(t0 + kc), u * 8u + 4u);
        smem[${w8(K_OFF)}u + kc * ${w8(KST)}u + u] = ${pack8('a[0]', 'b[0]')};
        smem[${w8(K_OFF + DQ / 2)}u + kc * ${w8(KST)}u + u] = ${pack8('a[1]', 'b[1]')};`
            : `smem[${w8(K_OFF)}u + kc * ${w8(KST)}u + u] = as_f16x8(kr_${i});`
        }
      }
    }`),
    ...Array.from({ length: itV }, (_, i) => `{
      ${unit(i, vPer, vUnits)}
      if (inside) { smem[${w8(V_OFF)}u + kc * ${w8(VST)}u + u] = as_f16x8(vr_${i}); }
    }`),
  ].join('\n    ');
  const rawLoad = (buf: string) =>
    fp8 ? `let w = e >> 2u; return vec2<u32>(${buf}[w], ${buf}[w + 1u]);` : wide ? `return ${buf}[e >> 3u];` : `let w = e >> 1u; return vec4<u32>(${buf}[w], ${buf}[w + 1u], ${buf}[w + 2u], ${buf}[w + 3u]);`;
  const rawHelpers = `fn raw_k(e: u32) -> ${raw} { ${rawLoad('k_cache')} }
fn raw_v(e: u32) -> ${raw} { ${rawLoad('v_cache')} }
fn cvt8(r: ${raw}) -> array<vec4<f32>, 2> {
  ${fp8 ? `return array<vec4<f32>, 2>(unpack_${c.kvDtype}(r.x), unpack_${c.kvDtype}(r.y));` : 'return array<vec4<f32>, 2>(vec4<f32>(unpack2x16float(r.x), unpack2x16float(r.y)), vec4<f32>(unpack2x16float(r.z), unpack2x16float(r.w)));'}
}
fn as_f16x8(r: ${raw}) -> vec4<u32> { ${fp8 ? `let x = cvt8(r); return ${pack8('x[0]', 'x[1]')};` : 'return r;'} }`;

  // One chunk (all rows staged at once, the usual case): the matrices are plain lets.
  const single = qChunk >= BR;
  const stageQ = (chunk: number) => {
    const rows = Math.min(qChunk, BR - chunk * qChunk);
    const units = rows * qPer;
    return `for (var it = 0u; it < ${iters(units)}u; it++) {
    let idx = lid + it * ${WG}u;
    let qs = idx / ${qPer}u;          // row in this chunk
    let qr = ${chunk * qChunk}u + qs;  // row in the tile
    let u = idx % ${qPer}u;
    let qpr = wi.tile + qr;
    let qrow = qpr / ${G}u;
    let qh = kvh * ${G}u + qpr % ${G}u;
    if (${guard(units)}) {
      var x0 = vec4<f32>(0.0);
      var x1 = vec4<f32>(0.0);
      ${rope ? 'var y0 = vec4<f32>(0.0);\n      var y1 = vec4<f32>(0.0);' : ''}
      if (qrow < wi.qo_len) {
        let base = params.q_offset + (wi.qo_start + qrow) * params.q_stride_row + qh * params.q_stride_head + u * 8u;
        ${
          rope
            ? `let pos = f32(i32(qrow) + delta);
        let a = rope4(load_q4(base), load_q4(base + ${DQ / 2}u), pos, u * 8u);
        let b = rope4(load_q4(base + 4u), load_q4(base + ${DQ / 2 + 4}u), pos, u * 8u + 4u);
        x0 = a[0]; y0 = a[1]; x1 = b[0]; y1 = b[1];`
            : 'x0 = load_q4(base);\n        x1 = load_q4(base + 4u);'
        }
      }
      smem[qs * ${w8(QST)}u + u] = ${pack8('x0', 'x1')};
      ${rope ? `smem[qs * ${w8(QST)}u + ${w8(DQ / 2)}u + u] = ${pack8('y0', 'y1')};` : ''}
    }
  }
  workgroupBarrier();
  ${
    single
      ? Array.from({ length: NQ }, (_, i) => `let q_${i} = subgroupMatrixLoad<${left}, row_major>(&smem, sg * ${w8(16 * QST)}u + ${w8(i * 16)}u, ${w8(QST)}u);`).join('\n  ')
      : `if (sg >= ${(chunk * qChunk) / 16}u && sg < ${(chunk * qChunk + rows) / 16}u) {
    let q_at = (sg - ${(chunk * qChunk) / 16}u) * ${w8(16 * QST)}u;
    ${Array.from({ length: NQ }, (_, i) => `q_${i} = subgroupMatrixLoad<${left}, row_major>(&smem, q_at + ${w8(i * 16)}u, ${w8(QST)}u);`).join('\n    ')}
  }`
  }
  ${chunk * qChunk + rows < BR ? 'workgroupBarrier();  // the next chunk overwrites this one' : ''}`;
  };
  // P = exp2(x - m_ref) as f16, 8 columns a 16-byte store; l sums the rounded values P V uses.
  const writeP = (mRef: string) => wgslWriteP16({ mRef, columns: CPL, base: 'p_base', stride: PST8 });
  // Logits of the lane's CPL columns (4 a load), masked, into x; mx is their max.
  const logits = Array.from({ length: CPL / 4 }, (_, g) => `{
      let s4 = bitcast<vec4<f32>>(smem[s_base + rr * ${SST4}u + lr * ${CPL / 4}u + ${g}u]);
      ${[0, 1, 2, 3].map((k) => `{
        let j = t0 + lr * ${CPL}u + ${g * 4 + k}u;
        var v = NEG_BIG;
        var vis = i32(j) >= vis_lo && i32(j) < vis_hi;
        ${c.maskMode === 'custom' ? 'if (vis) { let b = wi.mask_bit + row * wi.kv_len + j; vis = ((mask[b >> 5u] >> (b & 31u)) & 1u) == 1u; }' : ''}
        if (vis) {
          let acc = s4[${k}];
          v = ${logitExpr(c)};
        }
        x[${g * 4 + k}] = v;
        mx = max(mx, v);
      }`).join('\n      ')}
    }`).join('\n    ');

  return `diagnostic(off, chromium.subgroup_matrix_uniformity);
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
var<workgroup> smem: array<vec4<u32>, ${words}>;
${wgslLazyMaxHelpers()}
${prefillUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslDtypeHelpers([c.qDtype, c.kvDtype], { nativeF16: true })}
${wgslPackHelpers([c.oDtype], { nativeF16: true })}
${prefillBindingsWgsl(c, wide)}
${wgslLoadVec4('load_q4', 'q_in', c.qDtype)}
${rawHelpers}
${writeOutputWgsl(c)}

var<workgroup> flag: array<atomic<u32>, 4>;
${rope ? `var<workgroup> freq_s: array<f32, ${DQ / 2}>;\n${ropeRotateWgsl()}` : ''}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let flat = wg.x + wg.y * params.groups_x;
  let work = flat / params.num_kv_heads;
  let kvh = flat % params.num_kv_heads;
  // No early return for padding workgroups of a folded dispatch: they run an empty KV range and
  // write nothing, so barriers stay uniform.
  let live = work < params.num_work;
  ${loadWorkItemWgsl('select(0u, work, live)')}
  ${tileKvRangeWgsl(c, BR)}
  if (!live) { kv_hi = kv_lo; }
  ${rope ? `for (var d = lid; d < ${DQ / 2}u; d += ${WG}u) { freq_s[d] = rope_freq(d, ${DQ}u, params.rope_rcp_scale, params.rope_log2_theta); }\n  workgroupBarrier();` : ''}
  let sg = lid / ${SG}u;             // this subgroup's 16 rows: sg * 16 ..
  let sl = lid % ${SG}u;
  let rr = sl / ${LPR}u;             // the lane's row inside them
  let lr = sl % ${LPR}u;             // and its share of the row
  let s_base = ${S0}u + sg * ${(16 * SST) / 4}u;  // in 16-byte words
  let p_base = ${P0}u + sg * ${(16 * PST) / 8}u;
  let r = sg * 16u + rr;             // packed row inside the tile
  let pr = wi.tile + r;
  let row = pr / ${G}u;
  let h = kvh * ${G}u + pr % ${G}u;
  // The keys this lane's row sees are [vis_lo, vis_hi) (causal, window, the work item's range),
  // so the per-element mask is two compares (plus the bit of a custom mask).
  let p_row = i32(row) + delta;
  var vis_lo = i32(kv_lo);
  var vis_hi = select(i32(kv_hi), -1, row >= wi.qo_len);
  ${c.maskMode === 'causal' ? 'vis_hi = min(vis_hi, p_row + 1);' : ''}
  if (params.window_left >= 0) { vis_lo = max(vis_lo, p_row - params.window_left); }

  // Q tile -> f16 in workgroup memory (RoPE applied), 8 elements a store, qChunk rows at a time
  // -> each subgroup's left matrices, kept in registers for the whole KV loop.
  ${single ? '' : Array.from({ length: NQ }, (_, i) => `var q_${i}: ${left};`).join('\n  ')}
  ${Array.from({ length: Math.ceil(BR / qChunk) }, (_, chunk) => stageQ(chunk)).join('\n  ')}
  ${Array.from({ length: NV }, (_, i) => `var o_${i} = ${result}();`).join('\n  ')}
  var m = NEG_BIG;   // the row's reference max (same in the LPR lanes of a row)
  var l = 0.0;       // this lane's share of the row sum
  var tile_l = 0.0;
  var x: array<f32, ${CPL}>;

  ${kvRegs}
  ${skip.has('load') ? '' : fetchTile('kv_lo')}
  for (var t0 = kv_lo; t0 < kv_hi; t0 += ${BC}u) {
    workgroupBarrier();  // the last tile's P V is done with K, V and P (and the Q staging)
    if (lid == 0u) { atomicStore(&flag[0], 0u); }
    ${skip.has('load') ? '' : skip.has('store') ? `if (params.num_work == 0xffffffffu) { ${putTile} }` : putTile}
    workgroupBarrier();
    ${skip.has('load') ? '' : fetchTile(`t0 + ${BC}u`)}  // the next tile's loads run under this tile's math
    // S = Q Kᵀ for this subgroup's rows.
    ${skip.has('qk') ? '' : `
    ${Array.from({ length: BC / 16 }, (_, nb) => `{
      var s = ${result}();
      ${Array.from({ length: NQ }, (_, i) => `s = subgroupMatrixMultiplyAccumulate(q_${i}, subgroupMatrixLoad<${right}, col_major>(&smem, ${w8(K_OFF + nb * 16 * KST + i * 16)}u, ${w8(KST)}u), s);`).join('\n      ')}
      subgroupMatrixStore<row_major>(&smem, s_base + ${nb * 4}u, s, ${SST4}u);
    }`).join('\n    ')}
    `}
    workgroupBarrier();
    // Softmax: logits to registers, row max, P with the reference max (rewritten below if it moves).
    ${skip.has('softmax') ? '' : `
    var mx = NEG_BIG;
    ${logits}
    ${wgslLazyMaxStep({ reduceMax: reduce('mx', 'max'), writeP, rescale: staged('o *= alpha;', true) })}
    `}
    // O += P V.
    ${skip.has('pv') ? '' : `
    ${Array.from({ length: BC / 16 }, (_, kb) => `{
      let p = subgroupMatrixLoad<${left}, row_major>(&smem, p_base + ${kb * 2}u, ${PST8}u);
      ${Array.from({ length: NV }, (_, i) => `o_${i} = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<${right}, row_major>(&smem, ${w8(V_OFF + kb * 16 * VST + i * 16)}u, ${w8(VST)}u), o_${i});`).join('\n      ')}
    }`).join('\n    ')}
    `}
  }
  workgroupBarrier();
  ${reduce('l', '+')}
  ${staged('if (live && row < wi.qo_len) { write_out(wi, row, h, unit, o, m, l); }', false)}
}`;
}
