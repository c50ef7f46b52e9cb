/**
 * @webinfer/cuda-graph — not implemented yet. Will export: CUDAGraphBatchDecodeWithPagedKVCacheWrapper, capture/Graph.replay.
 * See README.md for the plan; kernels land here, on top of @webinfer/core-buffers.
 */
export const IMPLEMENTED = false;
