/**
 * The subgroup decode kernel (fast path on devices with subgroups). K/V stream from memory straight
 * into registers; nothing is staged in workgroup memory during the main loop.
 *
 * A workgroup serves one work item (a query row's KV chunk) for one kv head and up to 8 of its
 * query heads. TD lanes of a subgroup share one token: each lane loads EPT elements of the K and
 * V rows (16-byte loads, 8 for fp8), computes partial dot products with its slice of every head's
 * q (held in registers), and a shuffle-xor butterfly completes them. The WG/TD token lanes each
 * run an online softmax over their own tokens (U at a time, so several rows are in flight), and
 * their states are merged through workgroup memory once at the end.
 */
import {
  type FloatDType,
  wgslAttentionCommon,
  wgslDtypeHelpers,
  wgslEnables,
  wgslLoadElement,
  wgslPackHelpers,
} from '@webinfer/core-buffers';
import {
  type PosEncodingMode,
  decodeBindingsWgsl,
  decodeFinishStateWgsl,
  decodeLogitExpr,
  decodeStoreO4Wgsl,
  decodeUniforms,
  loadWorkItemWgsl,
  specMaskTerm,
  specMaskWgsl,
} from './decode-common';

export interface SubgroupDecodeConfig {
  headDim: number;
  /** Query heads per kv head. */
  groupSize: number;
  /** Query heads served by one workgroup (a divisor-free chunk of the group; the last may be short). */
  headsPerWorkgroup: number;
  /** Lanes sharing one token (a power of two no larger than the subgroup). */
  lanesPerToken: number;
  /** Tokens each token lane handles per step. */
  tokensPerStep: number;
  workgroupSize: number;
  qDtype: FloatDType;
  kvDtype: FloatDType;
  oDtype: FloatDType;
  posEncoding: PosEncodingMode;
  softCap: boolean;
  sinks: boolean;
  nativeF16: boolean;
  /** Page size is a power of two: page and slot by shift and mask instead of division. */
  pagePow2: boolean;
  /** Speculative-decoding mask over the draft keys (xqa with qSeqLen > 1). */
  specMask?: boolean;
  /** fp8 KV read 16 bytes (16 elements) a load instead of 8 (bench experiments). */
  wideFp8Loads?: boolean;
  /**
   * Finish the dot products with a reduce-scatter: each lane of a token ends with one head's sum
   * and runs that head's softmax, then the probabilities are shuffled to every lane for P V
   * (default; false: a butterfly gives every lane every head, and every lane runs every softmax).
   */
  scatterSoftmax?: boolean;
  /**
   * Lazy rescale (this config's default; the wrapper asks for it with fp8 KV only): a lane's
   * running max moves only when a logit passes it by more than LAZY_SLACK (log2 units), so O and
   * the sum are rescaled in a handful of steps instead of every step; p = exp2(x - m) <= 2^8 in
   * between. m + log2(d) stays the exact LSE. false: rescale every step.
   */
  lazyRescale?: boolean;
  /** Bench only (wrong results): every token reads the chunk's first K/V row (cache hits). */
  profileSkip?: 'loads';
}

/**
 * Elements per lane load: 8 for 1- and 2-byte dtypes (16-byte loads; 8-byte for fp8, which keeps
 * q and o of four heads in registers), 4 for f32.
 */
export function elementsPerLoad(kvDtype: FloatDType, wideFp8Loads = false): number {
  return kvDtype === 'f32' ? 4 : wideFp8Loads && isFp8(kvDtype) ? 16 : 8;
}

function isFp8(d: FloatDType): boolean {
  return d === 'fp8_e4m3' || d === 'fp8_e5m2';
}

export function subgroupDecodeLayout(c: SubgroupDecodeConfig) {
  const EPT = elementsPerLoad(c.kvDtype, c.wideFp8Loads);
  const chunks = c.headDim / EPT; // loads per row
  const RV = chunks / c.lanesPerToken; // loads per lane per row
  const NV = EPT / 4; // vec4<f32> per load
  const NL = c.workgroupSize / c.lanesPerToken; // token lanes
  const headGroups = Math.ceil(c.groupSize / c.headsPerWorkgroup);
  const smemBytes = NL * c.headsPerWorkgroup * 8 + (NL / 2) * c.headsPerWorkgroup * (c.headDim + 1) * 4 + 64;
  return { EPT, chunks, RV, NV, NL, headGroups, smemBytes };
}

function unpackLoad(dtype: FloatDType, w: string, v: number, e4m3: 'finite' | 'div256' = 'div256'): string {
  switch (dtype) {
    case 'f32':
      return `bitcast<vec4<f32>>(${w})`;
    case 'fp8_e4m3':
      // values / 256: the kernel multiplies logits and outputs by KV_UNIT instead (exact)
      return `unpack_fp8_e4m3_${e4m3}(${w}.${'xyzw'[v]})`;
    case 'fp8_e5m2':
      return `unpack_${dtype}(${w}.${'xyzw'[v]})`;
    default: {
      const [a, b] = v === 0 ? ['x', 'y'] : ['z', 'w'];
      return `vec4<f32>(unpack_${dtype}(${w}.${a}), unpack_${dtype}(${w}.${b}))`;
    }
  }
}

export function subgroupDecodeWgsl(c: SubgroupDecodeConfig): string {
  const L = subgroupDecodeLayout(c);
  const { EPT, RV, NV, NL } = L;
  const D = c.headDim;
  const G = c.groupSize;
  const HPW = c.headsPerWorkgroup;
  const TD = c.lanesPerToken;
  const U = c.tokensPerStep;
  const WG = c.workgroupSize;
  const rope = c.posEncoding === 'ROPE_LLAMA';
  const loadType = isFp8(c.kvDtype) && !c.wideFp8Loads ? 'vec2<u32>' : 'vec4<u32>';
  const heads = Array.from({ length: HPW }, (_, g) => g);
  const rs = Array.from({ length: RV }, (_, r) => r);
  const vs = Array.from({ length: NV }, (_, v) => v);
  const us = Array.from({ length: U }, (_, u) => u);
  // e4m3 K/V unpack to their values / 256 (two fewer multiplies per element); logits and
  // outputs take the factor back, which is exact (a power of two).
  const unit = c.kvDtype === 'fp8_e4m3' ? ' * KV_UNIT' : '';
  // e4m3: NaN codes are tested once per step over all its words, not once per word.
  // (H100: this reads 0.318 ms at B=64 kv 4096 where finite K with a per-token NaN poison and
  // branch-free exact V read 0.336-0.40 although their arithmetic alone is 35% cheaper.)
  const nanStep = c.kvDtype === 'fp8_e4m3';
  const NW = isFp8(c.kvDtype) && !c.wideFp8Loads ? 2 : 4; // u32 words per load
  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);

  // element index of (r, v) for this lane: chunk c = r * TD + sl, elements c*EPT + 4v .. +3
  const elemOf = (r: number, v: number) => `((${r}u * ${TD}u + sl) * ${EPT}u + ${4 * v}u)`;

  // ---- q in registers (rotated when RoPE)
  for (const g of heads) {
    for (const r of rs) {
      for (const v of vs) {
        const e = elemOf(r, v);
        emit(`  var q_${g}_${r}_${v} = vec4<f32>(0.0);`);
        emit(`  var o_${g}_${r}_${v} = vec4<f32>(0.0);`);
        emit(`  if (hg * ${HPW}u + ${g}u < ${G}u) {
    let qb = params.q_offset + wi.row * params.q_stride_row + (kvh * ${G}u + hg * ${HPW}u + ${g}u) * params.q_stride_head;
    for (var i = 0u; i < 4u; i++) {
      let e = ${e} + i;
      ${
        rope
          ? `let half = ${D / 2}u;
      let pe = select(e + half, e - half, e >= half);
      let cs = rope_cos_sin(q_pos, rope_freq(e % half, ${D}u, params.rope_rcp_scale, params.rope_log2_theta));
      let own = load_q(qb + e);
      let partner = load_q(qb + pe);
      q_${g}_${r}_${v}[i] = select(own * cs.x - partner * cs.y, own * cs.x + partner * cs.y, e >= half);`
          : `q_${g}_${r}_${v}[i] = load_q(qb + e);`
      }
    }
  }`);
      }
    }
  }
  // RoPE frequencies of this lane's elements (k rotation per token)
  if (rope) {
    for (const r of rs) {
      for (const v of vs) {
        emit(`  var f_${r}_${v} = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) { f_${r}_${v}[i] = rope_freq((${elemOf(r, v)} + i) % ${D / 2}u, ${D}u, params.rope_rcp_scale, params.rope_log2_theta); }`);
      }
    }
  }
  // Reduce-scatter geometry: HP heads (padded to a power of two) over the TD lanes of a token;
  // lane sl finishes head (sl >> SH) & (HP - 1), replicated over the low SH bits.
  const HP = 2 ** Math.ceil(Math.log2(HPW));
  const scatter = (c.scatterSoftmax ?? true) && HPW >= 2 && HP <= TD;
  const SH = Math.log2(TD) - Math.log2(HP);
  if (scatter) {
    emit(`  var m_me = NEG_BIG;
  var d_me = 0.0;
  let h_me = (sl >> ${SH}u) & ${HP - 1}u;
  let h_glob = kvh * ${G}u + hg * ${HPW}u + min(h_me, ${HPW - 1}u);
  let group_lane = sgid & ${~(TD - 1) >>> 0}u;`);
  } else {
    for (const g of heads) emit(`  var m_${g} = NEG_BIG;\n  var d_${g} = 0.0;`);
  }

  // ---- main loop
  emit(`  let steps = (wi.end - wi.start + ${NL * U - 1}u) / ${NL * U}u;
  for (var step = 0u; step < steps; step++) {
    let base = wi.start + (step * ${NL}u + lane) * ${U}u;`);
  for (const u of us) {
    emit(`    let j${u} = base + ${u}u;
    let ok${u} = j${u} < wi.end;
    let jj${u} = ${c.profileSkip === 'loads' ? 'wi.start' : `select(wi.start, j${u}, ok${u})`};
    let page${u} = plan[params.indices_offset + wi.page_base + ${c.pagePow2 ? `(jj${u} >> params.page_shift)` : `jj${u} / params.page_size`}];
    let slot${u} = ${c.pagePow2 ? `jj${u} & (params.page_size - 1u)` : `jj${u} % params.page_size`};
    let kb${u} = k_elem(page${u}, slot${u}, kvh) / ${EPT}u;
    let vb${u} = v_elem(page${u}, slot${u}, kvh) / ${EPT}u;`);
    for (const r of rs) {
      emit(`    let kw${u}_${r} = k_cache[kb${u} + ${r}u * ${TD}u + sl];
    let vw${u}_${r} = v_cache[vb${u} + ${r}u * ${TD}u + sl];`);
    }
  }
  if (nanStep) {
    const words = (p: string) => us.flatMap((u) => rs.flatMap((r) => Array.from({ length: NW }, (_, w) => `fp8_e4m3_nan_bits(${p}w${u}_${r}.${'xyzw'[w]})`)));
    emit(`    let nan_k = ${words('k').join(' | ')};
    let nan_v = ${words('v').join(' | ')};`);
  }
  // dot products
  for (const u of us) {
    if (nanStep) {
      // One test of the step's words picks the exact unpack (NaN-aware) or the finite one.
      for (const r of rs) for (const v of vs) emit(`    var k${u}_${r}_${v}: vec4<f32>;`);
      emit(`    if (nan_k != 0u) {
${rs.flatMap((r) => vs.map((v) => `      k${u}_${r}_${v} = ${unpackLoad(c.kvDtype, `kw${u}_${r}`, v)};`)).join('\n')}
    } else {
${rs.flatMap((r) => vs.map((v) => `      k${u}_${r}_${v} = ${unpackLoad(c.kvDtype, `kw${u}_${r}`, v, 'finite')};`)).join('\n')}
    }`);
    } else {
      for (const r of rs) for (const v of vs) emit(`    var k${u}_${r}_${v} = ${unpackLoad(c.kvDtype, `kw${u}_${r}`, v)};`);
    }
    if (rope) {
      emit(`    {
      let pos = f32(j${u});`);
      for (const r of rs) {
        for (const v of vs) {
          // partner chunk: other lane (RV = 1) or other load of this lane (RV >= 2)
          const partner = RV === 1 ? `subgroupShuffleXor(k${u}_${r}_${v}, ${TD / 2}u)` : `k${u}_${(r + RV / 2) % RV}_${v}`;
          emit(`      let p_${r}_${v} = ${partner};`);
        }
      }
      for (const r of rs) {
        for (const v of vs) {
          emit(`      {
        var cv = vec4<f32>(0.0);
        var sv = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i++) { let cs = rope_cos_sin(pos, f_${r}_${v}[i]); cv[i] = cs.x; sv[i] = cs.y; }
        let first = ${elemOf(r, v)} < ${D / 2}u;
        k${u}_${r}_${v} = select(k${u}_${r}_${v} * cv + p_${r}_${v} * sv, k${u}_${r}_${v} * cv - p_${r}_${v} * sv, first);
      }`);
        }
      }
      emit('    }');
    }
    for (const g of heads) {
      const terms = rs.flatMap((r) => vs.map((v) => `dot(q_${g}_${r}_${v}, k${u}_${r}_${v})`)).join(' + ');
      emit(`    var s${g}_${u} = ${terms};`);
    }
  }
  // logits, online softmax, p * v
  for (const u of us) {
    emit(`    let masked${u} = !ok${u} || (params.window_left >= 0 && i32(j${u}) + params.window_left < i32(wi.kv_len) - 1)${specMaskTerm(c.specMask, `j${u}`)};`);
  }
  if (nanStep) {
    for (const r of rs) for (const v of vs) for (const u of us) emit(`    var v${u}_${r}_${v}: vec4<f32>;`);
    emit(`    if (nan_v != 0u) {
${rs.flatMap((r) => vs.flatMap((v) => us.map((u) => `      v${u}_${r}_${v} = ${unpackLoad(c.kvDtype, `vw${u}_${r}`, v)};`))).join('\n')}
    } else {
${rs.flatMap((r) => vs.flatMap((v) => us.map((u) => `      v${u}_${r}_${v} = ${unpackLoad(c.kvDtype, `vw${u}_${r}`, v, 'finite')};`))).join('\n')}
    }`);
  } else {
    for (const r of rs) for (const v of vs) for (const u of us) emit(`    let v${u}_${r}_${v} = ${unpackLoad(c.kvDtype, `vw${u}_${r}`, v)};`);
  }
  const lazy = c.lazyRescale ?? true;
  // One online-softmax step of state (m, d) over this step's U logits; leaves `p<u>` in scope,
  // and `a` (the factor on O) when not lazy. Lazy: `rescale(a)` scales O inside the rare
  // subgroup-uniform branch where some lane's max moves.
  const softmaxStep = (m: string, d: string, sum: (u: number) => string, rescale: (a: string) => string) => {
    for (const u of us) {
      emit(`      var x${u} = NEG_BIG;
      if (!masked${u}) { let acc = ${sum(u)}${unit}; let j = j${u}; x${u} = ${decodeLogitExpr(c.posEncoding, c.softCap)}; }`);
    }
    const xmax = us.map((u) => `x${u}`).reduce((a, b) => `max(${a}, ${b})`);
    if (lazy) {
      // NEG_BIG + slack == NEG_BIG in f32, so the first real logit always moves m.
      emit(`      let xm = ${xmax};
      let grow = xm > ${m} + LAZY_SLACK;
      if (subgroupAny(grow)) {
        let mn = select(${m}, xm, grow);
        let a = exp2(${m} - mn);
        ${d} *= a;
        ${m} = mn;
${rescale('a')}
      }`);
      // \`!(x <= NEG_BIG)\`, not \`x > NEG_BIG\`: a NaN logit (NaN in K) gives p = NaN, as FlashInfer's exp2 does.
      for (const u of us) emit(`      let p${u} = select(0.0, exp2(x${u} - ${m}), !(x${u} <= NEG_BIG));`);
      emit(`      ${d} += ${us.map((u) => `p${u}`).join(' + ')};`);
    } else {
      emit(`      let mn = max(${m}, ${xmax});
      let a = exp2(${m} - mn);`);
      for (const u of us) emit(`      let p${u} = select(0.0, exp2(x${u} - mn), !(x${u} <= NEG_BIG));`);
      emit(`      ${d} = ${d} * a + ${us.map((u) => `p${u}`).join(' + ')};
      ${m} = mn;`);
    }
  };
  // O += P V as one left-to-right chain starting at O (so it compiles to fused multiply-adds;
  // `o += a * b + c * d` would add a separate sum), with the factor `a` first when not lazy.
  const oUpdate = (g: number, r: number, v: number, a: string, p: (u: number) => string) => {
    const o = `o_${g}_${r}_${v}`;
    return `${o} = ${lazy ? o : `${o} * ${a}`} + ${us.map((u) => `${p(u)} * v${u}_${r}_${v}`).join(' + ')};`;
  };
  if (scatter) {
    // Reduce-scatter: each round halves the heads a lane carries (it keeps the upper half where
    // its bit is set and sends the other half to its partner), then plain rounds finish the sum.
    for (const u of us) {
      let cur = Array.from({ length: HP }, (_, g) => (g < HPW ? `s${g}_${u}` : '0.0'));
      let round = 0;
      for (let off = TD / 2; cur.length > 1; off /= 2, round++) {
        const half = cur.length / 2;
        emit(`    let hi${u}_${round} = (sl & ${off}u) != 0u;`);
        const next: string[] = [];
        for (let i = 0; i < half; i++) {
          const name = `rs${u}_${round}_${i}`;
          emit(`    let ${name} = select(${cur[i]}, ${cur[i + half]}, hi${u}_${round}) + subgroupShuffleXor(select(${cur[i + half]}, ${cur[i]}, hi${u}_${round}), ${off}u);`);
          next.push(name);
        }
        cur = next;
      }
      emit(`    var sum${u} = ${cur[0]};`);
      for (let off = TD >> (round + 1); off >= 1; off /= 2) emit(`    sum${u} += subgroupShuffleXor(sum${u}, ${off}u);`);
    }
    emit(`    {
      let h = h_glob;`);
    // Each head's factor and probabilities live on its lanes: shuffled to every lane for P V.
    softmaxStep('m_me', 'd_me', (u) => `sum${u}`, (a) =>
      heads
        .map(
          (g) => `        {
          let ag = subgroupShuffle(${a}, group_lane | ${g << SH}u);
${rs.flatMap((r) => vs.map((v) => `          o_${g}_${r}_${v} *= ag;`)).join('\n')}
        }`,
        )
        .join('\n'),
    );
    for (const g of heads) {
      emit(`      {
        let src = group_lane | ${g << SH}u;${lazy ? '' : '\n        let ag = subgroupShuffle(a, src);'}
${us.map((u) => `        let pg${u} = subgroupShuffle(p${u}, src);`).join('\n')}`);
      for (const r of rs) for (const v of vs) emit(`        ${oUpdate(g, r, v, 'ag', (u) => `pg${u}`)}`);
      emit('      }');
    }
    emit('    }');
  } else {
    // butterfly: every lane of the token ends with the full sums
    for (let off = TD / 2; off >= 1; off /= 2) {
      for (const g of heads) for (const u of us) emit(`    s${g}_${u} += subgroupShuffleXor(s${g}_${u}, ${off}u);`);
    }
    for (const g of heads) {
      emit(`    {
      let h = kvh * ${G}u + hg * ${HPW}u + ${g}u;`);
      softmaxStep(`m_${g}`, `d_${g}`, (u) => `s${g}_${u}`, (a) => rs.flatMap((r) => vs.map((v) => `        o_${g}_${r}_${v} *= ${a};`)).join('\n'));
      for (const r of rs) for (const v of vs) emit(`      ${oUpdate(g, r, v, 'a', (u) => `p${u}`)}`);
      emit('    }');
    }
  }
  emit('  }');
  if (scatter) {
    // every lane gets every head's state back for the merge below
    for (const g of heads) emit(`  var m_${g} = subgroupShuffle(m_me, group_lane | ${g << SH}u);\n  var d_${g} = subgroupShuffle(d_me, group_lane | ${g << SH}u);`);
  }

  // ---- merge the token lanes: common max, then a tree sum through workgroup memory
  const oStride = D + 1; // padded per-head row in red_o
  for (const g of heads) emit(`  if (sl == 0u) { red_m[lane * ${HPW}u + ${g}u] = m_${g}; }`);
  emit('  workgroupBarrier();');
  for (const g of heads) {
    emit(`  {
    var mx = NEG_BIG;
    for (var l = 0u; l < ${NL}u; l++) { mx = max(mx, red_m[l * ${HPW}u + ${g}u]); }
    let a = exp2(m_${g} - mx);
    m_${g} = mx;
    d_${g} *= a;
${rs.flatMap((r) => vs.map((v) => `    o_${g}_${r}_${v} *= a;`)).join('\n')}
  }`);
  }
  emit('  workgroupBarrier();');
  for (let half = NL / 2; half >= 1; half /= 2) {
    emit(`  if (lane >= ${half}u && lane < ${2 * half}u) {
    let slotb = (lane - ${half}u) * ${HPW}u;`);
    for (const g of heads) {
      emit(`    if (sl == 0u) { red_d[slotb + ${g}u] = d_${g}; }`);
      for (const r of rs) {
        for (const v of vs) {
          emit(`    { let e = ${elemOf(r, v)}; let b = (slotb + ${g}u) * ${oStride}u + e;
      red_o[b] = o_${g}_${r}_${v}.x; red_o[b + 1u] = o_${g}_${r}_${v}.y; red_o[b + 2u] = o_${g}_${r}_${v}.z; red_o[b + 3u] = o_${g}_${r}_${v}.w; }`);
        }
      }
    }
    emit(`  }
  workgroupBarrier();
  if (lane < ${half}u) {
    let slotb = lane * ${HPW}u;`);
    for (const g of heads) {
      emit(`    d_${g} += red_d[slotb + ${g}u];`);
      for (const r of rs) {
        for (const v of vs) {
          emit(`    { let e = ${elemOf(r, v)}; let b = (slotb + ${g}u) * ${oStride}u + e;
      o_${g}_${r}_${v} += vec4<f32>(red_o[b], red_o[b + 1u], red_o[b + 2u], red_o[b + 3u]); }`);
        }
      }
    }
    emit(`  }
  workgroupBarrier();`);
  }

  // ---- write: lane 0 holds every head's result for its elements
  emit('  if (lane == 0u) {');
  for (const g of heads) {
    emit(`    if (hg * ${HPW}u + ${g}u < ${G}u) {
      let h = kvh * ${G}u + hg * ${HPW}u + ${g}u;
      var m = m_${g};
      var den = d_${g};
      ${decodeFinishStateWgsl(c.sinks, 'sl == 0u')}`);
    for (const r of rs) {
      for (const v of vs) {
        emit(`      { let e = ${elemOf(r, v)}; ${decodeStoreO4Wgsl(c.oDtype, D, `(o_${g}_${r}_${v}${unit})`, 'e')} }`);
      }
    }
    emit('    }');
  }
  emit('  }');

  const dtypes = [...new Set<FloatDType>([c.kvDtype, c.qDtype])];
  return `${wgslEnables({ nativeF16: c.nativeF16, subgroups: true })}
diagnostic(off, subgroup_uniformity);
${decodeUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslDtypeHelpers(dtypes, { nativeF16: c.nativeF16 })}
${wgslPackHelpers([c.oDtype], { nativeF16: c.nativeF16 })}

${decodeBindingsWgsl(loadType)}
${specMaskWgsl(c.specMask)}
${unit ? 'const KV_UNIT = 256.0;' : ''}
const LAZY_SLACK = 8.0;
var<workgroup> red_m: array<f32, ${NL * HPW}>;
var<workgroup> red_d: array<f32, ${Math.max(1, (NL / 2) * HPW)}>;
var<workgroup> red_o: array<f32, ${Math.max(1, (NL / 2) * HPW * (D + 1))}>;

${wgslLoadElement('load_q', 'q_in', c.qDtype)}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sgid: u32) {
  let linear = wgid.x + wgid.y * params.groups_x;
  if (linear >= params.num_work * params.num_kv_heads * ${L.headGroups}u) { return; }
  let hg = linear % ${L.headGroups}u;
  let kvh = (linear / ${L.headGroups}u) % params.num_kv_heads;
  let work = linear / (${L.headGroups}u * params.num_kv_heads);
  ${loadWorkItemWgsl('work')}
  let q_pos = f32(wi.kv_len) - 1.0;
  let lane = lid / ${TD}u;
  let sl = lid % ${TD}u;
${lines.join('\n')}
}
`;
}
