/** Prefill's plan options: FlashInfer's defaults, head dims, and custom masks packed per request. */
import {
  checkAlibiSoftCap,
  checkHeads,
  type FloatDType,
  type IntArray,
  type PosEncodingMode,
  parseKVDType,
  parseNonNegative,
  parsePosEncoding,
  parsePositive,
  parseQDType,
  parseWindowLeft,
  ShapeError,
  UnsupportedFeatureError,
  ValueError,
  validateIndptr,
} from '@webinfer/core-buffers';
import { segmentPackbits } from './packbits';

export const HEAD_DIMS_QK = [64, 128, 192, 256] as const;
export const HEAD_DIMS_VO = [64, 128, 256] as const;

/** Options every prefill plan takes (FlashInfer names, camelCase). */
export interface PrefillPlanOptions {
  numQoHeads: number;
  numKvHeads: number;
  headDimQk: number;
  /** Default headDimQk. */
  headDimVo?: number;
  /** Flattened bool `[sum_b qo_len_b * kv_len_b]` (row-major per request); true keeps. Replaces causal. */
  customMask?: ArrayLike<boolean | number>;
  /** Already packed little-endian bits, each request starting at a fresh byte. */
  packedCustomMask?: Uint8Array;
  /** Byte offsets of each request's packed mask (default cumsum(ceil(qo_len * kv_len / 8))). */
  maskIndptr?: IntArray;
  /** Bottom-right aligned causal mask. Default false. */
  causal?: boolean;
  posEncodingMode?: PosEncodingMode;
  /** Accepted for API parity; webinfer always reduces QKᵀ in f32. */
  useFp16QkReduction?: boolean;
  smScale?: number;
  windowLeft?: number;
  logitsSoftCap?: number;
  ropeScale?: number;
  ropeTheta?: number;
  /** Default f16. */
  qDataType?: string;
  /** Default qDataType. */
  kvDataType?: string;
  /** Default qDataType. */
  oDataType?: string;
  fixedSplitSize?: number;
  disableSplitKv?: boolean;
  /**
   * true: the tensor-core (subgroup-matrix) kernel, an error where the device lacks it; false: the
   * f32 kernel; unset: tensor cores wherever the device and the config allow.
   */
  useTensorCores?: boolean;
  /** webinfer extension: workgroups that keep the device busy (default 264). */
  targetWorkgroups?: number;
  /** Tests/bench only: force the f32 kernel's tile [rows, keys, wide?]. */
  debugTile?: [number, number, ('none' | 'kv' | 'all' | 'k')?];
  /** webinfer extension (BatchAttention): requests (1 = skip) whose rows another kernel writes. */
  skipRequests?: Uint8Array;
  /** Bench only: subgroups (16 query rows each) per tensor-core workgroup (default 4). */
  debugTensorCoreSubgroups?: number;
  /** Bench only: keys per tensor-core K/V tile (16 or 32; default 32, else 16 where 32 doesn't fit). */
  debugTensorCoreKeys?: 16 | 32;
  /** Bench profiling only: tensor-core phases left out (results are wrong). */
  debugTensorCoreSkip?: ('load' | 'store' | 'qk' | 'softmax' | 'pv')[];
  /** Bench profiling only: f32-kernel phases left out (results are wrong). */
  debugSimtSkip?: ('load' | 'qk' | 'pv')[];
  /** Tests/bench only: the f32 kernel's K/V load mode (default 'prefetch'). */
  debugSimtLoadMode?: 'loop' | 'batch' | 'prefetch';
  /** Tests/bench only: the f32 kernel's loop unrolling and full-tile mask skip. */
  debugSimtTuning?: { qkUnroll?: number; pvUnroll?: number; fullTiles?: boolean; pInRegisters?: boolean; lateFetch?: boolean; swizzle?: boolean };
}

export interface ParsedPrefillOptions {
  numQoHeads: number;
  numKvHeads: number;
  headDimQk: number;
  headDimVo: number;
  causal: boolean;
  posEncoding: PosEncodingMode;
  windowLeft: number;
  softCap: number;
  smScale: number;
  ropeScale: number;
  ropeTheta: number;
  qDtype: FloatDType;
  kvDtype: FloatDType;
  oDtype: FloatDType;
}

export function parsePrefillOptions(o: PrefillPlanOptions): ParsedPrefillOptions {
  checkHeads(o.numQoHeads, o.numKvHeads);
  const headDimVo = o.headDimVo ?? o.headDimQk;
  if (!(HEAD_DIMS_QK as readonly number[]).includes(o.headDimQk)) {
    throw new UnsupportedFeatureError(`head_dim_qk ${o.headDimQk} is not supported; use ${HEAD_DIMS_QK.join(', ')}`, 'headDimQk');
  }
  if (!(HEAD_DIMS_VO as readonly number[]).includes(headDimVo)) {
    throw new UnsupportedFeatureError(`head_dim_vo ${headDimVo} is not supported; use ${HEAD_DIMS_VO.join(', ')}`, 'headDimVo');
  }
  const posEncoding = parsePosEncoding(o.posEncodingMode);
  if (posEncoding === 'ROPE_LLAMA' && headDimVo !== o.headDimQk) {
    // RoPE rotates q and k over the qk dim only; FlashInfer's fa2 kernels need equal dims here.
    throw new UnsupportedFeatureError('ROPE_LLAMA needs headDimVo == headDimQk', 'posEncodingMode');
  }
  const softCap = parseNonNegative(o.logitsSoftCap, 0, 'logitsSoftCap');
  checkAlibiSoftCap(posEncoding, softCap);
  const qDtype = parseQDType(o.qDataType, 'f16', 'qDataType');
  return {
    numQoHeads: o.numQoHeads,
    numKvHeads: o.numKvHeads,
    headDimQk: o.headDimQk,
    headDimVo,
    causal: o.causal ?? false,
    posEncoding,
    windowLeft: parseWindowLeft(o.windowLeft),
    softCap,
    smScale: parsePositive(o.smScale, 1 / Math.sqrt(o.headDimQk), 'smScale'),
    ropeScale: parsePositive(o.ropeScale, 1, 'ropeScale'),
    ropeTheta: parsePositive(o.ropeTheta, 1e4, 'ropeTheta'),
    qDtype,
    kvDtype: parseKVDType(o.kvDataType, qDtype, 'kvDataType'),
    oDtype: parseQDType(o.oDataType, qDtype, 'oDataType'),
  };
}

/**
 * The per-request masks as packed bytes with byte offsets, from `customMask` (packed here, each
 * request at a fresh byte) or `packedCustomMask` (+ `maskIndptr` in bytes). Undefined without masks.
 */
export function packRequestMasks(
  o: PrefillPlanOptions,
  qoLens: ArrayLike<number>,
  kvLens: ArrayLike<number>,
): { packed: Uint8Array; byteIndptr: Int32Array } | undefined {
  if (o.customMask === undefined && o.packedCustomMask === undefined) return undefined;
  if (o.customMask !== undefined && o.packedCustomMask !== undefined) {
    throw new ValueError('pass customMask or packedCustomMask, not both', 'customMask');
  }
  const B = qoLens.length;
  const elemIndptr = new Int32Array(B + 1);
  for (let b = 0; b < B; b++) elemIndptr[b + 1] = elemIndptr[b] + qoLens[b] * kvLens[b];
  if (o.customMask !== undefined) {
    if (o.customMask.length !== elemIndptr[B]) {
      throw new ShapeError(`has ${o.customMask.length} elements; the requests need sum(qo_len * kv_len) = ${elemIndptr[B]}`, 'customMask');
    }
    const [packed, byteIndptr] = segmentPackbits(o.customMask, elemIndptr);
    return { packed, byteIndptr };
  }
  const packed = o.packedCustomMask!;
  let byteIndptr: Int32Array;
  if (o.maskIndptr !== undefined) {
    byteIndptr = validateIndptr(o.maskIndptr, 'maskIndptr');
    if (byteIndptr.length !== B + 1) throw new ShapeError(`has ${byteIndptr.length} entries, expected batch_size + 1 = ${B + 1}`, 'maskIndptr');
  } else {
    byteIndptr = new Int32Array(B + 1);
    for (let b = 0; b < B; b++) byteIndptr[b + 1] = byteIndptr[b] + Math.ceil((qoLens[b] * kvLens[b]) / 8);
  }
  for (let b = 0; b < B; b++) {
    const need = Math.ceil((qoLens[b] * kvLens[b]) / 8);
    if (byteIndptr[b + 1] - byteIndptr[b] < need) {
      throw new ShapeError(`request ${b} has ${byteIndptr[b + 1] - byteIndptr[b]} mask bytes, needs ${need}`, 'maskIndptr');
    }
  }
  if (packed.length < byteIndptr[B]) throw new ShapeError(`has ${packed.length} bytes, the requests need ${byteIndptr[B]}`, 'packedCustomMask');
  return { packed, byteIndptr };
}

/** qo_indptr checked against the batch size. */
export function parseQoIndptr(qoIndptr: IntArray, batchSize: number | undefined, argument = 'qoIndptr'): Int32Array {
  const p = validateIndptr(qoIndptr, argument);
  if (batchSize !== undefined && p.length !== batchSize + 1) {
    throw new ShapeError(`has ${p.length} entries, expected batch_size + 1 = ${batchSize + 1}`, argument);
  }
  return p;
}
