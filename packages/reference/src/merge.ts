/**
 * Merging partial attention states (FlashInfer `cascade`): LSEs are base 2.
 * m = max(sa, sb); wa = 2^(sa-m); wb = 2^(sb-m); v = (wa va + wb vb)/(wa+wb); s = m + log2(wa+wb).
 * Two empty states (-inf) merge to v = 0, s = -inf.
 */

/** `v*` are `[n, H, D]`, `s*` are `[n, H]`. */
export function mergeStateRef(
  va: ArrayLike<number>,
  sa: ArrayLike<number>,
  vb: ArrayLike<number>,
  sb: ArrayLike<number>,
  headDim: number,
): { v: Float64Array; s: Float64Array } {
  const rows = sa.length;
  const v = new Float64Array(rows * headDim);
  const s = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const m = Math.max(sa[r], sb[r]);
    if (m === Number.NEGATIVE_INFINITY) {
      s[r] = Number.NEGATIVE_INFINITY;
      continue;
    }
    const wa = 2 ** (sa[r] - m);
    const wb = 2 ** (sb[r] - m);
    const d = wa + wb;
    for (let i = 0; i < headDim; i++) v[r * headDim + i] = (wa * va[r * headDim + i] + wb * vb[r * headDim + i]) / d;
    s[r] = m + Math.log2(d);
  }
  return { v, s };
}

/** `v` is `[n, S, H, D]`, `s` is `[n, S, H]`: merges the S states of each (row, head). */
export function mergeStatesRef(
  v: ArrayLike<number>,
  s: ArrayLike<number>,
  n: number,
  numStates: number,
  numHeads: number,
  headDim: number,
): { v: Float64Array; s: Float64Array } {
  const outV = new Float64Array(n * numHeads * headDim);
  const outS = new Float64Array(n * numHeads).fill(Number.NEGATIVE_INFINITY);
  for (let r = 0; r < n; r++) {
    for (let h = 0; h < numHeads; h++) {
      let m = Number.NEGATIVE_INFINITY;
      for (let k = 0; k < numStates; k++) m = Math.max(m, s[(r * numStates + k) * numHeads + h]);
      if (m === Number.NEGATIVE_INFINITY) continue;
      let d = 0;
      const o = (r * numHeads + h) * headDim;
      for (let k = 0; k < numStates; k++) {
        const w = 2 ** (s[(r * numStates + k) * numHeads + h] - m);
        d += w;
        const base = ((r * numStates + k) * numHeads + h) * headDim;
        for (let i = 0; i < headDim; i++) outV[o + i] += w * v[base + i];
      }
      for (let i = 0; i < headDim; i++) outV[o + i] /= d;
      outS[r * numHeads + h] = m + Math.log2(d);
    }
  }
  return { v: outV, s: outS };
}
