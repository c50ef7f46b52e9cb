/**
 * capture() runs a callback once against a Recorder and returns a Graph: the recorded dispatches,
 * replayed into one command encoder (one compute pass per run of dispatches) and one submit. A
 * replay creates nothing and validates only what can change after capture: whether the graph or
 * a captured buffer was destroyed, and whether a captured wrapper was re-planned in a way its
 * recorded dispatches cannot follow.
 */

import type { CaptureToken } from '@webinfer/core-buffers';
import {
  DisposedError,
  destroyCount,
  type GpuContext,
  isDestroyed,
  PlanMismatchError,
  watchDestroy,
} from '@webinfer/core-buffers';
import { type RecordedOp, Recorder } from './recorder';

/** Flat replay program: one entry per op, passes unrolled into parallel arrays. */
interface PassProgram {
  kind: 'pass';
  pipelines: GPUComputePipeline[];
  groups: { index: number; group: GPUBindGroup | null; offsets?: number[] }[][];
  sizes: ([number, number, number] | { buffer: GPUBuffer; offset: number })[];
}

type Program = PassProgram | Exclude<RecordedOp, { kind: 'pass' }>;

export class Graph<T = void> {
  /** What the capture callback returned (typically the output tensors the replays overwrite). */
  readonly outputs: T;
  private readonly program: Program[];
  private readonly buffers: GPUBuffer[];
  private readonly tokens: CaptureToken[];
  private checkedEpoch = -1;
  private destroyed = false;

  /** @internal use `capture()` */
  constructor(
    readonly ctx: GpuContext,
    recorder: Recorder,
    outputs: T,
  ) {
    this.outputs = outputs;
    this.program = recorder.ops.map((op) =>
      op.kind === 'pass'
        ? { kind: 'pass', pipelines: op.dispatches.map((d) => d.pipeline), groups: op.dispatches.map((d) => d.groups), sizes: op.dispatches.map((d) => d.size) }
        : op,
    );
    this.buffers = [...recorder.buffers];
    for (const b of this.buffers) watchDestroy(b);
    this.tokens = [...recorder.tokens];
  }

  /** Dispatches recorded (for diagnostics). */
  get dispatchCount(): number {
    return this.program.reduce((n, p) => n + (p.kind === 'pass' ? p.pipelines.length : 0), 0);
  }

  /**
   * Encodes the recorded work into `encoder`, or into a fresh one that is submitted at once.
   * Inputs are read from the buffers bound at capture: write new values into those tensors (and
   * re-plan graph-mode wrappers) before each replay.
   */
  replay(encoder?: GPUCommandEncoder): void {
    this.check();
    const device = this.ctx.device;
    const enc = encoder ?? device.createCommandEncoder({ label: 'webinfer/graph' });
    for (const op of this.program) {
      if (op.kind === 'pass') encodePass(enc, op);
      else if (op.kind === 'copy') enc.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.size);
      else enc.clearBuffer(op.buffer, op.offset, op.size);
    }
    if (!encoder) device.queue.submit([enc.finish()]);
  }

  /** Releases the graph; later replays throw. Captured buffers belong to their wrappers. */
  destroy(): void {
    this.destroyed = true;
  }

  private check(): void {
    if (this.destroyed) throw new DisposedError('replay after destroy()', 'graph');
    this.ctx.assertLive();
    for (const t of this.tokens) {
      const why = t.invalidReason;
      if (why !== undefined) throw new PlanMismatchError(`captured work of ${t.owner} cannot replay: ${why}`, 'graph');
    }
    const epoch = destroyCount();
    if (epoch === this.checkedEpoch) return;
    for (const b of this.buffers) {
      if (isDestroyed(b)) throw new DisposedError(`captured buffer '${b.label}' was destroyed`, 'graph');
    }
    this.checkedEpoch = epoch;
  }
}

function encodePass(enc: GPUCommandEncoder, p: PassProgram): void {
  const pass = enc.beginComputePass({ label: 'webinfer/graph' });
  let pipeline: GPUComputePipeline | undefined;
  for (let i = 0; i < p.pipelines.length; i++) {
    if (p.pipelines[i] !== pipeline) {
      pipeline = p.pipelines[i];
      pass.setPipeline(pipeline);
    }
    for (const g of p.groups[i]) {
      if (g.offsets) pass.setBindGroup(g.index, g.group, g.offsets);
      else pass.setBindGroup(g.index, g.group);
    }
    const size = p.sizes[i];
    if (Array.isArray(size)) pass.dispatchWorkgroups(size[0], size[1], size[2]);
    else pass.dispatchWorkgroupsIndirect(size.buffer, size.offset);
  }
  pass.end();
}

/**
 * Records what `record` encodes into the recorder it is given and returns it as a Graph.
 *
 * @example
 * const graph = capture(ctx, (recorder) =>
 *   layers.map((cache, i) => wrapper.run(q[i], cache, { encoder: recorder })));
 * for (const step of steps) {
 *   wrapper.plan({ ...step });   // graph mode: same shape, new page table
 *   graph.replay();              // writes graph.outputs
 * }
 */
export function capture<T>(ctx: GpuContext, record: (recorder: GPUCommandEncoder) => T): Graph<T> {
  ctx.assertLive();
  const recorder = new Recorder();
  const outputs = record(recorder.asEncoder());
  recorder.assertNoPass();
  return new Graph(ctx, recorder, outputs);
}
