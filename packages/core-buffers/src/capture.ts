import { LayoutError, ShapeError, ValueError } from './errors';
import type { Tensor } from './tensor';

/**
 * What the graph recorder (@webinfer/cuda-graph) needs from every wrapper, kept here so families
 * do not depend on it:
 * - a `CaptureToken` per wrapper plan: a wrapper that re-plans in a way a recorded dispatch cannot
 *   follow (new uniforms, new buffer sizes) invalidates its token, and a graph holding the token
 *   refuses to replay;
 * - the buffers behind each bind group, and whether a buffer has been destroyed, so a replay can
 *   say which captured buffer is gone instead of failing inside WebGPU.
 */

/** Validity of the dispatches a wrapper encoded under one plan. */
export class CaptureToken {
  private why: string | undefined;

  constructor(readonly owner: string) {}

  /** Why recorded dispatches of this plan may no longer replay, or undefined while they may. */
  get invalidReason(): string | undefined {
    return this.why;
  }

  invalidate(reason: string): void {
    this.why ??= reason;
  }
}

/** Encoders that record a graph, and the tokens noted on each. */
const recorders = new WeakMap<object, Set<CaptureToken>>();

/** Marks `encoder` as a graph recorder (called by @webinfer/cuda-graph). */
export function registerRecorder(encoder: object): Set<CaptureToken> {
  const tokens = new Set<CaptureToken>();
  recorders.set(encoder, tokens);
  return tokens;
}

/** Wrappers call this with the encoder they encode into; it matters only while recording. */
export function noteCapture(encoder: GPUCommandEncoder | undefined, token: CaptureToken): void {
  if (encoder) recorders.get(encoder)?.add(token);
}

/** Whether `encoder` records a graph (so anything it references must outlive the call). */
export function isRecorder(encoder: GPUCommandEncoder | undefined): boolean {
  return encoder !== undefined && recorders.has(encoder);
}

const groupBuffers = new WeakMap<GPUBindGroup, readonly GPUBuffer[]>();

/** Remembers the buffers bound by `group` (kernel-cache's bindGroup does this for every group). */
export function noteBindGroupBuffers(group: GPUBindGroup, buffers: readonly GPUBuffer[]): void {
  groupBuffers.set(group, buffers);
}

/** The buffers bound by `group`, when it was made by webinfer. */
export function bindGroupBuffers(group: GPUBindGroup): readonly GPUBuffer[] | undefined {
  return groupBuffers.get(group);
}

// WebGPU has no "is destroyed" query, so watched buffers get an instance-level destroy() that
// records the fact before calling the real one. A counter lets a graph skip its per-buffer check
// when nothing watched was destroyed since its last replay.
const destroyed = new WeakSet<GPUBuffer>();
const watched = new WeakSet<GPUBuffer>();
let destroyEpoch = 0;

/** Starts tracking `buffer`'s destroy(). */
export function watchDestroy(buffer: GPUBuffer): void {
  if (watched.has(buffer)) return;
  watched.add(buffer);
  const original = buffer.destroy;
  Object.defineProperty(buffer, 'destroy', {
    configurable: true,
    value: function destroyWatched(this: GPUBuffer) {
      if (!destroyed.has(buffer)) {
        destroyed.add(buffer);
        destroyEpoch++;
      }
      return original.call(this);
    },
  });
}

/** Whether a watched buffer was destroyed. */
export function isDestroyed(buffer: GPUBuffer): boolean {
  return destroyed.has(buffer);
}

/** Grows by one each time a watched buffer is destroyed. */
export function destroyCount(): number {
  return destroyEpoch;
}

/** One fixed index buffer of a graph-mode wrapper and its extent in terms of the batch size. */
export interface GraphIndexBuffer {
  name: string;
  tensor: Tensor | undefined;
  extent: 'batch' | 'batch+1' | 'any';
}

/**
 * Validates the fixed index buffers a graph-mode wrapper is built with (FlashInfer's
 * `*_buffer` arguments): each present, a contiguous 1-D i32/u32 tensor, and all agreeing on one
 * batch size, which is returned (taken from the first buffer whose extent depends on it).
 */
export function checkGraphIndexBuffers(buffers: readonly GraphIndexBuffer[]): number {
  let batch: number | undefined;
  for (const b of buffers) {
    if (!b.tensor) throw new ValueError('is required with useCudaGraph', b.name);
    b.tensor.expect(b.name, ['i32', 'u32'], [null]);
    if (!b.tensor.isContiguous()) throw new LayoutError('must be contiguous', b.name);
    if (b.extent === 'any') continue;
    const n = b.tensor.shape[0] - (b.extent === 'batch+1' ? 1 : 0);
    if (batch === undefined) {
      if (n < 1) throw new ShapeError(`needs at least ${b.extent === 'batch+1' ? 2 : 1} entries`, b.name);
      batch = n;
    } else if (n !== batch) {
      throw new ShapeError(`has ${b.tensor.shape[0]} entries, expected ${b.extent === 'batch+1' ? 'batch_size + 1' : 'batch_size'} = ${b.extent === 'batch+1' ? batch + 1 : batch}`, b.name);
    }
  }
  if (batch === undefined) throw new ValueError('no buffer fixes the batch size', buffers[0]?.name);
  return batch;
}
