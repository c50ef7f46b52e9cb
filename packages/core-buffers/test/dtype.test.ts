import { describe, expect, it } from 'vitest';
import {
  bf16BitsToF32,
  bitsToF32,
  decodeArray,
  encodeArray,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  f32ToFp8E4m3Bits,
  f32ToFp8E5m2Bits,
  fp8E4m3BitsToF32,
  fp8E5m2BitsToF32,
  parseDType,
} from '../src';

const INF = Number.POSITIVE_INFINITY;

describe('f16 host conversion', () => {
  it.each([
    [1, 0x3c00],
    [-2, 0xc000],
    [0.1, 0x2e66],
    [65504, 0x7bff],
    [65519, 0x7bff], // below the midpoint to 65536
    [65520, 0x7c00], // midpoint rounds to even (inf)
    [INF, 0x7c00],
    [-INF, 0xfc00],
    [-0, 0x8000],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // tie to even: 0
    [1.5 * 2 ** -24, 0x0002], // tie to even: 2
    [0.75 * 2 ** -24, 0x0001],
    [1 + 2 ** -11, 0x3c00], // tie to even
    [1 + 3 * 2 ** -11, 0x3c02],
    [Number.NaN, 0x7e00],
  ])('%d -> 0x%s', (value, bits) => {
    expect(f32ToF16Bits(value)).toBe(bits);
  });

  it('round-trips every non-NaN bit pattern exactly', () => {
    for (let b = 0; b < 65536; b++) {
      const v = f16BitsToF32(b);
      if (Number.isNaN(v)) continue;
      if (f32ToF16Bits(v) !== b) throw new Error(`0x${b.toString(16)} -> ${v} -> 0x${f32ToF16Bits(v).toString(16)}`);
    }
  });

  it('rounds every midpoint between neighbours to the even one', () => {
    for (let b = 0; b < 0x7bff; b++) {
      const mid = (f16BitsToF32(b) + f16BitsToF32(b + 1)) / 2;
      const even = b % 2 === 0 ? b : b + 1;
      if (f32ToF16Bits(mid) !== even) throw new Error(`midpoint after 0x${b.toString(16)}`);
    }
  });
});

describe('bf16 host conversion', () => {
  it.each([
    [1, 0x3f80],
    [-1, 0xbf80],
    [1 + 2 ** -8, 0x3f80], // tie to even
    [1 + 3 * 2 ** -8, 0x3f82],
    [3.4e38, 0x7f80], // rounds past the largest finite: inf
    [INF, 0x7f80],
    [Number.NaN, 0x7fc0],
    [bitsToF32(0x00010000), 0x0001], // subnormal kept
  ])('%d -> 0x%s', (value, bits) => {
    expect(f32ToBf16Bits(value)).toBe(bits);
  });

  it('round-trips every non-NaN bit pattern exactly', () => {
    for (let b = 0; b < 65536; b++) {
      const v = bf16BitsToF32(b);
      if (Number.isNaN(v)) continue;
      expect(f32ToBf16Bits(v)).toBe(b);
    }
  });
});

describe('fp8 host conversion (saturating, as FlashInfer casts)', () => {
  it.each([
    [1, 0x38],
    [-1, 0xb8],
    [0.5, 0x30],
    [448, 0x7e],
    [464, 0x7e], // midpoint to 480 rounds to even (448)
    [480, 0x7e], // saturates
    [1e9, 0x7e],
    [INF, 0x7e],
    [-INF, 0xfe],
    [Number.NaN, 0x7f],
    [2 ** -6, 0x08], // smallest normal
    [2 ** -9, 0x01], // smallest subnormal
    [2 ** -10, 0x00], // tie to even
    [1.5 * 2 ** -9, 0x02], // tie to even
    [-0, 0x80],
  ])('e4m3 %d -> 0x%s', (value, bits) => {
    expect(f32ToFp8E4m3Bits(value)).toBe(bits);
  });

  it.each([
    [1, 0x3c],
    [-1.5, 0xbe],
    [57344, 0x7b],
    [1e9, 0x7b],
    [INF, 0x7b],
    [Number.NaN, 0x7f],
    [2 ** -14, 0x04],
    [2 ** -16, 0x01],
    [2 ** -17, 0x00],
  ])('e5m2 %d -> 0x%s', (value, bits) => {
    expect(f32ToFp8E5m2Bits(value)).toBe(bits);
  });

  it('decodes the special codes', () => {
    expect(fp8E4m3BitsToF32(0x7f)).toBeNaN();
    expect(fp8E4m3BitsToF32(0x7e)).toBe(448);
    expect(fp8E4m3BitsToF32(0x78)).toBe(256); // e4m3fn: the top binade is finite
    expect(fp8E5m2BitsToF32(0x7c)).toBe(INF);
    expect(fp8E5m2BitsToF32(0xfc)).toBe(-INF);
    expect(fp8E5m2BitsToF32(0x7d)).toBeNaN();
  });

  it('round-trips all 256 codes of both formats', () => {
    for (let b = 0; b < 256; b++) {
      const a = fp8E4m3BitsToF32(b);
      if (!Number.isNaN(a)) expect(f32ToFp8E4m3Bits(a)).toBe(b);
      const c = fp8E5m2BitsToF32(b);
      // e5m2 inf saturates on encode, like every overflow
      if (!Number.isNaN(c) && Number.isFinite(c)) expect(f32ToFp8E5m2Bits(c)).toBe(b);
    }
  });
});

describe('arrays and names', () => {
  it('encodes and decodes arrays; integers must be representable', () => {
    const bits = encodeArray([1, 0.5, -2], 'bf16');
    expect(Array.from(decodeArray(bits, 'bf16'))).toEqual([1, 0.5, -2]);
    expect(() => encodeArray([1.5], 'i32')).toThrow(/not representable as i32/);
    expect(() => encodeArray([300], 'u8')).toThrow(/not representable/);
  });

  it('accepts FlashInfer dtype names and rejects unknown ones', () => {
    expect(parseDType('float16')).toBe('f16');
    expect(parseDType('bfloat16')).toBe('bf16');
    expect(parseDType('float8_e4m3fn')).toBe('fp8_e4m3');
    expect(() => parseDType('float64', 'qDataType')).toThrow(/qDataType: unknown dtype 'float64'/);
  });
});
