/**
 * @webinfer/prefill: FlashInfer's prefill/append attention on WebGPU — single, batch paged and
 * batch ragged, every mask (causal bottom-right, custom, sliding window), RoPE/ALiBi, soft cap,
 * split-KV, an f32 path for every device and a tensor-core path on f16 subgroup matrices.
 */
export { singlePrefillWithKVCache, singlePrefillWithKVCacheReturnLse, type SinglePrefillOptions } from './single-prefill';
export {
  BatchPrefillWithPagedKVCacheWrapper,
  BatchPrefillWithRaggedKVCacheWrapper,
  type BatchPrefillPagedPlanArgs,
  type BatchPrefillRaggedPlanArgs,
  type BatchPrefillWrapperOptions,
  type PrefillRunOptions,
} from './batch-prefill';
export { packbits, segmentPackbits, type BitOrder } from './packbits';
export { HEAD_DIMS_QK, HEAD_DIMS_VO, type PrefillPlanOptions } from './options';
export { DEFAULT_TARGET_WORKGROUPS } from './engine';
export { simtPrefillWgsl, type SimtPrefillConfig } from './shaders/prefill-simt.wgsl';
export { tensorCorePrefillWgsl, tensorCoreSupport, type TensorCorePrefillConfig } from './shaders/prefill-tc.wgsl';
export {
  cudnnBatchPrefillWithKVCache,
  trtllmBatchContextWithKVCache,
  type CudnnBatchPrefillOptions,
  type TrtllmBatchContextOptions,
} from './block-table';
