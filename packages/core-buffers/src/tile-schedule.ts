/**
 * Work items of a tiled attention plan (prefill, MLA): each request's packed query rows (query
 * tokens x the query heads sharing one KV head) cut into tiles, each tile paired
 * with a KV chunk. Long KV is split (flash-decoding style) only when the tiles alone leave the GPU
 * idle; split rows get partial-state slots that the merge pass combines. Heavy items are listed
 * first, so the causal tail does not run last on a few SMs.
 */

/**
 * u32 words per work item: qo_start (first query token of the request), qo_len, kv_len,
 * page_base (into the plan's page indices), tile (first packed row), kv_start, kv_end, chunk
 * (index among the request's KV chunks, or DIRECT), mask_bit (bit offset of the request's mask).
 */
export const WORK_ITEM_WORDS = 12;
/** `chunk` of a work item whose rows are not split: it writes the output directly. */
export const DIRECT = 0xffffffff;

export interface TileScheduleInput {
  qoIndptr: Int32Array;
  kvLens: Int32Array;
  /** Per request: where its pages start in the plan's indices. */
  pageBase: Int32Array;
  /** Per request: bit offset of its custom mask (0 without masks). */
  maskBits: Float64Array | undefined;
  groupSize: number;
  numKvHeads: number;
  rowsPerTile: number;
  keysPerTile: number;
  causal: boolean;
  windowLeft: number;
  targetWorkgroups: number;
  fixedSplitSize?: number;
  disableSplitKv?: boolean;
  /** Requests to leave out (another kernel writes their rows; BatchAttention's decodes). */
  skip?: Uint8Array;
}

export interface TileSchedule {
  /** WORK_ITEM_WORDS u32 per item. */
  work: Uint32Array;
  numWork: number;
  /** Per query row: its partial slots [slotIndptr[r], slotIndptr[r+1]); empty when unsplit. */
  slotIndptr: Int32Array;
  numSlots: number;
}

const MIN_CHUNK = 256;

const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;

export function scheduleTiles(s: TileScheduleInput): TileSchedule {
  const B = s.kvLens.length;
  const G = s.groupSize;
  const rows = s.qoIndptr[B];
  const tilesOf = (b: number) => (s.skip?.[b] ? 0 : Math.ceil(((s.qoIndptr[b + 1] - s.qoIndptr[b]) * G) / s.rowsPerTile));
  let tiles = 0;
  for (let b = 0; b < B; b++) tiles += tilesOf(b);

  // Chunk length per request (0: not split).
  const chunk = new Int32Array(B);
  if (!s.disableSplitKv) {
    const fixed = s.fixedSplitSize && s.fixedSplitSize > 0 ? roundUp(s.fixedSplitSize, s.keysPerTile) : 0;
    const ways = fixed ? 0 : Math.ceil(s.targetWorkgroups / Math.max(1, tiles * s.numKvHeads));
    for (let b = 0; b < B; b++) {
      const len = s.kvLens[b];
      const size = fixed || (ways > 1 ? Math.max(MIN_CHUNK, roundUp(Math.ceil(len / ways), s.keysPerTile)) : 0);
      chunk[b] = size > 0 && size < len && tilesOf(b) > 0 ? size : 0;
    }
  }

  const slotIndptr = new Int32Array(rows + 1);
  const items: number[][] = [];
  const cost: number[] = [];
  let numSlots = 0;
  for (let b = 0; b < B; b++) {
    const q0 = s.qoIndptr[b];
    const qoLen = s.qoIndptr[b + 1] - q0;
    const kvLen = s.kvLens[b];
    const n = chunk[b] > 0 ? Math.ceil(kvLen / chunk[b]) : 1;
    for (let i = 0; i < qoLen; i++) slotIndptr[q0 + i + 1] = slotIndptr[q0 + i] + (n > 1 ? n : 0);
    for (let t = 0; t < tilesOf(b); t++) {
      const firstRow = Math.floor((t * s.rowsPerTile) / G);
      const lastRow = Math.min(qoLen - 1, Math.floor(((t + 1) * s.rowsPerTile - 1) / G));
      for (let c = 0; c < n; c++) {
        const start = n > 1 ? c * chunk[b] : 0;
        const end = n > 1 ? Math.min(kvLen, (c + 1) * chunk[b]) : kvLen;
        // Keys the tile really visits (the kernel clips the same way).
        let hi = end;
        let lo = start;
        if (s.causal) hi = Math.min(hi, Math.max(0, lastRow + kvLen - qoLen + 1));
        if (s.windowLeft >= 0) lo = Math.max(lo, firstRow + kvLen - qoLen - s.windowLeft);
        cost.push(Math.max(0, hi - lo) + 16); // the 16: fixed cost of a tile
        items.push([q0, qoLen, kvLen, s.pageBase[b], t * s.rowsPerTile, start, end, n > 1 ? c : DIRECT, s.maskBits ? s.maskBits[b] : 0]);
      }
    }
    if (n > 1) numSlots += n * qoLen;
  }
  const order = items.map((_, i) => i).sort((a, b) => cost[b] - cost[a] || a - b);
  const work = new Uint32Array(Math.max(1, items.length) * WORK_ITEM_WORDS);
  for (let k = 0; k < order.length; k++) work.set(items[order[k]], k * WORK_ITEM_WORDS);
  return { work, numWork: items.length, slotIndptr, numSlots };
}

/**
 * Work items and partial-state slots a graph-mode schedule reserves, from the shape alone.
 * Tiles: each request wastes less than one, so at most rows*G/R + B. Splitting happens only while
 * tiles*Hkv < target, into at most ceil(target / (tiles*Hkv)) chunks per request: items stay below
 * tiles + target/Hkv, and slots (chunks x rows of split requests, rows <= tiles*R/G) below
 * (tiles + target/Hkv) * R/G < 2 * target/Hkv * R/G. With the page tables' capacity known, each
 * request also splits into at most ceil(maxKvTokens / MIN_CHUNK) chunks.
 */
export function graphTileCapacity(rows: number, batch: number, group: number, rowsPerTile: number, numKvHeads: number, target: number, maxKvTokens?: number) {
  const tiles = Math.ceil((rows * group) / rowsPerTile) + batch;
  const x = Math.ceil(target / numKvHeads);
  // Automatic chunks are at least MIN_CHUNK tokens, so a request of at most maxKvTokens (the
  // page-table capacity) splits into at most this many.
  const perRequest = maxKvTokens === undefined ? Number.POSITIVE_INFINITY : Math.max(1, Math.ceil(maxKvTokens / MIN_CHUNK));
  return {
    work: Math.min(tiles + x, tiles * perRequest),
    slots: Math.min(rows * x, Math.ceil((2 * x * rowsPerTile) / group), rows * perRequest),
  };
}
