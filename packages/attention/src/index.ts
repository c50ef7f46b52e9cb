/**
 * @webinfer/attention: FlashInfer's unified BatchAttention (mixed prefill/decode batches in one
 * launch plus a merge) and BatchAttentionWithAttentionSinkWrapper (per-head attention sinks), on
 * the @webinfer/prefill kernels.
 */
export { BatchAttention, type BatchAttentionOptions, type BatchAttentionPlanArgs, type BatchAttentionRunOptions } from './batch-attention';
export { BatchAttentionWithAttentionSinkWrapper, type AttentionSinkWrapperOptions } from './attention-sink';
