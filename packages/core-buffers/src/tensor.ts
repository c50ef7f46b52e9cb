/**
 * Tensor: a typed, strided view over a GPUBuffer. Views (slice, select, transpose, reshape of a
 * contiguous tensor) share the buffer; only `ctx.tensor()`/`ctx.empty()` allocate.
 */
import type { GpuContext } from './context';
import {
  type DType,
  type StorageArray,
  decodeArray,
  dtypeBytes,
  encodeArray,
  isStorageArrayOf,
  storageArrayFor,
} from './dtype';
import { DTypeError, DisposedError, LayoutError, ShapeError, UnsupportedFeatureError, ValueError } from './errors';

/** Host data for `ctx.tensor`: numbers (converted to the dtype), or a typed array of its bits. */
export type TensorData = ArrayLike<number> | StorageArray;

const BUFFER_USAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08; /* COPY_DST */

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

function checkShape(shape: readonly number[], argument: string): void {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) {
      throw new ShapeError(`shape [${shape.join(', ')}] must hold non-negative integers`, argument);
    }
  }
}

/** Buffers are rounded up to 16 bytes so shaders may read them as vec4<u32>. */
function allocationSize(bytes: number): number {
  return Math.max(16, Math.ceil(bytes / 16) * 16);
}

export class Tensor {
  readonly ctx: GpuContext;
  readonly buffer: GPUBuffer;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Strides in elements. */
  readonly strides: readonly number[];
  /** Offset of element [0, 0, ...] from the buffer start, in elements. */
  readonly offset: number;
  /** The tensor that allocated `buffer` (itself for an owner; shared by views). */
  private readonly owner: { destroyed: boolean; owns: boolean };
  /** `buffer.size`, read once: each read is a call into the native binding (run() binds per call). */
  private bufferBytes = -1;

  private constructor(
    ctx: GpuContext,
    buffer: GPUBuffer,
    dtype: DType,
    shape: readonly number[],
    strides: readonly number[],
    offset: number,
    owner: { destroyed: boolean; owns: boolean },
  ) {
    this.ctx = ctx;
    this.buffer = buffer;
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze([...strides]);
    this.offset = offset;
    this.owner = owner;
  }

  /** @internal use ctx.empty() */
  static empty(ctx: GpuContext, shape: readonly number[], dtype: DType, label?: string): Tensor {
    checkShape(shape, 'shape');
    const bytes = numel(shape) * dtypeBytes(dtype);
    const max = ctx.limits.maxBufferSize;
    if (bytes > max) {
      throw new ValueError(`tensor of ${bytes} bytes exceeds the device's maxBufferSize (${max})`, 'shape');
    }
    const buffer = ctx.device.createBuffer({
      label: label ?? `tensor ${dtype}[${shape.join(',')}]`,
      size: allocationSize(bytes),
      usage: BUFFER_USAGE,
    });
    return new Tensor(ctx, buffer, dtype, shape, contiguousStrides(shape), 0, { destroyed: false, owns: true });
  }

  /** @internal use ctx.tensor() */
  static fromHost(ctx: GpuContext, data: TensorData, shape: readonly number[], dtype: DType, label?: string): Tensor {
    checkShape(shape, 'shape');
    const n = numel(shape);
    if (data.length !== n) {
      throw new ShapeError(`data has ${data.length} elements but shape [${shape.join(', ')}] needs ${n}`, 'data');
    }
    const bits = isStorageArrayOf(data, dtype) ? data : encodeArray(data, dtype);
    const t = Tensor.empty(ctx, shape, dtype, label);
    t.writeBits(bits);
    return t;
  }

  /** @internal use ctx.fromBuffer() */
  static fromBuffer(
    ctx: GpuContext,
    buffer: GPUBuffer,
    shape: readonly number[],
    dtype: DType,
    options: { offset?: number; strides?: readonly number[] },
  ): Tensor {
    checkShape(shape, 'shape');
    const strides = options.strides ?? contiguousStrides(shape);
    if (strides.length !== shape.length) {
      throw new ShapeError(`strides has ${strides.length} entries for a rank-${shape.length} shape`, 'strides');
    }
    const t = new Tensor(ctx, buffer, dtype, shape, strides, options.offset ?? 0, { destroyed: false, owns: false });
    const end = (t.offset + t.span()) * dtypeBytes(dtype);
    if (end > buffer.size) {
      throw new ShapeError(`view needs ${end} bytes but the buffer has ${buffer.size}`, 'buffer');
    }
    return t;
  }

  get rank(): number {
    return this.shape.length;
  }
  get numel(): number {
    return numel(this.shape);
  }
  get byteOffset(): number {
    return this.offset * dtypeBytes(this.dtype);
  }
  get destroyed(): boolean {
    return this.owner.destroyed;
  }

  /** Elements from the first to one past the last addressed element (0 for an empty tensor). */
  span(): number {
    if (this.numel === 0) return 0;
    let last = 0;
    for (let i = 0; i < this.rank; i++) last += (this.shape[i] - 1) * this.strides[i];
    return last + 1;
  }

  isContiguous(): boolean {
    const expected = contiguousStrides(this.shape);
    return this.shape.every((s, i) => s === 1 || this.strides[i] === expected[i]);
  }

  assertLive(argument = 'tensor'): void {
    if (this.owner.destroyed) throw new DisposedError('tensor was destroyed', argument);
    this.ctx.assertLive(argument);
  }

  private derive(shape: readonly number[], strides: readonly number[], offset: number): Tensor {
    return new Tensor(this.ctx, this.buffer, this.dtype, shape, strides, offset, this.owner);
  }

  private normDim(dim: number): number {
    const d = dim < 0 ? dim + this.rank : dim;
    if (!Number.isInteger(d) || d < 0 || d >= this.rank) {
      throw new ShapeError(`dim ${dim} out of range for rank ${this.rank}`, 'dim');
    }
    return d;
  }

  /** Same data, new shape. Needs a contiguous tensor; one dim may be -1. */
  reshape(shape: readonly number[]): Tensor {
    const known = shape.filter((s) => s !== -1);
    const inferred = shape.length - known.length;
    if (inferred > 1) throw new ShapeError('only one dimension may be -1', 'shape');
    const full = shape.map((s) => (s === -1 ? this.numel / Math.max(1, numel(known)) : s));
    checkShape(full, 'shape');
    if (numel(full) !== this.numel) {
      throw new ShapeError(`cannot reshape [${this.shape.join(', ')}] to [${shape.join(', ')}]`, 'shape');
    }
    if (!this.isContiguous()) throw new LayoutError('reshape needs a contiguous tensor', 'tensor');
    return this.derive(full, contiguousStrides(full), this.offset);
  }

  /** Elements `start..end` (exclusive) of dimension `dim`, no copy. */
  slice(dim: number, start: number, end: number = this.shape[this.normDim(dim)]): Tensor {
    const d = this.normDim(dim);
    const n = this.shape[d];
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > n || start > end) {
      throw new ShapeError(`slice [${start}, ${end}) out of range for dim ${d} of size ${n}`, 'slice');
    }
    const shape = [...this.shape];
    shape[d] = end - start;
    return this.derive(shape, this.strides, this.offset + start * this.strides[d]);
  }

  /** Index `index` of dimension `dim`, removing that dimension, no copy. */
  select(dim: number, index: number): Tensor {
    const d = this.normDim(dim);
    const n = this.shape[d];
    if (!Number.isInteger(index) || index < 0 || index >= n) {
      throw new ShapeError(`index ${index} out of range for dim ${d} of size ${n}`, 'index');
    }
    const shape = this.shape.filter((_, i) => i !== d);
    const strides = this.strides.filter((_, i) => i !== d);
    return this.derive(shape, strides, this.offset + index * this.strides[d]);
  }

  /** Swaps two dimensions, no copy. */
  transpose(dim0: number, dim1: number): Tensor {
    const a = this.normDim(dim0);
    const b = this.normDim(dim1);
    const shape = [...this.shape];
    const strides = [...this.strides];
    [shape[a], shape[b]] = [shape[b], shape[a]];
    [strides[a], strides[b]] = [strides[b], strides[a]];
    return this.derive(shape, strides, this.offset);
  }

  /** Writes raw storage bits into a contiguous tensor. */
  writeBits(bits: StorageArray): void {
    this.assertLive();
    if (!this.isContiguous()) throw new LayoutError('writes need a contiguous tensor', 'tensor');
    if (bits.length !== this.numel) {
      throw new ShapeError(`got ${bits.length} elements for a tensor of ${this.numel}`, 'data');
    }
    const bytes = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
    const start = this.byteOffset;
    // writeBuffer needs 4-byte aligned offset and size: pad the head and tail with current bits
    // only when they are unaligned (1- and 2-byte dtypes at odd offsets).
    if (start % 4 === 0 && bytes.byteLength % 4 === 0) {
      this.ctx.device.queue.writeBuffer(this.buffer, start, bytes as Uint8Array<ArrayBuffer>);
      return;
    }
    if (start % 4 !== 0) {
      throw new LayoutError('host writes need a 4-byte aligned tensor start', 'tensor');
    }
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    const end = start + padded.byteLength;
    if (end > this.buffer.size) throw new LayoutError('write past the end of the buffer', 'tensor');
    this.ctx.device.queue.writeBuffer(this.buffer, start, padded);
  }

  /** Writes host values (converted to the dtype) into a contiguous tensor. */
  write(data: TensorData): void {
    this.writeBits(isStorageArrayOf(data, this.dtype) ? data : encodeArray(data, this.dtype));
  }

  /** Sets every element to `value` (e.g. NaN to poison an output). Contiguous tensors only. */
  fill(value: number): void {
    const bits = encodeArray(new Float64Array(this.numel).fill(value), this.dtype);
    this.writeBits(bits);
  }

  /** Reads the raw storage bits (a copy, in logical row-major order). */
  async toBits(): Promise<StorageArray> {
    this.assertLive();
    const elemBytes = dtypeBytes(this.dtype);
    const n = this.numel;
    const out = storageArrayFor(this.dtype, n);
    if (n === 0) return out;
    const startByte = this.byteOffset;
    const endByte = (this.offset + this.span()) * elemBytes;
    const alignedStart = Math.floor(startByte / 4) * 4;
    const alignedEnd = Math.ceil(endByte / 4) * 4;
    const size = alignedEnd - alignedStart;
    const { device } = this.ctx;
    const staging = device.createBuffer({ label: 'tensor readback', size, usage: 0x01 | 0x08 /* MAP_READ|COPY_DST */ });
    try {
      const encoder = device.createCommandEncoder({ label: 'tensor readback' });
      encoder.copyBufferToBuffer(this.buffer, alignedStart, staging, 0, size);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(0x0001 /* READ */);
      const raw = staging.getMappedRange().slice(0);
      staging.unmap();
      const Ctor = out.constructor as { new (b: ArrayBuffer, o: number, l: number): StorageArray };
      const firstElem = (startByte - alignedStart) / elemBytes;
      const window = new Ctor(raw, 0, size / elemBytes);
      if (this.isContiguous()) {
        out.set(window.subarray(firstElem, firstElem + n) as never);
      } else {
        gather(window, firstElem, this.shape, this.strides, out);
      }
    } finally {
      staging.destroy();
    }
    return out;
  }

  /**
   * Reads the tensor back: f32/f16/bf16/fp8 decoded to a Float32Array, integers as their own
   * typed array.
   *
   * @example
   * const o = ctx.tensor([0.5, -1.25], [2], 'bf16');
   * console.log(await o.toArray()); // Float32Array [0.5, -1.25]
   */
  async toArray(): Promise<Float32Array | Int32Array | Uint32Array | Int8Array | Uint8Array> {
    return decodeArray(await this.toBits(), this.dtype);
  }

  /**
   * A storage binding covering just this tensor's elements, for buffers larger than the device can
   * bind at once (an engine's one big KV buffer): the range starts at an aligned offset at or
   * before the first element, and `elementOffset` is the first element's index inside the range.
   * Throws UnsupportedFeatureError, naming `argument`, when the tensor itself is larger than one
   * binding may be.
   */
  binding(argument = 'tensor'): { binding: GPUBufferBinding; elementOffset: number } {
    const bytes = dtypeBytes(this.dtype);
    const align = Math.max(this.ctx.limits.minStorageBufferOffsetAlignment, 16);
    const maxSize = this.ctx.limits.maxStorageBufferBindingSize;
    if (this.bufferBytes < 0) this.bufferBytes = this.buffer.size;
    if (this.bufferBytes <= maxSize) {
      return { binding: { buffer: this.buffer }, elementOffset: this.offset };
    }
    const first = this.byteOffset;
    const start = Math.floor(first / align) * align;
    const end = Math.min(this.buffer.size, Math.ceil(((this.offset + Math.max(1, this.span())) * bytes) / 16) * 16);
    const size = end - start;
    if (size > maxSize) {
      throw new UnsupportedFeatureError(
        `spans ${size} bytes, more than this device binds at once (maxStorageBufferBindingSize ${maxSize}); split it into smaller tensors`,
        argument,
      );
    }
    if ((start % bytes) !== 0) throw new LayoutError('binding start is not element aligned', argument);
    return { binding: { buffer: this.buffer, offset: start, size }, elementOffset: (first - start) / bytes };
  }

  /** Checks dtype and shape; `null` in `shape` matches any extent. */
  expect(argument: string, dtypes: readonly DType[] | null, shape: readonly (number | null)[]): void {
    this.assertLive(argument);
    if (dtypes && !dtypes.includes(this.dtype)) {
      throw new DTypeError(`dtype ${this.dtype} not accepted; expected ${dtypes.join(' | ')}`, argument);
    }
    const ok = shape.length === this.rank && shape.every((s, i) => s === null || s === this.shape[i]);
    if (!ok) {
      const want = shape.map((s) => (s === null ? '*' : String(s))).join(', ');
      throw new ShapeError(`shape [${this.shape.join(', ')}] does not match [${want}]`, argument);
    }
  }

  /** Frees the buffer if this tensor allocated it; views of it become unusable. */
  destroy(): void {
    if (this.owner.destroyed) return;
    this.owner.destroyed = true;
    if (this.owner.owns) this.buffer.destroy();
  }
}

function gather(
  src: StorageArray,
  base: number,
  shape: readonly number[],
  strides: readonly number[],
  out: StorageArray,
): void {
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < out.length; i++) {
    let off = base;
    for (let d = 0; d < rank; d++) off += idx[d] * strides[d];
    out[i] = src[off];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}
