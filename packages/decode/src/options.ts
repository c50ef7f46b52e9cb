/** Option parsing shared by the decode entry points: FlashInfer's defaults, typed errors. */
import { type DType, type FloatDType, UnsupportedFeatureError, ValueError, parseDType } from '@webinfer/core-buffers';
import type { PosEncodingMode } from './shaders/batch-decode.wgsl';

export const SUPPORTED_HEAD_DIMS = [64, 128, 256, 512] as const;

export function parsePosEncoding(mode: string | undefined, argument = 'posEncodingMode'): PosEncodingMode {
  const m = mode ?? 'NONE';
  if (m === 'NONE' || m === 'ROPE_LLAMA' || m === 'ALIBI') return m;
  throw new ValueError(`expected 'NONE', 'ROPE_LLAMA' or 'ALIBI', got '${m}'`, argument);
}

export function parseWindowLeft(w: number | undefined, argument = 'windowLeft'): number {
  const v = w ?? -1;
  if (!Number.isInteger(v) || v < -1) throw new ValueError(`must be -1 (off) or a non-negative integer, got ${v}`, argument);
  return v;
}

export function parseNonNegative(x: number | undefined, fallback: number, argument: string): number {
  const v = x ?? fallback;
  if (!Number.isFinite(v) || v < 0) throw new ValueError(`must be a finite number >= 0, got ${v}`, argument);
  return v;
}

export function parsePositive(x: number | undefined, fallback: number, argument: string): number {
  const v = x ?? fallback;
  if (!Number.isFinite(v) || v <= 0) throw new ValueError(`must be a finite number > 0, got ${v}`, argument);
  return v;
}

export function parseScale(x: number | undefined, argument: string): number {
  const v = x ?? 1;
  if (!Number.isFinite(v)) throw new ValueError(`must be finite, got ${v}`, argument);
  return v;
}

const Q_DTYPES: readonly DType[] = ['f16', 'bf16', 'f32'];
const KV_DTYPES: readonly DType[] = ['f16', 'bf16', 'f32', 'fp8_e4m3', 'fp8_e5m2'];

export function parseQDType(name: string | undefined, fallback: string, argument: string): FloatDType {
  const d = parseDType(name ?? fallback, argument);
  if (!Q_DTYPES.includes(d)) throw new UnsupportedFeatureError(`${d} is not supported; use f16, bf16 or f32`, argument);
  return d as FloatDType;
}

export function parseKVDType(name: string | undefined, fallback: string, argument: string): FloatDType {
  const d = parseDType(name ?? fallback, argument);
  if (!KV_DTYPES.includes(d)) {
    throw new UnsupportedFeatureError(`${d} is not supported; use f16, bf16, f32, fp8_e4m3 or fp8_e5m2`, argument);
  }
  return d as FloatDType;
}

export function checkHeads(numQoHeads: number, numKvHeads: number): number {
  for (const [name, v] of [['numQoHeads', numQoHeads], ['numKvHeads', numKvHeads]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ValueError(`must be a positive integer, got ${v}`, name);
  }
  if (numQoHeads % numKvHeads !== 0) {
    throw new ValueError(`${numQoHeads} query heads are not a multiple of ${numKvHeads} kv heads`, 'numQoHeads');
  }
  return numQoHeads / numKvHeads;
}

export function checkHeadDim(headDim: number, argument = 'headDim'): void {
  if (!(SUPPORTED_HEAD_DIMS as readonly number[]).includes(headDim)) {
    throw new UnsupportedFeatureError(`head_dim ${headDim} is not supported; use ${SUPPORTED_HEAD_DIMS.join(', ')}`, argument);
  }
}
