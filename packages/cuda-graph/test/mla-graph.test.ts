import { createContext, decodeArray, encodeArray, type GpuContext, ValueError } from '@webinfer/core-buffers';
import { BatchMLAPagedAttentionWrapper } from '@webinfer/mla';
import { compareClose, mlaRef, randn, rng, testSeed } from '@webinfer/reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capture } from '../src';
import { randomPageTable } from './helpers';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

const [H, DC, DP, PAGE] = [16, 512, 64, 16];
const B = 3;
const TOKENS = 6; // total query tokens: part of the graph's shape
const MAX_PAGES_PER_SEQ = 24;
const NUM_PAGES = B * MAX_PAGES_PER_SEQ + 2;

function tables(r: () => number, kvLens: number[]) {
  const t = randomPageTable(r, kvLens, PAGE, NUM_PAGES);
  return { kvIndptr: t.indptr, kvIndices: t.indices };
}

const exact = (r: () => number, n: number) => decodeArray(encodeArray(randn(r, n), 'f16'), 'f16') as Float32Array;


describe('BatchMLAPagedAttentionWrapper in graph mode', () => {
  it('replays one capture with new KV lengths, page tables and query splits', async () => {
    const seed = testSeed();
    const r = rng(seed);
    const ckvHost = exact(r, NUM_PAGES * PAGE * DC);
    const kpeHost = exact(r, NUM_PAGES * PAGE * DP);
    const qnHost = exact(r, TOKENS * H * DC);
    const qpHost = exact(r, TOKENS * H * DP);
    const ckv = ctx.tensor(ckvHost, [NUM_PAGES, PAGE, DC], 'f16');
    const kpe = ctx.tensor(kpeHost, [NUM_PAGES, PAGE, DP], 'f16');
    const qn = ctx.tensor(qnHost, [TOKENS, H, DC], 'f16');
    const qp = ctx.tensor(qpHost, [TOKENS, H, DP], 'f16');
    const smScale = 1 / Math.sqrt(192);
    const w = new BatchMLAPagedAttentionWrapper(ctx, ctx.empty([16 << 20], 'u8'), {
      useCudaGraph: true,
      qoIndptr: ctx.empty([B + 1], 'i32'),
      kvIndptr: ctx.empty([B + 1], 'i32'),
      kvIndices: ctx.empty([B * MAX_PAGES_PER_SEQ], 'i32'),
      kvLenArr: ctx.empty([B], 'i32'),
    });
    const plain = new BatchMLAPagedAttentionWrapper(ctx, ctx.empty([16 << 20], 'u8'));
    const steps: [number[], number[]][] = [
      [[2, 2, 2], [9, 20, 40]],
      [[1, 4, 1], [33, 16, 47]],
      [[2, 2, 2], Array(B).fill(MAX_PAGES_PER_SEQ * PAGE)],
      [[5, 1, 0], [380, 5, 0]],
    ];
    let graph: ReturnType<typeof capture<ReturnType<typeof w.run>>> | undefined;
    for (const [i, [qoLens, kvLens]] of steps.entries()) {
      const qoIndptr = [0];
      for (const n of qoLens) qoIndptr.push(qoIndptr[qoIndptr.length - 1] + n);
      const args = { qoIndptr, ...tables(r, kvLens), kvLenArr: kvLens, numHeads: H, headDimCkv: DC, headDimKpe: DP, pageSize: PAGE, causal: true, smScale };
      w.plan(args);
      graph ??= capture(ctx, (rec) => w.run(qn, qp, ckv, kpe, { encoder: rec }));
      graph.outputs.fill(Number.NaN);
      await ctx.checkErrors(() => graph!.replay());
      plain.plan(args);
      expect(Array.from(await graph.outputs.toBits()), `step ${i}: replay = plain wrapper`).toEqual(Array.from(await plain.run(qn, qp, ckv, kpe).toBits()));
      const got = await graph.outputs.toArray();
      for (let b = 0; b < B; b++) {
        const [q0, q1] = [qoIndptr[b], qoIndptr[b + 1]];
        if (q1 === q0) continue;
        const rows = (host: Float32Array, width: number) => {
          const x = new Float64Array(kvLens[b] * width);
          for (let j = 0; j < kvLens[b]; j++) {
            const p = args.kvIndices[args.kvIndptr[b] + Math.floor(j / PAGE)];
            for (let d = 0; d < width; d++) x[j * width + d] = host[(p * PAGE + (j % PAGE)) * width + d];
          }
          return x;
        };
        const ref = mlaRef({ qNope: qnHost.subarray(q0 * H * DC, q1 * H * DC), qPe: qpHost.subarray(q0 * H * DP, q1 * H * DP), ckv: rows(ckvHost, DC), kpe: rows(kpeHost, DP), qoLen: q1 - q0, kvLen: kvLens[b], numHeads: H, headDimCkv: DC, headDimKpe: DP, causal: true, smScale });
        const res = compareClose(got.subarray(q0 * H * DC, q1 * H * DC), ref.o, { rtol: 2e-3, atol: 2e-3 });
        expect(res.ok, `seed ${seed} step ${i} request ${b}: ${JSON.stringify(res)}`).toBe(true);
      }
    }
    expect(() => w.plan({ qoIndptr: [0, 1, 2], kvIndptr: [0, 1, 2], kvIndices: [0, 1], kvLenArr: [5, 5], numHeads: H, headDimCkv: DC, headDimKpe: DP, pageSize: PAGE, causal: true, smScale })).toThrow(ValueError);
    // Another head count changes the graph's shape.
    w.plan({ qoIndptr: [0, 2, 4, 6], ...tables(r, [9, 9, 9]), kvLenArr: [9, 9, 9], numHeads: 8, headDimCkv: DC, headDimKpe: DP, pageSize: PAGE, causal: true, smScale });
    expect(() => graph!.replay()).toThrow(/different shape/);
    w.destroy();
    plain.destroy();
  });
});
