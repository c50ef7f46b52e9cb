/**
 * The demo: a FlashInfer-style flow on the default GPU. It builds a paged KV cache, appends
 * tokens with appendPagedKVCache and checks the pages, then runs batch decode over the cache and
 * checks it against the float64 reference. Prints the device it ran on.
 */
import {
  appendPagedKVCache,
  createContext,
  decodeArray,
  encodeArray,
  getBatchIndicesPositions,
} from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper } from '@webinfer/decode';
import { appendPagedRef, attentionRef, compareClose, randn, rng } from '@webinfer/reference';

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

  // Batch decode on the GPU (one query token per request) vs float64 attention over the same rows.
  const qHost = f16(kvLens.length * numQoHeads * headDim);
  const wrapper = new BatchDecodeWithPagedKVCacheWrapper(ctx, ctx.empty([8 << 20], 'u8'));
  wrapper.plan({ indptr, indices, lastPageLen, numQoHeads, numKvHeads, headDim, pageSize, posEncodingMode: 'ROPE_LLAMA' });
  const [o, lse] = wrapper.runReturnLse(ctx.tensor(qHost, [kvLens.length, numQoHeads, headDim], 'f16'), cache);
  const oGot = await o.toArray();
  const lseGot = await lse.toArray();
  let maxErr = 0;
  let decodeOk = true;
  for (let b = 0; b < kvLens.length; b++) {
    const rows = [rowIndptr[b] * rowElems, rowIndptr[b + 1] * rowElems] as const;
    const q = qHost.subarray(b * numQoHeads * headDim, (b + 1) * numQoHeads * headDim);
    const want = attentionRef({
      q, k: kRows.subarray(...rows), v: vRows.subarray(...rows),
      qoLen: 1, kvLen: kvLens[b], numQoHeads, numKvHeads, headDimQk: headDim, posEncodingMode: 'ROPE_LLAMA',
    });
    const ro = compareClose(oGot.subarray(b * numQoHeads * headDim, (b + 1) * numQoHeads * headDim), want.o, { rtol: 2e-3, atol: 2e-3 });
    const rl = compareClose(lseGot.subarray(b * numQoHeads, (b + 1) * numQoHeads), want.lse, { rtol: 1e-3, atol: 1e-3 });
    maxErr = Math.max(maxErr, ro.maxAbsError);
    decodeOk &&= ro.ok && rl.ok;
  }
  const path = wrapper.planInfo?.kernel ?? '?';
  console.log(`batch decode (${kvLens.length} requests, GQA ${numQoHeads}/${numKvHeads}, RoPE, ${path} kernel) vs float64 reference: max abs error ${maxErr.toExponential(2)} -> ${decodeOk ? 'ok' : 'MISMATCH'}`);
  wrapper.destroy();
  ctx.dispose();
  const ok = pagesOk && decodeOk;
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
