/**
 * Merging partial attention states (FlashInfer `cascade`): split-KV kernels write each chunk's
 * normalised output and base-2 LSE, and this merge combines them exactly:
 * m = max s_i; w_i = 2^(s_i - m); v = sum w_i v_i / sum w_i; s = m + log2(sum w_i).
 * Public: mergeState, mergeStateInPlace, mergeStates. Internal: encodeMergeStates (ragged chunks,
 * optional sinks and output scale), which decode, prefill and MLA use for split-KV.
 */
import type { GpuContext } from './context';
import type { DType } from './dtype';
import { ShapeError } from './errors';
import type { DispatchCache } from './dispatch-cache';
import { type BufferBinding, type IndirectDispatch, bindGroup, encodeDispatch, foldWorkgroups, getKernel, isGpuBuffer } from './kernel-cache';
import type { Tensor } from './tensor';
import { UniformSchema } from './uniforms';
import { wgslAttentionCommon } from './wgsl/attention';
import { type FloatDType, assertFloatDType, elementsPerWord, wgslDtypeHelpers, wgslLoadVec4, wgslPackHelpers } from './wgsl/dtype';

const WORKGROUP = 64;

const mergeUniforms = new UniformSchema('MergeParams', {
  num_rows: 'u32',
  num_heads: 'u32',
  head_dim: 'u32',
  /** States per row when not ragged. */
  states_per_row: 'u32',
  /** Element offset of v and word offset of s. */
  v_offset: 'u32',
  s_offset: 'u32',
  indptr_offset: 'u32',
  out_offset: 'u32',
  lse_offset: 'u32',
  v_scale: 'f32',
  groups_x: 'u32',
});

export interface MergeShaderConfig {
  vDtype: FloatDType;
  outDtype: FloatDType;
  /** States of row r are [indptr[r], indptr[r+1]) (else r*S .. r*S+S). */
  ragged: boolean;
  /** Rows with a single state were written by the producer already: leave them. */
  skipSingle: boolean;
  /** Add a per-head sink logit (natural log) to each row's denominator. */
  sinks: boolean;
  /** Write the merged LSE. */
  writeLse: boolean;
}

function mergeWgsl(c: MergeShaderConfig): string {
  const outPer = elementsPerWord(c.outDtype);
  const storeOut =
    outPer === 1
      ? 'for (var i = 0u; i < 4u; i++) { out_v[w + i] = bitcast<u32>(o[i]); }'
      : outPer === 2
        ? `out_v[w] = pack_${c.outDtype}(o.xy); out_v[w + 1u] = pack_${c.outDtype}(o.zw);`
        : `out_v[w] = pack_${c.outDtype}(o);`;
  return `${mergeUniforms.wgsl()}
${wgslAttentionCommon()}
${wgslDtypeHelpers([c.vDtype])}
${wgslPackHelpers([c.outDtype])}
@group(0) @binding(0) var<uniform> params: MergeParams;
@group(0) @binding(1) var<storage, read> v_in: array<u32>;
@group(0) @binding(2) var<storage, read> s_in: array<u32>;
@group(0) @binding(3) var<storage, read> indptr: array<i32>;
@group(0) @binding(4) var<storage, read> sinks: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_v: array<u32>;
@group(0) @binding(6) var<storage, read_write> out_s: array<u32>;
${wgslLoadVec4('load_v4', 'v_in', c.vDtype)}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = (wg.x + wg.y * params.groups_x) * ${WORKGROUP}u + lid;
  let slices = params.head_dim / 4u;
  if (id >= params.num_rows * params.num_heads * slices) { return; }
  let slice = id % slices;
  let head = (id / slices) % params.num_heads;
  let row = id / (slices * params.num_heads);
  ${
    c.ragged
      ? 'let first = u32(indptr[params.indptr_offset + row]);\n  let last = u32(indptr[params.indptr_offset + row + 1u]);'
      : 'let first = row * params.states_per_row;\n  let last = first + params.states_per_row;'
  }
  ${c.skipSingle ? 'if (last - first <= 1u) { return; }' : ''}
  var m = NEG_BIG;
  for (var i = first; i < last; i++) {
    m = max(m, lse_from_bits(s_in[params.s_offset + i * params.num_heads + head]));
  }
  ${c.sinks ? 'let sink = sinks[head] * LOG2E;\n  m = max(m, sink);' : ''}
  var d = 0.0;
  var o = vec4<f32>(0.0);
  if (m > NEG_BIG) {
    for (var i = first; i < last; i++) {
      let s = lse_from_bits(s_in[params.s_offset + i * params.num_heads + head]);
      let w = exp2(s - m);
      d += w;
      o += w * load_v4(params.v_offset + (i * params.num_heads + head) * params.head_dim + slice * 4u);
    }
  }
  ${c.sinks ? 'if (m > NEG_BIG) { d += exp2(sink - m); }' : ''}
  if (d > 0.0) { o = o / d * params.v_scale; }
  let w = (params.out_offset + (row * params.num_heads + head) * params.head_dim + slice * 4u) / ${outPer}u;
  ${storeOut}
  ${c.writeLse ? 'if (slice == 0u) { out_s[params.lse_offset + row * params.num_heads + head] = lse_bits(m, d); }' : ''}
}`;
}

export interface EncodeMergeArgs {
  config: MergeShaderConfig;
  numRows: number;
  numHeads: number;
  headDim: number;
  statesPerRow?: number;
  v: BufferBinding;
  vOffset?: number;
  s: BufferBinding;
  sOffset?: number;
  indptr?: BufferBinding;
  indptrOffset?: number;
  sinks?: BufferBinding;
  out: BufferBinding;
  outOffset?: number;
  lse?: BufferBinding;
  lseOffset?: number;
  vScale?: number;
  /** Dispatch size from this buffer (graph mode: 0 when a plan split nothing), else computed. */
  indirect?: IndirectDispatch;
  /**
   * A wrapper's cache for the merge's uniform buffer and bind group: with it, runs with the same
   * values make no buffer and no bind group (a merge runs every step of a split plan), and
   * nothing is left for the caller to destroy. `external`: the encoder is the caller's.
   */
  cache?: DispatchCache;
  external?: boolean;
}

/** The workgroup counts of a merge over `numRows` rows (what an indirect merge dispatch holds). */
export function mergeWorkgroups(ctx: GpuContext, numRows: number, numHeads: number, headDim: number): [number, number] {
  return foldWorkgroups(ctx, Math.ceil((numRows * numHeads * (headDim / 4)) / WORKGROUP));
}

/**
 * Encodes a merge into `encoder`. Returns the uniform buffer to destroy after submit, or undefined
 * when `a.cache` owns it.
 */
export function encodeMergeStates(ctx: GpuContext, encoder: GPUCommandEncoder, a: EncodeMergeArgs): GPUBuffer | undefined {
  const kernel = getKernel(ctx, {
    id: 'core/merge-states',
    config: a.config,
    wgsl: mergeWgsl,
    bindings: ['uniform', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'storage', 'storage'],
  });
  const total = a.numRows * a.numHeads * (a.headDim / 4);
  const groups = mergeWorkgroups(ctx, a.numRows, a.numHeads, a.headDim);
  const values = {
    num_rows: a.numRows,
    num_heads: a.numHeads,
    head_dim: a.headDim,
    states_per_row: a.statesPerRow ?? 1,
    v_offset: a.vOffset ?? 0,
    s_offset: a.sOffset ?? 0,
    indptr_offset: a.indptrOffset ?? 0,
    out_offset: a.outOffset ?? 0,
    lse_offset: a.lseOffset ?? 0,
    v_scale: a.vScale ?? 1,
    groups_x: groups[0],
  };
  const uniform = a.cache ? a.cache.uniform(mergeUniforms.pack(values), a.external ?? true) : mergeUniforms.createBuffer(ctx.device, values, 'core/merge-states');
  const dummy = a.s; // unused bindings point at a buffer already bound (read-only)
  const entries = [uniform, a.v, a.s, a.indptr ?? dummy, a.sinks ?? dummy, a.out, a.lse ?? a.out];
  const group = a.cache ? a.cache.bindGroup(kernel, entries.map((b) => (isGpuBuffer(b) ? { buffer: b } : b))) : bindGroup(ctx, kernel, entries);
  if (total > 0) encodeDispatch(encoder, kernel, group, a.indirect ?? groups);
  return a.cache ? undefined : uniform;
}

/** Where a split-KV plan keeps its partial states and how its rows map to them. */
export interface SplitKVMergeArgs {
  /** Partial outputs (f32 `[slots, heads, headDim]`) and LSEs (`[slots, heads]`) in the workspace. */
  partialO: BufferBinding;
  partialLse: BufferBinding;
  /** u32 buffer holding each row's slot range (`rows + 1` entries) at `indptrOffset`. */
  indptr: GPUBuffer;
  indptrOffset: number;
  numRows: number;
  numHeads: number;
  headDim: number;
  outDtype: FloatDType;
  out: Tensor;
  /** Buffer and element offset receiving the merged LSE. */
  lse: GPUBuffer;
  lseOffset: number;
  sinks?: BufferBinding;
  vScale: number;
  indirect?: IndirectDispatch;
  /** See EncodeMergeArgs: the wrapper's merge DispatchCache and whether the encoder is the caller's. */
  cache?: DispatchCache;
  external?: boolean;
}

/**
 * The second pass of split-KV attention (decode, prefill, MLA): rows split over several chunks
 * get their partial states merged into `out` / `lse`; rows with one chunk were written by the
 * kernel itself and are left alone. Returns the uniform buffer (destroy it after submit).
 */
export function encodeSplitKVMerge(ctx: GpuContext, encoder: GPUCommandEncoder, a: SplitKVMergeArgs): GPUBuffer | undefined {
  return encodeMergeStates(ctx, encoder, {
    config: { vDtype: 'f32', outDtype: a.outDtype, ragged: true, skipSingle: true, sinks: a.sinks !== undefined, writeLse: true },
    numRows: a.numRows,
    numHeads: a.numHeads,
    headDim: a.headDim,
    v: a.partialO,
    s: a.partialLse,
    indptr: a.indptr,
    indptrOffset: a.indptrOffset,
    sinks: a.sinks,
    out: a.out.buffer,
    outOffset: a.out.offset,
    lse: a.lse,
    lseOffset: a.lseOffset,
    vScale: a.vScale,
    indirect: a.indirect,
    cache: a.cache,
    external: a.external,
  });
}

function checkHeadDim(d: number, argument: string): void {
  if (d % 4 !== 0) throw new ShapeError(`head_dim ${d} must be a multiple of 4`, argument);
}

function submitMerge(ctx: GpuContext, args: EncodeMergeArgs): void {
  const encoder = ctx.device.createCommandEncoder({ label: 'core/merge-states' });
  const uniform = encodeMergeStates(ctx, encoder, args);
  ctx.submit([encoder.finish()]);
  uniform?.destroy();
}

function contiguous(t: Tensor, argument: string): void {
  if (!t.isContiguous()) throw new ShapeError('must be contiguous', argument);
}

/**
 * Merges S attention states per row: `v` `[n, S, H, D]` (any float dtype), `s` `[n, S, H]` f32
 * base-2 LSEs. Returns `[v [n, H, D] in v's dtype, s [n, H] f32]`.
 *
 * @example
 * const [v, s] = mergeStates(ctx, partialV, partialS);
 */
export function mergeStates(ctx: GpuContext, v: Tensor, s: Tensor): [Tensor, Tensor] {
  assertFloatDType(v.dtype, 'v');
  if (v.rank !== 4) throw new ShapeError(`expected [n, S, H, D], got [${v.shape.join(', ')}]`, 'v');
  const [n, numStates, h, d] = v.shape;
  s.expect('s', ['f32'], [n, numStates, h]);
  checkHeadDim(d, 'v');
  contiguous(v, 'v');
  contiguous(s, 's');
  const outV = ctx.empty([n, h, d], v.dtype, 'mergeStates v');
  const outS = ctx.empty([n, h], 'f32', 'mergeStates s');
  submitMerge(ctx, {
    config: { vDtype: v.dtype, outDtype: v.dtype as FloatDType, ragged: false, skipSingle: false, sinks: false, writeLse: true },
    numRows: n,
    numHeads: h,
    headDim: d,
    statesPerRow: numStates,
    v: v.buffer,
    vOffset: v.offset,
    s: s.buffer,
    sOffset: s.offset,
    out: outV.buffer,
    lse: outS.buffer,
  });
  return [outV, outS];
}

/**
 * Merges two states: `vA`, `vB` `[n, H, D]`, `sA`, `sB` `[n, H]` f32 (base 2).
 * Returns `[v, s]` (v in vA's dtype).
 */
export function mergeState(ctx: GpuContext, vA: Tensor, sA: Tensor, vB: Tensor, sB: Tensor): [Tensor, Tensor] {
  const [n, h, d] = checkPair(vA, sA, vB, sB);
  const outV = ctx.empty([n, h, d], vA.dtype, 'mergeState v');
  const outS = ctx.empty([n, h], 'f32', 'mergeState s');
  mergePairInto(ctx, vA, sA, vB, sB, outV, outS, undefined);
  return [outV, outS];
}

/**
 * Merges `vOther`/`sOther` into `v`/`s` in place; rows whose `mask` entry is 0/false are left as
 * they are.
 */
export function mergeStateInPlace(
  ctx: GpuContext,
  v: Tensor,
  s: Tensor,
  vOther: Tensor,
  sOther: Tensor,
  mask?: ArrayLike<number | boolean>,
): void {
  const [n] = checkPair(v, s, vOther, sOther);
  if (mask && mask.length !== n) throw new ShapeError(`has ${mask.length} entries, expected ${n}`, 'mask');
  mergePairInto(ctx, v, s, vOther, sOther, v, s, mask);
}

function checkPair(vA: Tensor, sA: Tensor, vB: Tensor, sB: Tensor): [number, number, number] {
  assertFloatDType(vA.dtype, 'vA');
  if (vA.rank !== 3) throw new ShapeError(`expected [n, H, D], got [${vA.shape.join(', ')}]`, 'vA');
  const [n, h, d] = vA.shape;
  vB.expect('vB', [vA.dtype], [n, h, d]);
  sA.expect('sA', ['f32'], [n, h]);
  sB.expect('sB', ['f32'], [n, h]);
  checkHeadDim(d, 'vA');
  for (const [t, name] of [[vA, 'vA'], [vB, 'vB'], [sA, 'sA'], [sB, 'sB']] as const) contiguous(t, name);
  return [n, h, d];
}

/**
 * Two states become one "ragged" input by stacking them in a scratch buffer: [A rows | B rows],
 * with row r's states at slots r and n + r. The merge then reads them through an indptr-free
 * pair layout: copy into [n, 2, H, D] so the uniform-S kernel applies.
 */
function mergePairInto(
  ctx: GpuContext,
  vA: Tensor,
  sA: Tensor,
  vB: Tensor,
  sB: Tensor,
  outV: Tensor,
  outS: Tensor,
  mask: ArrayLike<number | boolean> | undefined,
): void {
  const [n, h, d] = vA.shape;
  const dtype = vA.dtype as FloatDType;
  const bytes = { f32: 4, f16: 2, bf16: 2, fp8_e4m3: 1, fp8_e5m2: 1 }[dtype];
  const rowV = h * d * bytes;
  const rowS = h * 4;
  if ((vA.byteOffset | vB.byteOffset | rowV) % 4 !== 0) throw new ShapeError('rows must be 4-byte aligned', 'vA');
  const stackedV = ctx.empty([n, 2, h, d], dtype, 'mergeState stacked v');
  const stackedS = ctx.empty([n, 2, h], 'f32', 'mergeState stacked s');
  const encoder = ctx.device.createCommandEncoder({ label: 'core/merge-state' });
  for (let r = 0; r < n; r++) {
    encoder.copyBufferToBuffer(vA.buffer, vA.byteOffset + r * rowV, stackedV.buffer, 2 * r * rowV, rowV);
    encoder.copyBufferToBuffer(vB.buffer, vB.byteOffset + r * rowV, stackedV.buffer, (2 * r + 1) * rowV, rowV);
    encoder.copyBufferToBuffer(sA.buffer, sA.byteOffset + r * rowS, stackedS.buffer, 2 * r * rowS, rowS);
    encoder.copyBufferToBuffer(sB.buffer, sB.byteOffset + r * rowS, stackedS.buffer, (2 * r + 1) * rowS, rowS);
  }
  const merged = mask ? ctx.empty([n, h, d], dtype) : outV;
  const mergedS = mask ? ctx.empty([n, h], 'f32') : outS;
  const uniform = encodeMergeStates(ctx, encoder, {
    config: { vDtype: dtype, outDtype: dtype, ragged: false, skipSingle: false, sinks: false, writeLse: true },
    numRows: n,
    numHeads: h,
    headDim: d,
    statesPerRow: 2,
    v: stackedV.buffer,
    s: stackedS.buffer,
    out: merged.buffer,
    outOffset: merged.offset,
    lse: mergedS.buffer,
    lseOffset: mergedS.offset,
  });
  if (mask) {
    // Copy merged rows back only where the mask is set.
    for (let r = 0; r < n; r++) {
      if (!mask[r]) continue;
      encoder.copyBufferToBuffer(merged.buffer, r * rowV, outV.buffer, outV.byteOffset + r * rowV, rowV);
      encoder.copyBufferToBuffer(mergedS.buffer, r * rowS, outS.buffer, outS.byteOffset + r * rowS, rowS);
    }
  }
  ctx.submit([encoder.finish()]);
  uniform?.destroy();
  for (const t of [stackedV, stackedS, ...(mask ? [merged, mergedS] : [])]) t.destroy();
}

/** The dtype check shared by callers that pick merge output dtypes. */
export function mergeableDType(dtype: DType, argument: string): FloatDType {
  assertFloatDType(dtype, argument);
  return dtype;
}
