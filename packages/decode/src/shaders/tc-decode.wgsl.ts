/**
 * The tensor-core decode kernel (`useTensorCores`, and xqa where the device has subgroup
 * matrices): one subgroup is one workgroup and serves up to 16 query heads of one KV head — the
 * heads are the 16 rows of the matrices, so every K/V row is read once for the whole group.
 *
 *   Q      staged once as f16 and kept as left matrices in registers
 *   S      per 16-key block (pages are multiples of 16 tokens, or one page holds the request, so
 *          a block lies in one page): S = Q Kᵀ with Kᵀ read column-major straight from the cache
 *          (stride = one slot)
 *   soft   SG/16 lanes per head row: mask, logit transform, lazy running max, P as f16
 *   P V    O += P V with V read straight from the cache
 * A block reaching past the request's last token is staged with zeros instead, for K and V: rows
 * there may hold anything (even NaN) or lie past the cache's end.
 *
 * Numerics are FlashInfer's tensor-core decode: exact f16 products accumulated in f32, P rounded
 * to f16, l summing the rounded P. The lazy reference max (core-buffers) keeps P <= 256.
 */
import {
  type FloatDType,
  type GpuContext,
  subgroupMatrixF16Support,
  wgslAttentionCommon,
  wgslDtypeHelpers,
  wgslLazyMaxHelpers,
  wgslLazyMaxStep,
  wgslLoadElement,
  wgslPackHelpers,
  wgslShuffleReduce,
  wgslStagedResultPairs,
  wgslWriteP16,
} from '@webinfer/core-buffers';
import {
  type PosEncodingMode,
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

export interface TensorCoreDecodeConfig extends TensorCoreDecodeOutputs {
  headDim: number;
  groupSize: number;
  subgroupSize: number;
  /** Load a block's V matrices with its K (before the softmax) instead of after (default true). */
  earlyV?: boolean;
  /** Bind the caches as array<f16> (matrix offsets in elements) instead of 16-byte words. */
  f16Cache?: boolean;
}

/** Why the tensor-core decode kernel can't run these options on `ctx`, or undefined. */
export function tensorCoreDecodeSupport(
  ctx: GpuContext,
  o: { qDtype: FloatDType; kvDtype: FloatDType; headDim: number; pageSize: number; posEncoding: PosEncodingMode; onePagePerRequest: boolean },
): string | undefined {
  const device = subgroupMatrixF16Support(ctx);
  if (device !== undefined) return device;
  if (o.qDtype !== 'f16' || o.kvDtype !== 'f16') return 'q and KV must be f16';
  if (o.headDim % 32 !== 0) return 'the head dim must be a multiple of 32';
  // 16-key blocks start on multiples of 16 and must not cross a page.
  if (o.pageSize % 16 !== 0 && !o.onePagePerRequest) return 'the page size must be a multiple of 16';
  if (o.posEncoding === 'ROPE_LLAMA') return 'RoPE on the fly needs the keys staged (use the default kernel)';
  return undefined;
}

/** Keys per step (two 16-key blocks). */
const BC = 32;

export function tensorCoreDecodeLayout(c: TensorCoreDecodeConfig) {
  const D = c.headDim;
  const SG = c.subgroupSize;
  const LPR = SG / 16; // lanes per head row in the softmax
  const CPL = BC / LPR; // S columns per lane
  const RST = D + 8; // f16 per staged row (Q, or a V tail block)
  const SST = BC + 4; // f32 per S row
  const PST = BC + 8; // f16 per P row
  const STAGE = 0;
  const S0 = STAGE + (16 * RST) / 8;
  const P0 = S0 + (16 * SST) / 4;
  const words = P0 + (16 * PST) / 8;
  const headGroups = Math.ceil(c.groupSize / 16);
  return { D, SG, LPR, CPL, RST, SST, PST, STAGE, S0, P0, words, headGroups, smemBytes: words * 16 + 32 + 16 };
}

export function tensorCoreDecodeWgsl(c: TensorCoreDecodeConfig): string {
  const L = tensorCoreDecodeLayout(c);
  const { D, SG, LPR, CPL, RST, SST, PST, STAGE, S0, P0, words, headGroups: HG } = L;
  const G = c.groupSize;
  const NQ = D / 16;
  const NV = D / 16;
  const U8 = D / 8; // 16-byte units per row
  const RST8 = RST / 8;
  const SST4 = SST / 4;
  const PST8 = PST / 8;
  const left = 'subgroup_matrix_left<f16, 16, 16>';
  const right = 'subgroup_matrix_right<f16, 16, 16>';
  const result = 'subgroup_matrix_result<f32, 16, 16>';
  const reduce = (v: string, op: 'max' | '+') => wgslShuffleReduce(v, op, LPR);
  const pageOf = (j: string) => (c.pagePow2 ? `(${j} >> params.page_shift)` : `(${j} / params.page_size)`);
  const slotOf = (j: string) => (c.pagePow2 ? `(${j} & (params.page_size - 1u))` : `(${j} % params.page_size)`);

  // O blocks two at a time through the S area: `body` sees the lane's head row, the element `d`
  // (4 wide) and `o`.
  const staged = (body: string, reload: boolean) =>
    wgslStagedResultPairs({ blocks: NV, base: `${S0}u`, stride: SST4, lanesPerRow: LPR, column: (pair) => `let d = ${pair * 32}u + q4 * 4u;`, body, reload });

  const writeP = (mRef: string) => wgslWriteP16({ mRef, columns: CPL, base: `${P0}u`, stride: PST8 });

  const logits = Array.from({ length: CPL / 4 }, (_, g) => `{
      let s4 = bitcast<vec4<f32>>(smem[${S0}u + rr * ${SST4}u + lr * ${CPL / 4}u + ${g}u]);
      ${[0, 1, 2, 3].map((k) => `{
        let j = t0 + lr * ${CPL}u + ${g * 4 + k}u;
        var v = NEG_BIG;
        if (i32(j) >= vis_lo && i32(j) < vis_hi${specMaskTerm(c.specMask, 'j').replace(' || ', ' && !')}) { let acc = s4[${k}]; v = ${decodeLogitExpr(c.posEncoding, c.softCap)}; }
        x[${g * 4 + k}] = v;
        mx = max(mx, v);
      }`).join('\n      ')}
    }`).join('\n    ');

  const block = (nb: number, body: string) => `{
      let j0 = t0 + ${nb * 16}u;
      if (j0 < wi.end) {
        let pg = plan[params.indices_offset + wi.page_base + ${pageOf('j0')}];
        let sl0 = ${slotOf('j0')};
        ${body}
      }
    }`;
  // A 16 x D block of rows j0.. into the stage area, zero past the request's last token.
  const stageRows = (elem: string) => `for (var idx = lid; idx < ${16 * U8}u; idx += ${SG}u) {
            let kr = idx / ${U8}u;
            var w = vec4<u32>(0u);
            if (j0 + kr < wi.kv_len) { ${elem} }
            smem[${STAGE}u + kr * ${RST8}u + idx % ${U8}u] = w;
          }
          workgroupBarrier();`;
  const earlyV = c.earlyV ?? true;
  // Matrix offsets into the caches: 16-byte words, or f16 elements when bound as array<f16>.
  const f16 = c.f16Cache ?? false;
  const cu = f16 ? 1 : 8; // elements per cache index
  const cacheRow = (buf: 'k' | 'v') =>
    f16
      ? `{ let e = ${buf}_elem(pg, sl0 + kr, kvh) + (idx % ${U8}u) * 8u; w = vec4<u32>(${[0, 2, 4, 6].map((i) => `pack2x16float(vec2<f32>(f32(${buf}_cache[e + ${i}u]), f32(${buf}_cache[e + ${i + 1}u])))`).join(', ')}); }`
      : `w = ${buf}_cache[${buf}_elem(pg, sl0 + kr, kvh) / 8u + idx % ${U8}u];`;
  const vLoad = (nb: number) =>
    `let vb = v_elem(pg, sl0, kvh) / ${cu}u;
          ${Array.from({ length: NV }, (_, i) => `vm_${nb}_${i} = subgroupMatrixLoad<${right}, row_major>(&v_cache, vb + ${(16 * i) / cu}u, vstride);`).join('\n          ')}`;
  const qk = (nb: number) =>
    block(
      nb,
      `var s = ${result}();
        if (j0 + 16u <= wi.kv_len) {
          let kb = k_elem(pg, sl0, kvh) / ${cu}u;
          ${Array.from({ length: NQ }, (_, i) => `s = subgroupMatrixMultiplyAccumulate(q_${i}, subgroupMatrixLoad<${right}, col_major>(&k_cache, kb + ${(16 * i) / cu}u, kstride), s);`).join('\n          ')}
          ${earlyV ? `${vLoad(nb)}  // in flight during the softmax` : ''}
        } else {
          ${stageRows(cacheRow('k'))}
          ${Array.from({ length: NQ }, (_, i) => `s = subgroupMatrixMultiplyAccumulate(q_${i}, subgroupMatrixLoad<${right}, col_major>(&smem, ${STAGE + 2 * i}u, ${RST8}u), s);`).join('\n          ')}
          workgroupBarrier();
        }
        subgroupMatrixStore<row_major>(&smem, ${S0 + nb * 4}u, s, ${SST4}u);`,
    );
  const pv = (nb: number) =>
    block(
      nb,
      `let p = subgroupMatrixLoad<${left}, row_major>(&smem, ${P0 + nb * 2}u, ${PST8}u);
        if (j0 + 16u <= wi.kv_len) {
          ${earlyV ? '' : vLoad(nb)}
          ${Array.from({ length: NV }, (_, i) => `o_${i} = subgroupMatrixMultiplyAccumulate(p, vm_${nb}_${i}, o_${i});`).join('\n          ')}
        } else {
          ${stageRows(cacheRow('v'))}
          ${Array.from({ length: NV }, (_, i) => `o_${i} = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<${right}, row_major>(&smem, ${STAGE + 2 * i}u, ${RST8}u), o_${i});`).join('\n          ')}
          workgroupBarrier();
        }`,
    );

  return `diagnostic(off, chromium.subgroup_matrix_uniformity);
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
${decodeUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslDtypeHelpers(['f16'], { nativeF16: true })}
${wgslPackHelpers([c.oDtype], { nativeF16: true })}
${decodeBindingsWgsl(c.f16Cache ? 'f16' : 'vec4<u32>')}
${specMaskWgsl(c.specMask)}
${wgslLoadElement('load_q', 'q_in', 'f16')}
${wgslLazyMaxHelpers()}
var<workgroup> smem: array<vec4<u32>, ${words}>;
var<workgroup> flag: array<atomic<u32>, 4>;

@compute @workgroup_size(${SG})
fn main(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${headGroupPrologueWgsl(HG)}
  let rr = lid / ${LPR}u;            // this lane's head row (0..15)
  let lr = lid % ${LPR}u;            // and its share of the row
  let g = hg * 16u + rr;
  let h = kvh * ${G}u + min(g, ${G - 1}u);
  let kstride = params.k_stride_slot / ${c.f16Cache ? 1 : 8}u;  // one slot, in cache indices
  let vstride = params.v_stride_slot / ${c.f16Cache ? 1 : 8}u;

  // Q rows (heads past the group are zero) -> f16 left matrices.
  ${stageQRowsF16Wgsl({ headDim: D, groupSize: G, threads: SG, base: STAGE, stride: RST8 })}
  workgroupBarrier();
  ${Array.from({ length: NQ }, (_, i) => `let q_${i} = subgroupMatrixLoad<${left}, row_major>(&smem, ${STAGE + 2 * i}u, ${RST8}u);`).join('\n  ')}
  workgroupBarrier();  // the stage area now takes V tail blocks

  ${Array.from({ length: NV }, (_, i) => `var o_${i} = ${result}();`).join('\n  ')}
  var m = NEG_BIG;   // the row's reference max
  var l = 0.0;       // this lane's share of the row sum
  var tile_l = 0.0;
  var x: array<f32, ${CPL}>;
  var vis_lo = i32(wi.start);
  if (params.window_left >= 0) { vis_lo = max(vis_lo, i32(wi.kv_len) - 1 - params.window_left); }
  let vis_hi = select(-1, i32(wi.end), g < ${G}u);

  for (var t0 = wi.start & ~15u; t0 < wi.end; t0 += ${BC}u) {
    if (lid == 0u) { atomicStore(&flag[0], 0u); }
    ${Array.from({ length: 2 * NV }, (_, i) => `var vm_${Math.floor(i / NV)}_${i % NV}: ${right};`).join('\n    ')}
    ${qk(0)}
    ${qk(1)}
    workgroupBarrier();
    var mx = NEG_BIG;
    ${logits}
    ${wgslLazyMaxStep({ reduceMax: reduce('mx', 'max'), writeP, rescale: staged('o *= alpha;', true) })}
    ${pv(0)}
    ${pv(1)}
  }
  workgroupBarrier();
  ${reduce('l', '+')}
  var den = l;
  ${decodeFinishStateWgsl(c.sinks, `g < ${G}u && lr == 0u`)}
  ${staged(
    `if (g < ${G}u) ${decodeStoreO4Wgsl(c.oDtype, D, 'o', 'd')}`,
    false,
  )}
}
`;
}
