/**
 * Bit packing of boolean masks (FlashInfer `flashinfer.quantization.packbits` / `segment_packbits`),
 * on the CPU: masks are read by plan() anyway.
 */
import { ShapeError, ValueError, validateIndptr } from '@webinfer/core-buffers';

export type BitOrder = 'little' | 'big';

function parseBitOrder(order: string): BitOrder {
  if (order === 'little' || order === 'big') return order;
  throw new ValueError(`expected 'little' or 'big', got '${order}'`, 'bitorder');
}

/**
 * Packs `x` (bool or 0/1 per element) into bytes, 8 elements a byte. Little bit order puts element
 * 8k + i in bit i of byte k (what the kernels read).
 *
 * @example
 * packbits([true, false, true]) // Uint8Array [0b101]
 */
export function packbits(x: ArrayLike<boolean | number>, bitorder: BitOrder = 'little'): Uint8Array {
  const order = parseBitOrder(bitorder);
  const out = new Uint8Array(Math.ceil(x.length / 8));
  for (let e = 0; e < x.length; e++) {
    if (x[e]) out[e >> 3] |= order === 'little' ? 1 << (e & 7) : 0x80 >> (e & 7);
  }
  return out;
}

/**
 * Packs each segment `x[indptr[b] .. indptr[b+1])` on its own, starting at a fresh byte. Returns
 * the bytes and the segments' byte offsets (`cumsum(ceil(len / 8))`), FlashInfer's `(y, new_indptr)`.
 *
 * @example
 * const [packed, byteIndptr] = segmentPackbits(masks, [0, 6, 15]); // byteIndptr = [0, 1, 3]
 */
export function segmentPackbits(
  x: ArrayLike<boolean | number>,
  indptr: ArrayLike<number>,
  bitorder: BitOrder = 'little',
): [Uint8Array, Int32Array] {
  const order = parseBitOrder(bitorder);
  const ptr = validateIndptr(indptr as number[], 'indptr');
  if (ptr[ptr.length - 1] > x.length) {
    throw new ShapeError(`indptr ends at ${ptr[ptr.length - 1]} but x has ${x.length} elements`, 'indptr');
  }
  const batch = ptr.length - 1;
  const bytes = new Int32Array(batch + 1);
  for (let b = 0; b < batch; b++) bytes[b + 1] = bytes[b] + Math.ceil((ptr[b + 1] - ptr[b]) / 8);
  const out = new Uint8Array(bytes[batch]);
  for (let b = 0; b < batch; b++) {
    for (let e = ptr[b]; e < ptr[b + 1]; e++) {
      const i = e - ptr[b];
      if (x[e]) out[bytes[b] + (i >> 3)] |= order === 'little' ? 1 << (i & 7) : 0x80 >> (i & 7);
    }
  }
  return [out, bytes];
}
