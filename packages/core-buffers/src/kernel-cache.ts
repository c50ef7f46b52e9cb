/**
 * Pipelines are compiled once per (device, kernel id, shader config). The cache key is the
 * stable serialisation of the very config the WGSL is generated from, so it cannot drift.
 */
import { noteBindGroupBuffers } from './capture';
import type { GpuContext } from './context';

/** How a kernel's bindings are declared, in binding order (all in group 0). */
export type BindingKind = 'uniform' | 'storage' | 'read-only-storage';

export interface KernelSpec<C> {
  /** Kebab-case id, e.g. `decode/split-kv`; labels every GPU object of the kernel. */
  id: string;
  /** Everything that changes the shader's text. */
  config: C;
  /** Pure function from config to WGSL. */
  wgsl: (config: C) => string;
  bindings: readonly BindingKind[];
  entryPoint?: string;
}

export interface CompiledKernel {
  id: string;
  key: string;
  pipeline: GPUComputePipeline;
  bindGroupLayout: GPUBindGroupLayout;
  wgsl: string;
  bindings: readonly BindingKind[];
}

/** Deterministic JSON with sorted keys (config objects as cache keys). */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
}

const caches = new WeakMap<GPUDevice, Map<string, CompiledKernel | Promise<CompiledKernel>>>();

function cacheFor(device: GPUDevice): Map<string, CompiledKernel | Promise<CompiledKernel>> {
  let cache = caches.get(device);
  if (!cache) {
    cache = new Map();
    caches.set(device, cache);
  }
  return cache;
}

function dumpRequested(): boolean {
  const g = globalThis as { WEBINFER_DUMP_WGSL?: boolean; process?: { env?: Record<string, string | undefined> } };
  return Boolean(g.WEBINFER_DUMP_WGSL) || g.process?.env?.WEBINFER_DUMP_WGSL === '1';
}

function layoutEntries(bindings: readonly BindingKind[]): GPUBindGroupLayoutEntry[] {
  return bindings.map((type, binding) => ({
    binding,
    visibility: 0x4 /* COMPUTE */,
    buffer: { type },
  }));
}

function prepare<C>(ctx: GpuContext, spec: KernelSpec<C>) {
  const key = `${spec.id}:${stableStringify(spec.config)}`;
  const wgsl = spec.wgsl(spec.config);
  if (dumpRequested()) console.log(`// ---- WGSL ${spec.id} ${stableStringify(spec.config)}\n${wgsl}`);
  const { device } = ctx;
  const bindGroupLayout = device.createBindGroupLayout({ label: spec.id, entries: layoutEntries(spec.bindings) });
  const module = device.createShaderModule({ label: spec.id, code: wgsl });
  const descriptor: GPUComputePipelineDescriptor = {
    label: spec.id,
    layout: device.createPipelineLayout({ label: spec.id, bindGroupLayouts: [bindGroupLayout] }),
    compute: { module, entryPoint: spec.entryPoint ?? 'main' },
  };
  return { key, wgsl, bindGroupLayout, descriptor };
}

/** The compiled pipeline for `spec`, compiling it synchronously on first use. */
export function getKernel<C>(ctx: GpuContext, spec: KernelSpec<C>): CompiledKernel {
  ctx.assertLive();
  const cache = cacheFor(ctx.device);
  const key = `${spec.id}:${stableStringify(spec.config)}`;
  const hit = cache.get(key);
  if (hit && !(hit instanceof Promise)) return hit;
  const { wgsl, bindGroupLayout, descriptor } = prepare(ctx, spec);
  // The pipeline is created on first use: a dispatch diverted into a fused one never needs it
  // (and on CPU adapters pipeline creation is most of a kernel's cost).
  let pipeline: GPUComputePipeline | undefined;
  const kernel: CompiledKernel = {
    id: spec.id,
    key,
    get pipeline() {
      pipeline ??= ctx.device.createComputePipeline(descriptor);
      return pipeline;
    },
    bindGroupLayout,
    wgsl,
    bindings: spec.bindings,
  };
  cache.set(key, kernel);
  return kernel;
}

/** Compiles `spec` off the main path (createComputePipelineAsync) so a later run never stalls. */
export async function warmupKernel<C>(ctx: GpuContext, spec: KernelSpec<C>): Promise<CompiledKernel> {
  ctx.assertLive();
  const cache = cacheFor(ctx.device);
  const key = `${spec.id}:${stableStringify(spec.config)}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const { wgsl, bindGroupLayout, descriptor } = prepare(ctx, spec);
  const pending = ctx.device.createComputePipelineAsync(descriptor).then((pipeline) => {
    const kernel: CompiledKernel = { id: spec.id, key, pipeline, bindGroupLayout, wgsl, bindings: spec.bindings };
    cache.set(key, kernel);
    return kernel;
  });
  cache.set(key, pending);
  pending.catch(() => cache.delete(key));
  return pending;
}

/** Number of pipelines compiled for this context's device (for tests and diagnostics). */
export function kernelCacheSize(ctx: GpuContext): number {
  return cacheFor(ctx.device).size;
}

/** A buffer binding: a whole buffer, or a byte range of it. */
export type BufferBinding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

export function isGpuBuffer(b: BufferBinding): b is GPUBuffer {
  return typeof (b as GPUBuffer).getMappedRange === 'function';
}

/** Bind group for `kernel` with `buffers` in binding order. */
export function bindGroup(ctx: GpuContext, kernel: CompiledKernel, buffers: readonly BufferBinding[]): GPUBindGroup {
  const group = ctx.device.createBindGroup({
    label: kernel.id,
    layout: kernel.bindGroupLayout,
    entries: buffers.map((b, binding) => ({
      binding,
      resource: isGpuBuffer(b) ? { buffer: b } : b,
    })),
  });
  noteBindGroupBuffers(group, buffers.map((b) => (isGpuBuffer(b) ? b : b.buffer)));
  groupEntries.set(group, buffers);
  return group;
}

const groupEntries = new WeakMap<GPUBindGroup, readonly BufferBinding[]>();

/** The bindings behind a bind group made by `bindGroup` (what a fused dispatch rebinds). */
export function bindGroupEntries(group: GPUBindGroup): readonly BufferBinding[] | undefined {
  return groupEntries.get(group);
}

/** A dispatch `encodeDispatch` handed to a diverter instead of encoding it. */
export interface DivertedDispatch {
  kernel: CompiledKernel;
  group: GPUBindGroup;
  workgroups: readonly [number, number?, number?] | IndirectDispatch;
}

const diverters = new WeakMap<GPUCommandEncoder, (d: DivertedDispatch) => void>();

/**
 * Runs `body` with every `encodeDispatch` into `encoder` handed to `sink` instead, in order (so
 * a caller can collect the dispatches of several wrappers' run() calls and encode them itself,
 * e.g. as one fused dispatch). Other commands still go to the encoder.
 */
export function divertDispatches(encoder: GPUCommandEncoder, sink: (d: DivertedDispatch) => void, body: () => void): void {
  diverters.set(encoder, sink);
  try {
    body();
  } finally {
    diverters.delete(encoder);
  }
}

/**
 * Workgroup counts for `groups` workgroups along x, folded into y when x would pass the
 * per-dimension limit; shaders recover the linear id as `wg.x + wg.y * num_wg.x` and must skip
 * ids >= groups.
 */
export function foldWorkgroups(ctx: GpuContext, groups: number): [number, number] {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [Math.max(1, groups), 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}

/** Workgroup counts read by the GPU from `buffer` at byte `offset` (three u32). */
export interface IndirectDispatch {
  buffer: GPUBuffer;
  offset: number;
}

/** Encodes one dispatch of `kernel` in its own compute pass, direct or indirect. */
export function encodeDispatch(
  encoder: GPUCommandEncoder,
  kernel: CompiledKernel,
  group: GPUBindGroup,
  workgroups: readonly [number, number?, number?] | IndirectDispatch,
): void {
  const sink = diverters.get(encoder);
  if (sink) {
    sink({ kernel, group, workgroups });
    return;
  }
  const pass = encoder.beginComputePass({ label: kernel.id });
  pass.setPipeline(kernel.pipeline);
  pass.setBindGroup(0, group);
  if ('buffer' in workgroups) pass.dispatchWorkgroupsIndirect(workgroups.buffer, workgroups.offset);
  else pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
  pass.end();
}
