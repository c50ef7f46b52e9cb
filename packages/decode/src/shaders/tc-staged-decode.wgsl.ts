/**
 * The staged tensor-core decode kernel: like `tc-decode` (the query heads of a KV head are the 16
 * rows of the matrices), but K/V reach the matrices through workgroup memory, as the GEMM roofs of
 * `bench --suite probe-gemm` do, instead of matrix loads straight from the cache:
 *
 *   stage  all NS subgroups load a block of NS x 16 keys with 16-byte loads (fp8 widened to f16 on
 *          the way), the next block's loads in registers during this block's math
 *   S      subgroup s: S = Q Kᵀ over keys 16s .. 16s + 15 of the block (Q kept as left matrices)
 *   soft   2 lanes a head row: mask, logit transform, the lazy running max, P as f16
 *   P V    O += P V with V's rows of the same 16 keys
 * Each subgroup keeps its own state over its keys; the NS states merge through workgroup memory
 * at the end. Numerics are `tc-decode`'s: exact f16 products (fp8 widening is exact) accumulated
 * in f32, P rounded to f16, l summing the rounded P.
 */
import {
  type FloatDType,
  type GpuContext,
  subgroupMatrixF16Support,
  wgslAttentionCommon,
  wgslLazyMaxHelpers,
  wgslLazyMaxStep,
  wgslLoadElement,
  wgslPackHelpers,
  wgslShuffleReduce,
  wgslStagedResultPairs,
  wgslUnpackWord,
  wgslWidenFp8ToF16,
  wgslWriteP16,
} from '@webinfer/core-buffers';
import {
  type TensorCoreDecodeOutputs,
  decodeBindingsWgsl,
  decodeFinishStateWgsl,
  decodeLogitExpr,
  decodeStoreO4Wgsl,
  decodeUniforms,
  headGroupPrologueWgsl,
  specMaskTerm,
  specMaskWgsl,
  stageQRowsF16Wgsl,
} from './decode-common';

export interface StagedTensorCoreDecodeConfig extends TensorCoreDecodeOutputs {
  headDim: number;
  groupSize: number;
  /** 32 (the softmax gives each head row 2 lanes). */
  subgroupSize: number;
  /** Subgroups a workgroup (each takes 16 keys of a block). */
  subgroups: number;
  kvDtype: 'f16' | 'fp8_e4m3' | 'fp8_e5m2';
  /** Keep Q staged in workgroup memory and load its matrices every block (fewer registers). */
  qInSmem?: boolean;
  /** Bench only (wrong results): leave a phase out to see what it costs. */
  profileSkip?: 'widen' | 'fetch' | 'qk' | 'pv';
}

/** Workgroup-memory layout (16-byte words) and sizes of a config. */
export function stagedTensorCoreDecodeLayout(c: StagedTensorCoreDecodeConfig) {
  const D = c.headDim;
  const NS = c.subgroups;
  const BK = 16 * NS; // keys a block
  const RST8 = D / 8 + 1; // words a staged K/V row (f16, padded by one word)
  const KT = 0;
  const VT = KT + BK * RST8;
  const SST4 = 5; // words an S row: 16 f32 + 4 of padding
  const PST8 = 3; // words a P row: 16 f16 + 8 of padding
  const S0 = VT + BK * RST8;
  const P0 = S0 + NS * 16 * SST4;
  const Q0 = P0 + NS * 16 * PST8;
  const words = Q0 + (c.qInSmem ? 16 * RST8 : 0);
  const mergeWords = NS * 16 * (D / 4); // every subgroup's O (f32) at the end, over K/V
  const epu = c.kvDtype === 'f16' ? 8 : 16; // cache elements a 16-byte load
  const units = (BK * D) / epu; // loads a block, per tensor
  const WG = NS * c.subgroupSize;
  const headGroups = Math.ceil(c.groupSize / 16);
  const smemBytes = words * 16 + NS * 16 * 8 + 16 + 48;
  const valid = c.subgroupSize === 32 && D % 32 === 0 && units % WG === 0 && mergeWords <= S0 && 16 * RST8 <= S0 && D % ((WG / 16) * 4) === 0;
  return { D, NS, BK, RST8, KT, VT, SST4, PST8, S0, P0, Q0, words, epu, units, WG, headGroups, smemBytes, valid };
}

/** Why the staged kernel can't run `c` (q in `qDtype`) on `ctx`, or undefined. */
export function stagedTensorCoreDecodeSupport(ctx: GpuContext, c: StagedTensorCoreDecodeConfig, qDtype: FloatDType): string | undefined {
  const device = subgroupMatrixF16Support(ctx);
  if (device !== undefined) return device;
  if (ctx.subgroupMinSize !== 32) return 'it needs subgroups of 32 lanes';
  if (qDtype !== 'f16') return 'q must be f16';
  if (c.posEncoding === 'ROPE_LLAMA') return 'RoPE on the fly needs the default kernel';
  if (c.headDim !== 64 && c.headDim !== 128) return 'it takes head dims 64 and 128';
  const L = stagedTensorCoreDecodeLayout(c);
  if (!L.valid) return `head dim ${c.headDim} does not fit its tiles`;
  if (L.smemBytes > ctx.limits.maxComputeWorkgroupStorageSize) return `its tiles need ${L.smemBytes} bytes of workgroup memory`;
  return undefined;
}

export function stagedTensorCoreDecodeWgsl(c: StagedTensorCoreDecodeConfig): string {
  const L = stagedTensorCoreDecodeLayout(c);
  if (!L.valid) throw new Error(`invalid staged tensor-core decode config: D ${c.headDim}, ${c.subgroups} subgroups of ${c.subgroupSize}`);
  const { D, NS, BK, RST8, KT, VT, SST4, PST8, S0, P0, Q0, words, epu, units, WG, headGroups: HG } = L;
  const qAt = c.qInSmem ? Q0 : KT; // where Q is staged
  const G = c.groupSize;
  const NQ = D / 16;
  const UPR = D / epu; // cache loads a row
  const per = units / WG; // cache loads a thread, per tensor and block
  const fp8 = c.kvDtype !== 'f16';
  const unit = c.kvDtype === 'fp8_e4m3' ? ' * KV_UNIT' : '';
  const left = 'subgroup_matrix_left<f16, 16, 16>';
  const right = 'subgroup_matrix_right<f16, 16, 16>';
  const result = 'subgroup_matrix_result<f32, 16, 16>';
  const pageOf = (j: string) => (c.pagePow2 ? `(${j} >> params.page_shift)` : `(${j} / params.page_size)`);
  const slotOf = (j: string) => (c.pagePow2 ? `(${j} & (params.page_size - 1u))` : `(${j} % params.page_size)`);
  const sArea = `${S0}u + sgi * ${16 * SST4}u`;
  const pArea = `${P0}u + sgi * ${16 * PST8}u`;

  // This thread's cache loads of the block at t: unit i covers key row idx / UPR, load idx % UPR.
  const fetch = (t: string) =>
    Array.from({ length: per }, (_, i) => `{
      let idx = lid + ${i * WG}u;
      let j = ${t} + idx / ${UPR}u;
      kr${i} = vec4<u32>(0u); vr${i} = vec4<u32>(0u);
      if (j < wi.end) {
        let pg = plan[params.indices_offset + wi.page_base + ${pageOf('j')}];
        let sl = ${slotOf('j')};
        kr${i} = k_cache[k_elem(pg, sl, kvh) / ${epu}u + idx % ${UPR}u];
        vr${i} = v_cache[v_elem(pg, sl, kvh) / ${epu}u + idx % ${UPR}u];
      }
    }`).join('\n    ');
  const put = Array.from({ length: per }, (_, i) => {
    const at = (tile: number, w: string) => `smem[${tile}u + (idx / ${UPR}u) * ${RST8}u + ${w}]`;
    return fp8 && c.profileSkip === 'widen'
      ? `{
      let idx = lid + ${i * WG}u;
      ${at(KT, `(idx % ${UPR}u) * 2u`)} = kr${i};
      ${at(KT, `(idx % ${UPR}u) * 2u + 1u`)} = kr${i};
      ${at(VT, `(idx % ${UPR}u) * 2u`)} = vr${i};
      ${at(VT, `(idx % ${UPR}u) * 2u + 1u`)} = vr${i};
    }`
      : fp8
      ? `{
      let idx = lid + ${i * WG}u;
      let kf = kr${i};
      let vf = vr${i};
      ${at(KT, `(idx % ${UPR}u) * 2u`)} = vec4<u32>(widen_${c.kvDtype}(kf.x), widen_${c.kvDtype}(kf.y));
      ${at(KT, `(idx % ${UPR}u) * 2u + 1u`)} = vec4<u32>(widen_${c.kvDtype}(kf.z), widen_${c.kvDtype}(kf.w));
      ${at(VT, `(idx % ${UPR}u) * 2u`)} = vec4<u32>(widen_${c.kvDtype}(vf.x), widen_${c.kvDtype}(vf.y));
      ${at(VT, `(idx % ${UPR}u) * 2u + 1u`)} = vec4<u32>(widen_${c.kvDtype}(vf.z), widen_${c.kvDtype}(vf.w));
    }`
      : `{
      let idx = lid + ${i * WG}u;
      ${at(KT, `idx % ${UPR}u`)} = kr${i};
      ${at(VT, `idx % ${UPR}u`)} = vr${i};
    }`;
  }).join('\n    ');

  const reduce = (v: string, op: 'max' | '+') => wgslShuffleReduce(v, op, 2);
  const logits = [0, 1]
    .map(
      (g) => `{
      let s4 = bitcast<vec4<f32>>(smem[${sArea} + rr * ${SST4}u + lr * 2u + ${g}u]);
      ${[0, 1, 2, 3]
        .map(
          (k) => `{
        let j = t0 + sgi * 16u + lr * 8u + ${g * 4 + k}u;
        var v = NEG_BIG;
        if (i32(j) >= vis_lo && i32(j) < vis_hi${specMaskTerm(c.specMask, 'j').replace(' || ', ' && !')}) { let acc = s4[${k}]${unit}; v = ${decodeLogitExpr(c.posEncoding, c.softCap)}; }
        x[${g * 4 + k}] = v;
        mx = max(mx, v);
      }`,
        )
        .join('\n      ')}
    }`,
    )
    .join('\n    ');
  const rescale = wgslStagedResultPairs({ blocks: NQ, base: sArea, stride: SST4, lanesPerRow: 2, column: () => '', body: 'o *= alpha;', reload: true, perStage: 1 });
  const writeP = (mRef: string) => wgslWriteP16({ mRef, columns: 8, base: pArea, stride: PST8 });
  const mergeStride = D / 4; // words a merged O row (f32)

  return `diagnostic(off, chromium.subgroup_matrix_uniformity);
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
${decodeUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslUnpackWord('f16', { nativeF16: true })}
${wgslPackHelpers([c.oDtype], { nativeF16: true })}
${decodeBindingsWgsl('vec4<u32>')}
${specMaskWgsl(c.specMask)}
${wgslLoadElement('load_q', 'q_in', 'f16')}
${wgslLazyMaxHelpers()}
${fp8 ? wgslWidenFp8ToF16(c.kvDtype as 'fp8_e4m3' | 'fp8_e5m2') : ''}
${unit ? 'const KV_UNIT = 256.0;' : ''}
var<workgroup> smem: array<vec4<u32>, ${words}>;
var<workgroup> ml: array<vec2<f32>, ${NS * 16}>;
var<workgroup> flag: array<atomic<u32>, 4>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${headGroupPrologueWgsl(HG)}
  let sgi = lid / 32u;               // this subgroup: keys 16 sgi .. of each block
  let lane = lid % 32u;
  let rr = lane / 2u;                // this lane's head row (0..15)
  let lr = lane % 2u;                // and its half of the row's 16 keys
  let g = hg * 16u + rr;
  let h = kvh * ${G}u + min(g, ${G - 1}u);

  // Q rows (heads past the group are zero) -> f16 left matrices, staged where K goes.
  ${stageQRowsF16Wgsl({ headDim: D, groupSize: G, threads: WG, base: qAt, stride: RST8 })}
  workgroupBarrier();
  ${c.qInSmem ? '' : Array.from({ length: NQ }, (_, i) => `let q_${i} = subgroupMatrixLoad<${left}, row_major>(&smem, ${KT + 2 * i}u, ${RST8}u);`).join('\n  ')}

  ${Array.from({ length: NQ }, (_, i) => `var o_${i} = ${result}();`).join('\n  ')}
  var m = NEG_BIG;   // the row's reference max (this subgroup's keys)
  var l = 0.0;       // this lane's share of the row sum
  var tile_l = 0.0;
  var x: array<f32, 8>;
  var vis_lo = i32(wi.start);
  if (params.window_left >= 0) { vis_lo = max(vis_lo, i32(wi.kv_len) - 1 - params.window_left); }
  let vis_hi = select(-1, i32(wi.end), g < ${G}u);

  ${Array.from({ length: per }, (_, i) => `var kr${i} = vec4<u32>(0u); var vr${i} = vec4<u32>(0u);`).join('\n  ')}
  {
    let t0 = wi.start;
    ${fetch('t0')}
  }
  for (var t0 = wi.start; t0 < wi.end; t0 += ${BK}u) {
    if (lid == 0u) { atomicStore(&flag[0], 0u); }
    workgroupBarrier();  // every subgroup is done with the previous block's K, V, S and P
    ${put}
    workgroupBarrier();
    if (${c.profileSkip === 'fetch' ? 'false && ' : ''}t0 + ${BK}u < wi.end) {  // the next block's loads run under this block's math
      let tn = t0 + ${BK}u;
      ${fetch('tn')}
    }
    var s = ${result}();
    ${c.profileSkip === 'qk' ? '' : Array.from({ length: NQ }, (_, i) => `s = subgroupMatrixMultiplyAccumulate(${c.qInSmem ? `subgroupMatrixLoad<${left}, row_major>(&smem, ${Q0 + 2 * i}u, ${RST8}u)` : `q_${i}`}, subgroupMatrixLoad<${right}, col_major>(&smem, ${KT}u + sgi * ${16 * RST8}u + ${2 * i}u, ${RST8}u), s);`).join('\n    ')}
    subgroupMatrixStore<row_major>(&smem, ${sArea}, s, ${SST4}u);
    workgroupBarrier();
    var mx = NEG_BIG;
    ${logits}
    ${wgslLazyMaxStep({ reduceMax: reduce('mx', 'max'), writeP, rescale })}
    // P is visible: the lazy step's workgroupUniformLoad (or its rescale branch) ends in a barrier.
    let p = subgroupMatrixLoad<${left}, row_major>(&smem, ${pArea}, ${PST8}u);
    ${c.profileSkip === 'pv' ? '' : Array.from({ length: NQ }, (_, i) => `o_${i} = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<${right}, row_major>(&smem, ${VT}u + sgi * ${16 * RST8}u + ${2 * i}u, ${RST8}u), o_${i});`).join('\n    ')}
  }
  ${reduce('l', '+')}
  // Merge the subgroups: each one's O, max and sum through workgroup memory (over K and V).
  workgroupBarrier();
  ${Array.from({ length: NQ }, (_, i) => `subgroupMatrixStore<row_major>(&smem, sgi * ${16 * mergeStride}u + ${4 * i}u, o_${i}, ${mergeStride}u);`).join('\n  ')}
  if (lr == 0u) { ml[sgi * 16u + rr] = vec2<f32>(m, l); }
  workgroupBarrier();
  // Thread lid finishes row lid / ${WG / 16} (a head), ${D / (WG / 16)} of its dims.
  {
    let r = lid / ${WG / 16}u;
    let part = lid % ${WG / 16}u;
    let gr = hg * 16u + r;
    if (gr < ${G}u) {
      let h = kvh * ${G}u + gr;
      var mtop = NEG_BIG;
      ${Array.from({ length: NS }, (_, s) => `mtop = max(mtop, ml[${s * 16}u + r].x);`).join(' ')}
      var den = 0.0;
      ${Array.from({ length: NS }, (_, s) => `let a${s} = exp2(ml[${s * 16}u + r].x - mtop); den += ml[${s * 16}u + r].y * a${s};`).join('\n      ')}
      var m = mtop;
      ${decodeFinishStateWgsl(c.sinks, 'part == 0u')}
      for (var e = 0u; e < ${D / (WG / 16) / 4}u; e++) {
        let d = (part * ${D / (WG / 16) / 4}u + e) * 4u;
        var o = vec4<f32>(0.0);
        ${Array.from({ length: NS }, (_, s) => `o += a${s} * bitcast<vec4<f32>>(smem[${s * 16 * mergeStride}u + r * ${mergeStride}u + d / 4u]);`).join('\n        ')}
        ${decodeStoreO4Wgsl(c.oDtype, D, `(o${unit})`, 'd')}
      }
    }
  }
}
`;
}
