/**
 * The tensor-core prefill kernel, on `chromium-experimental-subgroup-matrix` (16x16x16 f16 -> f32).
 * A workgroup is one subgroup (matrix offsets must be workgroup-uniform in WGSL, so several
 * subgroups cannot each address their own rows); it owns RB blocks of 16 packed query rows.
 *
 *   Q      the tile's Q (RoPE applied, f16) is staged once in workgroup memory; its left matrices
 *          are read from there for every K tile
 *   S      S = Q Kᵀ per 16x16 block (K read column-major from the K tile), stored to memory
 *   soft   lanes take 16 / (subgroup size) rows' worth of S: mask, logit transform, row max
 *   P V    P (f16) times V accumulates into f32 result matrices that stay in registers
 *
 * Result matrices cannot be scaled per row, so the running max is lazy (as in FlashAttention-4):
 * p = exp2(s - m_ref) with a per-row reference m_ref that only moves when some row's max passes it
 * by more than 8 (p <= 256, exact in f16 with the same relative precision). Then, and only then,
 * every O block is stored, scaled per row and reloaded. m_ref + log2(l) is still the exact LSE.
 */
import { type GpuContext, wgslAttentionCommon, wgslDtypeHelpers, wgslLoadVec4, wgslPackHelpers } from '@webinfer/core-buffers';
import {
  type PrefillKernelOptions,
  keepFnWgsl,
  loadWorkItemWgsl,
  logitExpr,
  prefillBindingsWgsl,
  prefillUniforms,
  tileKvRangeWgsl,
  writeOutputWgsl,
} from './prefill-common';
import { ropeRotateWgsl } from './prefill-simt.wgsl';

export interface TensorCorePrefillConfig extends PrefillKernelOptions {
  subgroupSize: number;
  /** Blocks of 16 query rows per workgroup (default 1). */
  rowBlocks?: number;
  /** Probe only: write the first tile's raw S, Q or K tile (f32 output, 32 columns) to o and stop. */
  /** S2: S in columns 0-31 and Q's first 32 columns in 32-63, from the same shader. */
  dump?: 'S' | 'S2' | 'SS' | 'Q' | 'K';
}

/** Why the tensor-core kernel cannot run this config on `ctx`, or undefined when it can. */
export function tensorCoreSupport(ctx: GpuContext, o: PrefillKernelOptions): string | undefined {
  if (!ctx.features.has('chromium-experimental-subgroup-matrix')) return 'the device offers no subgroup matrices';
  if (!ctx.hasF16 || !ctx.hasSubgroups) return 'it needs the shader-f16 and subgroups features';
  const ok = ctx.subgroupMatrixConfigs.some(
    (c) => c.M === 16 && c.N === 16 && c.K === 16 && c.componentType === 'f16' && c.resultComponentType === 'f32',
  );
  if (!ok) return 'the device has no 16x16x16 f16->f32 subgroup-matrix config';
  if (ctx.subgroupMinSize !== ctx.subgroupMaxSize || ![16, 32, 64].includes(ctx.subgroupMinSize)) {
    return 'it needs one fixed subgroup size of 16, 32 or 64';
  }
  if (o.qDtype !== 'f16') return 'q must be f16 (bf16 and f32 q use the f32 path)';
  if (o.kvDtype !== 'f16' && o.kvDtype !== 'fp8_e4m3' && o.kvDtype !== 'fp8_e5m2') return 'KV must be f16 or fp8';
  if (o.headDimQk % 16 !== 0 || o.headDimVo % 32 !== 0) return 'head dims must be multiples of 16 (qk) and 32 (vo)';
  return undefined;
}

const BC = 32;

export function tensorCoreLayout(c: TensorCorePrefillConfig) {
  const RB = c.rowBlocks ?? 1;
  const BR = 16 * RB;
  const QST = c.headDimQk + 8;
  const KST = c.headDimQk + 8;
  const VST = c.headDimVo + 8;
  const SST = BC;
  const PST = BC + 8;
  const qk = BR * QST + BC * KST; // Q and K apart (small at 16 rows a block)
  const smemBytes =
    qk * 2 + BC * VST * 2 + BR * SST * 4 + BR * PST * 2 + (c.posEncoding === 'ROPE_LLAMA' ? (c.headDimQk / 2) * 4 : 0) + 64;
  return { RB, BR, BC, QST, KST, VST, SST, PST, qk, smemBytes, WG: c.subgroupSize };
}

export function tensorCorePrefillWgsl(c: TensorCorePrefillConfig): string {
  const L = tensorCoreLayout(c);
  const { RB, BR, QST, KST, VST, SST, PST, WG } = L;
  const SG = c.subgroupSize;
  const LPR = SG / 16; // lanes per row in the softmax
  const CPL = BC / LPR; // S columns per lane
  const G = c.groupSize;
  const DQ = c.headDimQk;
  const DV = c.headDimVo;
  const NQ = DQ / 16;
  const NV = DV / 16;
  const rope = c.posEncoding === 'ROPE_LLAMA';
  const qUnits = rope ? DQ / 8 : DQ / 4;
  const left = 'subgroup_matrix_left<f16, 16, 16>';
  const right = 'subgroup_matrix_right<f16, 16, 16>';
  const result = 'subgroup_matrix_result<f32, 16, 16>';
  const rbs = Array.from({ length: RB }, (_, b) => b);
  // All f16 tiles live in one array at 128-byte aligned offsets.
  const up = (x: number) => Math.ceil(x / 64) * 64;
  const Q_OFF = 0;
  const K_OFF = up(BR * QST);
  const V_OFF = K_OFF + up(BC * KST);
  const P_OFF = V_OFF + up(BC * VST);
  const T_TOTAL = P_OFF + up(BR * PST);
  const reduce = (v: string, op: 'max' | '+') => {
    const lines: string[] = [];
    for (let m = 1; m < LPR; m *= 2) {
      lines.push(op === 'max' ? `${v} = max(${v}, subgroupShuffleXor(${v}, ${m}u));` : `${v} += subgroupShuffleXor(${v}, ${m}u);`);
    }
    return lines.join(' ');
  };
  const store4 = (arr: string, v: string, at: string) =>
    `{ let a = ${at}; ${arr}[a] = f16(${v}.x); ${arr}[a + 1u] = f16(${v}.y); ${arr}[a + 2u] = f16(${v}.z); ${arr}[a + 3u] = f16(${v}.w); }`;

  // Stages the O blocks of row block b two at a time through S memory; \`body\` sees \`o\` (4 values
  // of the lane's row) and \`unit\` (4-wide unit in D_vo), and may change \`o\` (kept when reloading).
  const staged = (b: number, body: string, reload: boolean) => {
    const parts: string[] = [];
    const base = b * 16 * SST;
    for (let pair = 0; pair < NV / 2; pair++) {
      parts.push(`subgroupMatrixStore<row_major>(&s_s, ${base}u, o${b}_${2 * pair}, ${SST}u);
    subgroupMatrixStore<row_major>(&s_s, ${base + 16}u, o${b}_${2 * pair + 1}, ${SST}u);
    workgroupBarrier();
    for (var e = 0u; e < ${32 / (4 * LPR)}u; e++) {
      let col = lr * ${32 / LPR}u + e * 4u;
      let at = ${base}u + rr * ${SST}u + col;
      var o = vec4<f32>(s_s[at], s_s[at + 1u], s_s[at + 2u], s_s[at + 3u]);
      let unit = ${pair * 8}u + col / 4u;
      ${body}
      ${reload ? 's_s[at] = o.x; s_s[at + 1u] = o.y; s_s[at + 2u] = o.z; s_s[at + 3u] = o.w;' : ''}
    }
    workgroupBarrier();
    ${
      reload
        ? `o${b}_${2 * pair} = subgroupMatrixLoad<${result}, row_major>(&s_s, ${base}u, ${SST}u);
    o${b}_${2 * pair + 1} = subgroupMatrixLoad<${result}, row_major>(&s_s, ${base + 16}u, ${SST}u);
    workgroupBarrier();`
        : ''
    }`);
    }
    return parts.join('\n    ');
  };

  const softmax = rbs
    .map(
      (b) => `{
      let r = ${b * 16}u + rr;
      let pr = wi.tile + r;
      let row = pr / ${G}u;
      let h = kvh * ${G}u + pr % ${G}u;
      var mx = NEG_BIG;
      for (var e = 0u; e < ${CPL}u; e++) {
        let col = lr * ${CPL}u + e;
        let j = t0 + col;
        var v = NEG_BIG;
        if (keep(row, j, wi.qo_len, wi.kv_len, kv_hi, wi.mask_bit)) {
          let acc = s_s[r * ${SST}u + col];
          v = ${logitExpr(c)};
        }
        x${b}[e] = v;
        mx = max(mx, v);
      }
      ${reduce('mx', 'max')}
      mx${b} = mx;
      if (m${b} > NEG_BIG && mx > m${b} + 8.0) { atomicOr(&flag, 1u); }
      if (m${b} <= NEG_BIG) { m${b} = mx; }  // O is still zero: nothing to rescale
    }`,
    )
    .join('\n    ');
  const rescale = rbs
    .map(
      (b) => `{
        let m_new = max(m${b}, mx${b});
        let alpha = exp2(m${b} - m_new);
        m${b} = m_new;
        l${b} *= alpha;
        ${staged(b, 'o *= alpha;', true)}
      }`,
    )
    .join('\n      ');
  const probs = rbs
    .map(
      (b) => `{
      var sum = 0.0;
      for (var e = 0u; e < ${CPL}u; e++) {
        let p = select(0.0, exp2(x${b}[e] - m${b}), x${b}[e] > NEG_BIG);
        sum += p;
        t_s[${P_OFF}u + (${b * 16}u + rr) * ${PST}u + lr * ${CPL}u + e] = f16(p);
      }
      l${b} += sum;
    }`,
    )
    .join('\n    ');
  const finish = rbs
    .map(
      (b) => `{
    ${reduce(`l${b}`, '+')}
    let r = ${b * 16}u + rr;
    let pr = wi.tile + r;
    let row = pr / ${G}u;
    let h = kvh * ${G}u + pr % ${G}u;
    let m = m${b};
    let l = l${b};
    ${staged(b, 'if (live && row < wi.qo_len) { write_out(wi, row, h, unit, o, m, l); }', false)}
  }`,
    )
    .join('\n  ');

  // The matrix tiles come first, each a multiple of 16 bytes: subgroup-matrix loads and stores
  // need 16-byte aligned memory, and a workgroup struct declared earlier (the work item) shifted
  // them off that alignment on the H100 (wrong products, no error).
  const sCode = Array.from({ length: BC / 16 }, (_, nb) => `{
      ${rbs.map((b) => `var s${b} = ${result}();`).join(' ')}
      ${Array.from({ length: NQ }, (_, i) => `{
        let kt = subgroupMatrixLoad<${right}, col_major>(&t_s, ${K_OFF + nb * 16 * KST + i * 16}u, ${KST}u);
        ${rbs.map((b) => `s${b} = subgroupMatrixMultiplyAccumulate(subgroupMatrixLoad<${left}, row_major>(&t_s, ${Q_OFF + b * 16 * QST + i * 16}u, ${QST}u), kt, s${b});`).join(' ')}
      }`).join('\n      ')}
      ${rbs.map((b) => `subgroupMatrixStore<row_major>(&s_s, ${b * 16 * SST + nb * 16}u, s${b}, ${SST}u);`).join('\n      ')}
    }`).join('\n    ');

  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
var<workgroup> t_s: array<f16, ${T_TOTAL}>;
var<workgroup> s_s: array<f32, ${BR * SST}>;
${prefillUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslDtypeHelpers([c.qDtype, c.kvDtype], { nativeF16: true })}
${wgslPackHelpers([c.oDtype], { nativeF16: true })}
${prefillBindingsWgsl()}
${wgslLoadVec4('load_q4', 'q_in', c.qDtype)}
${wgslLoadVec4('load_k4', 'k_cache', c.kvDtype)}
${wgslLoadVec4('load_v4', 'v_cache', c.kvDtype)}
${keepFnWgsl(c)}
${writeOutputWgsl(c)}

var<workgroup> flag: atomic<u32>;
${c.dump === 'SS' ? 'fn synth(i: u32, s: u32) -> f32 { return (f32((i * s) % 17u) - 8.0) / 16.0; }' : ''}
${rope ? `var<workgroup> freq_s: array<f32, ${DQ / 2}>;\n${ropeRotateWgsl()}` : ''}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let flat = wg.x + wg.y * params.groups_x;
  let work = flat / params.num_kv_heads;
  let kvh = flat % params.num_kv_heads;
  // No early return: lanes must stay converged for the matrix operations, so a padding
  // workgroup (folded dispatch) runs an empty KV range and writes nothing.
  let live = work < params.num_work;
  ${loadWorkItemWgsl('select(0u, work, live)')}
  ${tileKvRangeWgsl(c, BR)}
  if (!live) { kv_hi = kv_lo; }
  ${rope ? `for (var d = lid; d < ${DQ / 2}u; d += ${WG}u) { freq_s[d] = rope_freq(d, ${DQ}u, params.rope_rcp_scale, params.rope_log2_theta); }\n  workgroupBarrier();` : ''}
  let rr = lid / ${LPR}u;           // this lane's row inside each 16-row block
  let lr = lid % ${LPR}u;           // and its part of the row

  // Q tile -> f16 in workgroup memory (RoPE applied) -> left matrices in registers.
  for (var idx = lid; idx < ${BR * qUnits}u; idx += ${WG}u) {
    let qr = idx / ${qUnits}u;
    let u = idx % ${qUnits}u;
    let qpr = wi.tile + qr;
    let qrow = qpr / ${G}u;
    let qh = kvh * ${G}u + qpr % ${G}u;
    var x = vec4<f32>(0.0);
    ${rope ? 'var y = vec4<f32>(0.0);' : ''}
    if (qrow < wi.qo_len) {
      let base = params.q_offset + (wi.qo_start + qrow) * params.q_stride_row + qh * params.q_stride_head + u * 4u;
      ${rope ? `let xy = rope4(load_q4(base), load_q4(base + ${DQ / 2}u), f32(i32(qrow) + delta), u * 4u);\n      x = xy[0];\n      y = xy[1];` : 'x = load_q4(base);'}
    }
    ${c.dump === 'SS' ? `x = vec4<f32>(synth(qr * ${DQ}u + u * 4u, 7u), synth(qr * ${DQ}u + u * 4u + 1u, 7u), synth(qr * ${DQ}u + u * 4u + 2u, 7u), synth(qr * ${DQ}u + u * 4u + 3u, 7u));` : ''}
    ${store4('t_s', 'x', `${Q_OFF}u + qr * ${QST}u + u * 4u`)}
    ${rope ? store4('t_s', 'y', `${Q_OFF}u + qr * ${QST}u + ${DQ / 2}u + u * 4u`) : ''}
  }
  workgroupBarrier();
  ${c.dump ? '' : rbs.map((b) => Array.from({ length: NV }, (_, i) => `var o${b}_${i} = ${result}();`).join('\n  ')).join('\n  ')}
  ${rbs.map((b) => `var m${b} = NEG_BIG;\n  var l${b} = 0.0;\n  var mx${b} = NEG_BIG;\n  var x${b}: array<f32, ${CPL}>;`).join('\n  ')}

  for (var t0 = kv_lo; t0 < kv_hi; t0 += ${BC}u) {
    workgroupBarrier();
    if (lid == 0u) { atomicStore(&flag, 0u); }
    for (var idx = lid; idx < ${BC * (rope ? DQ / 8 : DQ / 4)}u; idx += ${WG}u) {
      let c = idx / ${rope ? DQ / 8 : DQ / 4}u;
      let u = idx % ${rope ? DQ / 8 : DQ / 4}u;
      let j = t0 + c;
      var x = vec4<f32>(0.0);
      ${rope ? 'var y = vec4<f32>(0.0);' : ''}
      if (j < kv_hi) {
        let base = k_row(j, wi.page_base, kvh) + u * 4u;
        ${rope ? `let xy = rope4(load_k4(base), load_k4(base + ${DQ / 2}u), f32(j), u * 4u);\n        x = xy[0];\n        y = xy[1];` : 'x = load_k4(base);'}
      }
      ${c.dump === 'SS' ? `x = vec4<f32>(synth(c * ${DQ}u + u * 4u, 5u), synth(c * ${DQ}u + u * 4u + 1u, 5u), synth(c * ${DQ}u + u * 4u + 2u, 5u), synth(c * ${DQ}u + u * 4u + 3u, 5u));` : ''}
      ${store4('t_s', 'x', `${K_OFF}u + c * ${KST}u + u * 4u`)}
      ${rope ? store4('t_s', 'y', `${K_OFF}u + c * ${KST}u + ${DQ / 2}u + u * 4u`) : ''}
    }
    for (var idx = lid; idx < ${BC * (DV / 4)}u; idx += ${WG}u) {
      let c = idx / ${DV / 4}u;
      let u = idx % ${DV / 4}u;
      let j = t0 + c;
      var x = vec4<f32>(0.0);
      if (j < kv_hi) { x = load_v4(v_row(j, wi.page_base, kvh) + u * 4u); }
      ${store4('t_s', 'x', `${V_OFF}u + c * ${VST}u + u * 4u`)}
    }
    workgroupBarrier();
    // S = Q Kᵀ.
    ${sCode}
    workgroupBarrier();
    ${
      c.dump
        ? `for (var e = 0u; e < ${c.dump.startsWith('S') ? CPL : DQ / LPR}u; e++) {
      let col = lr * ${c.dump.startsWith('S') ? CPL : DQ / LPR}u + e;
      o_out[params.o_offset + (wi.qo_start + wi.tile + rr) * params.num_qo_heads * ${DV}u + kvh * ${DV}u + col] = bitcast<u32>(${
        { S: `s_s[rr * ${SST}u + col]`, S2: `s_s[rr * ${SST}u + col]`, SS: `s_s[rr * ${SST}u + col]`, Q: `f32(t_s[${Q_OFF}u + rr * ${QST}u + col])`, K: `f32(t_s[${K_OFF}u + rr * ${KST}u + col])` }[c.dump]
      });
      ${c.dump === 'S2' ? `o_out[params.o_offset + (wi.qo_start + wi.tile + rr) * params.num_qo_heads * ${DV}u + kvh * ${DV}u + 32u + col] = bitcast<u32>(f32(t_s[${Q_OFF}u + rr * ${QST}u + col]));` : ''}
    }
    return;`
        : ''
    }
    ${c.dump ? '' : `${softmax}
    if (workgroupUniformLoad(&flag) != 0u) {
      ${rescale}
    }
    ${probs}
    workgroupBarrier();`}
    // O += P V.
    ${c.dump ? '' : Array.from({ length: BC / 16 }, (_, kb) => `{
      ${rbs.map((b) => `let p${b} = subgroupMatrixLoad<${left}, row_major>(&t_s, ${P_OFF + b * 16 * PST + kb * 16}u, ${PST}u);`).join('\n      ')}
      ${Array.from({ length: NV }, (_, i) => `{
        let vm = subgroupMatrixLoad<${right}, row_major>(&t_s, ${V_OFF + kb * 16 * VST + i * 16}u, ${VST}u);
        ${rbs.map((b) => `o${b}_${i} = subgroupMatrixMultiplyAccumulate(p${b}, vm, o${b}_${i});`).join(' ')}
      }`).join('\n      ')}
    }`).join('\n    ')}
  }
  workgroupBarrier();
  ${c.dump ? '' : finish}
}`;
}
