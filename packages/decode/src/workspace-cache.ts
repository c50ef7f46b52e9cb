/** Workspaces for the one-shot entry points (single decode, block-table calls), one per context. */
import type { GpuContext, Tensor } from '@webinfer/core-buffers';

const workspaces = new WeakMap<GpuContext, Tensor>();

/** 32 MiB covers split-KV partials of any single decode; grown on demand by callers' plans. */
const ONE_SHOT_WORKSPACE_BYTES = 32 * 1024 * 1024;

export function workspaceFor(ctx: GpuContext): Tensor {
  let ws = workspaces.get(ctx);
  if (!ws || ws.destroyed) {
    ws = ctx.empty([ONE_SHOT_WORKSPACE_BYTES], 'u8', 'decode/one-shot-workspace');
    workspaces.set(ctx, ws);
  }
  return ws;
}
