/**
 * appendPagedKVCache: FlashInfer's `append_paged_kv_cache` — scatter new K/V rows into their
 * pages on the GPU. The copy moves whole u32 words, so it is exact for every dtype (fp8 too).
 */
import type { GpuContext } from './context';
import { dtypeBytes } from './dtype';
import { DTypeError, IndexRangeError, LayoutError, ShapeError } from './errors';
import { bindGroup, encodeDispatch, foldWorkgroups, getKernel } from './kernel-cache';
import {
  type IntArray,
  type KVLayout,
  type PagedKVCacheInput,
  pagedAddressingUniforms,
  pagedAddressingValues,
  resolvePagedKVCache,
  validatePagedKVIndices,
  wgslPagedAddress,
  getSeqLens,
} from './paged-kv';
import { Tensor } from './tensor';
import { UniformSchema } from './uniforms';
import { elementsPerWord } from './wgsl/dtype';

const WORKGROUP = 256;

const appendUniforms = new UniformSchema('AppendParams', {
  nnz: 'u32',
  num_heads: 'u32',
  row_words: 'u32',
  words_per_elem_shift: 'u32',
  page_size: 'u32',
  batch_size: 'u32',
  num_indices: 'u32',
  max_pages: 'u32',
  groups_x: 'u32',
  src_k_offset: 'u32',
  src_k_stride_token: 'u32',
  src_k_stride_head: 'u32',
  src_v_offset: 'u32',
  src_v_stride_token: 'u32',
  src_v_stride_head: 'u32',
  ...pagedAddressingUniforms('k'),
  ...pagedAddressingUniforms('v'),
});

interface AppendShaderConfig {
  /** K and V of the cache live in one buffer (the one-tensor form): bind it once. */
  sharedCache: boolean;
}

/** Element offsets are converted to word offsets by `>> shift` (1, 2 or 4 elements a word). */
function appendWgsl(config: AppendShaderConfig): string {
  const cacheBindings = config.sharedCache
    ? '@group(0) @binding(7) var<storage, read_write> cache_k: array<u32>;'
    : '@group(0) @binding(7) var<storage, read_write> cache_k: array<u32>;\n@group(0) @binding(8) var<storage, read_write> cache_v: array<u32>;';
  const cacheV = config.sharedCache ? 'cache_k' : 'cache_v';
  return `${appendUniforms.wgsl()}
@group(0) @binding(0) var<uniform> params: AppendParams;
@group(0) @binding(1) var<storage, read> src_k: array<u32>;
@group(0) @binding(2) var<storage, read> src_v: array<u32>;
@group(0) @binding(3) var<storage, read> batch_indices: array<i32>;
@group(0) @binding(4) var<storage, read> positions: array<i32>;
@group(0) @binding(5) var<storage, read> kv_indices: array<i32>;
@group(0) @binding(6) var<storage, read> kv_indptr: array<i32>;
${cacheBindings}

${wgslPagedAddress('k')}
${wgslPagedAddress('v')}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = (wg.x + wg.y * params.groups_x) * ${WORKGROUP}u + lid;
  let total = params.nnz * params.num_heads * params.row_words;
  if (id >= total) { return; }
  let w = id % params.row_words;
  let head = (id / params.row_words) % params.num_heads;
  let row = id / (params.row_words * params.num_heads);
  let b = batch_indices[row];
  let pos = positions[row];
  // Rows whose request or position is out of range are dropped: never write outside the cache.
  if (b < 0 || u32(b) >= params.batch_size || pos < 0) { return; }
  let idx = kv_indptr[b] + pos / i32(params.page_size);
  if (idx < 0 || idx >= kv_indptr[b + 1] || u32(idx) >= params.num_indices) { return; }
  let page = kv_indices[idx];
  if (page < 0 || u32(page) >= params.max_pages) { return; }
  let slot = u32(pos) % params.page_size;
  let shift = params.words_per_elem_shift;
  let src_k_word = ((params.src_k_offset + row * params.src_k_stride_token + head * params.src_k_stride_head) >> shift) + w;
  let src_v_word = ((params.src_v_offset + row * params.src_v_stride_token + head * params.src_v_stride_head) >> shift) + w;
  cache_k[(k_elem(u32(page), slot, head) >> shift) + w] = src_k[src_k_word];
  ${cacheV}[(v_elem(u32(page), slot, head) >> shift) + w] = src_v[src_v_word];
}
`;
}

/** A host int array (validated on the CPU) or an i32 GPU tensor. */
export type IndexInput = IntArray | Tensor;

function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}

function uploadIndex(ctx: GpuContext, x: IndexInput, argument: string, temps: Tensor[]): Tensor {
  if (isTensor(x)) {
    if (x.dtype !== 'i32') throw new DTypeError(`expected i32, got ${x.dtype}`, argument);
    if (x.rank !== 1 || !x.isContiguous()) throw new ShapeError('expected a contiguous 1-D tensor', argument);
    if (x.offset !== 0) throw new LayoutError('index tensors must start at offset 0', argument);
    return x;
  }
  const data = x instanceof Int32Array ? x : Int32Array.from(x as ArrayLike<number>);
  // Storage bindings cannot be empty: keep at least one element.
  const t = ctx.tensor(data.length > 0 ? data : new Int32Array(1), [Math.max(1, data.length)], 'i32', argument);
  temps.push(t);
  return t;
}

function wordAligned(values: number[], perWord: number): boolean {
  return values.every((v) => v % perWord === 0);
}

export interface AppendPagedKVCacheOptions {
  kvLayout?: KVLayout;
  /** Encode into this encoder instead of submitting at once. */
  encoder?: GPUCommandEncoder;
}

/**
 * Writes `appendKey`/`appendValue` rows (`[nnz, Hkv, D]`) into the paged cache: row i goes to
 * request `batchIndices[i]` at position `positions[i]` (see getBatchIndicesPositions).
 * Index arguments are host arrays (validated on the CPU first) or i32 GPU tensors (rows out of
 * range are skipped on the GPU). The dtype of the rows must equal the cache's.
 *
 * @example
 * const { batchIndices, positions } = getBatchIndicesPositions(appendIndptr, seqLens, nnz);
 * appendPagedKVCache(ctx, k, v, batchIndices, positions, cache, indices, indptr, lastPageLen);
 */
export function appendPagedKVCache(
  ctx: GpuContext,
  appendKey: Tensor,
  appendValue: Tensor,
  batchIndices: IndexInput,
  positions: IndexInput,
  pagedKvCache: PagedKVCacheInput,
  kvIndices: IndexInput,
  kvIndptr: IndexInput,
  kvLastPageLen: IndexInput,
  options: AppendPagedKVCacheOptions = {},
): void {
  ctx.assertLive();
  const layout = options.kvLayout ?? 'NHD';
  const cache = resolvePagedKVCache(pagedKvCache, layout);
  const { numKvHeads, headDimQk, headDimVo, dtype } = cache;
  appendKey.expect('appendKey', [dtype], [null, numKvHeads, headDimQk]);
  const nnz = appendKey.shape[0];
  appendValue.expect('appendValue', [dtype], [nnz, numKvHeads, headDimVo]);
  if (headDimQk !== headDimVo) {
    throw new ShapeError(`K and V head dims differ (${headDimQk} vs ${headDimVo}); append them separately`, 'pagedKvCache');
  }
  for (const [name, t] of [['appendKey', appendKey], ['appendValue', appendValue]] as const) {
    if (t.strides[2] !== 1) throw new LayoutError('the head dimension must be contiguous', name);
  }
  const perWord = elementsPerWord(dtype);
  const rowBytes = headDimQk * dtypeBytes(dtype);
  if (rowBytes % 4 !== 0) {
    throw new LayoutError(`head_dim ${headDimQk} of ${dtype} is not a whole number of 4-byte words`, 'pagedKvCache');
  }
  const offsets = [
    appendKey.offset, appendKey.strides[0], appendKey.strides[1],
    appendValue.offset, appendValue.strides[0], appendValue.strides[1],
    ...Object.values(cache.kAddr), ...Object.values(cache.vAddr),
  ];
  if (!wordAligned(offsets, perWord)) {
    throw new LayoutError(`offsets and strides must be multiples of ${perWord} elements for ${dtype}`, 'appendKey');
  }

  // Host index arrays: check everything before any GPU work.
  const allHost = [batchIndices, positions, kvIndices, kvIndptr, kvLastPageLen].every((x) => !isTensor(x));
  let batchSize: number;
  let numIndices: number;
  if (allHost) {
    const paged = validatePagedKVIndices({
      indptr: kvIndptr as IntArray,
      indices: kvIndices as IntArray,
      lastPageLen: kvLastPageLen as IntArray,
      pageSize: cache.pageSize,
      maxNumPages: cache.maxNumPages,
    });
    batchSize = paged.indptr.length - 1;
    numIndices = paged.indices.length;
    const seqLens = getSeqLens(paged.indptr, paged.lastPageLen, cache.pageSize);
    const bi = batchIndices as IntArray;
    const pos = positions as IntArray;
    if (bi.length !== nnz) throw new ShapeError(`has ${bi.length} entries, expected nnz = ${nnz}`, 'batchIndices');
    if (pos.length !== nnz) throw new ShapeError(`has ${pos.length} entries, expected nnz = ${nnz}`, 'positions');
    for (let i = 0; i < nnz; i++) {
      const b = bi[i];
      if (!(b >= 0 && b < batchSize)) {
        throw new IndexRangeError(`row ${i}: request ${b} is outside [0, ${batchSize})`, 'batchIndices');
      }
      if (!(pos[i] >= 0 && pos[i] < seqLens[b])) {
        throw new IndexRangeError(`row ${i}: position ${pos[i]} is outside request ${b}'s [0, ${seqLens[b]})`, 'positions');
      }
    }
  } else {
    const lens = [kvIndptr, kvIndices].map((x) => (isTensor(x) ? x.shape[0] : (x as IntArray).length));
    batchSize = lens[0] - 1;
    numIndices = lens[1];
  }
  if (nnz === 0) return;

  const temps: Tensor[] = [];
  const bufs = [
    uploadIndex(ctx, batchIndices, 'batchIndices', temps),
    uploadIndex(ctx, positions, 'positions', temps),
    uploadIndex(ctx, kvIndices, 'kvIndices', temps),
    uploadIndex(ctx, kvIndptr, 'kvIndptr', temps),
  ];
  const sharedCache = cache.k.buffer === cache.v.buffer;
  const kernel = getKernel(ctx, {
    id: 'core/append-paged-kv',
    config: { sharedCache },
    wgsl: appendWgsl,
    bindings: ['uniform', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage',
      'read-only-storage', 'read-only-storage', 'storage', ...(sharedCache ? [] : ['storage' as const])],
  });
  const rowWords = rowBytes / 4;
  const groups = foldWorkgroups(ctx, Math.ceil((nnz * numKvHeads * rowWords) / WORKGROUP));
  const uniform = appendUniforms.createBuffer(ctx.device, {
    nnz,
    num_heads: numKvHeads,
    row_words: rowWords,
    words_per_elem_shift: Math.log2(perWord),
    page_size: cache.pageSize,
    batch_size: batchSize,
    num_indices: numIndices,
    max_pages: cache.maxNumPages,
    groups_x: groups[0],
    src_k_offset: appendKey.offset,
    src_k_stride_token: appendKey.strides[0],
    src_k_stride_head: appendKey.strides[1],
    src_v_offset: appendValue.offset,
    src_v_stride_token: appendValue.strides[0],
    src_v_stride_head: appendValue.strides[1],
    ...pagedAddressingValues('k', cache.kAddr),
    ...pagedAddressingValues('v', cache.vAddr),
  } as never, 'core/append-paged-kv');
  const group = bindGroup(ctx, kernel, [
    uniform,
    appendKey.buffer,
    appendValue.buffer,
    ...bufs.map((t) => t.buffer),
    cache.k.buffer,
    ...(sharedCache ? [] : [cache.v.buffer]),
  ]);
  const encoder = options.encoder ?? ctx.device.createCommandEncoder({ label: 'core/append-paged-kv' });
  encodeDispatch(encoder, kernel, group, groups);
  if (!options.encoder) ctx.submit([encoder.finish()]);
  // Safe right after submit: WebGPU keeps buffers alive until the work that uses them is done.
  // With the caller's encoder (not submitted yet) they are left to garbage collection.
  if (!options.encoder) {
    uniform.destroy();
    for (const t of temps) t.destroy();
  }
}
