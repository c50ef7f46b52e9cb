/**
 * The lazy running max of the tensor-core kernels (FlashAttention-4 style). Result matrices can't
 * be scaled per row, so P = exp2(s - m_ref) uses a per-row reference max that moves only when
 * some row's tile max passes it by more than 8 (P <= 256, exact enough in f16); then, and only
 * then, every row's reference moves, l and O are rescaled and P is written again.
 * m_ref + log2(l) stays the exact LSE.
 *
 * The kernel provides, in scope: `m` (reference), `mx` (the lane's tile max, before the reduce),
 * `l`, `tile_l` (set by `writeP`), and a workgroup `flag: array<atomic<u32>, 4>` zeroed before.
 */
export function wgslLazyMaxStep(o: {
  /** Reduces `mx` over the lanes of a row. */
  reduceMax: string;
  /** Writes P for reference `m` and sets `tile_l` to the row share of its (rounded) sum. */
  writeP: (m: string) => string;
  /** Rescales O by `alpha` (per row); runs in uniform control flow, may use barriers. */
  rescale: string;
}): string {
  return `${o.reduceMax}
    if (m <= NEG_BIG) { m = mx; }  // O of this row is still zero: nothing to rescale
    if (mx > m + 8.0) { atomicOr(&flag[0], 1u); }
    ${o.writeP('m')}
    if (workgroupUniformLoad(&flag[0]) != 0u) {
      // Some row's max moved by more than 8: move every reference, rescale l and O, redo P.
      let m_new = max(m, mx);
      let alpha = exp2(m - m_new);
      m = m_new;
      l *= alpha;
      ${o.rescale}
      ${o.writeP('m')}
      workgroupBarrier();
    }
    l += tile_l;`;
}

/** `fn p16(x, m) -> f16`: exp2(x - m) as f16, 0 for a masked logit (x = NEG_BIG). */
export function wgslLazyMaxHelpers(): string {
  return 'fn p16(x: f32, m: f32) -> f16 { return f16(select(0.0, exp2(x - m), x > NEG_BIG)); }';
}
