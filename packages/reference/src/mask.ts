/** Little-endian bit packing of bool masks (FlashInfer `packbits(..., bitorder="little")`). */
export function packbitsRef(bits: ArrayLike<boolean | number>): Uint8Array {
  const out = new Uint8Array(Math.ceil(bits.length / 8));
  for (let e = 0; e < bits.length; e++) if (bits[e]) out[e >> 3] |= 1 << (e & 7);
  return out;
}

/**
 * Packs each segment `[indptr[b], indptr[b+1])` of a flattened mask starting at a fresh byte;
 * returns the bytes and the byte offsets of each segment (`cumsum(ceil(len/8))`).
 */
export function segmentPackbitsRef(
  bits: ArrayLike<boolean | number>,
  indptr: ArrayLike<number>,
): { packed: Uint8Array; byteIndptr: Int32Array } {
  const batch = indptr.length - 1;
  const byteIndptr = new Int32Array(batch + 1);
  for (let b = 0; b < batch; b++) byteIndptr[b + 1] = byteIndptr[b] + Math.ceil((indptr[b + 1] - indptr[b]) / 8);
  const packed = new Uint8Array(byteIndptr[batch]);
  for (let b = 0; b < batch; b++) {
    for (let e = indptr[b]; e < indptr[b + 1]; e++) {
      const local = e - indptr[b];
      if (bits[e]) packed[byteIndptr[b] + (local >> 3)] |= 1 << (local & 7);
    }
  }
  return { packed, byteIndptr };
}
