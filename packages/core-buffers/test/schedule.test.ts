import { describe, expect, it } from 'vitest';
import { planSplitKV } from '../src';

const uniform = (rows: number, len: number) => ({ rowStart: new Int32Array(rows), rowEnd: Int32Array.from({ length: rows }, () => len) });

/** Chunk lengths of row r. */
const lengthsOf = (p: ReturnType<typeof planSplitKV>, r: number) => {
  const out: number[] = [];
  for (let k = 0; k < p.chunkRow.length; k++) if (p.chunkRow[k] === r) out.push(p.chunkEnd[k] - p.chunkStart[k]);
  return out;
};

describe('planSplitKV', () => {
  it('splits rows evenly instead of leaving a sliver', () => {
    // 64 rows of 4096 at 8 workgroups a chunk and a target of 528: the target's size is 3984
    // (3984 + 112); balanced, every row is two chunks of 2048.
    const p = planSplitKV({ ...uniform(64, 4096), workgroupsPerChunk: 8, targetWorkgroups: 528, tile: 16 });
    expect(p.chunkSize).toBe(2048);
    for (const r of [0, 31, 63]) expect(lengthsOf(p, r)).toEqual([2048, 2048]);
    expect(p.numSlots).toBe(128);
    expect(Array.from(p.slotIndptr.subarray(0, 3))).toEqual([0, 2, 4]);
    const sliver = planSplitKV({ ...uniform(64, 4096), workgroupsPerChunk: 8, targetWorkgroups: 528, tile: 16, balance: false });
    expect(sliver.chunkSize).toBe(3984);
    expect(lengthsOf(sliver, 5)).toEqual([3984, 112]);
  });

  it('keeps chunks a multiple of the tile and covers every token once', () => {
    const rowStart = Int32Array.from([0, 100, 0, 7]);
    const rowEnd = Int32Array.from([5000, 3333, 17, 2900]);
    const p = planSplitKV({ rowStart, rowEnd, workgroupsPerChunk: 4, targetWorkgroups: 528, tile: 32 });
    expect(p.chunkSize % 32).toBe(0);
    expect(lengthsOf(p, 0).length).toBe(Math.ceil(5000 / p.chunkSize));
    for (let r = 0; r < 4; r++) {
      const lens = lengthsOf(p, r);
      expect(lens.reduce((a, b) => a + b, 0)).toBe(rowEnd[r] - rowStart[r]);
      // chunks after the first start where the previous one ended
      let at = rowStart[r];
      for (let k = 0; k < p.chunkRow.length; k++) {
        if (p.chunkRow[k] !== r) continue;
        expect(p.chunkStart[k]).toBe(at);
        at = p.chunkEnd[k];
      }
      // a row of one chunk writes the output directly
      if (lens.length === 1) expect(p.slotIndptr[r + 1] - p.slotIndptr[r]).toBe(0);
    }
    // the longest row's chunks differ by less than a tile plus its remainder
    const longest = lengthsOf(p, 0);
    expect(Math.max(...longest) - Math.min(...longest)).toBeLessThan(p.chunkSize);
    expect(longest.slice(0, -1).every((l) => l === p.chunkSize)).toBe(true);
  });

  it('leaves fixed splits, disabled splits, full batches and the minimum chunk alone', () => {
    const fixed = planSplitKV({ ...uniform(2, 1000), workgroupsPerChunk: 8, targetWorkgroups: 528, tile: 16, fixedSplitSize: 300 });
    expect(fixed.chunkSize).toBe(304);
    expect(lengthsOf(fixed, 1)).toEqual([304, 304, 304, 88]);
    expect(planSplitKV({ ...uniform(2, 100000), workgroupsPerChunk: 8, targetWorkgroups: 528, tile: 16, disableSplitKv: true }).numSlots).toBe(0);
    expect(planSplitKV({ ...uniform(128, 4096), workgroupsPerChunk: 8, targetWorkgroups: 528, tile: 16 }).numSlots).toBe(0);
    // one short row: the minimum chunk (256) wins over both the target and the balance
    const small = planSplitKV({ ...uniform(1, 600), workgroupsPerChunk: 8, targetWorkgroups: 528, tile: 16 });
    expect(small.chunkSize).toBe(256);
    expect(lengthsOf(small, 0)).toEqual([256, 256, 88]);
    const min = planSplitKV({ ...uniform(1, 1000), workgroupsPerChunk: 8, targetWorkgroups: 528, tile: 16, minChunk: 512 });
    expect(lengthsOf(min, 0)).toEqual([512, 488]);
  });
});
