/**
 * @webinfer/mla — DeepSeek MLA attention over a paged compressed KV cache:
 * `BatchMLAPagedAttentionWrapper` (plan/run).
 */
export {
  BatchMLAPagedAttentionWrapper,
  DEFAULT_MLA_TARGET_WORKGROUPS,
  type BatchMLAPlanArgs,
  type BatchMLARunOptions,
  type BatchMLAWrapperOptions,
} from './batch-mla';
