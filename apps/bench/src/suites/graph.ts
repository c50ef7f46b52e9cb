/**
 * Graph suite: one decode step of an L-layer model (the same paged cache read per layer, distinct
 * q/out per layer), run three ways on the same inputs:
 * - plain: plan() once per step, then run() per layer into one encoder, one submit;
 * - graph: the graph-mode wrapper's plan() once per step, then one Graph.replay() of all layers.
 * Reported: GPU time of the step both ways, CPU time per layer (plan share included), and for
 * the graph the replay alone. --verify compares the replayed outputs with the plain ones: equal to
 * f16 rounding (graph mode keeps the split target's chunk sizes, which bound its padded capacity,
 * while the plain wrapper evens its chunks out, so partial sums can round differently).
 */
import { bindGroup, type GpuContext, getKernel, median, type Tensor, timeGpu } from '@webinfer/core-buffers';
import { CUDAGraphBatchDecodeWithPagedKVCacheWrapper, capture, Recorder } from '@webinfer/cuda-graph';
import { BatchDecodeWithPagedKVCacheWrapper } from '@webinfer/decode';
import { compareClose } from '@webinfer/reference';
import { gpuFill } from '../fill';
import { type CaseResult, type SuiteOptions, WARMUP_MS } from '../types';

/** Median wall time of `fn` in microseconds over `n` calls, waiting for the GPU every 8 calls (untimed). */
async function cpuMicros(ctx: GpuContext, n: number, fn: () => void): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    fn();
    samples.push((performance.now() - t0) * 1e3);
    if (i % 8 === 7) await ctx.synchronize();
  }
  await ctx.synchronize();
  return median(samples);
}

/**
 * Dawn's own CPU floor per dispatch on this host: setBindGroup + dispatchWorkgroups of a trivial
 * kernel with as many bindings as the decode kernel (9), a different bind group each time, in one
 * pass. A replay cannot go below it.
 */
async function dawnDispatchFloorUs(ctx: GpuContext): Promise<number> {
  const reads = Array.from({ length: 8 }, (_, i) => `@group(0) @binding(${i + 1}) var<storage, read> b${i}: array<u32>;`).join('\n');
  const kernel = getKernel(ctx, {
    id: 'bench/dispatch-floor',
    config: {},
    wgsl: () => `@group(0) @binding(0) var<storage, read_write> a: array<u32>;\n${reads}\n@compute @workgroup_size(64) fn main() { a[0] = b0[0] + b1[0] + b2[0] + b3[0] + b4[0] + b5[0] + b6[0] + b7[0]; }`,
    bindings: ['storage', ...Array<'read-only-storage'>(8).fill('read-only-storage')],
  });
  // 32 bind groups over distinct buffers in rotation, as a replay sets a new group per layer.
  const buffers = Array.from({ length: 9 * 32 }, () => ctx.device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE }));
  const groups = Array.from({ length: 32 }, (_, l) => bindGroup(ctx, kernel, buffers.slice(9 * l, 9 * l + 9)));
  const samples: number[] = [];
  for (let rep = 0; rep < 20; rep++) {
    const enc = ctx.device.createCommandEncoder();
    const t0 = performance.now();
    const pass = enc.beginComputePass();
    pass.setPipeline(kernel.pipeline);
    for (let i = 0; i < 256; i++) {
      pass.setBindGroup(0, groups[i % 32]);
      pass.dispatchWorkgroups(1);
    }
    pass.end();
    samples.push(((performance.now() - t0) * 1e3) / 256);
    ctx.submit([enc.finish()]);
    await ctx.synchronize();
  }
  for (const b of buffers) b.destroy();
  return median(samples);
}

export async function runGraphSuite(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  const [layers, batch, kvLen] = opts.quick ? [4, 4, 64] : [32, 64, 4096];
  const [hq, hkv, d, page] = [32, 8, 128, 16];
  const name = `${layers}-layer decode step, B=${batch} kv=${kvLen} H=${hq}/${hkv} D=${d} page=${page} f16`;
  if (opts.filter && !name.includes(opts.filter)) return [];
  opts.progress(`graph 1/1: ${name}`);
  const pagesPer = Math.ceil(kvLen / page);
  const numPages = batch * pagesPer;
  const indptr = Array.from({ length: batch + 1 }, (_, b) => b * pagesPer);
  const indices = Int32Array.from({ length: numPages }, (_, i) => (i * 7919) % numPages); // scattered pages
  const lastPageLen = Array(batch).fill(kvLen - (pagesPer - 1) * page);
  const planArgs = { indptr, indices, lastPageLen, numQoHeads: hq, numKvHeads: hkv, headDim: d, pageSize: page };

  const cache = ctx.empty([numPages, 2, page, hkv, d], 'f16', 'bench/graph-cache');
  gpuFill(ctx, cache, 41);
  const qs = Array.from({ length: layers }, (_, l) => {
    const q = ctx.empty([batch, hq, d], 'f16');
    gpuFill(ctx, q, 100 + l);
    return q;
  });
  const outPlain = qs.map(() => ctx.empty([batch, hq, d], 'f16'));
  const wsPlain = ctx.empty([64 << 20], 'u8');
  const wsGraph = ctx.empty([64 << 20], 'u8');
  const wsIndirect = ctx.empty([64 << 20], 'u8');
  const fixedBuffers = () => [ctx.empty([batch + 1], 'i32'), ctx.empty([numPages], 'i32'), ctx.empty([batch], 'i32')];
  const fixed = fixedBuffers();
  const fixed2 = fixedBuffers();
  const tensors: Tensor[] = [cache, ...qs, ...outPlain, wsPlain, wsGraph, wsIndirect, ...fixed, ...fixed2];
  const nan = Number.NaN;
  try {
    const plain = new BatchDecodeWithPagedKVCacheWrapper(ctx, wsPlain);
    const graphWrapper = new CUDAGraphBatchDecodeWithPagedKVCacheWrapper(ctx, wsGraph, fixed[0], fixed[1], fixed[2]);
    const indirectWrapper = new CUDAGraphBatchDecodeWithPagedKVCacheWrapper(ctx, wsIndirect, fixed2[0], fixed2[1], fixed2[2], { indirectDispatch: true });
    plain.plan(planArgs);
    graphWrapper.plan(planArgs);
    indirectWrapper.plan(planArgs);
    const stepPlain = (enc: GPUCommandEncoder) => {
      for (let l = 0; l < layers; l++) plain.run(qs[l], cache, { out: outPlain[l], encoder: enc });
    };
    const graph = capture(ctx, (rec) => qs.map((q) => graphWrapper.run(q, cache, { encoder: rec })));
    const graphIndirect = capture(ctx, (rec) => qs.map((q) => indirectWrapper.run(q, cache, { encoder: rec })));
    tensors.push(...graph.outputs, ...graphIndirect.outputs);
    await ctx.checkErrors(async () => {
      const enc = ctx.device.createCommandEncoder();
      stepPlain(enc);
      ctx.submit([enc.finish()]);
      graph.replay();
      graphIndirect.replay();
      await ctx.synchronize();
    });

    // CPU: a whole step as an engine issues it (plan, then every layer, then submit).
    const iters = opts.quick ? 16 : 64;
    const plainStepUs = await cpuMicros(ctx, iters, () => {
      plain.plan(planArgs);
      const enc = ctx.device.createCommandEncoder();
      stepPlain(enc);
      ctx.submit([enc.finish()]);
    });
    const graphStepUs = await cpuMicros(ctx, iters, () => {
      graphWrapper.plan(planArgs);
      graph.replay();
    });
    const replayUs = await cpuMicros(ctx, iters, () => graph.replay());
    // Encoding alone (what grows with the layer count; finish and submit are once per step).
    const encodeOnlyUs = async (g: typeof graph) => {
      const samples: number[] = [];
      for (let i = 0; i < iters; i++) {
        const enc = ctx.device.createCommandEncoder();
        const t0 = performance.now();
        g.replay(enc);
        samples.push((performance.now() - t0) * 1e3);
        ctx.submit([enc.finish()]);
        if (i % 8 === 7) await ctx.synchronize();
      }
      await ctx.synchronize();
      return median(samples);
    };
    const encodeUs = await encodeOnlyUs(graph);
    const encodeIndirectUs = await encodeOnlyUs(graphIndirect);
    const floorUs = await dawnDispatchFloorUs(ctx);
    // The same dispatches issued straight to Dawn (no Graph bookkeeping): what replay costs at best.
    const rec = new Recorder();
    for (const q of qs) graphWrapper.run(q, cache, { encoder: rec.asEncoder() });
    const dispatches = rec.ops.flatMap((op) => (op.kind === 'pass' ? op.dispatches : []));
    const rawSamples: number[] = [];
    for (let i = 0; i < iters; i++) {
      const enc = ctx.device.createCommandEncoder();
      const t0 = performance.now();
      const pass = enc.beginComputePass();
      let pipeline: GPUComputePipeline | undefined;
      for (const d of dispatches) {
        if (d.pipeline !== pipeline) {
          pipeline = d.pipeline;
          pass.setPipeline(pipeline);
        }
        pass.setBindGroup(0, d.groups[0].group);
        if (Array.isArray(d.size)) pass.dispatchWorkgroups(d.size[0], d.size[1], d.size[2]);
      }
      pass.end();
      rawSamples.push((performance.now() - t0) * 1e3);
      ctx.submit([enc.finish()]);
      if (i % 8 === 7) await ctx.synchronize();
    }
    await ctx.synchronize();
    const rawUs = median(rawSamples);
    const indirectStepUs = await cpuMicros(ctx, iters, () => {
      indirectWrapper.plan(planArgs);
      graphIndirect.replay();
    });
    const indirectReplayUs = await cpuMicros(ctx, iters, () => graphIndirect.replay());

    const timing = { warmup: opts.quick ? 1 : 3, warmupMs: opts.quick ? 0 : WARMUP_MS, iterations: opts.quick ? 3 : 20 };
    const tPlain = await timeGpu(ctx, stepPlain, timing);
    const tGraph = await timeGpu(ctx, (enc) => graph.replay(enc), timing);
    const tIndirect = await timeGpu(ctx, (enc) => graphIndirect.replay(enc), timing);
    let verified: string | undefined;
    if (opts.verify) {
      let worst = 'ok (replayed outputs = plain wrapper outputs to f16 rounding, every layer)';
      let exact = 0;
      for (let l = 0; l < layers; l++) {
        const want = await outPlain[l].toArray();
        for (const g of [graph, graphIndirect]) {
          const got = await g.outputs[l].toArray();
          if (compareClose(got, want, { rtol: 0, atol: 0 }).ok) exact++;
          const rep = compareClose(got, want, { rtol: 2e-3, atol: 1e-5 });
          if (!rep.ok) worst = `FAILED layer ${l}: ${JSON.stringify(rep.first)}`;
        }
      }
      worst += `; bit-identical in ${exact} of ${2 * layers} layer outputs`;
      verified = worst;
    }
    const bytes = layers * (batch * kvLen * hkv * d * 2 * 2 + 2 * batch * hq * d * 2);
    const flops = layers * 4 * batch * hq * d * kvLen;
    const row = (label: string, t: typeof tPlain, stepUs: number, extra: string): CaseResult => {
      const ms = median(t.samples);
      return {
        suite: 'graph',
        name: `${name}: ${label}`,
        timeMs: ms,
        p10Ms: nan,
        p90Ms: nan,
        gbs: bytes / (ms * 1e-3) / 1e9,
        tflops: flops / (ms * 1e-3) / 1e12,
        bytes,
        flops,
        planCpuUs: nan,
        runCpuUs: stepUs / layers,
        timing: t.source,
        verified: extra,
      };
    };
    const summary = (step: number, replay: number, t: typeof tPlain, encodeUs: number) =>
      `step CPU ${plainStepUs.toFixed(0)} µs plain vs ${step.toFixed(0)} µs graph (replay with submit ${replay.toFixed(0)} µs = ${(replay / layers).toFixed(2)} µs/layer; encoding alone ${(encodeUs / layers).toFixed(2)} µs/layer; the same dispatches issued directly ${(rawUs / layers).toFixed(2)} µs/layer; Dawn's floor on this host ${floorUs.toFixed(2)} µs per dispatch of a trivial kernel); GPU graph/plain = ${(median(t.samples) / median(tPlain.samples)).toFixed(3)}`;
    plain.destroy();
    graphWrapper.destroy();
    indirectWrapper.destroy();
    graph.destroy();
    graphIndirect.destroy();
    return [
      row('plain wrapper, plan + run per layer', tPlain, plainStepUs, verified ?? 'not run'),
      row('graph replay (padded dispatch), plan + replay', tGraph, graphStepUs, `${verified ? `${verified}; ` : ''}${summary(graphStepUs, replayUs, tGraph, encodeUs)}`),
      row('graph replay (indirect dispatch), plan + replay', tIndirect, indirectStepUs, `${verified ? `${verified}; ` : ''}${summary(indirectStepUs, indirectReplayUs, tIndirect, encodeIndirectUs)}`),
    ];
  } finally {
    for (const t of tensors) t.destroy();
  }
}
