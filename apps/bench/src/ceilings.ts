/**
 * The device's ceilings, measured in the same process as the kernels: a stream-read kernel
 * (16-byte loads, every byte read once) and an f32 FMA kernel (independent vec4 FMA chains).
 */
import { bindGroup, encodeDispatch, type GpuContext, getKernel, median, timeGpu } from '@webinfer/core-buffers';

export interface Ceilings {
  readGBs: number;
  fmaTflops: number;
  timing: 'timestamp' | 'queue';
}

const READ_WG = 256;

function readWgsl(c: { loadsPerThread: number }): string {
  return `@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
@compute @workgroup_size(${READ_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let threads = nwg.x * ${READ_WG}u;
  let base = wg.x * ${READ_WG}u + lid;
  var acc = vec4<u32>(0u);
  for (var i = 0u; i < ${c.loadsPerThread}u; i++) {
    acc ^= src[base + i * threads];
  }
  let x = acc.x ^ acc.y ^ acc.z ^ acc.w;
  if (x == 0x12345678u) { sink[0] = x; }
}`;
}

function fmaWgsl(c: { iterations: number }): string {
  const chains = 8;
  // Distinct components, so the compiler cannot compute one and splat it.
  const decl = Array.from({ length: chains }, (_, i) => `var a${i} = vec4<f32>(f32(lid + ${i}u) * 1e-3) + vec4<f32>(0.0, 1e-4, 2e-4, 3e-4);`).join('\n  ');
  // One FMA per step and chain (2 flops); float rounding keeps the compiler from folding steps.
  const step = Array.from({ length: chains }, (_, i) => `a${i} = fma(a${i}, m, b);`).join(' ');
  const sum = Array.from({ length: chains }, (_, i) => `a${i}`).join(' + ');
  return `@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  // Multiplier and addend come from memory so the compiler cannot fold the chains.
  let m = vec4<f32>(sink[0] + 0.9999, sink[2] + 0.9998, sink[3] + 0.9997, sink[4] + 0.9996);
  let b = vec4<f32>(sink[1] + 1e-4);
  ${decl}
  for (var i = 0u; i < ${c.iterations}u; i++) { ${step} }
  let s = ${sum};
  // Every component feeds the (never true) test, so no chain is dead code.
  if (s.x + s.y + s.z + s.w == 1234.5) { sink[wg.x] = s.y; }
}`;
}

export async function measureCeilings(ctx: GpuContext, quick: boolean): Promise<Ceilings> {
  const bytes = Math.min(quick ? 64 << 20 : 1 << 30, ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  const src = ctx.device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
  const sink = ctx.device.createBuffer({ size: 1 << 16, usage: GPUBufferUsage.STORAGE });
  const loadsPerThread = 16;
  const vec4s = bytes / 16;
  const groups = Math.floor(vec4s / loadsPerThread / READ_WG);
  const readBytes = groups * READ_WG * loadsPerThread * 16;
  const read = getKernel(ctx, { id: 'bench/stream-read', config: { loadsPerThread }, wgsl: readWgsl, bindings: ['read-only-storage', 'storage'] });
  const readGroup = bindGroup(ctx, read, [src, sink]);
  const rt = await timeGpu(ctx, (enc) => encodeDispatch(enc, read, readGroup, [groups]), { warmup: 3, iterations: quick ? 5 : 30 });

  const iterations = quick ? 256 : 4096;
  const fma = getKernel(ctx, { id: 'bench/fma', config: { iterations }, wgsl: fmaWgsl, bindings: ['storage'] });
  const fmaGroup = bindGroup(ctx, fma, [sink]);
  const fmaGroups = quick ? 64 : 132 * 64;
  const ft = await timeGpu(ctx, (enc) => encodeDispatch(enc, fma, fmaGroup, [fmaGroups]), { warmup: 2, iterations: quick ? 3 : 20 });
  src.destroy();
  sink.destroy();
  // Each step is one vec4 FMA per chain: 2 flops per component.
  const flops = fmaGroups * 256 * iterations * 8 * 4 * 2;
  return {
    readGBs: readBytes / (median(rt.samples) * 1e-3) / 1e9,
    fmaTflops: flops / (median(ft.samples) * 1e-3) / 1e12,
    timing: rt.source,
  };
}
