import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DisposedError, type GpuContext, LayoutError, ShapeError, createContext, f32ToF16Bits } from '../src';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

const iota = (n: number) => Float32Array.from({ length: n }, (_, i) => i - Math.floor(n / 2));
/** Values every float dtype (fp8 e5m2 included) holds exactly. */
const smallValues = (n: number) => Float32Array.from({ length: n }, (_, i) => ((i % 9) - 4) * 0.5);

describe('Tensor upload, download and views', () => {
  it.each(['f32', 'f16', 'bf16', 'fp8_e4m3', 'fp8_e5m2'] as const)('%s values survive a round trip', async (dtype) => {
    const data = smallValues(37); // odd length: exercises padded writes of 1- and 2-byte dtypes
    const t = ctx.tensor(data, [37], dtype);
    expect(Array.from(await t.toArray())).toEqual(Array.from(data));
  });

  it.each([
    ['i32', Int32Array.of(-5, 7, 2147483647)],
    ['u32', Uint32Array.of(0, 4294967295, 12)],
    ['i8', Int8Array.of(-128, 127, 0)],
    ['u8', Uint8Array.of(0, 255, 9)],
  ] as const)('%s keeps integers', async (dtype, data) => {
    const t = ctx.tensor(data, [3], dtype);
    expect(Array.from(await t.toArray())).toEqual(Array.from(data));
  });

  it('takes a typed array of the dtype bits as is', async () => {
    const bits = Uint16Array.of(f32ToF16Bits(1.5), f32ToF16Bits(-3));
    const t = ctx.tensor(bits, [2], 'f16');
    expect(Array.from(await t.toBits())).toEqual(Array.from(bits));
    expect(Array.from(await t.toArray())).toEqual([1.5, -3]);
  });

  it('slices, selects, transposes and reshapes without copies', async () => {
    const t = ctx.tensor(iota(24), [2, 3, 4], 'f16');
    const host = iota(24);
    const at = (a: number, b: number, c: number) => host[a * 12 + b * 4 + c];
    const s = t.slice(1, 1, 3); // [2, 2, 4]
    expect(s.buffer).toBe(t.buffer);
    expect(Array.from(await s.toArray())).toEqual([0, 1].flatMap((a) => [1, 2].flatMap((b) => [0, 1, 2, 3].map((c) => at(a, b, c)))));
    const sel = t.select(0, 1); // [3, 4]
    expect(Array.from(await sel.toArray())).toEqual(Array.from(host.slice(12)));
    const tr = t.transpose(1, 2); // [2, 4, 3]
    expect(tr.isContiguous()).toBe(false);
    expect(Array.from(await tr.toArray())).toEqual([0, 1].flatMap((a) => [0, 1, 2, 3].flatMap((c) => [0, 1, 2].map((b) => at(a, b, c)))));
    const r = t.reshape([6, -1]);
    expect(r.shape).toEqual([6, 4]);
    expect(() => tr.reshape([24])).toThrow(LayoutError);
    expect(() => t.reshape([5, 5])).toThrow(ShapeError);
  });

  it('fills (poisons) and writes in place', async () => {
    const t = ctx.full([5], 'bf16', Number.NaN);
    expect(Array.from(await t.toArray()).every(Number.isNaN)).toBe(true);
    t.write([1, 2, 3, 4, 5]);
    expect(Array.from(await t.toArray())).toEqual([1, 2, 3, 4, 5]);
    const z = ctx.zeros([3], 'f32');
    expect(Array.from(await z.toArray())).toEqual([0, 0, 0]);
  });

  it('wraps an existing buffer with offset and strides', async () => {
    const base = ctx.tensor(iota(16), [16], 'f32');
    const view = ctx.fromBuffer(base.buffer, [2, 3], 'f32', { offset: 2, strides: [5, 1] });
    const host = iota(16);
    expect(Array.from(await view.toArray())).toEqual([host[2], host[3], host[4], host[7], host[8], host[9]]);
    expect(() => ctx.fromBuffer(base.buffer, [100], 'f32')).toThrow(ShapeError);
  });

  it('rejects bad shapes and data, and use after destroy', async () => {
    expect(() => ctx.tensor([1, 2, 3], [2, 2], 'f32')).toThrow(/data: data has 3 elements/);
    expect(() => ctx.empty([2, -1], 'f32')).toThrow(ShapeError);
    expect(() => ctx.tensor([1, 2], [2], 'f16').slice(0, 1, 3)).toThrow(ShapeError);
    const t = ctx.tensor([1, 2], [2], 'f32');
    t.destroy();
    await expect(t.toArray()).rejects.toThrow(DisposedError);
  });

  it('checks expected dtype and shape with named arguments', () => {
    const q = ctx.empty([4, 8], 'f16');
    expect(() => q.expect('q', ['f32'], [4, 8])).toThrow(/q: dtype f16 not accepted/);
    expect(() => q.expect('q', ['f16'], [4, null, 2])).toThrow(/q: shape \[4, 8\] does not match \[4, \*, 2\]/);
    q.expect('q', ['f16'], [null, 8]);
  });
});
