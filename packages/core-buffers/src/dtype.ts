/**
 * Element types and exact host-side conversions.
 *
 * f16/bf16 round to nearest even with subnormals and inf/NaN, as a GPU or PyTorch cast does.
 * fp8 (e4m3fn, e5m2) round to nearest even and saturate finite overflow to the largest finite
 * value (±inf too), as CUDA's `__nv_fp8_e4m3(float)` constructor (`__NV_SATFINITE`) does, which is
 * how FlashInfer's kernels convert; NaN stays NaN.
 */
import { DTypeError } from './errors';

export type DType = 'f32' | 'f16' | 'bf16' | 'fp8_e4m3' | 'fp8_e5m2' | 'i32' | 'u32' | 'i8' | 'u8';

export interface DTypeInfo {
  readonly name: DType;
  /** Bytes per element. */
  readonly bytes: 1 | 2 | 4;
  /** Floating point (decoded to f32 on the host and in shaders). */
  readonly isFloat: boolean;
}

export const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  f32: { name: 'f32', bytes: 4, isFloat: true },
  f16: { name: 'f16', bytes: 2, isFloat: true },
  bf16: { name: 'bf16', bytes: 2, isFloat: true },
  fp8_e4m3: { name: 'fp8_e4m3', bytes: 1, isFloat: true },
  fp8_e5m2: { name: 'fp8_e5m2', bytes: 1, isFloat: true },
  i32: { name: 'i32', bytes: 4, isFloat: false },
  u32: { name: 'u32', bytes: 4, isFloat: false },
  i8: { name: 'i8', bytes: 1, isFloat: false },
  u8: { name: 'u8', bytes: 1, isFloat: false },
};

/** Aliases accepted wherever a dtype is named (FlashInfer/PyTorch spellings). */
const ALIASES: Record<string, DType> = {
  float32: 'f32',
  float: 'f32',
  float16: 'f16',
  half: 'f16',
  bfloat16: 'bf16',
  float8_e4m3fn: 'fp8_e4m3',
  e4m3: 'fp8_e4m3',
  float8_e5m2: 'fp8_e5m2',
  e5m2: 'fp8_e5m2',
  int32: 'i32',
  uint32: 'u32',
  int8: 'i8',
  uint8: 'u8',
};

/** Accepts a dtype name or a FlashInfer/PyTorch alias (`'float16'`, `'bfloat16'`, ...). */
export function parseDType(name: string, argument = 'dtype'): DType {
  if (name in DTYPES) return name as DType;
  const alias = ALIASES[name];
  if (alias) return alias;
  throw new DTypeError(
    `unknown dtype '${name}'; expected one of ${Object.keys(DTYPES).join(', ')}`,
    argument,
  );
}

export function dtypeBytes(dtype: DType): number {
  return DTYPES[dtype].bytes;
}

export function isFloatDType(dtype: DType): boolean {
  return DTYPES[dtype].isFloat;
}

// ---------------------------------------------------------------------------------------------
// Generic minifloat encoder: exact, since every f32 value and every step below is exact in f64.

interface MiniFloat {
  expBits: number;
  manBits: number;
  bias: number;
  /** Largest finite magnitude. */
  maxFinite: number;
  /** What finite overflow (after rounding) and ±inf become: 'inf' or the largest finite code. */
  overflow: 'inf' | 'saturate';
  /** Code (without sign) of +inf, or -1 when the format has none. */
  infCode: number;
  /** Code (without sign) written for NaN. */
  nanCode: number;
}

const F16: MiniFloat = {
  expBits: 5,
  manBits: 10,
  bias: 15,
  maxFinite: 65504,
  overflow: 'inf',
  infCode: 0x7c00,
  nanCode: 0x7e00,
};
const E4M3: MiniFloat = {
  expBits: 4,
  manBits: 3,
  bias: 7,
  maxFinite: 448,
  overflow: 'saturate',
  infCode: -1,
  nanCode: 0x7f,
};
const E5M2: MiniFloat = {
  expBits: 5,
  manBits: 2,
  bias: 15,
  maxFinite: 57344,
  overflow: 'saturate',
  infCode: 0x7c,
  nanCode: 0x7f,
};

/** Round half to even, for non-negative x. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const r = x - f;
  if (r > 0.5) return f + 1;
  if (r < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function floorLog2(x: number): number {
  let e = Math.floor(Math.log2(x));
  // Math.log2 may be off by one near powers of two; fix it exactly.
  if (2 ** e > x) e -= 1;
  else if (2 ** (e + 1) <= x) e += 1;
  return e;
}

function encodeMiniFloat(value: number, fmt: MiniFloat): number {
  const signBit = 1 << (fmt.expBits + fmt.manBits);
  const x = Math.fround(value);
  if (Number.isNaN(x)) return fmt.nanCode;
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  const ax = Math.abs(x);
  const maxCode = ((1 << (fmt.expBits + fmt.manBits)) - 1) & encodeMagnitude(fmt.maxFinite, fmt);
  const overflowCode = fmt.overflow === 'inf' ? fmt.infCode : maxCode;
  if (ax === Number.POSITIVE_INFINITY) return sign | overflowCode;
  if (ax === 0) return sign;
  const minNormalExp = 1 - fmt.bias;
  const e = Math.max(floorLog2(ax), minNormalExp);
  const quantum = 2 ** (e - fmt.manBits);
  const q = roundHalfEven(ax / quantum) * quantum;
  if (q > fmt.maxFinite) return sign | overflowCode;
  return sign | encodeMagnitude(q, fmt);
}

/** Encodes an exactly representable non-negative magnitude. */
function encodeMagnitude(q: number, fmt: MiniFloat): number {
  if (q === 0) return 0;
  const minNormalExp = 1 - fmt.bias;
  if (q < 2 ** minNormalExp) return q / 2 ** (minNormalExp - fmt.manBits);
  const e = floorLog2(q);
  const mant = (q / 2 ** e - 1) * 2 ** fmt.manBits;
  return ((e + fmt.bias) << fmt.manBits) | mant;
}

function decodeMiniFloat(code: number, fmt: MiniFloat): number {
  const signBit = 1 << (fmt.expBits + fmt.manBits);
  const sign = code & signBit ? -1 : 1;
  const mag = code & (signBit - 1);
  const expField = mag >> fmt.manBits;
  const mant = mag & ((1 << fmt.manBits) - 1);
  const expMax = (1 << fmt.expBits) - 1;
  if (fmt.infCode >= 0 && expField === expMax) {
    return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  }
  // e4m3fn: only S.1111.111 is NaN; the rest of the top binade is finite.
  if (fmt.infCode < 0 && mag === (signBit - 1)) return Number.NaN;
  if (expField === 0) return sign * mant * 2 ** (1 - fmt.bias - fmt.manBits);
  return sign * (1 + mant / 2 ** fmt.manBits) * 2 ** (expField - fmt.bias);
}

// ---------------------------------------------------------------------------------------------
// Public scalar conversions (bits are plain numbers).

export function f32ToF16Bits(value: number): number {
  return encodeMiniFloat(value, F16);
}

let f16Table: Float32Array | undefined;
export function f16BitsToF32(bits: number): number {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = decodeMiniFloat(i, F16);
  }
  return f16Table[bits & 0xffff];
}

const f32View = new Float32Array(1);
const u32View = new Uint32Array(f32View.buffer);

/** Bits of `value` as an f32. */
export function f32Bits(value: number): number {
  f32View[0] = value;
  return u32View[0];
}

export function bitsToF32(bits: number): number {
  u32View[0] = bits >>> 0;
  return f32View[0];
}

export function f32ToBf16Bits(value: number): number {
  const bits = f32Bits(value);
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) & 0x8000) | 0x7fc0;
  // Round to nearest even on the 16 dropped bits; a carry into the exponent is correct rounding.
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

export function bf16BitsToF32(bits: number): number {
  return bitsToF32((bits & 0xffff) << 16);
}

export function f32ToFp8E4m3Bits(value: number): number {
  return encodeMiniFloat(value, E4M3);
}

export function f32ToFp8E5m2Bits(value: number): number {
  return encodeMiniFloat(value, E5M2);
}

const e4m3Table = Float32Array.from({ length: 256 }, (_, i) => decodeMiniFloat(i, E4M3));
const e5m2Table = Float32Array.from({ length: 256 }, (_, i) => decodeMiniFloat(i, E5M2));

export function fp8E4m3BitsToF32(bits: number): number {
  return e4m3Table[bits & 0xff];
}

export function fp8E5m2BitsToF32(bits: number): number {
  return e5m2Table[bits & 0xff];
}

// ---------------------------------------------------------------------------------------------
// Whole arrays.

/** A typed array that holds a dtype's own bits (taken as is by `ctx.tensor`). */
export type StorageArray =
  | Float32Array
  | Uint16Array
  | Uint8Array
  | Int32Array
  | Uint32Array
  | Int8Array;

/** The typed array class that holds `dtype`'s bits. */
export function storageArrayFor(dtype: DType, length: number): StorageArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(length);
    case 'f16':
    case 'bf16':
      return new Uint16Array(length);
    case 'fp8_e4m3':
    case 'fp8_e5m2':
    case 'u8':
      return new Uint8Array(length);
    case 'i8':
      return new Int8Array(length);
    case 'i32':
      return new Int32Array(length);
    case 'u32':
      return new Uint32Array(length);
  }
}

/** Is `data` already in `dtype`'s storage form (bits, not values)? */
export function isStorageArrayOf(data: ArrayLike<number>, dtype: DType): data is StorageArray {
  switch (dtype) {
    case 'f32':
      return data instanceof Float32Array;
    case 'f16':
    case 'bf16':
      return data instanceof Uint16Array;
    case 'fp8_e4m3':
    case 'fp8_e5m2':
    case 'u8':
      return data instanceof Uint8Array;
    case 'i8':
      return data instanceof Int8Array;
    case 'i32':
      return data instanceof Int32Array;
    case 'u32':
      return data instanceof Uint32Array;
  }
}

const ENCODERS: Partial<Record<DType, (v: number) => number>> = {
  f16: f32ToF16Bits,
  bf16: f32ToBf16Bits,
  fp8_e4m3: f32ToFp8E4m3Bits,
  fp8_e5m2: f32ToFp8E5m2Bits,
};

const DECODERS: Partial<Record<DType, (b: number) => number>> = {
  f16: f16BitsToF32,
  bf16: bf16BitsToF32,
  fp8_e4m3: fp8E4m3BitsToF32,
  fp8_e5m2: fp8E5m2BitsToF32,
};

/**
 * Converts numbers to `dtype`'s storage. Floats are rounded to f32 first (as a Float32Array
 * would hold them), then to the dtype. Integers must be integral and in range.
 */
export function encodeArray(values: ArrayLike<number>, dtype: DType, argument = 'data'): StorageArray {
  const out = storageArrayFor(dtype, values.length);
  const enc = ENCODERS[dtype];
  if (enc) {
    for (let i = 0; i < values.length; i++) out[i] = enc(values[i]);
    return out;
  }
  if (!isFloatDType(dtype)) {
    const probe = storageArrayFor(dtype, 1);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      probe[0] = v;
      if (!Number.isInteger(v) || probe[0] !== v) {
        throw new DTypeError(`element ${i} (${v}) is not representable as ${dtype}`, argument);
      }
    }
  }
  (out as Float32Array).set(values as ArrayLike<number>);
  return out;
}

/** Decodes storage bits to values: floats come back as a Float32Array, integers as they are. */
export function decodeArray(bits: StorageArray, dtype: DType): Float32Array | Int32Array | Uint32Array | Int8Array | Uint8Array {
  const dec = DECODERS[dtype];
  if (dec) {
    const out = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = dec(bits[i]);
    return out;
  }
  return bits as Float32Array | Int32Array | Uint32Array | Int8Array | Uint8Array;
}
