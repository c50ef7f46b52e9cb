export {
  BatchDecodeWithPagedKVCacheWrapper,
  type BatchDecodePlanArgs,
  type BatchDecodeRunOptions,
  type BatchDecodeWrapperOptions,
  DEFAULT_TARGET_WORKGROUPS,
  stagedTensorCoreDecodeUnavailable,
} from './batch-decode';
export { singleDecodeWithKVCache, type SingleDecodeOptions } from './single-decode';
export { type PosEncodingMode, type DecodeShaderConfig, batchDecodeWgsl } from './shaders/batch-decode.wgsl';
export {
  cudnnBatchDecodeWithKVCache,
  trtllmBatchDecodeWithKVCache,
  type CudnnBatchDecodeOptions,
  type TrtllmBatchDecodeOptions,
} from './block-table';
