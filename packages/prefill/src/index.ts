/**
 * @webinfer/prefill: FlashInfer's prefill/append attention on WebGPU — single, batch paged and
 * batch ragged, every mask (causal bottom-right, custom, sliding window), RoPE/ALiBi, soft cap,
 * split-KV, an f32 path for every device and a tensor-core path on f16 subgroup matrices.
 */

export {
  type BatchPrefillPagedPlanArgs,
  type BatchPrefillRaggedPlanArgs,
  BatchPrefillWithPagedKVCacheWrapper,
  BatchPrefillWithRaggedKVCacheWrapper,
  type BatchPrefillWrapperOptions,
  type PrefillRunOptions,
} from './batch-prefill';
export {
  type CudnnBatchPrefillOptions,
  cudnnBatchPrefillWithKVCache,
  type TrtllmBatchContextOptions,
  trtllmBatchContextWithKVCache,
} from './block-table';
export { DEFAULT_TARGET_WORKGROUPS } from './engine';
export { HEAD_DIMS_QK, HEAD_DIMS_VO, type PrefillPlanOptions } from './options';
export { type BitOrder, packbits, segmentPackbits } from './packbits';
export { SIMT_WORKGROUP, type SimtPrefillConfig, simtPrefillWgsl } from './shaders/prefill-simt.wgsl';
export { type TensorCorePrefillConfig, tensorCorePrefillWgsl, tensorCoreSupport } from './shaders/prefill-tc.wgsl';
export { type SinglePrefillOptions, singlePrefillWithKVCache, singlePrefillWithKVCacheReturnLse } from './single-prefill';
