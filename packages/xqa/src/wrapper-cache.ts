/**
 * The xqa entry points are functions, as in FlashInfer, but run on wrappers that keep plan
 * buffers: one wrapper per workspace buffer, re-planned only when the call's shape changes.
 */
import type { GpuContext, Tensor } from '@webinfer/core-buffers';

interface Wrapper {
  readonly ctx: GpuContext;
  destroy(): void;
}

export class WrapperCache<W extends Wrapper> {
  private readonly entries = new WeakMap<GPUBuffer, { wrapper: W; key: string }>();

  constructor(private readonly make: (ctx: GpuContext, workspace: Tensor | GPUBuffer) => W) {}

  /** The wrapper of `workspace`, planned for `key` (plan runs only when the key changes). */
  get(ctx: GpuContext, workspace: Tensor | GPUBuffer, key: string, plan: (w: W) => void): W {
    const buffer = 'getMappedRange' in workspace ? (workspace as GPUBuffer) : (workspace as Tensor).buffer;
    let entry = this.entries.get(buffer);
    if (!entry || entry.wrapper.ctx !== ctx) {
      entry?.wrapper.destroy();
      entry = { wrapper: this.make(ctx, workspace), key: '' };
      this.entries.set(buffer, entry);
    }
    if (entry.key !== key) {
      plan(entry.wrapper);
      entry.key = key;
    }
    return entry.wrapper;
  }
}
