/**
 * MLA attention on tensor cores (`chromium-experimental-subgroup-matrix`, 16x16x16 f16 -> f32),
 * heads as the M dimension. A work item is 32 packed (token, head) rows, as for the f32 kernel,
 * served by 8 subgroups: subgroup s owns row block rb = s / 4 (16 rows) and quarter qd = s % 4,
 * i.e. a quarter of the K dims for S and a quarter (128) of the V dims for O.
 *
 * Per K tile of 16 keys (ckv | kpe rows, fetched a tile ahead into registers, stored as 16-byte
 * words; V is the ckv part of the same tile):
 *   S   each subgroup multiplies its quarter of Q (left matrices kept in registers) by the K tile:
 *       4 partial S blocks per row block go to workgroup memory
 *   soft  WG/32 lanes a row sum the 4 partials, mask (causal bottom-right), row max; P = exp2(s -
 *       m_ref) as f16 with the lazy reference max of the prefill tensor-core kernel (m_ref moves,
 *       and O is rescaled through memory, only when a row's max passes it by more than 8)
 *   PV  O[rb][qd] (8 result matrices of 16x16) += P[rb] x V[:, quarter qd]
 * Every workgroup variable is a multiple of 16 bytes (see the prefill kernel: matrix tiles lose
 * their alignment otherwise) and all matrix tiles live in one `vec4<u32>` array.
 */
import {
  DIRECT,
  type GpuContext,
  WORK_ITEM_WORDS,
  subgroupMatrixF16Support,
  wgslAttentionCommon,
  wgslDtypeHelpers,
  wgslLazyMaxHelpers,
  wgslLazyMaxStep,
  wgslLoadVec4,
  wgslPackF16x8,
  wgslPackHelpers,
  wgslPagedAddress,
  wgslShuffleReduce,
} from '@webinfer/core-buffers';
import { type MlaShaderConfig, mlaBindingsWgsl, mlaUniforms } from './mla-simt.wgsl';

export interface MlaTcConfig extends Omit<MlaShaderConfig, 'vStageVec4' | 'debugSkip'> {
  subgroupSize: number;
  /**
   * Row blocks of 16 packed rows per workgroup, 4 subgroups each (default 2: 32 rows, 8 subgroups).
   * 4 (64 rows, 16 subgroups) halves the K/V tile reads per head; Q is then staged in two passes.
   */
  rowBlocks?: 1 | 2 | 4;
  /** Q rows staged a pass (default 32; 16 lets the 32-row kernel fit 32 KB of workgroup memory). */
  qStageRows?: 16 | 32;
  /** K tiles fetched a tile ahead into registers (default true). */
  prefetch?: boolean;
  /** ckv/kpe read 16 bytes at a time (rows on multiples of 8 elements; else 4-byte words). */
  wideKV?: boolean;
  /** log2 of the page size when it is a power of two (page and slot by shift and mask). */
  pageShift?: number;
  /** Bench profiling only: phases left out (results are wrong). */
  skip?: ('load' | 'qk' | 'softmax' | 'pv')[];
}

const BC = 16;

/** Why the tensor-core MLA kernel can't serve this config on `ctx`, or undefined. */
export function mlaTensorCoreSupport(ctx: GpuContext, c: { qDtype: string; kvDtype: string; oDtype: string; headDimCkv: number; headDimKpe: number }, rowBlocks = 2): string | undefined {
  const device = subgroupMatrixF16Support(ctx);
  if (device !== undefined) return device;
  if (4 * rowBlocks * ctx.subgroupMaxSize > ctx.limits.maxComputeInvocationsPerWorkgroup) return 'the workgroup would be too large';
  if (c.qDtype !== 'f16' || c.kvDtype !== 'f16') return 'q and KV must be f16';
  if (c.oDtype !== 'f16' && c.oDtype !== 'bf16') return 'the output must be f16 or bf16';
  if (c.headDimCkv !== 512 || (c.headDimKpe !== 0 && c.headDimKpe !== 64)) return 'head dims must be 512 and 64 or 0';
  if (mlaTcStageRows(ctx, c.headDimCkv + c.headDimKpe, rowBlocks) === undefined) return 'not enough workgroup memory';
  return undefined;
}

/** Q rows staged a pass that let the kernel fit `ctx`'s workgroup memory (32, else 16), or undefined. */
export function mlaTcStageRows(ctx: GpuContext, DK: number, rowBlocks: number): 16 | 32 | undefined {
  return ([32, 16] as const).find((rows) => mlaTcLayout(DK, rowBlocks, rows).smemBytes <= ctx.limits.maxComputeWorkgroupStorageSize);
}

/**
 * Workgroup memory in 16-byte words: K tile | S partials | P, with Q staged over all of it first,
 * `stageRows` rows a pass (at most 2 row blocks: 64 rows of 576 would not fit 48 KB; 16 rows let
 * the 32-row kernel fit 32 KB).
 */
export function mlaTcLayout(DK: number, RB: number, stageRows: 16 | 32 = 32) {
  const ROWS = 16 * RB;
  const NSG = 4 * RB;
  const KST = (DK + 8) / 8; // K row stride in words (padded by 16 bytes)
  const SST = (BC + 4) / 4; // S partial row stride in words (f32)
  const PST = (BC + 8) / 8; // P row stride in words (f16)
  const SP0 = BC * KST;
  const P0 = SP0 + NSG * 16 * SST;
  const words = Math.max(P0 + RB * 16 * PST, Math.min(ROWS, stageRows) * KST);
  return { ROWS, NSG, KST, SST, PST, SP0, P0, words, smemBytes: words * 16 + ROWS * 16 + 32 + 16 };
}

export function mlaTcWgsl(c: MlaTcConfig): string {
  const DC = c.headDimCkv;
  const DP = c.headDimKpe;
  const DK = DC + DP;
  const { ROWS, NSG, KST, SST, PST, SP0, P0, words } = mlaTcLayout(DK, c.rowBlocks ?? 2, c.qStageRows);
  const prefetch = c.prefetch ?? true;
  const skip = new Set(c.skip ?? []);
  const SG = c.subgroupSize;
  const WG = NSG * SG;
  // Softmax: 4 keys a lane (one 16-byte read per quarter's partial S), 4 lanes a row; with more
  // invocations than ROWS * 4 the rest sit the softmax out.
  const KPL = 4;
  const LPR = BC / KPL;
  const SOFT = ROWS * LPR;
  if (SOFT > WG || LPR > SG) throw new Error(`MLA tensor-core softmax needs ${SOFT} invocations`);
  const NK = DK / 64; // k-steps of each subgroup's quarter of the K dims
  const QW = DK / 32; // words in a quarter of the K dims (DK / 4 elements)
  const left = 'subgroup_matrix_left<f16, 16, 16>';
  const right = 'subgroup_matrix_right<f16, 16, 16>';
  const result = 'subgroup_matrix_result<f32, 16, 16>';
  const red = (v: string, op: 'max' | '+') => wgslShuffleReduce(v, op, LPR);
  const pack8 = wgslPackF16x8;
  // K tile units: 8 elements of key `kc`: units 0..DC/8 from ckv, the rest from kpe.
  const UPK = DK / 8;
  const units = BC * UPK;
  const iters = Math.ceil(units / WG);
  const fetch = (t: string) =>
    Array.from({ length: iters }, (_, i) => `{
      let idx = lid + ${i * WG}u; let kc = idx / ${UPK}u; let u = idx % ${UPK}u; let j = ${t} + kc;
      kr_${i} = vec4<u32>(0u);
      if (idx < ${units}u && j < kv_hi) {
        ${
          c.pageShift === undefined
            ? 'let page = plan[params.indices_offset + wi.page_base + j / params.page_size];\n        let slot = j % params.page_size;'
            : `let page = plan[params.indices_offset + wi.page_base + (j >> ${c.pageShift}u)];\n        let slot = j & ${(2 ** c.pageShift - 1) >>> 0}u;`
        }
        ${DP > 0 ? `if (u < ${DC / 8}u) { kr_${i} = raw_ckv(ckv_elem(page, slot, 0u) + u * 8u); } else { kr_${i} = raw_kpe(kpe_elem(page, slot, 0u) + (u - ${DC / 8}u) * 8u); }` : `kr_${i} = raw_ckv(ckv_elem(page, slot, 0u) + u * 8u);`}
      }
    }`).join('\n    ');
  const put = Array.from({ length: iters }, (_, i) => `{
      let idx = lid + ${i * WG}u;
      if (idx < ${units}u) { smem[(idx / ${UPK}u) * ${KST}u + idx % ${UPK}u] = kr_${i}; }
    }`).join('\n    ');
  // P of this lane's 4 keys with reference max \`mr\` (two f16 pairs); tile_l gets the rounded sum.
  const writeP = (mr: string) => `{
      let h0 = vec2<f16>(p16(x.x, ${mr}), p16(x.y, ${mr}));
      let h1 = vec2<f16>(p16(x.z, ${mr}), p16(x.w, ${mr}));
      tile_l = f32(h0.x) + f32(h0.y) + f32(h1.x) + f32(h1.y);
      if (soft) {
        let w = ${P0}u + srb * ${16 * PST}u + sr * ${PST}u + part / 2u;
        smem[w][(part % 2u) * 2u] = bitcast<u32>(h0);
        smem[w][(part % 2u) * 2u + 1u] = bitcast<u32>(h1);
      }
    }`;
  // Stages O block `b` of this subgroup through its S partial area; `body` sees the lane's row
  // `orow` (0..15), dims `dim` (4 of them, `o4`) of V quarter qd.
  const staged = (body: string, reload: boolean) =>
    Array.from({ length: 8 }, (_, b) => `{
    subgroupMatrixStore<row_major>(&smem, s_area, o_${b}, ${SST}u);
    workgroupBarrier();
    for (var e = 0u; e < ${16 / (SG / 16) / 4}u; e++) {
      let orow = sl / ${SG / 16}u;
      let c4 = (sl % ${SG / 16}u) * ${16 / (SG / 16) / 4}u + e;
      let at = s_area + orow * ${SST}u + c4;
      var o4 = bitcast<vec4<f32>>(smem[at]);
      let dim = qd * 128u + ${b * 16}u + c4 * 4u;
      ${body}
      ${reload ? 'smem[at] = bitcast<vec4<u32>>(o4);' : ''}
    }
    workgroupBarrier();
    ${reload ? `o_${b} = subgroupMatrixLoad<${result}, row_major>(&smem, s_area, ${SST}u);\n    workgroupBarrier();` : ''}
  }`).join('\n  ');
  const oPer = 2;

  const SR = Math.min(ROWS, c.qStageRows ?? 32);
  const passes = ROWS / SR;
  const qLoad = (decl: string, pass: number) =>
    Array.from({ length: NK }, (_, i) => `${decl}q_${i} = subgroupMatrixLoad<${left}, row_major>(&smem, (rb - ${(pass * SR) / 16}u) * ${16 * KST}u + qd * ${QW}u + ${2 * i}u, ${KST}u);`).join('\n  ');
  const qRow =
    DP > 0
      ? `if (u < ${DC / 8}u) {
        let base = params.qn_offset + (wi.qo_start + qt) * params.qn_stride_tok + qh * params.qn_stride_head + u * 8u;
        a = load_qn(base); b = load_qn(base + 4u);
      } else {
        let base = params.qp_offset + (wi.qo_start + qt) * params.qp_stride_tok + qh * params.qp_stride_head + (u - ${DC / 8}u) * 8u;
        a = load_qp(base); b = load_qp(base + 4u);
      }`
      : `let base = params.qn_offset + (wi.qo_start + qt) * params.qn_stride_tok + qh * params.qn_stride_head + u * 8u;
      a = load_qn(base); b = load_qn(base + 4u);`;
  const qStage = Array.from(
    { length: passes },
    (_, pass) => `${pass > 0 ? 'workgroupBarrier();  // the last pass is loaded\n  ' : ''}for (var idx = lid; idx < ${SR * UPK}u; idx += ${WG}u) {
    let sr0 = idx / ${UPK}u;
    let qr = sr0 + ${pass * SR}u;
    let u = idx % ${UPK}u;
    let qt = (wi.tile + qr) / H;
    let qh = (wi.tile + qr) % H;
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    if (qt < wi.qo_len) {
      ${qRow}
    }
    smem[sr0 * ${KST}u + u] = ${pack8('a', 'b')};
  }
  workgroupBarrier();
  ${passes === 1 ? qLoad('let ', 0) : `if (rb / ${SR / 16}u == ${pass}u) {\n    ${qLoad('', pass)}\n  }`}`,
  ).join('\n  ');
  const qDecl = passes === 1 ? '' : Array.from({ length: NK }, (_, i) => `var q_${i}: ${left};`).join('\n  ');

  return `diagnostic(off, chromium.subgroup_matrix_uniformity);
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
var<workgroup> smem: array<vec4<u32>, ${words}>;
${mlaUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslDtypeHelpers([c.qDtype, c.kvDtype], { nativeF16: true })}
${wgslPackHelpers([c.oDtype], { nativeF16: true })}

struct WorkItem { qo_start: u32, qo_len: u32, kv_len: u32, page_base: u32, tile: u32, kv_start: u32, kv_end: u32, chunk: u32 }

${mlaBindingsWgsl(Boolean(c.wideKV))}

${wgslLoadVec4('load_qn', 'q_nope', c.qDtype)}
${wgslLoadVec4('load_qp', 'q_pe', c.qDtype)}
${wgslPagedAddress('ckv')}
${wgslPagedAddress('kpe')}

// 32 bytes (a multiple of 16), as every workgroup variable here.
var<workgroup> item: WorkItem;
var<workgroup> flag: array<atomic<u32>, 4>;
// Per row: m (reference max), l (sum), alpha (rescale factor).
var<workgroup> row_s: array<vec4<f32>, ${ROWS}>;

// 8 f16 (16 bytes) at element e (a multiple of 4; of 8 with 16-byte words) of the ckv or kpe cache.
${
  c.wideKV
    ? 'fn raw_ckv(e: u32) -> vec4<u32> { return ckv[e >> 3u]; }\nfn raw_kpe(e: u32) -> vec4<u32> { return kpe[e >> 3u]; }'
    : 'fn raw_ckv(e: u32) -> vec4<u32> { let w = e >> 1u; return vec4<u32>(ckv[w], ckv[w + 1u], ckv[w + 2u], ckv[w + 3u]); }\nfn raw_kpe(e: u32) -> vec4<u32> { let w = e >> 1u; return vec4<u32>(kpe[w], kpe[w + 1u], kpe[w + 2u], kpe[w + 3u]); }'
}
${wgslLazyMaxHelpers()}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let work = wg.x + wg.y * params.groups_x;
  // No early return for padding workgroups: they run an empty KV range and write nothing.
  let live = work < params.num_work;
  if (lid == 0u) {
    let b = select(0u, work, live) * ${WORK_ITEM_WORDS}u;
    item = WorkItem(plan[b], plan[b + 1u], plan[b + 2u], plan[b + 3u], plan[b + 4u], plan[b + 5u], plan[b + 6u], plan[b + 7u]);
  }
  let wi = workgroupUniformLoad(&item);
  if (wi.qo_len == 0u) { return; } // padding of a graph-mode schedule
  let H = params.num_heads;
  let last_tok = min((wi.tile + ${ROWS - 1}u) / H, wi.qo_len - 1u);
  let delta = i32(wi.kv_len) - i32(wi.qo_len);
  var kv_hi = wi.kv_end;
  ${c.causal ? 'kv_hi = min(kv_hi, u32(max(i32(last_tok) + delta + 1, 0)));' : ''}
  if (!live) { kv_hi = wi.kv_start; }

  let sg = lid / ${SG}u;
  let sl = lid % ${SG}u;
  let rb = sg / 4u;   // row block of this subgroup
  let qd = sg % 4u;   // its quarter of the K dims (S) and of the V dims (O)
  let s_area = ${SP0}u + sg * ${16 * SST}u;
  // Softmax roles: row r of the work item, its keys part * 4 .. part * 4 + 3.
  let soft = lid < ${SOFT}u;
  let r = min(lid / ${LPR}u, ${ROWS - 1}u);
  let part = lid % ${LPR}u;
  let srb = r / 16u;
  let sr = r % 16u;
  let tok = (wi.tile + r) / H;
  var vis_hi = select(i32(kv_hi), -1, tok >= wi.qo_len || !soft);
  ${c.causal ? 'vis_hi = min(vis_hi, i32(tok) + delta + 1);' : ''}

  ${qDecl}
  // Q rows (nope | pe) -> f16 words, then each subgroup's quarter as left matrices; at most
  // qStageRows rows a pass (a row block's subgroups load theirs in its pass).
  ${qStage}
  ${Array.from({ length: 8 }, (_, i) => `var o_${i} = ${result}();`).join('\n  ')}
  var m = NEG_BIG;   // this lane's row's reference max
  var l = 0.0;       // this lane's share of the row sum
  var tile_l = 0.0;
  var x = vec4<f32>(NEG_BIG);
  ${Array.from({ length: iters }, (_, i) => `var kr_${i} = vec4<u32>(0u);`).join('\n  ')}
  ${prefetch && !skip.has('load') ? fetch('wi.kv_start') : ''}

  for (var t0 = wi.kv_start; t0 < kv_hi; t0 += ${BC}u) {
    workgroupBarrier();  // the last tile's P V is done with the K tile and P (and Q staging)
    if (lid == 0u) { atomicStore(&flag[0], 0u); }
    ${skip.has('load') ? '' : `${prefetch ? '' : fetch('t0')}
    ${put}`}
    workgroupBarrier();
    ${prefetch && !skip.has('load') ? fetch(`t0 + ${BC}u`) : ''}
    if (${skip.has('qk') ? 'false' : 'true'}) {
      var s = ${result}();
      ${Array.from({ length: NK }, (_, i) => `s = subgroupMatrixMultiplyAccumulate(q_${i}, subgroupMatrixLoad<${right}, col_major>(&smem, qd * ${QW}u + ${2 * i}u, ${KST}u), s);`).join('\n      ')}
      subgroupMatrixStore<row_major>(&smem, s_area, s, ${SST}u);
    }
    workgroupBarrier();
    // Logits of this lane's keys: the 4 quarters' partial sums, scaled and masked.
    var mx = NEG_BIG;
    if (${skip.has('softmax') ? 'false' : 'true'}) {
      var acc = vec4<f32>(0.0);
      for (var q = 0u; q < 4u; q++) {
        acc += bitcast<vec4<f32>>(smem[${SP0}u + (srb * 4u + q) * ${16 * SST}u + sr * ${SST}u + part]);
      }
      let j0 = i32(t0 + part * 4u);
      let vis = vec4<i32>(j0, j0 + 1, j0 + 2, j0 + 3) < vec4<i32>(vis_hi);
      x = select(vec4<f32>(NEG_BIG), acc * params.sm_scale_log2, vis);
      mx = max(max(x.x, x.y), max(x.z, x.w));
    }
    ${wgslLazyMaxStep({
      reduceMax: red('mx', 'max'),
      writeP,
      // O rows live in other subgroups' lanes: alpha goes through workgroup memory.
      rescale: `if (soft && part == 0u) { row_s[r].z = alpha; }
      workgroupBarrier();
      ${staged('o4 *= row_s[rb * 16u + orow].z;', true)}`,
    })}
    if (${skip.has('pv') ? 'false' : 'true'}) {
      let p = subgroupMatrixLoad<${left}, row_major>(&smem, ${P0}u + rb * ${16 * PST}u, ${PST}u);
      ${Array.from({ length: 8 }, (_, i) => `o_${i} = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<${right}, row_major>(&smem, qd * 16u + ${2 * i}u, ${KST}u), o_${i});`).join('\n      ')}
    }
  }
  ${red('l', '+')}
  if (soft && part == 0u) { row_s[r] = vec4<f32>(m, l, 0.0, 0.0); }
  workgroupBarrier();
  ${staged(`let orr = rb * 16u + orow;
      let ot = (wi.tile + orr) / H;
      if (live && ot < wi.qo_len) {
        let oh = (wi.tile + orr) % H;
        let grow = wi.qo_start + ot;
        let st = row_s[orr];
        let inv = select(0.0, 1.0 / st.y, st.y > 0.0);
        if (wi.chunk == ${DIRECT}u) {
          let val4 = o4 * (inv * params.v_scale);
          let w = (params.o_offset + (grow * H + oh) * ${DC}u + dim) / ${oPer}u;
          o_out[w] = pack_${c.oDtype}(val4.xy); o_out[w + 1u] = pack_${c.oDtype}(val4.zw);
          if (dim == 0u) { lse_out[params.lse_offset + grow * H + oh] = lse_bits(st.x, st.y); }
        } else {
          let slot = plan[params.slot_indptr_offset + grow] + wi.chunk;
          let at = params.part_o_offset + (slot * H + oh) * ${DC}u + dim;
          let val4 = o4 * inv;
          ws[at] = val4.x; ws[at + 1u] = val4.y; ws[at + 2u] = val4.z; ws[at + 3u] = val4.w;
          if (dim == 0u) { ws[params.part_lse_offset + slot * H + oh] = bitcast<f32>(lse_bits(st.x, st.y)); }
        }
      }`, false)}
}`;
}
