/**
 * A GPU buffer a wrapper keeps across plans (page tables and schedules, masks, scratch LSEs):
 * reused while big enough, replaced by a larger one when a plan needs more.
 */
import type { GpuContext } from './context';

export class GrowableBuffer {
  private current: GPUBuffer | undefined;

  constructor(
    private readonly ctx: GpuContext,
    private readonly label: string,
    private readonly usage: GPUBufferUsageFlags,
    private readonly minBytes = 16,
  ) {}

  /** A buffer of at least `bytes` (rounded up to 16). */
  reserve(bytes: number): GPUBuffer {
    const size = Math.max(this.minBytes, Math.ceil(Math.max(16, bytes) / 16) * 16);
    if (!this.current || this.current.size < size) {
      this.current?.destroy();
      this.current = this.ctx.device.createBuffer({ label: this.label, size, usage: this.usage });
    }
    return this.current;
  }

  /** Writes `words` at offset 0 (the buffer needs COPY_DST usage) and returns the buffer. */
  upload(words: Uint32Array): GPUBuffer {
    const buffer = this.reserve(words.byteLength);
    this.ctx.device.queue.writeBuffer(buffer, 0, words as Uint32Array<ArrayBuffer>);
    return buffer;
  }

  /** The buffer last reserved, if any. */
  get buffer(): GPUBuffer | undefined {
    return this.current;
  }

  destroy(): void {
    this.current?.destroy();
    this.current = undefined;
  }
}
