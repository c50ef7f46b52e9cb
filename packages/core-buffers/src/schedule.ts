/**
 * Split-KV scheduling shared by the attention families. A row (one query row of one request) is
 * cut into KV chunks so that rows × chunks × kv heads gives the GPU enough workgroups; chunks of
 * one row write partial states that a merge pass combines (merge-states.ts).
 */

export interface SplitKVPlanInput {
  /** KV range [start, end) each row must attend to (start > 0 skips tokens outside a window). */
  rowStart: ArrayLike<number>;
  rowEnd: ArrayLike<number>;
  /** Workgroups per chunk (e.g. one per kv head). */
  workgroupsPerChunk: number;
  /** Workgroups that keep the device busy; below it, rows are split. */
  targetWorkgroups: number;
  /** Chunks are multiples of this many tokens (the kernel's tile). */
  tile: number;
  /** Smallest chunk worth a partial state and a merge. */
  minChunk?: number;
  /** FlashInfer's fixed_split_size: chunk length in tokens. */
  fixedSplitSize?: number;
  /** FlashInfer's disable_split_kv. */
  disableSplitKv?: boolean;
  /**
   * Even out the automatic chunks: as many as the longest row needs at the target's size, each of
   * the size that splits that row evenly (default true). false keeps the target's size, whose last
   * chunk may be a sliver (graph-mode capacities are bounded with that size).
   */
  balance?: boolean;
}

export interface SplitKVPlan {
  /** Per chunk: row, start, end. */
  chunkRow: Int32Array;
  chunkStart: Int32Array;
  chunkEnd: Int32Array;
  /** Partial-state slot of each chunk, or -1 when its row is not split (written directly). */
  chunkSlot: Int32Array;
  /** Slots of row r: [slotIndptr[r], slotIndptr[r+1]); empty for unsplit rows. */
  slotIndptr: Int32Array;
  numSlots: number;
  /** Tokens per chunk used (0 when nothing was split). */
  chunkSize: number;
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}

export function planSplitKV(input: SplitKVPlanInput): SplitKVPlan {
  const rows = input.rowStart.length;
  let total = 0;
  let longest = 0;
  for (let r = 0; r < rows; r++) {
    const len = Math.max(0, input.rowEnd[r] - input.rowStart[r]);
    total += len;
    longest = Math.max(longest, len);
  }
  let chunkSize = 0; // 0: no split
  if (input.fixedSplitSize && input.fixedSplitSize > 0 && !input.disableSplitKv) {
    chunkSize = roundUp(input.fixedSplitSize, input.tile);
  } else if (!input.disableSplitKv && rows * input.workgroupsPerChunk < input.targetWorkgroups) {
    const minChunk = roundUp(input.minChunk ?? 256, input.tile);
    const wanted = Math.ceil((total * input.workgroupsPerChunk) / input.targetWorkgroups);
    chunkSize = Math.max(minChunk, roundUp(wanted, input.tile));
    if (chunkSize >= longest) chunkSize = 0;
    else if (input.balance !== false) {
      // 4096 tokens at a target of 3984 would be 3984 + 112: the workgroups of the first chunk
      // then do 35x the work of the second's, and they set the time (H100, B=64 fp8 decode).
      const n = Math.ceil(longest / chunkSize);
      chunkSize = Math.max(minChunk, roundUp(Math.ceil(longest / n), input.tile));
    }
  }
  // Two passes into typed arrays (plan runs every step: no growing arrays, no Int32Array.from).
  const chunksOf = (r: number) => {
    const s = input.rowStart[r];
    const e = Math.max(s, input.rowEnd[r]);
    return chunkSize > 0 ? Math.max(1, Math.ceil((e - s) / chunkSize)) : 1;
  };
  let count = 0;
  for (let r = 0; r < rows; r++) count += chunksOf(r);
  // One backing store for the five arrays: plan runs every step, and each typed-array allocation
  // costs more than a view.
  const all = new Int32Array(4 * count + rows + 1);
  const row = all.subarray(0, count);
  const start = all.subarray(count, 2 * count);
  const end = all.subarray(2 * count, 3 * count);
  const slot = all.subarray(3 * count, 4 * count);
  const slotIndptr = all.subarray(4 * count);
  let numSlots = 0;
  let k = 0;
  for (let r = 0; r < rows; r++) {
    const s = input.rowStart[r];
    const e = Math.max(s, input.rowEnd[r]);
    const n = chunksOf(r);
    for (let c = 0; c < n; c++, k++) {
      row[k] = r;
      start[k] = n === 1 ? s : s + c * chunkSize;
      end[k] = n === 1 ? e : Math.min(e, s + (c + 1) * chunkSize);
      slot[k] = n === 1 ? -1 : numSlots + c;
    }
    if (n > 1) numSlots += n;
    slotIndptr[r + 1] = numSlots;
  }
  return {
    chunkRow: row,
    chunkStart: start,
    chunkEnd: end,
    chunkSlot: slot,
    slotIndptr,
    numSlots,
    chunkSize,
  };
}
