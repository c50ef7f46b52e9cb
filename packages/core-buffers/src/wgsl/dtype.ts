/**
 * WGSL for reading and writing each dtype from packed storage.
 *
 * Every tensor is bound as `array<u32>` (or `array<vec4<u32>>` for 16-byte loads): f16/bf16 are
 * two to a word, fp8 four to a word, and math is f32. With `shader-f16` the f16 unpack uses native
 * f16 (a bitcast); without it, `unpack2x16float` — same values either way, so browsers without
 * f16 and NVIDIA (where Dawn hides f16 by default) run the same numerics.
 */
import type { DType } from '../dtype';
import { DTypeError } from '../errors';

export interface WgslDtypeOptions {
  /** Use native f16 (needs `enable f16;`, i.e. the device has `shader-f16`). */
  nativeF16?: boolean;
}

/** Elements held by one u32 word. */
export function elementsPerWord(dtype: DType): 1 | 2 | 4 {
  switch (dtype) {
    case 'f16':
    case 'bf16':
      return 2;
    case 'fp8_e4m3':
    case 'fp8_e5m2':
    case 'i8':
    case 'u8':
      return 4;
    default:
      return 1;
  }
}

/** Float dtypes a kernel may load/store (integers go through `bitcast` directly). */
export type FloatDType = 'f32' | 'f16' | 'bf16' | 'fp8_e4m3' | 'fp8_e5m2';

export function assertFloatDType(dtype: DType, argument: string): asserts dtype is FloatDType {
  if (!['f32', 'f16', 'bf16', 'fp8_e4m3', 'fp8_e5m2'].includes(dtype)) {
    throw new DTypeError(`expected a float dtype, got ${dtype}`, argument);
  }
}

/** `fn unpack_<dtype>(w: u32) -> vecN<f32>`: one word to its N elements (low bits first). */
export function wgslUnpackWord(dtype: FloatDType, options: WgslDtypeOptions = {}): string {
  switch (dtype) {
    case 'f32':
      return 'fn unpack_f32(w: u32) -> f32 { return bitcast<f32>(w); }';
    case 'f16':
      return options.nativeF16
        ? 'fn unpack_f16(w: u32) -> vec2<f32> { return vec2<f32>(bitcast<vec2<f16>>(w)); }'
        : 'fn unpack_f16(w: u32) -> vec2<f32> { return unpack2x16float(w); }';
    case 'bf16':
      return 'fn unpack_bf16(w: u32) -> vec2<f32> { return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }';
    case 'fp8_e5m2':
      // e5m2 is the top byte of an f16: the even bytes (0, 2) and the odd bytes (1, 3) each move
      // into place as one f16 pair.
      return [
        'fn unpack_fp8_e5m2(w: u32) -> vec4<f32> {',
        '  let even = unpack2x16float((w & 0x00ff00ffu) << 8u);',
        '  let odd = unpack2x16float(w & 0xff00ff00u);',
        '  return vec4<f32>(even.x, odd.x, even.y, odd.y);',
        '}',
      ].join('\n');
    case 'fp8_e4m3':
      // Magnitude bits shifted left 7 and the sign moved to bit 15 make an f16 whose exponent bias
      // is 8 too small: the even bytes (0, 2) and the odd bytes (1, 3) each become one f16 pair
      // holding the values / 256 (`unpack_fp8_e4m3_div256`, for kernels that fold the 256 into a
      // scale they apply anyway). S.1111.111 is NaN (e4m3fn has no inf): adding 1 to a byte's low
      // 7 bits reaches bit 7 only for that pattern, so one test per word guards the rare branch.
      // `unpack_fp8_e4m3_finite` skips the NaN test (a kernel that tests a whole step's words at
      // once with `fp8_e4m3_nan_bits` and takes the exact unpack only when one is set).
      return [
        'fn fp8_e4m3_nan_bits(w: u32) -> u32 { return ((w & 0x7f7f7f7fu) + 0x01010101u) & 0x80808080u; }',
        'fn unpack_fp8_e4m3_finite(w: u32) -> vec4<f32> {',
        '  let even = unpack2x16float(((w & 0x007f007fu) << 7u) | ((w & 0x00800080u) << 8u));',
        '  let odd = unpack2x16float(((w >> 1u) & 0x3f803f80u) | (w & 0x80008000u));',
        '  return vec4<f32>(even.x, odd.x, even.y, odd.y);',
        '}',
        'fn unpack_fp8_e4m3_div256(w: u32) -> vec4<f32> {',
        '  var v = unpack_fp8_e4m3_finite(w);',
        '  if (fp8_e4m3_nan_bits(w) != 0u) {',
        '    let nan = vec4<bool>((w & 0x7fu) == 0x7fu, (w & 0x7f00u) == 0x7f00u, (w & 0x7f0000u) == 0x7f0000u, (w & 0x7f000000u) == 0x7f000000u);',
        '    v = select(v, vec4<f32>(bitcast<f32>(0x7fc00000u | (w & 0u))), nan);',
        '  }',
        '  return v;',
        '}',
        'fn unpack_fp8_e4m3(w: u32) -> vec4<f32> { return unpack_fp8_e4m3_div256(w) * 256.0; }',
      ].join('\n');
  }
}

/**
 * `fn widen_<dtype>(w: u32) -> vec2<u32>`: the 4 fp8 values of `w` as 4 f16 in two words, in
 * order (low half first), for kernels that stage fp8 K/V as f16 (tensor-core tiles). e5m2 is the
 * top byte of an f16 (exact). e4m3 comes out as value / 256 (its magnitude bits shifted left 7
 * make an f16 whose exponent bias is 8 too small; exact, subnormals included): the kernel multiplies
 * by 256 where it scales anyway. e4m3's NaN codes become f16 NaN.
 */
export function wgslWidenFp8ToF16(dtype: 'fp8_e4m3' | 'fp8_e5m2'): string {
  if (dtype === 'fp8_e5m2') {
    return 'fn widen_fp8_e5m2(w: u32) -> vec2<u32> { return vec2<u32>(((w & 0xffu) << 8u) | ((w & 0xff00u) << 16u), ((w >> 8u) & 0xff00u) | (w & 0xff000000u)); }';
  }
  // Branch-free: a per-word NaN branch (the old form) cost the H100's staged decode kernel 0.5 ms
  // of 1.0 even though it was never taken. A byte's NaN flag (low 7 bits all set: adding 1 carries
  // into bit 7) times 0xfc sets the f16 exponent to all ones, keeping the nonzero mantissa.
  return [
    'fn e4m3_pair_f16_div256(p: u32) -> u32 {',
    '  let t = p & 0x007f007fu;',
    '  let nan = (t + 0x00010001u) & 0x00800080u;',
    '  return (t << 7u) | ((p & 0x00800080u) << 8u) | (nan * 0xfcu);',
    '}',
    'fn widen_fp8_e4m3(w: u32) -> vec2<u32> {',
    '  return vec2<u32>(e4m3_pair_f16_div256((w & 0xffu) | ((w & 0xff00u) << 8u)), e4m3_pair_f16_div256(((w >> 16u) & 0xffu) | ((w >> 8u) & 0xff0000u)));',
    '}',
  ].join('\n');
}

/** `fn pack_<dtype>(v: vecN<f32>) -> u32`: N elements into one word (round to nearest even). */
export function wgslPackWord(dtype: FloatDType, options: WgslDtypeOptions = {}): string {
  switch (dtype) {
    case 'f32':
      return 'fn pack_f32(v: f32) -> u32 { return bitcast<u32>(v); }';
    case 'f16':
      return options.nativeF16
        ? 'fn pack_f16(v: vec2<f32>) -> u32 { return bitcast<u32>(vec2<f16>(v)); }'
        : 'fn pack_f16(v: vec2<f32>) -> u32 { return pack2x16float(v); }';
    case 'bf16':
      return [
        'fn f32_to_bf16(v: f32) -> u32 {',
        '  let b = bitcast<u32>(v);',
        '  if ((b & 0x7fffffffu) > 0x7f800000u) { return ((b >> 16u) & 0x8000u) | 0x7fc0u; }',
        '  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;',
        '}',
        'fn pack_bf16(v: vec2<f32>) -> u32 { return f32_to_bf16(v.x) | (f32_to_bf16(v.y) << 16u); }',
      ].join('\n');
    case 'fp8_e4m3':
      // Saturates finite overflow and inf to ±448 (CUDA's __NV_SATFINITE, as FlashInfer casts).
      return [
        'fn f32_to_fp8_e4m3(v: f32) -> u32 {',
        '  let b = bitcast<u32>(v);',
        '  let s = (b >> 24u) & 0x80u;',
        '  let a = b & 0x7fffffffu;',
        '  if (a > 0x7f800000u) { return s | 0x7fu; }',
        '  if (a >= 0x43e00000u) { return s | 0x7eu; }',
        '  if (a < 0x3c800000u) { return s | u32(round(bitcast<f32>(a) * 512.0)); }',
        '  let r = a + 0x7ffffu + ((a >> 20u) & 1u);',
        '  return s | ((r >> 20u) - (120u << 3u));',
        '}',
        'fn pack_fp8_e4m3(v: vec4<f32>) -> u32 {',
        '  return f32_to_fp8_e4m3(v.x) | (f32_to_fp8_e4m3(v.y) << 8u) | (f32_to_fp8_e4m3(v.z) << 16u) | (f32_to_fp8_e4m3(v.w) << 24u);',
        '}',
      ].join('\n');
    case 'fp8_e5m2':
      return [
        'fn f32_to_fp8_e5m2(v: f32) -> u32 {',
        '  let b = bitcast<u32>(v);',
        '  let s = (b >> 24u) & 0x80u;',
        '  let a = b & 0x7fffffffu;',
        '  if (a > 0x7f800000u) { return s | 0x7fu; }',
        '  if (a >= 0x47600000u) { return s | 0x7bu; }',
        '  if (a < 0x38800000u) { return s | u32(round(bitcast<f32>(a) * 65536.0)); }',
        '  let r = a + 0xfffffu + ((a >> 21u) & 1u);',
        '  return s | ((r >> 21u) - (112u << 2u));',
        '}',
        'fn pack_fp8_e5m2(v: vec4<f32>) -> u32 {',
        '  return f32_to_fp8_e5m2(v.x) | (f32_to_fp8_e5m2(v.y) << 8u) | (f32_to_fp8_e5m2(v.z) << 16u) | (f32_to_fp8_e5m2(v.w) << 24u);',
        '}',
      ].join('\n');
  }
}

/**
 * `fn <name>(i: u32) -> f32`: element `i` of `buffer` (an `array<u32>` of `dtype`).
 * Needs `wgslUnpackWord(dtype)` in the module.
 */
export function wgslLoadElement(name: string, buffer: string, dtype: FloatDType): string {
  switch (elementsPerWord(dtype)) {
    case 1:
      return `fn ${name}(i: u32) -> f32 { return unpack_f32(${buffer}[i]); }`;
    case 2:
      return `fn ${name}(i: u32) -> f32 { return unpack_${dtype}(${buffer}[i >> 1u])[i & 1u]; }`;
    default:
      return `fn ${name}(i: u32) -> f32 { return unpack_${dtype}(${buffer}[i >> 2u])[i & 3u]; }`;
  }
}

/**
 * `fn <name>(i: u32) -> vec4<f32>`: elements `i..i+3` (i a multiple of 4) of `buffer`
 * (an `array<u32>`). Needs `wgslUnpackWord(dtype)`.
 */
export function wgslLoadVec4(name: string, buffer: string, dtype: FloatDType): string {
  switch (elementsPerWord(dtype)) {
    case 1:
      return `fn ${name}(i: u32) -> vec4<f32> { return bitcast<vec4<f32>>(vec4<u32>(${buffer}[i], ${buffer}[i + 1u], ${buffer}[i + 2u], ${buffer}[i + 3u])); }`;
    case 2:
      return `fn ${name}(i: u32) -> vec4<f32> { let w = i >> 1u; return vec4<f32>(unpack_${dtype}(${buffer}[w]), unpack_${dtype}(${buffer}[w + 1u])); }`;
    default:
      return `fn ${name}(i: u32) -> vec4<f32> { return unpack_${dtype}(${buffer}[i >> 2u]); }`;
  }
}

/**
 * Helpers for a set of dtypes, each emitted once (a module that loads f16 K and fp8 V gets both
 * unpackers, and no duplicate definitions).
 */
export function wgslDtypeHelpers(
  dtypes: readonly FloatDType[],
  options: WgslDtypeOptions & { pack?: boolean } = {},
): string {
  const unique = [...new Set(dtypes)];
  const parts = unique.map((d) => wgslUnpackWord(d, options));
  if (options.pack) parts.push(...unique.map((d) => wgslPackWord(d, options)));
  return parts.join('\n');
}

/** Pack helpers only (for output dtypes), each emitted once; they never clash with unpackers. */
export function wgslPackHelpers(dtypes: readonly FloatDType[], options: WgslDtypeOptions = {}): string {
  return [...new Set(dtypes)].map((d) => wgslPackWord(d, options)).join('\n');
}

/** `enable f16;` when the module uses native f16, else nothing. */
export function wgslEnables(options: { nativeF16?: boolean; subgroups?: boolean }): string {
  const lines: string[] = [];
  if (options.nativeF16) lines.push('enable f16;');
  if (options.subgroups) lines.push('enable subgroups;');
  return lines.join('\n');
}
