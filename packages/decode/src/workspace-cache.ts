/** The one-shot entry points (single decode, block-table calls) use the context's shared workspace. */
import { type GpuContext, type Tensor, sharedWorkspace } from '@webinfer/core-buffers';

export function workspaceFor(ctx: GpuContext): Tensor {
  return sharedWorkspace(ctx);
}
