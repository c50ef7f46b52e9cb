/**
 * @webinfer/mla — not implemented yet. Will export: BatchMLAPagedAttentionWrapper.
 * See README.md for the plan; kernels land here, on top of @webinfer/core-buffers.
 */
export const IMPLEMENTED = false;
