/**
 * The demo: a FlashInfer-style flow on the default GPU. It builds a paged KV cache, appends
 * tokens with appendPagedKVCache, reads the pages back and checks them, then checks attention
 * over the cached tokens against the float64 reference. Prints the device it ran on.
 */
import {
  appendPagedKVCache,
  createContext,
  decodeArray,
  encodeArray,
  getBatchIndicesPositions,
} from '@webinfer/core-buffers';
import { appendPagedRef, attentionRef, compareClose, gatherPagedRef, randn, rng } from '@webinfer/reference';

async function main(): Promise<number> {
  const ctx = await createContext();
  const info = ctx.adapterInfo;
  console.log(`webinfer demo on: ${info.description || info.device || 'unknown'} (vendor ${info.vendor || '?'}, ${info.architecture || '?'})`);
  console.log(`features: ${[...ctx.features].filter((f) => /f16|subgroup|timestamp/.test(f)).join(', ') || 'none'}`);

  // LLaMA-like GQA: 8 qo heads over 2 kv heads, head dim 64, pages of 16 tokens, f16 cache.
  const [numQoHeads, numKvHeads, headDim, pageSize] = [8, 2, 64, 16];
  const kvLens = [37, 1, 64];
  const r = rng(2024);
  const pages = kvLens.map((l) => Math.ceil(l / pageSize));
  const maxPages = pages.reduce((a, b) => a + b) + 2;
  const indptr = [0];
  for (const p of pages) indptr.push(indptr[indptr.length - 1] + p);
  // Scatter requests over pages in reverse order, as a real allocator might.
  const indices = Array.from({ length: indptr[indptr.length - 1] }, (_, i) => maxPages - 1 - i);
  const lastPageLen = kvLens.map((l, b) => l - (pages[b] - 1) * pageSize);
  // Every request's tokens are appended in one go (a prefill): row offsets per request.
  const rowIndptr = [0];
  for (const l of kvLens) rowIndptr.push(rowIndptr[rowIndptr.length - 1] + l);
  const nnz = rowIndptr[kvLens.length];
  const { batchIndices, positions } = getBatchIndicesPositions(rowIndptr, kvLens, nnz);

  const rowElems = numKvHeads * headDim;
  const f16 = (n: number) => decodeArray(encodeArray(randn(r, n), 'f16'), 'f16') as Float32Array;
  const kRows = f16(nnz * rowElems);
  const vRows = f16(nnz * rowElems);
  const cache = ctx.zeros([maxPages, 2, pageSize, numKvHeads, headDim], 'f16');
  appendPagedKVCache(
    ctx,
    ctx.tensor(kRows, [nnz, numKvHeads, headDim], 'f16'),
    ctx.tensor(vRows, [nnz, numKvHeads, headDim], 'f16'),
    batchIndices,
    positions,
    cache,
    indices,
    indptr,
    lastPageLen,
  );

  const meta = { layout: 'NHD' as const, pageSize, numHeads: numKvHeads, headDim };
  const kExpect = new Float32Array(maxPages * pageSize * rowElems);
  const vExpect = new Float32Array(maxPages * pageSize * rowElems);
  appendPagedRef({ ...meta, data: kExpect }, kRows, batchIndices, positions, indptr, indices);
  appendPagedRef({ ...meta, data: vExpect }, vRows, batchIndices, positions, indptr, indices);
  const kGot = (await cache.select(1, 0).toArray()) as Float32Array;
  const vGot = (await cache.select(1, 1).toArray()) as Float32Array;
  const pagesOk = compareClose(kGot, kExpect, { rtol: 0, atol: 0 }).ok && compareClose(vGot, vExpect, { rtol: 0, atol: 0 }).ok;
  console.log(`paged-KV round trip: ${nnz} tokens in ${indptr[indptr.length - 1]} pages -> ${pagesOk ? 'exact' : 'MISMATCH'}`);

  // Attention of one decode query per request over what the GPU cache holds, in float64.
  let maxErr = 0;
  for (let b = 0; b < kvLens.length; b++) {
    const q = randn(r, numQoHeads * headDim);
    const k = gatherPagedRef({ ...meta, data: kGot }, indptr, indices, kvLens[b], b);
    const v = gatherPagedRef({ ...meta, data: vGot }, indptr, indices, kvLens[b], b);
    const rows = [rowIndptr[b] * rowElems, rowIndptr[b + 1] * rowElems] as const;
    const shape = { qoLen: 1, kvLen: kvLens[b], numQoHeads, numKvHeads, headDimQk: headDim };
    const fromRows = attentionRef({ q, k: kRows.subarray(...rows), v: vRows.subarray(...rows), ...shape });
    const fromCache = attentionRef({ q, k, v, ...shape });
    maxErr = Math.max(maxErr, compareClose(fromCache.o, fromRows.o, { rtol: 0, atol: 0 }).maxAbsError);
  }
  console.log(`reference attention over the cached pages vs the appended rows: max abs error ${maxErr}`);
  ctx.dispose();
  const ok = pagesOk && maxErr === 0;
  console.log(ok ? 'demo: OK' : 'demo: FAILED');
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
