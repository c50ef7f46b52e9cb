/**
 * The portable prefill kernel (FlashAttention-2 on f32 FMAs): one workgroup per (work item, kv
 * head). A work item is a tile of BR packed query rows of one request and a KV chunk.
 *
 * Per K/V tile of BC keys:
 *   load   K and V rows into workgroup memory (RoPE applied to K here), kept in the input's 16-bit
 *          format (fp8 widened to f16) and unpacked to f32 when used
 *   S      thread micro-tile of RS x CS logits: dot products over D in f32, mask, logit transform
 *   soft   one thread per row: new max, p = exp2(s - m), running sum, rescale factor
 *   O      thread micro-tile of RO rows x CO 4-wide units: o = o * alpha + P V
 * Tiles wholly outside the causal diagonal or the window are never visited. Softmax is base 2 in
 * f32; the result goes to the output, or (split KV) to a partial slot for the merge pass.
 */
import {
  type FloatDType,
  wgslAttentionCommon,
  wgslDtypeHelpers,
  wgslEnables,
  wgslLoadVec4,
  wgslPackHelpers,
  wgslShuffleReduce,
} from '@webinfer/core-buffers';
import {
  keepFnWgsl,
  loadWorkItemWgsl,
  logitExpr,
  type PrefillKernelOptions,
  prefillBindingsWgsl,
  prefillUniforms,
  tileDtype,
  tileKvRangeWgsl,
  writeOutputWgsl,
} from './prefill-common';

export const SIMT_WORKGROUP = 128;

export interface SimtPrefillConfig extends PrefillKernelOptions {
  /** Packed query rows per tile (16, 32 or 64; 128 with workgroups of 256). */
  rowsPerTile: number;
  /** Keys per K/V tile (8, 16 or 32). */
  keysPerTile: number;
  /** Invocations a workgroup (default SIMT_WORKGROUP, 128; 256 takes twice the rows per tile). */
  workgroupSize?: number;
  /**
   * Tiles held as f32 in workgroup memory ('k': K, 'kv': K and V, 'all': Q too) instead of their
   * 16-bit input format: more memory, but no f16->f32 conversion on every read. Same numerics:
   * widening is exact.
   */
  wide?: 'none' | 'kv' | 'all' | 'k';
  /**
   * Softmax inside the S phase: the 8 threads that hold a row's logits (consecutive lanes) combine
   * their max and sum with subgroup shuffles, so no thread walks a row alone. Needs subgroups of
   * at least 8 lanes; otherwise one thread per row does it after a barrier.
   */
  subgroupSoftmax?: boolean;
  /**
   * How K/V tiles load when their words can be stored as read (no RoPE, tiles in the KV dtype):
   * 'prefetch' (default: the next tile's loads issued before this tile's math), 'batch' (every
   * load of the tile issued, then every store) or 'loop' (a loop of load-then-store). On the H100,
   * causal 4096: 7.67 ms prefetch, 7.68 batch, 13.49 loop (BENCHMARKS.md, session 5).
   */
  loadMode?: 'loop' | 'batch' | 'prefetch';
  /** Bench profiling only: phases left out (results are wrong). */
  debugSkip?: ('load' | 'qk' | 'pv')[];
  /** Steps of the QKᵀ loop (4 dims each) written out per iteration (1, 2 or 4; default 1). */
  qkUnroll?: number;
  /** Keys of the PV loop written out per iteration (1, 2 or 4; default 1). */
  pvUnroll?: number;
  /**
   * Tiles that every row of the tile sees whole (inside the causal diagonal and the window, no
   * custom mask, no kv or qo edge) skip the per-logit mask test. Same results: keep() is true there.
   */
  fullTiles?: boolean;
  /**
   * P, the running max and sum stay in registers (needs subgroupSoftmax): a row's 8 S threads are
   * the 8 consecutive lanes that also own its O units, so P V fetches each probability from its
   * owner with a subgroup shuffle instead of workgroup memory, and the barrier between the
   * softmax and P V goes. Same numerics (f32 P); keys are summed in another order.
   */
  pInRegisters?: boolean;
  /**
   * Issue the next tile's K/V loads after the softmax instead of before QKᵀ: their registers are
   * then live only during P V, leaving QKᵀ (the phase with the most live values) more room.
   */
  lateFetch?: boolean;
  /**
   * Q and K rows unpadded, their 8-byte or 16-byte units XOR-swizzled by the row's low 3 bits
   * instead (reads stay free of bank conflicts): 64 × 32 tiles then fit 32 KB, and 32 × 32 tiles
   * of D 256 fit 48 KB. Needs pInRegisters and head dims that are multiples of 32.
   */
  swizzle?: boolean;
}

const unitBytes = (d: 'f32' | 'f16' | 'bf16') => (d === 'f32' ? 16 : 8);

/** Thread mapping and workgroup memory of a config. */
export function simtLayout(c: SimtPrefillConfig) {
  const BR = c.rowsPerTile;
  const BC = c.keysPerTile;
  const DQ4 = c.headDimQk / 4;
  const DV4 = c.headDimVo / 4;
  const tq = c.wide === 'all' ? 'f32' : tileDtype(c.qDtype);
  const tk = c.wide === 'all' || c.wide === 'kv' || c.wide === 'k' ? 'f32' : tileDtype(c.kvDtype);
  const tv = c.wide === 'all' || c.wide === 'kv' ? 'f32' : tileDtype(c.kvDtype);
  // 'k' without pInRegisters: P lives in K's memory (K is done once S is computed; one more
  // barrier a tile), which is what makes room for an f32 K tile next to 64 rows of Q.
  const pInRegs = c.pInRegisters === true && c.subgroupSoftmax === true;
  const pInK = c.wide === 'k' && !pInRegs;
  const swizzle = c.swizzle === true && pInRegs && !pInK;
  const QS = swizzle ? DQ4 : DQ4 + 1; // rows padded by one unit against bank conflicts (or swizzled)
  const KS = swizzle ? DQ4 : DQ4 + 1;
  const VS = DV4;
  const PS = BC + 1;
  // S: RG row groups x CG column groups; a thread holds RS rows x CS keys. With f32 K, 4 column
  // groups (2 x 8 micro-tiles: 2 q and 8 k loads per 64 FMAs, the q ones converted).
  const CG = pInK ? 4 : 8;
  const WG = c.workgroupSize ?? SIMT_WORKGROUP;
  const RG = WG / CG;
  const RS = BR / RG;
  const CS = BC / CG;
  // O: RO rows x CO units per thread.
  const U = (BR * DV4) / WG;
  // P in registers: a row's O units spread over the same CG lanes that hold its logits.
  const CO = pInRegs ? DV4 / CG : U >= 8 && DV4 % 4 === 0 ? 4 : U >= 2 ? 2 : 1;
  const RO = U / CO;
  const CGO = DV4 / CO;
  const RGO = WG / CGO;
  const kBytes = BC * KS * unitBytes(tk);
  const smemBytes =
    BR * QS * unitBytes(tq) +
    kBytes +
    BC * VS * unitBytes(tv) +
    (pInK || pInRegs ? 0 : BR * PS * 4) +
    (pInRegs ? 0 : 3 * BR * 4) +
    (c.posEncoding === 'ROPE_LLAMA' ? (c.headDimQk / 2) * 4 : 0) +
    // Slack for the small arrays' alignment; with P in registers every array is a 16-byte
    // multiple (and the work item is read from the plan, not kept in workgroup memory).
    (pInRegs ? 0 : 64);
  const valid =
    Number.isInteger(RS) && Number.isInteger(CS) && Number.isInteger(RO) && Number.isInteger(RGO) && RGO * RO === BR && U >= 1 && (!pInK || BR * PS * 4 <= kBytes) &&
    (!pInRegs || (Number.isInteger(CO) && CGO === CG && RO === RS)) &&
    (!swizzle || (DQ4 % 8 === 0 && RG % 8 === 0 && CG % 8 === 0));
  return { BR, BC, DQ4, DV4, tq, tk, tv, pInK, pInRegs, swizzle, U, QS, KS, VS, PS, WG, CG, RG, RS, CS, RO, CO, CGO, RGO, smemBytes, valid };
}

/**
 * Tiles to try first when P stays in registers: [rows, keys, wide, workgroup size, swizzled]. 128
 * rows in workgroups of 256 come first: each K/V tile, with its loads and barriers, then serves
 * twice the rows (H100, causal 4096: D 128 5.21 ms against 6.15 for 64 x 32 with an f32 K tile;
 * D 64 2.56 against 2.75; BENCHMARKS.md "Session 10"). They keep K in f16 with swizzled rows (D 64
 * with an f32 K tile read 2.86 ms; D 128 fits 48 KB only so). At 64 rows, the workgroup memory P
 * frees holds K as f32 where it fits (no conversion per read; 6.25 against 6.42 ms with f16 K).
 */
export const SIMT_TILES_P_IN_REGISTERS: readonly (readonly [number, number, 'k' | 'none', number?, 'swizzled'?])[] = [
  [128, 32, 'none', 256, 'swizzled'],
  [64, 32, 'k'],
  [64, 32, 'none'], // 32 KB devices (swizzled)
  [32, 32, 'k'],
];

/** Tiles to try, in order of preference: [rows, keys, wide] (64 rows: 1.55× the speed of 32 on the H100). */
export const SIMT_TILES: readonly (readonly [number, number, 'none' | 'kv' | 'all' | 'k'])[] = [
  [64, 32, 'none'],
  [64, 16, 'none'],
  [32, 32, 'none'],
  [32, 16, 'none'],
  [16, 16, 'none'],
  [16, 8, 'none'],
];

function unitType(d: 'f32' | 'f16' | 'bf16'): string {
  return d === 'f32' ? 'vec4<u32>' : 'vec2<u32>';
}

/** WGSL `fn unpack4_<d>(w) -> vec4<f32>` and `fn pack4_<d>(v) -> unit` for a tile dtype. */
function tileCodec(d: 'f32' | 'f16' | 'bf16'): string {
  if (d === 'f32') {
    return `fn unpack4_f32(w: vec4<u32>) -> vec4<f32> { return bitcast<vec4<f32>>(w); }
fn pack4_f32(v: vec4<f32>) -> vec4<u32> { return bitcast<vec4<u32>>(v); }`;
  }
  return `fn unpack4_${d}(w: vec2<u32>) -> vec4<f32> { return vec4<f32>(unpack_${d}(w.x), unpack_${d}(w.y)); }
fn pack4_${d}(v: vec4<f32>) -> vec2<u32> { return vec2<u32>(pack_${d}(v.xy), pack_${d}(v.zw)); }`;
}

/** RoPE of the 4-element halves (x: dims 4u.., y: dims D/2 + 4u..) at position `pos`. */
export function ropeRotateWgsl(): string {
  return `fn rope4(x: vec4<f32>, y: vec4<f32>, pos: f32, d0: u32) -> array<vec4<f32>, 2> {
  let c0 = rope_cos_sin(pos, freq_s[d0]);
  let c1 = rope_cos_sin(pos, freq_s[d0 + 1u]);
  let c2 = rope_cos_sin(pos, freq_s[d0 + 2u]);
  let c3 = rope_cos_sin(pos, freq_s[d0 + 3u]);
  let cv = vec4<f32>(c0.x, c1.x, c2.x, c3.x);
  let sv = vec4<f32>(c0.y, c1.y, c2.y, c3.y);
  return array<vec4<f32>, 2>(x * cv - y * sv, y * cv + x * sv);
}`;
}

export function simtPrefillWgsl(c: SimtPrefillConfig): string {
  const L = simtLayout(c);
  if (!L.valid) throw new Error(`invalid prefill tile ${c.rowsPerTile}x${c.keysPerTile} for head dims ${c.headDimQk}/${c.headDimVo}`);
  const { BR, BC, DQ4, DV4, tq, tk, tv, pInK, pInRegs, swizzle, QS, KS, VS, PS, WG, CG, RG, RS, CS, RO, CO, CGO, RGO } = L;
  // Q/K tile word of (row, unit): padded rows, or unpadded with the unit XOR-swizzled by row & 7.
  const qAt = (row: string, unit: string) => (swizzle ? `(${row}) * ${QS}u + ((${unit}) ^ ((${row}) & 7u))` : `(${row}) * ${QS}u + ${unit}`);
  const kAt = (row: string, unit: string) => (swizzle ? `(${row}) * ${KS}u + ((${unit}) ^ ((${row}) & 7u))` : `(${row}) * ${KS}u + ${unit}`);
  const G = c.groupSize;
  const rope = c.posEncoding === 'ROPE_LLAMA';
  const DQ = c.headDimQk;
  const qUnits = rope ? DQ4 / 2 : DQ4;
  const dtypes: FloatDType[] = [c.qDtype, c.kvDtype, ...[tq, tk, tv].filter((d) => d !== 'f32')];

  // A tile every row sees whole: all keys in range, all rows real, inside the diagonal and window.
  const fullTiles = (c.fullTiles ?? false) && c.maskMode !== 'custom';
  const fullTileCondition = [
    `t0 + ${BC}u <= kv_hi`,
    `(wi.tile + ${BR - 1}u) / ${G}u < wi.qo_len`,
    ...(c.maskMode === 'causal' ? [`i32(t0 + ${BC - 1}u) <= i32(first_row) + delta`] : []),
    `(params.window_left < 0 || i32(t0) >= i32(last_row) + delta - params.window_left)`,
  ].join(' && ');
  // S phase: unrolled micro-tile.
  const sDecl: string[] = [];
  const sLoad: string[] = [];
  // Unrolling (powers of two) is capped at the loop's trip count.
  const qkU = Math.min(c.qkUnroll ?? 1, DQ4);
  const pvU = Math.min(c.pvUnroll ?? 1, BC);
  for (let x = 0; x < qkU; x++) {
    const d = x === 0 ? 'd' : `d + ${x}u`;
    sLoad.push('{');
    // Swizzled: rows rs + i * RG and cs + j * CG share their low 3 bits (RG, CG multiples of 8).
    const dq = swizzle ? `((${d}) ^ sq)` : d;
    const dk = swizzle ? `((${d}) ^ sk)` : d;
    for (let i = 0; i < RS; i++) sLoad.push(`let q${i} = unpack4_${tq}(q_s[(rs + ${i * RG}u) * ${QS}u + ${dq}]);`);
    for (let j = 0; j < CS; j++) sLoad.push(`let k${j} = unpack4_${tk}(k_s[(cs + ${j * CG}u) * ${KS}u + ${dk}]);`);
    for (let i = 0; i < RS; i++) {
      for (let j = 0; j < CS; j++) {
        // an explicit fma chain: `s += dot(q, k)` costs a multiply and an add more per 4 FMAs
        sLoad.push(`s${i}_${j} = fma(q${i}.w, k${j}.w, fma(q${i}.z, k${j}.z, fma(q${i}.y, k${j}.y, fma(q${i}.x, k${j}.x, s${i}_${j}))));`);
      }
    }
    sLoad.push('}');
  }
  for (let i = 0; i < RS; i++) for (let j = 0; j < CS; j++) sDecl.push(`var s${i}_${j} = 0.0;`);
  const sStore: string[] = [];
  // A row's CG lanes combine their max and sum (core-buffers' xor butterfly).
  const shfl = (v: string, op: 'max' | '+') => wgslShuffleReduce(v, op, CG);
  for (let i = 0; i < RS; i++) {
    sStore.push(`{
      let r = rs + ${i * RG}u;
      let pr = wi.tile + r;
      let row = pr / ${G}u;
      let h = kvh * ${G}u + pr % ${G}u;`);
    for (let j = 0; j < CS; j++) {
      sStore.push(`      var x${j} = NEG_BIG;
      {
        let j = t0 + cs + ${j * CG}u;
        if (${fullTiles ? 'full || ' : ''}keep(row, j, wi.qo_len, wi.kv_len, kv_hi, wi.mask_bit)) { let acc = s${i}_${j}; x${j} = ${logitExpr(c)}; }
      }`);
    }
    if (pInRegs) {
      const xs = Array.from({ length: CS }, (_, j) => `x${j}`);
      sStore.push(`      let m_old = m${i};
      var mx = max(m_old, ${xs.length > 1 ? xs.reduce((a, b) => `max(${a}, ${b})`) : xs[0]});
      ${shfl('mx', 'max')}
      var sum = 0.0;
${Array.from({ length: CS }, (_, j) => `      p${i}_${j} = select(0.0, exp2(x${j} - mx), x${j} > NEG_BIG); sum += p${i}_${j};`).join('\n')}
      ${shfl('sum', '+')}
      a${i} = exp2(m_old - mx);
      m${i} = mx;
      l${i} = l${i} * a${i} + sum;`);
    } else if (c.subgroupSoftmax) {
      const xs = Array.from({ length: CS }, (_, j) => `x${j}`);
      sStore.push(`      let m_old = m_s[r];
      var mx = max(m_old, ${xs.length > 1 ? xs.reduce((a, b) => `max(${a}, ${b})`) : xs[0]});
      ${shfl('mx', 'max')}
      var sum = 0.0;
${Array.from({ length: CS }, (_, j) => `      { let p = select(0.0, exp2(x${j} - mx), x${j} > NEG_BIG); sum += p; p_set(r * ${PS}u + cs + ${j * CG}u, p); }`).join('\n')}
      ${shfl('sum', '+')}
      if (cs == 0u) {
        let alpha = exp2(m_old - mx);
        a_s[r] = alpha;
        m_s[r] = mx;
        l_s[r] = l_s[r] * alpha + sum;
      }`);
    } else {
      for (let j = 0; j < CS; j++) sStore.push(`      p_set(r * ${PS}u + cs + ${j * CG}u, x${j});`);
    }
    sStore.push('    }');
  }
  const softmaxPass = c.subgroupSoftmax
    ? ''
    : `workgroupBarrier();
    if (lid < ${BR}u) {
      let base = lid * ${PS}u;
      let m_old = m_s[lid];
      var mx = m_old;
      for (var t = 0u; t < ${BC}u; t++) { mx = max(mx, p_get(base + t)); }
      var sum = 0.0;
      for (var t = 0u; t < ${BC}u; t++) {
        let s = p_get(base + t);
        let p = select(0.0, exp2(s - mx), s > NEG_BIG);
        p_set(base + t, p);
        sum += p;
      }
      let alpha = exp2(m_old - mx);
      m_s[lid] = mx;
      l_s[lid] = l_s[lid] * alpha + sum;
      a_s[lid] = alpha;
    }`;

  // O phase.
  const oDecl: string[] = [];
  const oScale: string[] = [];
  const oLoad: string[] = [];
  const oWrite: string[] = [];
  for (let i = 0; i < RO; i++) {
    oScale.push(`{ let a = ${pInRegs ? `a${i}` : `a_s[ro + ${i * RGO}u]`};${Array.from({ length: CO }, (_, j) => ` o${i}_${j} *= a;`).join('')} }`);
    oWrite.push(`{
    let r = ro + ${i * RGO}u;
    let pr = wi.tile + r;
    let row = pr / ${G}u;
    if (row < wi.qo_len) {
      let h = kvh * ${G}u + pr % ${G}u;
      let m = ${pInRegs ? `m${i}` : 'm_s[r]'};
      let l = ${pInRegs ? `l${i}` : 'l_s[r]'};
${Array.from({ length: CO }, (_, j) => `      write_out(wi, row, h, co + ${j * CGO}u, o${i}_${j}, m, l);`).join('\n')}
    }
  }`);
    for (let j = 0; j < CO; j++) oDecl.push(`var o${i}_${j} = vec4<f32>(0.0);`);
  }
  // P in registers: key t8 + j * CG of a row lives in lane (row group | t8) as p<i>_<j>.
  const pvSteps = pInRegs ? Math.min(CG, Math.max(1, Math.floor(pvU / CS))) : 0;
  for (let x = 0; x < pvSteps; x++) {
    oLoad.push(`{ let src = (sgid & ${~(CG - 1) >>> 0}u) | (t8 + ${x}u);`);
    for (let j = 0; j < CS; j++) {
      oLoad.push('{');
      for (let i = 0; i < RO; i++) oLoad.push(`let p${i} = subgroupShuffle(p${i}_${j}, src);`);
      for (let u = 0; u < CO; u++) oLoad.push(`let v${u} = unpack4_${tv}(v_s[(t8 + ${x + j * CG}u) * ${VS}u + co + ${u * CGO}u]);`);
      for (let i = 0; i < RO; i++) for (let u = 0; u < CO; u++) oLoad.push(`o${i}_${u} += p${i} * v${u};`);
      oLoad.push('}');
    }
    oLoad.push('}');
  }
  for (let x = 0; x < (pInRegs ? 0 : pvU); x++) {
    const t = x === 0 ? 't' : `(t + ${x}u)`;
    oLoad.push('{');
    for (let i = 0; i < RO; i++) oLoad.push(`let p${i} = p_get((ro + ${i * RGO}u) * ${PS}u + ${t});`);
    for (let j = 0; j < CO; j++) oLoad.push(`let v${j} = unpack4_${tv}(v_s[${t} * ${VS}u + co + ${j * CGO}u]);`);
    for (let i = 0; i < RO; i++) for (let j = 0; j < CO; j++) oLoad.push(`o${i}_${j} += p${i} * v${j};`);
    oLoad.push('}');
  }

  // Per tile: each row's rescale factor and this lane's probabilities (pInRegisters).
  const pRegsDecl = pInRegs ? Array.from({ length: RS }, (_, i) => `var a${i} = 1.0;${Array.from({ length: CS }, (_, j) => ` var p${i}_${j} = 0.0;`).join('')}`).join(' ') : '';
  const skipLoad = c.debugSkip?.includes('load') ?? false;
  // Raw K/V words: tiles keep the KV dtype's own bits, so a unit goes from global to workgroup
  // memory untouched, and a tile's loads can all be in flight at once.
  // The words go to workgroup memory as read, or widened to f32 there when the tile is f32 ('kv').
  const kvWord = tileDtype(c.kvDtype);
  const raw = !rope && kvWord === c.kvDtype && (c.loadMode ?? 'prefetch') !== 'loop' && !skipLoad;
  const prefetch = raw && (c.loadMode ?? 'prefetch') === 'prefetch';
  const rawType = unitType(kvWord);
  const putWord = (r: string, t: 'f32' | 'f16' | 'bf16') => (t === kvWord ? r : `pack4_${t}(unpack4_${kvWord}(${r}))`);
  const itK = Math.ceil((BC * DQ4) / WG);
  const itV = Math.ceil((BC * DV4) / WG);
  const rawWord = (buf: string) =>
    kvWord === 'f32'
      ? `vec4<u32>(${buf}[e], ${buf}[e + 1u], ${buf}[e + 2u], ${buf}[e + 3u])`
      : `vec2<u32>(${buf}[e >> 1u], ${buf}[(e >> 1u) + 1u])`;
  const fused = DQ4 === DV4;
  const rawRegs = raw ? [...Array.from({ length: itK }, (_, i) => `var kr_${i} = ${rawType}(0u);`), ...Array.from({ length: itV }, (_, i) => `var vr_${i} = ${rawType}(0u);`)].join('\n  ') : '';
  const unitAt = (i: number, per: number, total: number) => `let idx = lid + ${i * WG}u; let c = idx / ${per}u; let u = idx % ${per}u; let inside = ${total % WG === 0 ? 'true' : `idx < ${total}u`};`;
  const fetchRaw = (t: string) =>
    fused
      ? Array.from({ length: itK }, (_, i) => `{
      ${unitAt(i, DQ4, BC * DQ4)} let j = ${t} + c;
      kr_${i} = ${rawType}(0u); vr_${i} = ${rawType}(0u);
      if (inside && j < kv_hi) { let rows = kv_rows(j, wi.page_base, kvh) + u * 4u; { let e = rows.x; kr_${i} = ${rawWord('k_cache')}; } { let e = rows.y; vr_${i} = ${rawWord('v_cache')}; } }
    }`).join('\n    ')
      : [
          ...Array.from({ length: itK }, (_, i) => `{
      ${unitAt(i, DQ4, BC * DQ4)} let j = ${t} + c;
      kr_${i} = ${rawType}(0u);
      if (inside && j < kv_hi) { let e = k_row(j, wi.page_base, kvh) + u * 4u; kr_${i} = ${rawWord('k_cache')}; }
    }`),
          ...Array.from({ length: itV }, (_, i) => `{
      ${unitAt(i, DV4, BC * DV4)} let j = ${t} + c;
      vr_${i} = ${rawType}(0u);
      if (inside && j < kv_hi) { let e = v_row(j, wi.page_base, kvh) + u * 4u; vr_${i} = ${rawWord('v_cache')}; }
    }`),
        ].join('\n    ');
  const putRaw = [
    ...Array.from({ length: itK }, (_, i) => `{ ${unitAt(i, DQ4, BC * DQ4)} if (inside) { k_s[${kAt('c', 'u')}] = ${putWord(`kr_${i}`, tk)}; } }`),
    ...Array.from({ length: itV }, (_, i) => `{ ${unitAt(i, DV4, BC * DV4)} if (inside) { v_s[c * ${VS}u + u] = ${putWord(`vr_${i}`, tv)}; } }`),
  ].join('\n    ');
  const qLoad = rope
    ? `var x = vec4<f32>(0.0);
      var y = vec4<f32>(0.0);
      if (row < wi.qo_len) {
        let base = params.q_offset + (wi.qo_start + row) * params.q_stride_row + h * params.q_stride_head + u * 4u;
        let xy = rope4(load_q4(base), load_q4(base + ${DQ / 2}u), f32(i32(row) + delta), u * 4u);
        x = xy[0];
        y = xy[1];
      }
      q_s[${qAt('r', 'u')}] = pack4_${tq}(x);
      q_s[${qAt('r', `u + ${DQ4 / 2}u`)}] = pack4_${tq}(y);`
    : `var x = vec4<f32>(0.0);
      if (row < wi.qo_len) {
        x = load_q4(params.q_offset + (wi.qo_start + row) * params.q_stride_row + h * params.q_stride_head + u * 4u);
      }
      q_s[${qAt('r', 'u')}] = pack4_${tq}(x);`;
  const kLoad = rope
    ? `var x = vec4<f32>(0.0);
        var y = vec4<f32>(0.0);
        if (j < kv_hi) {
          let base = k_row(j, wi.page_base, kvh) + u * 4u;
          let xy = rope4(load_k4(base), load_k4(base + ${DQ / 2}u), f32(j), u * 4u);
          x = xy[0];
          y = xy[1];
        }
        k_s[${kAt('c', 'u')}] = pack4_${tk}(x);
        k_s[${kAt('c', `u + ${DQ4 / 2}u`)}] = pack4_${tk}(y);`
    : `var x = vec4<f32>(0.0);
        if (j < kv_hi) { x = load_k4(k_row(j, wi.page_base, kvh) + u * 4u); }
        k_s[${kAt('c', 'u')}] = pack4_${tk}(x);`;

  return `${wgslEnables({ nativeF16: c.nativeF16, subgroups: c.subgroupSoftmax })}
${prefillUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslDtypeHelpers(dtypes, { nativeF16: c.nativeF16 })}
${wgslPackHelpers([tq, tk, tv, tileDtype(c.kvDtype), c.oDtype], { nativeF16: c.nativeF16 })}
${prefillBindingsWgsl(c, false, false)}
${wgslLoadVec4('load_q4', 'q_in', c.qDtype)}
${wgslLoadVec4('load_k4', 'k_cache', c.kvDtype)}
${wgslLoadVec4('load_v4', 'v_cache', c.kvDtype)}
${[...new Set([tq, tk, tv, ...(raw ? [kvWord] : [])])].map(tileCodec).join('\n')}
${keepFnWgsl(c)}
${writeOutputWgsl(c)}

var<workgroup> q_s: array<${unitType(tq)}, ${BR * QS}>;
var<workgroup> k_s: array<${unitType(tk)}, ${BC * KS}>;
var<workgroup> v_s: array<${unitType(tv)}, ${BC * VS}>;
${
  pInRegs
    ? '// P, m and l live in registers (pInRegisters).'
    : pInK
    ? `// P shares K's memory (f32 K: vec4<u32> units, one probability a word).
fn p_get(i: u32) -> f32 { return bitcast<f32>(k_s[i >> 2u][i & 3u]); }
fn p_set(i: u32, v: f32) { k_s[i >> 2u][i & 3u] = bitcast<u32>(v); }`
    : `var<workgroup> p_s: array<f32, ${BR * PS}>;
fn p_get(i: u32) -> f32 { return p_s[i]; }
fn p_set(i: u32, v: f32) { p_s[i] = v; }`
}
${pInRegs ? '' : `var<workgroup> m_s: array<f32, ${BR}>;
var<workgroup> l_s: array<f32, ${BR}>;
var<workgroup> a_s: array<f32, ${BR}>;`}
${rope ? `var<workgroup> freq_s: array<f32, ${DQ / 2}>;\n${ropeRotateWgsl()}` : ''}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32${pInRegs ? ', @builtin(subgroup_invocation_id) sgid: u32' : ''}) {
  let flat = wg.x + wg.y * params.groups_x;
  let work = flat / params.num_kv_heads;
  let kvh = flat % params.num_kv_heads;
  if (work >= params.num_work) { return; }
  ${loadWorkItemWgsl('work', true)}
  ${tileKvRangeWgsl(c, BR)}
  ${rope ? `for (var d = lid; d < ${DQ / 2}u; d += ${WG}u) { freq_s[d] = rope_freq(d, ${DQ}u, params.rope_rcp_scale, params.rope_log2_theta); }\n  workgroupBarrier();` : ''}
  ${pInRegs ? Array.from({ length: RS }, (_, i) => `var m${i} = NEG_BIG; var l${i} = 0.0;`).join(' ') : `for (var r = lid; r < ${BR}u; r += ${WG}u) { m_s[r] = NEG_BIG; l_s[r] = 0.0; }`}
  for (var idx = lid; idx < ${BR * qUnits}u; idx += ${WG}u) {
    let r = idx / ${qUnits}u;
    let u = idx % ${qUnits}u;
    let pr = wi.tile + r;
    let row = pr / ${G}u;
    let h = kvh * ${G}u + pr % ${G}u;
    {
      ${qLoad}
    }
  }
  let rs = lid / ${CG}u;
  let cs = lid % ${CG}u;${swizzle ? '\n  let sq = rs & 7u; // the swizzle of every q row this thread reads\n  let sk = cs & 7u; // and of every k row' : ''}
  let ro = lid / ${CGO}u;
  let co = lid % ${CGO}u;
  ${oDecl.join('\n  ')}
  ${rawRegs}
  ${prefetch ? fetchRaw('kv_lo') : ''}
  for (var t0 = kv_lo; t0 < kv_hi; t0 += ${BC}u) {
    workgroupBarrier();
    ${raw ? `${prefetch ? '' : fetchRaw('t0')}
    ${putRaw}` : ''}
    for (var idx = lid; idx < ${skipLoad || raw ? 0 : BC * (rope ? DQ4 / 2 : DQ4)}u; idx += ${WG}u) {
      let c = idx / ${rope ? DQ4 / 2 : DQ4}u;
      let u = idx % ${rope ? DQ4 / 2 : DQ4}u;
      let j = t0 + c;
      {
        ${kLoad}
      }
    }
    for (var idx = lid; idx < ${skipLoad || raw ? 0 : BC * DV4}u; idx += ${WG}u) {
      let c = idx / ${DV4}u;
      let u = idx % ${DV4}u;
      let j = t0 + c;
      var x = vec4<f32>(0.0);
      if (j < kv_hi) { x = load_v4(v_row(j, wi.page_base, kvh) + u * 4u); }
      v_s[c * ${VS}u + u] = pack4_${tv}(x);
    }
    workgroupBarrier();
    ${prefetch && !c.lateFetch ? fetchRaw(`t0 + ${BC}u`) : ''}  // the next tile's loads run under this tile's math
    ${fullTiles ? `let full = ${fullTileCondition}; // every logit of the tile is kept` : ''}
    ${pRegsDecl}
    {
      ${sDecl.join('\n      ')}
      for (var d = 0u; d < ${c.debugSkip?.includes('qk') ? 0 : DQ4}u; d += ${qkU}u) {
        ${sLoad.join('\n        ')}
      }
      ${pInK ? 'workgroupBarrier();  // every thread is done with K: P goes into its memory' : ''}
      ${sStore.join('\n')}
    }
    ${pInRegs ? '// P is in registers: no barrier before P V' : `${softmaxPass}
    workgroupBarrier();`}
    ${prefetch && c.lateFetch ? fetchRaw(`t0 + ${BC}u`) : ''}  // the next tile's loads run under this tile's P V
    ${oScale.join('\n    ')}
    ${
      pInRegs
        ? `for (var t8 = 0u; t8 < ${c.debugSkip?.includes('pv') ? 0 : CG}u; t8 += ${pvSteps}u) {`
        : `for (var t = 0u; t < ${c.debugSkip?.includes('pv') ? 0 : BC}u; t += ${pvU}u) {`
    }
      ${oLoad.join('\n      ')}
    }
  }
  workgroupBarrier();
  ${oWrite.join('\n  ')}
}`;
}
