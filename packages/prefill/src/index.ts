/**
 * @webinfer/prefill — not implemented yet. Will export: singlePrefillWithKVCache, BatchPrefillWithPagedKVCacheWrapper, BatchPrefillWithRaggedKVCacheWrapper, cudnnBatchPrefillWithKVCache, trtllmBatchContextWithKVCache, packbits / segmentPackbits.
 * See README.md for the plan; kernels land here, on top of @webinfer/core-buffers.
 */
export const IMPLEMENTED = false;
