/**
 * Workspace: the user's scratch buffer (FlashInfer's `float_workspace_buffer`), carved into named
 * regions for one plan. Regions start at the device's storage-offset alignment so each can be bound
 * on its own; a plan that does not fit is an error naming the bytes it needs.
 */
import type { GpuContext } from './context';
import { dtypeBytes } from './dtype';
import { ValueError } from './errors';
import type { Tensor } from './tensor';

export interface WorkspaceRegion {
  name: string;
  /** Byte offset in the workspace buffer. */
  offset: number;
  /** Bytes requested. */
  size: number;
}

/** 128 MiB, FlashInfer's recommended workspace size. */
export const DEFAULT_WORKSPACE_BYTES = 128 * 1024 * 1024;

export class Workspace {
  readonly buffer: GPUBuffer;
  /** First usable byte (the tensor's offset when built from a view). */
  readonly base: number;
  /** Usable bytes. */
  readonly capacity: number;
  readonly alignment: number;

  constructor(ctx: GpuContext, workspace: Tensor | GPUBuffer) {
    this.alignment = ctx.limits.minStorageBufferOffsetAlignment;
    if ('getMappedRange' in workspace) {
      this.buffer = workspace;
      this.base = 0;
      this.capacity = workspace.size;
    } else {
      workspace.assertLive('workspaceBuffer');
      if (!workspace.isContiguous()) throw new ValueError('must be a contiguous tensor', 'workspaceBuffer');
      this.buffer = workspace.buffer;
      this.base = Math.ceil(workspace.byteOffset / this.alignment) * this.alignment;
      const end = workspace.byteOffset + workspace.numel * dtypeBytes(workspace.dtype);
      this.capacity = Math.max(0, end - this.base);
    }
  }

  /**
   * Lays out `sizes` (bytes per named region) one after another, each aligned. Throws a
   * ValueError naming the total needed if the workspace is too small.
   */
  carve<N extends string>(sizes: Readonly<Record<N, number>>): Record<N, WorkspaceRegion> {
    const out = {} as Record<N, WorkspaceRegion>;
    let cursor = 0;
    for (const name of Object.keys(sizes) as N[]) {
      const size = sizes[name];
      if (!Number.isInteger(size) || size < 0) {
        throw new ValueError(`region '${name}' has invalid size ${size}`, 'workspaceBuffer');
      }
      cursor = Math.ceil(cursor / this.alignment) * this.alignment;
      out[name] = { name, offset: this.base + cursor, size };
      // Bindings may not be empty: reserve at least 16 bytes per region.
      cursor += Math.max(16, Math.ceil(size / 16) * 16);
    }
    if (cursor > this.capacity) {
      throw new ValueError(
        `needs ${cursor} bytes for this plan but the workspace holds ${this.capacity}; pass a larger buffer`,
        'workspaceBuffer',
      );
    }
    return out;
  }

  /** A binding for one region. */
  binding(region: WorkspaceRegion): GPUBufferBinding {
    return { buffer: this.buffer, offset: region.offset, size: Math.max(16, Math.ceil(region.size / 16) * 16) };
  }

  /**
   * Regions for split-KV partial states (f32 outputs `[slots, heads, headDim]` and LSEs
   * `[slots, heads]`), or undefined when nothing is split. Errors when they would reach past what
   * one binding may hold (kernels bind the workspace once, from its base).
   */
  carveSplitKV(numSlots: number, numHeads: number, headDim: number, maxBindingSize: number): { partialO: WorkspaceRegion; partialLse: WorkspaceRegion } | undefined {
    if (numSlots === 0) return undefined;
    const regions = this.carve({ partialO: numSlots * numHeads * headDim * 4, partialLse: numSlots * numHeads * 4 });
    const end = regions.partialLse.offset + regions.partialLse.size - this.base;
    if (end > maxBindingSize) {
      throw new ValueError(`split-KV partial states need ${end} bytes, more than one binding holds; use a smaller fixedSplitSize or disableSplitKv`, 'fixedSplitSize');
    }
    return regions;
  }

  /**
   * The whole workspace from its base, as kernels that address regions by offset bind it: no
   * more than one binding may hold (plans never place regions beyond that).
   */
  kernelBinding(maxBindingSize: number): GPUBufferBinding {
    const size = Math.min(this.capacity, maxBindingSize);
    return { buffer: this.buffer, offset: this.base, size: Math.max(16, size - (size % 4)) };
  }
}

const sharedWorkspaces = new WeakMap<GpuContext, Tensor>();

/**
 * A workspace owned by the context, for one-shot entry points (single decode/prefill, block-table
 * calls) that have no caller-provided buffer. Made on first use and grown to `minBytes` when a
 * call needs more; freed with the context.
 */
export function sharedWorkspace(ctx: GpuContext, minBytes = 32 * 1024 * 1024): Tensor {
  let ws = sharedWorkspaces.get(ctx);
  if (!ws || ws.destroyed || ws.numel < minBytes) {
    ws?.destroy();
    ws = ctx.empty([minBytes], 'u8', 'webinfer/shared-workspace');
    sharedWorkspaces.set(ctx, ws);
  }
  return ws;
}
