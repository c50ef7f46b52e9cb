/**
 * FlashInfer's CUDAGraphBatchDecodeWithPagedKVCacheWrapper: the batch decode wrapper in graph
 * mode. The batch size is fixed by the buffers; each plan() rewrites the page table and the padded
 * schedule in place, so a step captured with `capture()` replays with any lengths.
 */
import type { GpuContext, KVLayout, Tensor } from '@webinfer/core-buffers';
import { BatchDecodeWithPagedKVCacheWrapper } from '@webinfer/decode';

export interface CUDAGraphBatchDecodeOptions {
  kvLayout?: KVLayout;
  useTensorCores?: boolean;
  /** See BatchDecodeWrapperOptions.indirectDispatch. */
  indirectDispatch?: boolean;
}

/**
 * @example
 * const B = 8;
 * const wrapper = new CUDAGraphBatchDecodeWithPagedKVCacheWrapper(ctx, workspace,
 *   ctx.empty([B + 1], 'i32'), ctx.empty([maxPages], 'i32'), ctx.empty([B], 'i32'));
 * wrapper.plan({ indptr, indices, lastPageLen, numQoHeads: 32, numKvHeads: 8, headDim: 128, pageSize: 16 });
 * const graph = capture(ctx, (rec) => wrapper.run(q, cache, { encoder: rec }));
 * wrapper.plan({ indptr: next.indptr, indices: next.indices, lastPageLen: next.lastPageLen, ... });
 * graph.replay();                       // graph.outputs holds the new o
 */
export class CUDAGraphBatchDecodeWithPagedKVCacheWrapper extends BatchDecodeWithPagedKVCacheWrapper {
  constructor(
    ctx: GpuContext,
    workspaceBuffer: Tensor | GPUBuffer,
    indptrBuffer: Tensor,
    indicesBuffer: Tensor,
    lastPageLenBuffer: Tensor,
    options: CUDAGraphBatchDecodeOptions = {},
  ) {
    super(ctx, workspaceBuffer, { ...options, useCudaGraph: true, indptrBuffer, indicesBuffer, lastPageLenBuffer });
  }
}
