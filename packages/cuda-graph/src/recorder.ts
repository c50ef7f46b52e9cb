/**
 * A stand-in for GPUCommandEncoder that records instead of encoding. Every webinfer wrapper takes
 * an `encoder` option, so passing a recorder captures exactly what the wrapper would encode:
 * pipelines, bind groups and dispatch sizes (uniforms and bind groups are made once, at capture).
 * Consecutive compute passes are folded into one; a compute pass orders its dispatches and makes
 * each one's writes visible to the next, so this changes nothing but CPU cost.
 */

import type { CaptureToken } from '@webinfer/core-buffers';
import { bindGroupBuffers, registerRecorder, ValueError } from '@webinfer/core-buffers';

/** One recorded dispatch. */
export interface RecordedDispatch {
  pipeline: GPUComputePipeline;
  /** Bind groups by index (with their dynamic offsets). */
  groups: { index: number; group: GPUBindGroup | null; offsets?: number[] }[];
  /** Workgroup counts, or an indirect-arguments buffer and offset. */
  size: [number, number, number] | { buffer: GPUBuffer; offset: number };
}

export type RecordedOp =
  | { kind: 'pass'; dispatches: RecordedDispatch[] }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number }
  | { kind: 'clear'; buffer: GPUBuffer; offset: number; size: number | undefined };

class RecordingPass {
  private pipeline: GPUComputePipeline | undefined;
  private readonly bound = new Map<number, { group: GPUBindGroup | null; offsets?: number[] }>();
  private ended = false;

  constructor(
    private readonly owner: Recorder,
    readonly label: string,
  ) {}

  setPipeline(pipeline: GPUComputePipeline): void {
    this.pipeline = pipeline;
  }

  setBindGroup(index: number, group: GPUBindGroup | null, offsets?: Iterable<number>): void {
    this.bound.set(index, { group, offsets: offsets ? [...offsets] : undefined });
  }

  dispatchWorkgroups(x: number, y = 1, z = 1): void {
    this.push([x, y, z]);
  }

  dispatchWorkgroupsIndirect(buffer: GPUBuffer, offset: number): void {
    this.push({ buffer, offset });
    this.owner.noteBuffer(buffer);
  }

  pushDebugGroup(): void {}
  popDebugGroup(): void {}
  insertDebugMarker(): void {}

  end(): void {
    if (this.ended) throw new ValueError('end() called twice on a recorded compute pass', 'recorder');
    this.ended = true;
    this.owner.passEnded();
  }

  private push(size: RecordedDispatch['size']): void {
    if (this.ended) throw new ValueError('dispatch after end() of a recorded compute pass', 'recorder');
    if (!this.pipeline) throw new ValueError('dispatch before setPipeline in a recorded compute pass', 'recorder');
    const groups = [...this.bound].map(([index, b]) => ({ index, ...b }));
    for (const g of groups) {
      if (g.group) for (const buffer of bindGroupBuffers(g.group) ?? []) this.owner.noteBuffer(buffer);
    }
    this.owner.dispatch({ pipeline: this.pipeline, groups, size });
  }
}

/** The encoder handed to `capture`'s callback. */
export class Recorder {
  readonly label = 'webinfer/graph-recorder';
  readonly ops: RecordedOp[] = [];
  readonly buffers = new Set<GPUBuffer>();
  readonly tokens: Set<CaptureToken>;
  private open: RecordingPass | undefined;

  constructor() {
    this.tokens = registerRecorder(this);
  }

  /** This object, typed as the encoder the wrappers expect. */
  asEncoder(): GPUCommandEncoder {
    return this as unknown as GPUCommandEncoder;
  }

  beginComputePass(descriptor: GPUComputePassDescriptor = {}): GPUComputePassEncoder {
    if (this.open) throw new ValueError('a recorded compute pass is still open', 'recorder');
    if (descriptor.timestampWrites) throw new ValueError('timestamp writes cannot be recorded; time the replay instead', 'recorder');
    this.open = new RecordingPass(this, descriptor.label ?? '');
    return this.open as unknown as GPUComputePassEncoder;
  }

  beginRenderPass(): never {
    throw new ValueError('render passes cannot be recorded', 'recorder');
  }

  copyBufferToBuffer(src: GPUBuffer, a: number, b?: GPUBuffer | number, c?: number, d?: number): void {
    this.assertNoPass();
    // Both overloads: (src, dst, size?) and (src, srcOffset, dst, dstOffset, size).
    const op =
      typeof b === 'number' || b === undefined
        ? undefined
        : { kind: 'copy' as const, src, srcOffset: a, dst: b, dstOffset: c ?? 0, size: d ?? src.size - a };
    if (!op) throw new ValueError('copyBufferToBuffer(src, srcOffset, dst, dstOffset, size) is the recorded form', 'recorder');
    this.noteBuffer(src);
    this.noteBuffer(op.dst);
    this.ops.push(op);
  }

  clearBuffer(buffer: GPUBuffer, offset = 0, size?: number): void {
    this.assertNoPass();
    this.noteBuffer(buffer);
    this.ops.push({ kind: 'clear', buffer, offset, size });
  }

  finish(): never {
    throw new ValueError('a recorder is not submitted; capture() returns a Graph to replay', 'recorder');
  }

  /** @internal */
  noteBuffer(buffer: GPUBuffer): void {
    this.buffers.add(buffer);
  }

  /** @internal */
  dispatch(d: RecordedDispatch): void {
    const last = this.ops[this.ops.length - 1];
    if (last?.kind === 'pass') last.dispatches.push(d);
    else this.ops.push({ kind: 'pass', dispatches: [d] });
  }

  /** @internal */
  passEnded(): void {
    this.open = undefined;
  }

  /** @internal */
  assertNoPass(): void {
    if (this.open) throw new ValueError('end the compute pass before encoding outside it', 'recorder');
  }
}
