/**
 * RoPE as FlashInfer applies it inside attention (`pos_encoding_mode = ROPE_LLAMA`): non-interleaved
 * "rotate half" over the whole head dim, frequency f_d = (1/ropeScale) * ropeTheta^(-2(d mod D/2)/D).
 */

/** Rotates `x` ([tokens, heads, headDim], row-major) in float64; token t sits at `positions[t]`. */
export function applyRopeLlama(
  x: ArrayLike<number>,
  numTokens: number,
  numHeads: number,
  headDim: number,
  positions: ArrayLike<number>,
  ropeScale = 1,
  ropeTheta = 1e4,
): Float64Array {
  if (headDim % 2 !== 0) throw new Error(`applyRopeLlama: headDim ${headDim} must be even`);
  const half = headDim / 2;
  const out = new Float64Array(numTokens * numHeads * headDim);
  const freq = new Float64Array(half);
  for (let d = 0; d < half; d++) freq[d] = (1 / ropeScale) * ropeTheta ** (-(2 * d) / headDim);
  for (let t = 0; t < numTokens; t++) {
    const pos = positions[t];
    for (let h = 0; h < numHeads; h++) {
      const base = (t * numHeads + h) * headDim;
      for (let d = 0; d < half; d++) {
        const ang = pos * freq[d];
        const c = Math.cos(ang);
        const s = Math.sin(ang);
        const a = x[base + d];
        const b = x[base + d + half];
        out[base + d] = a * c - b * s;
        out[base + d + half] = b * c + a * s;
      }
    }
  }
  return out;
}
