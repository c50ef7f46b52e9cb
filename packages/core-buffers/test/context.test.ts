import { describe, expect, it } from 'vitest';
import {
  DispatchCache,
  DisposedError,
  UniformSchema,
  createContext,
  getKernel,
  kernelCacheSize,
  stableStringify,
  timeGpu,
  isSoftwareAdapterInfo,
  warmupKernel,
} from '../src';

describe('createContext', () => {
  it('reports the device, its features and raised limits', async () => {
    const ctx = await createContext();
    expect(ctx.features.size).toBeGreaterThan(0);
    expect(ctx.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(typeof ctx.adapterInfo.vendor).toBe('string');
    ctx.dispose();
    expect(ctx.disposed).toBe(true);
    expect(() => ctx.empty([1], 'f32')).toThrow(DisposedError);
  });
  it('tells a CPU adapter (lavapipe, SwiftShader) from a GPU', async () => {
    const lavapipe = { vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1' };
    const swiftshader = { vendor: 'google', architecture: 'swiftshader', device: 'swiftshader-device', description: 'SwiftShader Device (Subzero)' };
    const h100 = { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA: 580.159.04 580.159.4.0' };
    expect(isSoftwareAdapterInfo(lavapipe)).toBe(true);
    expect(isSoftwareAdapterInfo(swiftshader)).toBe(true);
    expect(isSoftwareAdapterInfo(h100)).toBe(false);
    const ctx = await createContext();
    expect(ctx.isSoftwareAdapter).toBe(isSoftwareAdapterInfo(ctx.adapterInfo));
    ctx.dispose();
  });

  it('caps raised limits where asked (planning as on a browser device)', async () => {
    const full = await createContext();
    const ctx = await createContext({ limits: { maxComputeWorkgroupStorageSize: 16384 } });
    expect(full.limits.maxComputeWorkgroupStorageSize).toBeGreaterThan(16384);
    expect(ctx.limits.maxComputeWorkgroupStorageSize).toBe(16384);
    expect(ctx.limits.maxStorageBufferBindingSize).toBe(full.limits.maxStorageBufferBindingSize);
    full.dispose();
    ctx.dispose();
  });

  it('can leave out features to exercise the fallback paths', async () => {
    const ctx = await createContext({ disableFeatures: ['shader-f16', 'subgroups'] });
    expect(ctx.hasF16).toBe(false);
    expect(ctx.hasSubgroups).toBe(false);
    expect(ctx.device.features.has('shader-f16')).toBe(false);
    ctx.dispose();
  });

  it('wraps a device the caller owns and never destroys it', async () => {
    const owner = await createContext();
    const wrapped = await createContext({ device: owner.device });
    const t = wrapped.tensor([1, 2], [2], 'f32');
    wrapped.dispose();
    // the device still works for its owner
    const u = owner.tensor([3], [1], 'f32');
    expect(Array.from(await u.toArray())).toEqual([3]);
    t.destroy();
    owner.dispose();
  });

  it('creates and disposes 50 contexts in one process', async () => {
    for (let i = 0; i < 50; i++) {
      const ctx = await createContext();
      const t = ctx.tensor([i], [1], 'f32');
      expect((await t.toArray())[0]).toBe(i);
      ctx.dispose();
    }
  });
});

describe('pipeline cache, uniforms and timing', () => {
  const schema = new UniformSchema('P', { n: 'u32', scale: 'f32', off: 'i32' });
  const spec = (workgroup: number) => ({
    id: 'test/scale',
    config: { workgroup },
    wgsl: (c: { workgroup: number }) => `${schema.wgsl()}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(${c.workgroup})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < p.n) { x[g.x] = x[g.x] * p.scale + f32(p.off); }
}`,
    bindings: ['uniform', 'storage'] as const,
  });

  it('packs uniforms in schema order and rejects bad values', () => {
    expect(schema.wgsl()).toBe('struct P {\n  n: u32,\n  scale: f32,\n  off: i32,\n}');
    const view = new DataView(schema.pack({ n: 3, scale: 0.5, off: -2 }));
    expect([view.getUint32(0, true), view.getFloat32(4, true), view.getInt32(8, true)]).toEqual([3, 0.5, -2]);
    expect(schema.byteSize).toBe(16);
    expect(() => schema.pack({ n: -1, scale: 1, off: 0 })).toThrow(/outside u32/);
    expect(() => schema.pack({ n: 1.5, scale: 1, off: 0 })).toThrow(/integer/);
  });

  it('keys pipelines by config, compiles once, and runs them', async () => {
    expect(stableStringify({ b: 1, a: [2, { d: 3, c: 4 }] })).toBe('{"a":[2,{"c":4,"d":3}],"b":1}');
    const ctx = await createContext();
    const k1 = getKernel(ctx, spec(64));
    const k2 = getKernel(ctx, spec(64));
    expect(k2).toBe(k1);
    const warmed = await warmupKernel(ctx, spec(32));
    expect(getKernel(ctx, spec(32))).toBe(warmed);
    expect(kernelCacheSize(ctx)).toBe(2);

    const x = ctx.tensor([1, 2, 3, 4], [4], 'f32');
    const u = schema.createBuffer(ctx.device, { n: 3, scale: 2, off: 1 });
    const group = ctx.device.createBindGroup({
      layout: k1.bindGroupLayout,
      entries: [
        { binding: 0, resource: { buffer: u } },
        { binding: 1, resource: { buffer: x.buffer } },
      ],
    });
    const timing = await timeGpu(
      ctx,
      (enc) => {
        const pass = enc.beginComputePass();
        pass.setPipeline(k1.pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(1);
        pass.end();
      },
      { warmup: 0, warmupMs: 0, iterations: 1 },
    );
    expect(timing.samples).toHaveLength(1);
    expect(timing.samples[0]).toBeGreaterThanOrEqual(0);
    expect(timing.source).toBe(ctx.hasTimestamps ? 'timestamp' : 'queue');
    expect(Array.from(await x.toArray())).toEqual([3, 5, 7, 4]); // x*2+1 on the first 3
    ctx.dispose();
  });

  it('packScratch + DispatchCache: same values reuse the buffer, new values get a new one holding them', async () => {
    const ctx = await createContext();
    const kernel = getKernel(ctx, spec(64));
    const cache = new DispatchCache(ctx, 'test');
    const x = ctx.tensor([1, 2, 3, 4], [4], 'f32');
    const run = (u: GPUBuffer) => {
      const enc = ctx.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(kernel.pipeline);
      pass.setBindGroup(0, cache.bindGroup(kernel, [{ buffer: u }, { buffer: x.buffer }]));
      pass.dispatchWorkgroups(1);
      pass.end();
      ctx.device.queue.submit([enc.finish()]);
    };
    const u1 = cache.uniform(schema.packScratch({ n: 3, scale: 2, off: 1 }), false);
    expect(cache.uniform(schema.packScratch({ n: 3, scale: 2, off: 1 }), false)).toBe(u1);
    run(u1);
    // The scratch words are overwritten here: the cache must have kept its own copy of the last ones.
    const u2 = cache.uniform(schema.packScratch({ n: 2, scale: 10, off: 0 }), false);
    expect(u2).not.toBe(u1);
    expect(cache.uniform(schema.packScratch({ n: 2, scale: 10, off: 0 }), false)).toBe(u2);
    run(u2);
    expect(Array.from(await x.toArray())).toEqual([30, 50, 7, 4]);
    cache.destroy();
    ctx.dispose();
  });
});
