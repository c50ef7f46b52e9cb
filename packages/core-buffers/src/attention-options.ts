/**
 * Option parsing shared by every attention family: FlashInfer's defaults (spec §0.3), one typed
 * error per bad value, naming the argument.
 */
import { type DType, parseDType } from './dtype';
import { UnsupportedFeatureError, ValueError } from './errors';
import type { FloatDType } from './wgsl/dtype';

export type PosEncodingMode = 'NONE' | 'ROPE_LLAMA' | 'ALIBI';

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

/** q and o: f16, bf16 or f32. */
export function parseQDType(name: string | undefined, fallback: string, argument: string): FloatDType {
  const d = parseDType(name ?? fallback, argument);
  if (!Q_DTYPES.includes(d)) throw new UnsupportedFeatureError(`${d} is not supported; use f16, bf16 or f32`, argument);
  return d as FloatDType;
}

/** KV: f16, bf16, f32 or fp8 (e4m3, e5m2). */
export function parseKVDType(name: string | undefined, fallback: string, argument: string): FloatDType {
  const d = parseDType(name ?? fallback, argument);
  if (!KV_DTYPES.includes(d)) {
    throw new UnsupportedFeatureError(`${d} is not supported; use f16, bf16, f32, fp8_e4m3 or fp8_e5m2`, argument);
  }
  return d as FloatDType;
}

/** Checks the head counts and returns the GQA group size. */
export function checkHeads(numQoHeads: number, numKvHeads: number): number {
  for (const [name, v] of [['numQoHeads', numQoHeads], ['numKvHeads', numKvHeads]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ValueError(`must be a positive integer, got ${v}`, name);
  }
  if (numQoHeads % numKvHeads !== 0) {
    throw new ValueError(`${numQoHeads} query heads are not a multiple of ${numKvHeads} kv heads`, 'numQoHeads');
  }
  return numQoHeads / numKvHeads;
}

/** FlashInfer's ALiBi + soft cap applies sm_scale twice (spec §0.1); we refuse the combination. */
export function checkAlibiSoftCap(posEncoding: PosEncodingMode, softCap: number): void {
  if (posEncoding === 'ALIBI' && softCap > 0) {
    throw new UnsupportedFeatureError('ALiBi with a logits soft cap is not supported (FlashInfer applies sm_scale twice there)', 'logitsSoftCap');
  }
}

/** Per-request lengths within [0, max] (the block-table entry points' max_seq_len arguments). */
export function checkLengths(lens: ArrayLike<number>, max: number, argument: string): void {
  for (let i = 0; i < lens.length; i++) {
    if (!(lens[i] >= 0 && lens[i] <= max)) throw new ValueError(`request ${i} has length ${lens[i]}, outside [0, ${max}]`, argument);
  }
}
