/**
 * @webinfer/cuda-graph — capture once, replay every step: `capture()` records what webinfer
 * wrappers encode and `Graph.replay()` re-issues it in one submit; graph-mode wrappers keep their
 * dispatches valid across plans.
 */

export { type CUDAGraphBatchDecodeOptions, CUDAGraphBatchDecodeWithPagedKVCacheWrapper } from './batch-decode';
export { capture, Graph } from './graph';
export { Recorder } from './recorder';
