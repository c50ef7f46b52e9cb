/**
 * The decode kernel: one workgroup per (work item, kv head). A work item is one query row's KV
 * chunk [start, end). All G = Hq/Hkv query heads of the kv head are served together, so each K/V
 * byte is read from memory once.
 *
 * Per tile of T tokens:
 *   load   K and V rows into workgroup memory with 16-byte loads (paged addressing)
 *   A      logits: thread per (token, head subset) -> s[g][t]; tile max per head (atomicMax)
 *   P      p = exp2(s - m_new) once per (head, token)
 *   B      thread per (head, 4-wide slice of D[, token lane]): rescale by exp2(m_old - m_new),
 *          accumulate p * v
 * Softmax is base 2 in f32 (logits pre-scaled by log2 e). A chunk's result goes straight to the
 * output (unsplit rows) or, normalised, to a partial slot in the workspace for the merge pass.
 */
import {
  type FloatDType,
  elementsPerWord,
  wgslAttentionCommon,
  wgslDtypeHelpers,
  wgslEnables,
  wgslLoadElement,
  wgslPackHelpers,
} from '@webinfer/core-buffers';
import { DIRECT_SLOT, type PosEncodingMode, decodeBindingsWgsl, decodeLogitExpr, decodeUniforms, loadWorkItemWgsl, specMaskTerm, specMaskWgsl } from './decode-common';

export { DIRECT_SLOT, PADDING_ROW, type PosEncodingMode, WORK_ITEM_WORDS, decodeUniforms } from './decode-common';

export interface DecodeShaderConfig {
  headDim: number;
  /** Query heads per kv head. */
  groupSize: number;
  /** Tokens per tile (a power of two <= workgroupSize). */
  tile: number;
  workgroupSize: number;
  qDtype: FloatDType;
  kvDtype: FloatDType;
  oDtype: FloatDType;
  posEncoding: PosEncodingMode;
  softCap: boolean;
  sinks: boolean;
  nativeF16: boolean;
  /** Benchmark-only: drop one phase to see what it costs (results are wrong). */
  debugSkip?: 'loads' | 'A' | 'atomics' | 'P' | 'B';
  /** Speculative-decoding mask over the draft keys (xqa with qSeqLen > 1). */
  specMask?: boolean;
}

/** Layout numbers the wrapper needs too (smem size, thread mapping). */
export function decodeLayout(c: DecodeShaderConfig) {
  const bytes = { f32: 4, f16: 2, bf16: 2, fp8_e4m3: 1, fp8_e5m2: 1 }[c.kvDtype];
  const rowVec4 = (c.headDim * bytes) / 16; // 16-byte words per K/V row
  const elemsPerVec4 = 16 / bytes;
  const slices = (c.groupSize * c.headDim) / 4; // 4-wide output slices
  const lanes = slices >= c.workgroupSize ? 1 : Math.floor(c.workgroupSize / slices);
  const slicesPerThread = Math.ceil(slices / c.workgroupSize);
  const threadsPerToken = Math.max(1, c.workgroupSize / c.tile);
  const headsPerThreadA = Math.ceil(c.groupSize / threadsPerToken);
  const sStride = c.tile + 1;
  const smemBytes =
    c.tile * (rowVec4 + 1) * 16 + // K tile, rows padded by one vec4
    c.tile * rowVec4 * 16 + // V tile
    c.groupSize * c.headDim * 4 + // q
    (c.posEncoding === 'ROPE_LLAMA' ? (c.headDim / 2) * 4 : 0) +
    c.groupSize * sStride * 4 + // logits / probabilities
    c.groupSize * 8 + // running and tile maxima
    (lanes > 1 ? c.workgroupSize * 20 : 0) + // lane reduction
    64;
  return { bytes, rowVec4, elemsPerVec4, slices, lanes, slicesPerThread, threadsPerToken, headsPerThreadA, sStride, smemBytes };
}

/** `vec4<f32>` of elements 4i..4i+3 of a 16-byte word `w` holding `dtype` (i a constant). */
function chunkOfWord(dtype: FloatDType, w: string, i: number): string {
  switch (elementsPerWord(dtype)) {
    case 1:
      return `bitcast<vec4<f32>>(${w})`;
    case 2: {
      const [a, b] = i === 0 ? ['x', 'y'] : ['z', 'w'];
      return `vec4<f32>(unpack_${dtype}(${w}.${a}), unpack_${dtype}(${w}.${b}))`;
    }
    default:
      return `unpack_${dtype}(${w}[${i}])`;
  }
}

export function batchDecodeWgsl(c: DecodeShaderConfig): string {
  const L = decodeLayout(c);
  const D = c.headDim;
  const G = c.groupSize;
  const T = c.tile;
  const WG = c.workgroupSize;
  const KW4 = L.rowVec4;
  const KS4 = KW4 + 1;
  const E = L.elemsPerVec4;
  const oPer = elementsPerWord(c.oDtype);
  const rope = c.posEncoding === 'ROPE_LLAMA';
  const loads = Math.ceil((T * KW4) / WG);
  const exact = (T * KW4) % WG === 0;
  const HG = L.threadsPerToken;
  const NGA = L.headsPerThreadA;
  const S = L.slices;
  const Z = L.lanes;
  const NS = L.slicesPerThread;

  // ---- tile load: all loads first (many 16-byte requests in flight), then the stores
  const loadLines: string[] = [];
  const storeLines: string[] = [];
  for (let i = 0; i < loads; i++) {
    loadLines.push(`  let idx${i} = lid + ${i * WG}u;
  let r${i} = idx${i} / ${KW4}u;
  let ok${i} = r${i} < valid${exact ? '' : ` && idx${i} < ${T * KW4}u`};
  var kw${i} = vec4<u32>();
  var vw${i} = vec4<u32>();
  if (ok${i}${c.debugSkip === 'loads' ? ' && false' : ''}) {
    let j = tile_start + r${i};
    let page = plan[params.indices_offset + wi.page_base + j / params.page_size];
    let slot = j % params.page_size;
    let c = idx${i} % ${KW4}u;
    kw${i} = k_cache[k_elem(page, slot, kvh) / ${E}u + c];
    vw${i} = v_cache[v_elem(page, slot, kvh) / ${E}u + c];
  }`);
    storeLines.push(`  if (ok${i}) { k_tile[r${i} * ${KS4}u + idx${i} % ${KW4}u] = kw${i}; v_tile[idx${i}] = vw${i}; }`);
  }

  // ---- phase A: dot products of one token with this thread's heads
  const chunksPerWord = E / 4;
  const accDecl = Array.from({ length: NGA }, (_, j) => `var acc${j} = 0.0;`).join(' ');
  const headIdx = Array.from({ length: NGA }, (_, j) => `let ga${j} = min(hg + ${j * HG}u, ${G - 1}u);`).join('\n      ');
  const dotLines: string[] = [];
  for (let i = 0; i < chunksPerWord; i++) {
    const e = `cw * ${E}u + ${4 * i}u`; // element index in the first half
    dotLines.push(`{
          var klo = ${chunkOfWord(c.kvDtype, 'wlo', i)};
          var khi = ${chunkOfWord(c.kvDtype, 'whi', i)};`);
    if (rope) {
      dotLines.push(`          let e0 = ${e};
          let cs0 = rope_cos_sin(pos, freq_s[e0]);
          let cs1 = rope_cos_sin(pos, freq_s[e0 + 1u]);
          let cs2 = rope_cos_sin(pos, freq_s[e0 + 2u]);
          let cs3 = rope_cos_sin(pos, freq_s[e0 + 3u]);
          let cv = vec4<f32>(cs0.x, cs1.x, cs2.x, cs3.x);
          let sv = vec4<f32>(cs0.y, cs1.y, cs2.y, cs3.y);
          let rlo = klo * cv - khi * sv;
          khi = khi * cv + klo * sv;
          klo = rlo;`);
    }
    dotLines.push(`          let qi = (${e}) / 4u;`);
    for (let j = 0; j < NGA; j++) {
      dotLines.push(`          acc${j} += dot(q_s[ga${j} * ${D / 4}u + qi], klo) + dot(q_s[ga${j} * ${D / 4}u + ${D / 8}u + qi], khi);`);
    }
    dotLines.push('        }');
  }
  const logitLines = Array.from(
    { length: NGA },
    (_, j) => `      if (hg + ${j * HG}u < ${G}u) {
        let g = hg + ${j * HG}u;
        let h = kvh * ${G}u + g;
        let acc = acc${j};
        var x = ${decodeLogitExpr(c.posEncoding, c.softCap)};
        if (masked) { x = NEG_BIG; }
        s_tile[g * ${L.sStride}u + t] = x;
        ${c.debugSkip === 'atomics' ? '' : 'atomicMax(&m_tile[g], ordered(x));'}
      }`,
  ).join('\n');

  // ---- phase B: slices owned by this thread
  const sliceDecl: string[] = [];
  for (let j = 0; j < NS; j++) {
    const k = Z > 1 ? 'lid % ' + S + 'u' : `lid + ${j * WG}u`;
    sliceDecl.push(`  let k${j} = ${k};
  let live${j} = k${j} < ${S}u${Z > 1 ? ` && lane < ${Z}u` : ''};
  let g${j} = min(k${j} / ${D / 4}u, ${G - 1}u);
  let d${j} = (k${j} % ${D / 4}u) * 4u;
  var o${j} = vec4<f32>(0.0);
  var den${j} = 0.0;`);
  }
  const vChunk = (j: number) => {
    const word = `v_tile[t * ${KW4}u + d${j} / ${E}u]`;
    switch (elementsPerWord(c.kvDtype)) {
      case 1:
        return `bitcast<vec4<f32>>(${word})`;
      case 2:
        return `unpack_v_half(${word}, (d${j} / 4u) & 1u)`;
      default:
        return `unpack_${c.kvDtype}(${word}[(d${j} / 4u) & 3u])`;
    }
  };
  const rescale = Array.from(
    { length: NS },
    (_, j) => `    {
      let mo = m_run[g${j}];
      let a = exp2(mo - max(mo, from_ordered(atomicLoad(&m_tile[g${j}]))));
      o${j} *= a;
      den${j} *= a;
    }`,
  ).join('\n');
  const accumulate = Array.from(
    { length: NS },
    (_, j) => `      { let p = s_tile[g${j} * ${L.sStride}u + t]; den${j} += p; o${j} += p * ${vChunk(j)}; }`,
  ).join('\n');

  const laneReduce =
    Z > 1
      ? `  red_o[lid] = o0;
  red_d[lid] = den0;
  workgroupBarrier();
  if (lane == 0u && live0) {
    for (var z = 1u; z < ${Z}u; z++) {
      o0 += red_o[z * ${S}u + k0];
      den0 += red_d[z * ${S}u + k0];
    }
  }`
      : '';
  const storeO = (j: number) => {
    const w = `(params.o_offset + (wi.row * params.num_qo_heads + h) * ${D}u + d${j}) / ${oPer}u`;
    if (oPer === 1) return `let w = ${w}; for (var i = 0u; i < 4u; i++) { o_out[w + i] = bitcast<u32>(res[i]); }`;
    if (oPer === 2) return `let w = ${w}; o_out[w] = pack_${c.oDtype}(res.xy); o_out[w + 1u] = pack_${c.oDtype}(res.zw);`;
    return `o_out[${w}] = pack_${c.oDtype}(res);`;
  };
  const writes = Array.from(
    { length: NS },
    (_, j) => `  if (live${j}${Z > 1 ? ' && lane == 0u' : ''}) {
    let h = kvh * ${G}u + g${j};
    var m = m_run[g${j}];
    var o = o${j};
    var den = den${j};
    if (wi.slot == ${DIRECT_SLOT}u) {
      ${
        c.sinks
          ? `let sk = sinks[h] * LOG2E;
      let m2 = max(m, sk);
      let sc = exp2(m - m2);
      den = den * sc + exp2(sk - m2);
      o = o * sc;
      m = m2;`
          : ''
      }
      var res = vec4<f32>(0.0);
      if (den > 0.0) { res = o / den * params.v_scale; }
      ${storeO(j)}
      if (d${j} == 0u) { lse_out[params.lse_offset + wi.row * params.num_qo_heads + h] = lse_bits(m, den); }
    } else {
      var res = vec4<f32>(0.0);
      if (den > 0.0) { res = o / den; }
      let base = params.part_o_offset + (wi.slot * params.num_qo_heads + h) * ${D}u + d${j};
      ws[base] = res.x; ws[base + 1u] = res.y; ws[base + 2u] = res.z; ws[base + 3u] = res.w;
      if (d${j} == 0u) { ws[params.part_lse_offset + wi.slot * params.num_qo_heads + h] = bitcast<f32>(lse_bits(m, den)); }
    }
  }`,
  ).join('\n');

  const dtypes = [...new Set<FloatDType>([c.kvDtype, c.qDtype])];
  return `${wgslEnables({ nativeF16: c.nativeF16 })}
${decodeUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslDtypeHelpers(dtypes, { nativeF16: c.nativeF16 })}
${wgslPackHelpers([c.oDtype], { nativeF16: c.nativeF16 })}

${decodeBindingsWgsl('vec4<u32>')}
${specMaskWgsl(c.specMask)}

var<workgroup> k_tile: array<vec4<u32>, ${T * KS4}>;
var<workgroup> v_tile: array<vec4<u32>, ${T * KW4}>;
var<workgroup> q_s: array<vec4<f32>, ${(G * D) / 4}>;
var<workgroup> s_tile: array<f32, ${G * L.sStride}>;
var<workgroup> m_run: array<f32, ${G}>;
var<workgroup> m_tile: array<atomic<u32>, ${G}>;
${rope ? `var<workgroup> freq_s: array<f32, ${D / 2}>;` : ''}
${Z > 1 ? `var<workgroup> red_o: array<vec4<f32>, ${WG}>;\nvar<workgroup> red_d: array<f32, ${WG}>;` : ''}

${wgslLoadElement('load_q', 'q_in', c.qDtype)}
${elementsPerWord(c.kvDtype) === 2 ? `fn unpack_v_half(w: vec4<u32>, hi: u32) -> vec4<f32> {
  let pair = select(w.xy, w.zw, hi == 1u);
  return vec4<f32>(unpack_${c.kvDtype}(pair.x), unpack_${c.kvDtype}(pair.y));
}` : ''}

/** Order-preserving map of f32 to u32, so atomicMax on u32 is a float max. */
fn ordered(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b ^ 0x80000000u, ~b, (b >> 31u) == 1u);
}
fn from_ordered(u: u32) -> f32 {
  return bitcast<f32>(select(~u, u ^ 0x80000000u, (u >> 31u) == 1u));
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let linear = wgid.x + wgid.y * params.groups_x;
  if (linear >= params.num_work * params.num_kv_heads) { return; }
  let kvh = linear % params.num_kv_heads;
  let work = linear / params.num_kv_heads;
  ${loadWorkItemWgsl('work')}
  let q_pos = f32(wi.kv_len) - 1.0;

  // q of every head in the group, RoPE'd at position kv_len - 1, in f32.
  ${rope ? `for (var d = lid; d < ${D / 2}u; d += ${WG}u) { freq_s[d] = rope_freq(d, ${D}u, params.rope_rcp_scale, params.rope_log2_theta); }
  workgroupBarrier();
  for (var e = lid; e < ${(G * D) / 2}u; e += ${WG}u) {
    let g = e / ${D / 2}u;
    let d = e % ${D / 2}u;
    let base = params.q_offset + wi.row * params.q_stride_row + (kvh * ${G}u + g) * params.q_stride_head;
    let a = load_q(base + d);
    let b = load_q(base + d + ${D / 2}u);
    let cs = rope_cos_sin(q_pos, freq_s[d]);
    let qa = g * ${D}u + d;
    let qb = qa + ${D / 2}u;
    q_s[qa / 4u][qa % 4u] = a * cs.x - b * cs.y;
    q_s[qb / 4u][qb % 4u] = b * cs.x + a * cs.y;
  }` : `for (var e = lid; e < ${G * D}u; e += ${WG}u) {
    let g = e / ${D}u;
    let d = e % ${D}u;
    q_s[e / 4u][e % 4u] = load_q(params.q_offset + wi.row * params.q_stride_row + (kvh * ${G}u + g) * params.q_stride_head + d);
  }`}
  if (lid < ${G}u) { m_run[lid] = NEG_BIG; }

  let t = lid % ${T}u;
  let hg = lid / ${T}u;
  let lane = lid / ${S}u;
${sliceDecl.join('\n')}

  for (var tile_start = wi.start; tile_start < wi.end; tile_start += ${T}u) {
    let valid = min(${T}u, wi.end - tile_start);
    if (lid < ${G}u) { atomicStore(&m_tile[lid], ordered(NEG_BIG)); }
${loadLines.join('\n')}
${storeLines.join('\n')}
    workgroupBarrier();

    // A: logits
    if (t < valid && hg < ${HG}u${c.debugSkip === 'A' ? ' && false' : ''}) {
      let j = tile_start + t;
      let pos = f32(j);
      let masked = (params.window_left >= 0 && i32(j) + params.window_left < i32(wi.kv_len) - 1)${specMaskTerm(c.specMask, 'j')};
      ${accDecl}
      ${headIdx}
      for (var cw = 0u; cw < ${KW4 / 2}u; cw++) {
        let wlo = k_tile[t * ${KS4}u + cw];
        let whi = k_tile[t * ${KS4}u + ${KW4 / 2}u + cw];
        ${dotLines.join('\n')}
      }
${logitLines}
    }
    workgroupBarrier();

    // P: probabilities relative to the new running max
    for (var e = lid; e < ${c.debugSkip === 'P' ? 0 : G * T}u; e += ${WG}u) {
      let g = e / ${T}u;
      let tt = e % ${T}u;
      let x = s_tile[g * ${L.sStride}u + tt];
      let mn = max(m_run[g], from_ordered(atomicLoad(&m_tile[g])));
      var p = 0.0;
      if (tt < valid && x > NEG_BIG) { p = exp2(x - mn); }
      s_tile[g * ${L.sStride}u + tt] = p;
    }
    workgroupBarrier();

    // B: rescale and accumulate p * v
${rescale}
    for (var t2 = ${Z > 1 ? 'lane' : '0u'}; t2 < ${c.debugSkip === 'B' ? '0u' : 'valid'}; t2 += ${Z}u) {
      let t = t2;
${accumulate}
    }
    workgroupBarrier();
    if (lid < ${G}u) { m_run[lid] = max(m_run[lid], from_ordered(atomicLoad(&m_tile[lid]))); }
  }
  workgroupBarrier();
${laneReduce}
${writes}
}
`;
}
