/**
 * The WGSL dtype snippets on a real device: every code of each float dtype is unpacked to f32
 * and packed back in a shader, and must come back bit-exact; loaded values must equal the host
 * decode. Run with and without native f16 where the device has it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type FloatDType,
  type GpuContext,
  bindGroup,
  createContext,
  decodeArray,
  elementsPerWord,
  f32Bits,
  f32ToBf16Bits,
  f32ToF16Bits,
  f32ToFp8E4m3Bits,
  f32ToFp8E5m2Bits,
  encodeDispatch,
  f16BitsToF32,
  getKernel,
  storageArrayFor,
  wgslDtypeHelpers,
  wgslEnables,
  wgslLoadElement,
  wgslLoadVec4,
  wgslWidenFp8ToF16,
} from '../src';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

interface RoundTripConfig {
  dtype: FloatDType;
  nativeF16: boolean;
}

/** Thread w: unpack word w, repack it to out_bits[w], and store element values to out_vals. */
function roundTripWgsl({ dtype, nativeF16 }: RoundTripConfig): string {
  const per = elementsPerWord(dtype);
  const vec = per === 1 ? 'f32' : `vec${per}<f32>`;
  const store =
    per === 1
      ? 'out_vals[w] = v;'
      : Array.from({ length: per }, (_, i) => `out_vals[w * ${per}u + ${i}u] = v[${i}];`).join(' ');
  return `${wgslEnables({ nativeF16 })}
${wgslDtypeHelpers([dtype], { nativeF16, pack: true })}
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> out_bits: array<u32>;
@group(0) @binding(2) var<storage, read_write> out_vals: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_single: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_vec4: array<vec4<f32>>;
${wgslLoadElement('load_one', 'src', dtype)}
${wgslLoadVec4('load_four', 'src', dtype)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let w = gid.x + gid.y * 65535u * 64u;
  if (w >= arrayLength(&out_bits)) { return; }
  let v: ${vec} = unpack_${dtype}(src[w]);
  out_bits[w] = pack_${dtype}(v);
  ${store}
  for (var i = 0u; i < ${per}u; i++) { out_single[w * ${per}u + i] = load_one(w * ${per}u + i); }
  if ((w * ${per}u) % 4u == 0u && (w * ${per}u) + 4u <= arrayLength(&out_single)) {
    out_vec4[(w * ${per}u) / 4u] = load_four(w * ${per}u);
  }
}`;
}

/** Every code of the dtype (f32: a spread of special and random patterns). */
function allCodes(dtype: FloatDType): Uint32Array {
  if (dtype === 'f32') {
    const specials = [0, 0x80000000, 1, 0x807fffff, 0x00800000, 0x3f800000, 0x7f7fffff, 0x7f800000, 0xff800000];
    const out = new Uint32Array(4096);
    out.set(specials);
    for (let i = specials.length; i < out.length; i++) out[i] = (Math.random() * 2 ** 32) >>> 0;
    return out;
  }
  const bits = dtype === 'f16' || dtype === 'bf16' ? 16 : 8;
  const n = 1 << bits;
  const words = new Uint32Array(n / (32 / bits));
  const bytes = new Uint8Array(words.buffer);
  if (bits === 16) new Uint16Array(words.buffer).set(Uint16Array.from({ length: n }, (_, i) => i));
  else bytes.set(Uint8Array.from({ length: n }, (_, i) => i));
  return words;
}

function isNaNBits(dtype: FloatDType, code: number): boolean {
  return Number.isNaN(decodeArray(codeArray(dtype, code), dtype)[0]);
}

const HOST_ENCODE: Record<FloatDType, (v: number) => number> = {
  f32: f32Bits,
  f16: f32ToF16Bits,
  bf16: f32ToBf16Bits,
  fp8_e4m3: f32ToFp8E4m3Bits,
  fp8_e5m2: f32ToFp8E5m2Bits,
};

function codeArray(dtype: FloatDType, code: number) {
  const a = storageArrayFor(dtype, 1);
  if (dtype === 'f32') new Uint32Array(a.buffer)[0] = code;
  else a[0] = code;
  return a;
}

/** The words' bytes as the dtype's storage array. */
function viewAs(dtype: FloatDType, buffer: ArrayBufferLike) {
  if (dtype === 'f32') return new Float32Array(buffer);
  if (dtype === 'f16' || dtype === 'bf16') return new Uint16Array(buffer);
  return new Uint8Array(buffer);
}

const cases: RoundTripConfig[] = [
  { dtype: 'f32', nativeF16: false },
  { dtype: 'f16', nativeF16: false },
  { dtype: 'f16', nativeF16: true },
  { dtype: 'bf16', nativeF16: false },
  { dtype: 'fp8_e4m3', nativeF16: false },
  { dtype: 'fp8_e5m2', nativeF16: false },
];

describe('dtype load/store in WGSL', () => {
  it.each(cases)('$dtype (native f16: $nativeF16) is bit-exact through unpack/pack', async (config) => {
    if (config.nativeF16 && !ctx.hasF16) return;
    const words = allCodes(config.dtype);
    const per = elementsPerWord(config.dtype);
    const n = words.length * per;
    const src = ctx.tensor(words, [words.length], 'u32');
    const outBits = ctx.full([words.length], 'u32', 0xdeadbeef);
    const outVals = ctx.full([n], 'f32', Number.NaN);
    const outSingle = ctx.full([n], 'f32', Number.NaN);
    const outVec4 = ctx.full([n], 'f32', Number.NaN);
    await ctx.checkErrors(() => {
      const kernel = getKernel(ctx, {
        id: 'test/dtype-roundtrip',
        config,
        wgsl: roundTripWgsl,
        bindings: ['read-only-storage', 'storage', 'storage', 'storage', 'storage'],
      });
      const group = bindGroup(ctx, kernel, [src.buffer, outBits.buffer, outVals.buffer, outSingle.buffer, outVec4.buffer]);
      const enc = ctx.device.createCommandEncoder();
      encodeDispatch(enc, kernel, group, [Math.ceil(words.length / 64)]);
      ctx.submit([enc.finish()]);
    });
    const gotBits = (await outBits.toBits()) as Uint32Array;
    const hostVals = decodeArray(
      viewAs(config.dtype, words.buffer),
      config.dtype,
    ) as Float32Array;
    const vals = (await outVals.toArray()) as Float32Array;
    const single = (await outSingle.toArray()) as Float32Array;
    const vec4 = (await outVec4.toArray()) as Float32Array;
    const codeBits = per === 1 ? 32 : 32 / per;
    let mismatches = 0;
    for (let w = 0; w < words.length; w++) {
      for (let e = 0; e < per; e++) {
        const mask = codeBits === 32 ? 0xffffffff : (1 << codeBits) - 1;
        const code = ((words[w] >>> (e * codeBits)) & mask) >>> 0;
        const got = ((gotBits[w] >>> (e * codeBits)) & mask) >>> 0;
        const i = w * per + e;
        const nan = Number.isNaN(hostVals[i]);
        // Packing must agree with the host encoder (identity except e5m2 inf, which saturates).
        const want = HOST_ENCODE[config.dtype](hostVals[i]) >>> 0;
        const bitsOk = nan ? isNaNBits(config.dtype, got) : got === want;
        const valOk = (x: number) => (nan ? Number.isNaN(x) : Object.is(x, hostVals[i]));
        if (!bitsOk || !valOk(vals[i]) || !valOk(single[i]) || !valOk(vec4[i])) {
          if (mismatches++ < 5) {
            console.error(`${config.dtype} code 0x${code.toString(16)}: bits 0x${got.toString(16)}, values ${vals[i]} ${single[i]} ${vec4[i]} vs ${hostVals[i]}`);
          }
        }
      }
    }
    expect(mismatches).toBe(0);
    for (const t of [src, outBits, outVals, outSingle, outVec4]) t.destroy();
  });
});

/** Thread i packs f32 inputs 4i..4i+3 (or 2, or 1) into a word of the dtype. */
function packWgsl({ dtype }: { dtype: FloatDType }): string {
  const per = elementsPerWord(dtype);
  const arg = per === 1 ? 'src[i]' : `vec${per}<f32>(${Array.from({ length: per }, (_, e) => `src[i * ${per}u + ${e}u]`).join(', ')})`;
  return `${wgslDtypeHelpers([dtype], { pack: true })}
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= arrayLength(&out)) { return; }
  out[i] = pack_${dtype}(${arg});
}`;
}

describe('dtype packing rounds like the host encoder', () => {
  it.each(['bf16', 'fp8_e4m3', 'fp8_e5m2'] as const)('%s: random values, ties, overflow', async (dtype) => {
    const per = elementsPerWord(dtype);
    const specials = [0, -0, 1, 448, 464, 480, 1e9, -1e9, 57344, 61440, 2 ** -10, 1.5 * 2 ** -9, 2 ** -17, 1 + 2 ** -8, 3.4e38];
    const n = 4096;
    const values = new Float32Array(n);
    values.set(specials);
    for (let i = specials.length; i < n; i++) values[i] = (Math.random() - 0.5) * 2 ** (Math.random() * 40 - 24);
    const src = ctx.tensor(values, [n], 'f32');
    const out = ctx.full([n / per], 'u32', 0xdeadbeef);
    await ctx.checkErrors(() => {
      const kernel = getKernel(ctx, { id: 'test/dtype-pack', config: { dtype }, wgsl: packWgsl, bindings: ['read-only-storage', 'storage'] });
      const enc = ctx.device.createCommandEncoder();
      encodeDispatch(enc, kernel, bindGroup(ctx, kernel, [src.buffer, out.buffer]), [Math.ceil(n / per / 64)]);
      ctx.submit([enc.finish()]);
    });
    const words = (await out.toBits()) as Uint32Array;
    const bits = 32 / per;
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const got = (words[Math.floor(i / per)] >>> ((i % per) * bits)) & ((1 << bits) - 1);
      const want = HOST_ENCODE[dtype](values[i]);
      if (got !== want && bad++ < 5) console.error(`${dtype} ${values[i]}: got 0x${got.toString(16)} want 0x${want.toString(16)}`);
    }
    expect(bad).toBe(0);
    src.destroy();
    out.destroy();
  });
});

/** Thread w widens fp8 word w to two words of f16. */
function widenWgsl({ dtype }: { dtype: 'fp8_e4m3' | 'fp8_e5m2' }): string {
  return `${wgslWidenFp8ToF16(dtype)}
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec2<u32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let w = gid.x;
  if (w >= arrayLength(&out)) { return; }
  out[w] = widen_${dtype}(src[w]);
}`;
}

describe('fp8 widened to f16 in WGSL (tensor-core staging)', () => {
  it.each(['fp8_e4m3', 'fp8_e5m2'] as const)('%s: every code, in order, exact (e4m3 as value / 256)', async (dtype) => {
    const words = allCodes(dtype);
    // Every code in every byte position: the bytes rotated by one, two and three places too.
    const all = new Uint32Array(words.length * 4);
    for (let r = 0; r < 4; r++) for (let w = 0; w < words.length; w++) all[r * words.length + w] = ((words[w] << (8 * r)) | (words[w] >>> (32 - 8 * r))) >>> 0;
    const src = ctx.tensor(all, [all.length], 'u32');
    const out = ctx.full([2 * all.length], 'u32', 0xdeadbeef);
    await ctx.checkErrors(() => {
      const kernel = getKernel(ctx, { id: 'test/widen-fp8', config: { dtype }, wgsl: widenWgsl, bindings: ['read-only-storage', 'storage'] });
      const group = bindGroup(ctx, kernel, [src.buffer, out.buffer]);
      const enc = ctx.device.createCommandEncoder();
      encodeDispatch(enc, kernel, group, [Math.ceil(all.length / 64)]);
      ctx.submit([enc.finish()]);
    });
    const got = (await out.toBits()) as Uint32Array;
    const host = decodeArray(new Uint8Array(all.buffer), dtype) as Float32Array;
    const unit = dtype === 'fp8_e4m3' ? 256 : 1;
    let mismatches = 0;
    for (let i = 0; i < host.length; i++) {
      const half = (got[i >> 1] >>> (16 * (i & 1))) & 0xffff;
      const value = f16BitsToF32(half) * unit;
      const ok = Number.isNaN(host[i]) ? Number.isNaN(value) : Object.is(value, host[i]);
      if (!ok && mismatches++ < 5) console.error(`${dtype} element ${i}: f16 0x${half.toString(16)} = ${value}, want ${host[i]}`);
    }
    expect(mismatches).toBe(0);
    src.destroy();
    out.destroy();
  });
});
