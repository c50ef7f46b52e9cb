/**
 * @webinfer/attention — not implemented yet. Will export: BatchAttention, BatchAttentionWithAttentionSinkWrapper.
 * See README.md for the plan; kernels land here, on top of @webinfer/core-buffers.
 */
export const IMPLEMENTED = false;
