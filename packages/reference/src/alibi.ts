/** ALiBi slopes exactly as FlashInfer's `get_alibi_slopes(n)` (fp32 values, one per qo head). */
export function getAlibiSlopes(numHeads: number): Float64Array {
  const n2 = 2 ** Math.floor(Math.log2(numHeads));
  const m0 = 2 ** (-8 / n2);
  const slopes: number[] = [];
  for (let k = 1; k <= n2; k++) slopes.push(m0 ** k);
  if (n2 < numHeads) {
    const m1 = 2 ** (-4 / n2);
    for (let k = 1; k <= 2 * (numHeads - n2) - 1; k += 2) slopes.push(m1 ** k);
  }
  return Float64Array.from(slopes, (s) => Math.fround(s));
}
