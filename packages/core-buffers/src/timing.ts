/**
 * GPU timing for benchmarks. With `timestamp-query`, an empty compute pass writes a timestamp
 * before and after the measured work (passes run in order on one queue), so whatever a kernel
 * encodes — one pass or several — is timed on the GPU. Without it, the wall time from submit to
 * `onSubmittedWorkDone` is reported and marked as such.
 */
import type { GpuContext } from './context';

export interface GpuTiming {
  /** Per-iteration times in milliseconds. */
  samples: number[];
  /** 'timestamp' (GPU clock) or 'queue' (submit-to-completion wall time). */
  source: 'timestamp' | 'queue';
}

export interface TimeGpuOptions {
  warmup?: number;
  /**
   * Keep warming up until this much wall time has passed (default 250 ms): GPUs drop their clocks
   * when idle (e.g. while the CPU verifies results) and need sustained work to ramp them back.
   */
  warmupMs?: number;
  iterations?: number;
  /** Force queue-completion timing even when timestamps exist. */
  forceQueueTiming?: boolean;
  /**
   * Encode the work this many times per timed sample (samples are divided by it), so short
   * kernels keep the GPU busy at full clock. Only for working sets larger than the GPU's caches.
   */
  repeat?: number;
}

/**
 * Times `encode` (which records GPU work into the given encoder) over many iterations.
 *
 * @example
 * const t = await timeGpu(ctx, (enc) => wrapper.run(q, cache, { encoder: enc }), { iterations: 50 });
 * console.log(median(t.samples), t.source);
 */
export async function timeGpu(
  ctx: GpuContext,
  encode: (encoder: GPUCommandEncoder) => void,
  options: TimeGpuOptions = {},
): Promise<GpuTiming> {
  const warmup = options.warmup ?? 5;
  const iterations = options.iterations ?? 30;
  const repeat = Math.max(1, Math.floor(options.repeat ?? 1));
  const encodeRepeated = (enc: GPUCommandEncoder) => {
    for (let r = 0; r < repeat; r++) encode(enc);
  };
  const { device } = ctx;
  const warmupMs = options.warmupMs ?? 250;
  const t0 = performance.now();
  for (let i = 0; i < warmup || performance.now() - t0 < warmupMs; i++) {
    const enc = device.createCommandEncoder();
    encodeRepeated(enc);
    device.queue.submit([enc.finish()]);
    if (i % 8 === 7) await device.queue.onSubmittedWorkDone();
  }
  await device.queue.onSubmittedWorkDone();

  if (!ctx.hasTimestamps || options.forceQueueTiming) {
    const samples: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const enc = device.createCommandEncoder();
      encodeRepeated(enc);
      const t0 = performance.now();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
      samples.push((performance.now() - t0) / repeat);
    }
    return { samples, source: 'queue' };
  }

  const querySet = device.createQuerySet({ label: 'timeGpu', type: 'timestamp', count: 2 * iterations });
  const resolve = device.createBuffer({ label: 'timeGpu resolve', size: 16 * iterations, usage: 0x200 | 0x04 /* QUERY_RESOLVE|COPY_SRC */ });
  const readback = device.createBuffer({ label: 'timeGpu readback', size: 16 * iterations, usage: 0x01 | 0x08 });
  try {
    for (let i = 0; i < iterations; i++) {
      const enc = device.createCommandEncoder();
      enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i } }).end();
      encodeRepeated(enc);
      enc.beginComputePass({ timestampWrites: { querySet, endOfPassWriteIndex: 2 * i + 1 } }).end();
      device.queue.submit([enc.finish()]);
    }
    const enc = device.createCommandEncoder();
    enc.resolveQuerySet(querySet, 0, 2 * iterations, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, readback, 0, 16 * iterations);
    device.queue.submit([enc.finish()]);
    await readback.mapAsync(0x0001);
    const ticks = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    const samples: number[] = [];
    for (let i = 0; i < iterations; i++) samples.push(Number(ticks[2 * i + 1] - ticks[2 * i]) / 1e6 / repeat);
    return { samples, source: 'timestamp' };
  } finally {
    querySet.destroy();
    resolve.destroy();
    readback.destroy();
  }
}

/** Median of `xs` (NaN when empty). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
