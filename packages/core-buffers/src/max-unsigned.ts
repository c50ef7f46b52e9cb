/**
 * The largest element of an int32 array read as unsigned (a negative id reads as a huge one, so
 * one compare checks both ends of a range). plan() validates every page id each decode step, and
 * for B = 64 × 256 pages a JS loop took ~10 µs of a ~22 µs plan on the dev machine; a 4-lane
 * WebAssembly SIMD loop takes about a tenth of that. Where WebAssembly SIMD is missing (or a
 * content security policy forbids compiling it) the JS loop runs instead, with the same result.
 */

/** Below this many elements the JS loop wins over the copy into wasm memory and the call. */
const SIMD_MIN_ELEMENTS = 512;

/**
 * A module exporting memory `m` and `f(bytes)`: the lane-wise unsigned max of the i32x4 vectors in
 * m[0, bytes), stored back to m[0, 16). Written out by hand (no toolchain); the test compares it
 * with the JS loop, and a signed max (0xb8 for 0xb9) fails it:
 *
 *   (func (param $n i32) (local $a v128) (local $i i32)
 *     (block (loop
 *       (br_if 1 (i32.ge_u (local.get $i) (local.get $n)))
 *       (local.set $a (i32x4.max_u (local.get $a) (v128.load (local.get $i))))
 *       (local.set $i (i32.add (local.get $i) (i32.const 16)))
 *       (br 0)))
 *     (v128.store (i32.const 0) (local.get $a)))
 */
function moduleBytes(): Uint8Array<ArrayBuffer> {
  const section = (id: number, body: number[]) => [id, body.length, ...body];
  const code = [
    0x02, 0x01, 0x7b, 0x01, 0x7f, // locals: 1 v128, 1 i32
    0x02, 0x40, 0x03, 0x40, // block, loop
    0x20, 0x02, 0x20, 0x00, 0x4f, 0x0d, 0x01, // br_if 1 (i >= n)
    0x20, 0x01, 0x20, 0x02, 0xfd, 0x00, 0x04, 0x00, // a, v128.load align=16 offset=0 (at i)
    0xfd, 0xb9, 0x01, 0x21, 0x01, // i32x4.max_u, local.set a
    0x20, 0x02, 0x41, 0x10, 0x6a, 0x21, 0x02, // i += 16
    0x0c, 0x00, 0x0b, 0x0b, // br 0, end loop, end block
    0x41, 0x00, 0x20, 0x01, 0xfd, 0x0b, 0x04, 0x00, // v128.store align=16 (0, a)
    0x0b, // end
  ];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // \0asm, version 1
    ...section(1, [0x01, 0x60, 0x01, 0x7f, 0x00]), // type 0: (i32) -> ()
    ...section(3, [0x01, 0x00]), // function 0 has type 0
    ...section(5, [0x01, 0x00, 0x01]), // memory: 1 page, no maximum
    ...section(7, [0x02, 0x01, 0x6d, 0x02, 0x00, 0x01, 0x66, 0x00, 0x00]), // export "m" memory, "f" func
    ...section(10, [0x01, code.length, ...code]),
  ]);
}

interface SimdMax {
  memory: WebAssembly.Memory;
  run: (bytes: number) => void;
  /** Views of memory.buffer, remade when the memory grows. */
  words: Int32Array;
  result: Uint32Array;
}

let simd: SimdMax | null | undefined;

function loadSimd(): SimdMax | null {
  try {
    if (typeof WebAssembly !== 'object') return null;
    const bytes = moduleBytes();
    if (!WebAssembly.validate(bytes)) return null;
    // Synchronous compile: a module this small is allowed on a browser's main thread.
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    const memory = instance.exports.m as WebAssembly.Memory;
    return {
      memory,
      run: instance.exports.f as (bytes: number) => void,
      words: new Int32Array(memory.buffer),
      result: new Uint32Array(memory.buffer, 0, 4),
    };
  } catch {
    return null;
  }
}

/** Unsigned max of `a[0, n)` in JS: four independent chains (about 1.8x one chain in V8). */
function maxUnsignedJs(a: Int32Array, n: number): number {
  let m0 = 0;
  let m1 = 0;
  let m2 = 0;
  let m3 = 0;
  const n4 = n & ~3;
  let i = 0;
  for (; i < n4; i += 4) {
    const p0 = a[i] >>> 0;
    const p1 = a[i + 1] >>> 0;
    const p2 = a[i + 2] >>> 0;
    const p3 = a[i + 3] >>> 0;
    if (p0 > m0) m0 = p0;
    if (p1 > m1) m1 = p1;
    if (p2 > m2) m2 = p2;
    if (p3 > m3) m3 = p3;
  }
  for (; i < n; i++) {
    const p = a[i] >>> 0;
    if (p > m0) m0 = p;
  }
  return Math.max(m0, m1, m2, m3);
}

/**
 * The largest of `a[0, n)` read as unsigned 32-bit integers, or -1 when `n` is 0.
 * `useSimd: false` forces the JS loop (tests compare the two).
 */
export function maxUnsigned(a: Int32Array, n = a.length, useSimd = true): number {
  if (n <= 0) return -1;
  if (!useSimd || n < SIMD_MIN_ELEMENTS) return maxUnsignedJs(a, n);
  if (simd === undefined) simd = loadSimd();
  if (!simd) return maxUnsignedJs(a, n);
  const padded = (n + 3) & ~3; // whole vectors; zero padding cannot raise the max
  const bytes = padded * 4;
  if (bytes > simd.memory.buffer.byteLength) {
    simd.memory.grow(Math.ceil((bytes - simd.memory.buffer.byteLength) / 65536));
    simd.words = new Int32Array(simd.memory.buffer);
    simd.result = new Uint32Array(simd.memory.buffer, 0, 4);
  }
  simd.words.set(n === a.length ? a : a.subarray(0, n));
  simd.words.fill(0, n, padded);
  simd.run(bytes);
  const r = simd.result;
  return Math.max(r[0], r[1], r[2], r[3]);
}

/** Whether maxUnsigned runs the WebAssembly SIMD loop in this runtime. */
export function maxUnsignedUsesSimd(): boolean {
  if (simd === undefined) simd = loadSimd();
  return simd !== null;
}
