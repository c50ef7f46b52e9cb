import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContext, DispatchCache, divertDispatches, encodeFusedDispatch, fusedSplitValues, fuseWgsl, type GpuContext, getKernel, bindGroup, workgroupBytes } from '../src';

// Two kernels shaped like webinfer's: same helper and binding names, a struct member that is also
// a function name, and B's f32 scratch that can live in A's workgroup array.
const A = `enable f16;
struct Params { n: u32, scale: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> unused_a: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
var<workgroup> tile: array<vec4<u32>, 8>;
fn scale(x: f32) -> f32 { return x * params.scale; }
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg.x * 32u + lid;
  tile[lid / 4u][lid % 4u] = bitcast<u32>(src[i]);
  workgroupBarrier();
  if (i < params.n) { dst[i] = scale(bitcast<f32>(tile[lid / 4u][lid % 4u])); }
}`;

const B = `diagnostic(off, subgroup_uniformity);
struct Params { n: u32, scale: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
var<workgroup> red: array<f32, 32>;
fn scale(x: f32) -> f32 { return x + params.scale; }
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wgid.x * 32u + lid;
  red[lid] = src[i];
  red[lid] += 1.0;
  workgroupBarrier();
  if (i < params.n) { dst[i] = scale(red[31u - lid]); }
}`;

describe('fuseWgsl', () => {
  const kinds = ['uniform', 'read-only-storage', 'read-only-storage', 'storage'] as const;
  const kindsB = ['uniform', 'read-only-storage', 'storage'] as const;

  it('renames B, renumbers the bindings, drops unread ones and keeps struct members', () => {
    const f = fuseWgsl(A, B, kinds, kindsB);
    expect(f.workgroupSize).toBe(32);
    expect(f.aBindings).toEqual([0, 1, -1, 2]);
    expect(f.bBindings).toEqual([3, 4, 5]);
    expect(f.splitBinding).toBe(6);
    expect(f.layout).toEqual(['uniform', 'read-only-storage', 'storage', 'uniform', 'read-only-storage', 'storage', 'uniform']);
    expect(f.wgsl).toContain('struct fb_Params { n: u32, scale: f32 }');
    expect(f.wgsl).toContain('fn fb_scale(x: f32) -> f32 { return x + fb_params.scale; }');
    expect(f.wgsl).toContain('@group(0) @binding(5) var<storage, read_write> fb_dst');
    expect(f.wgsl).not.toContain('unused_a');
    expect(f.wgsl).toMatch(/enable f16;[\s\S]*diagnostic\(off, subgroup_uniformity\);|diagnostic\(off, subgroup_uniformity\);[\s\S]*enable f16;/);
    // B's scratch lives in A's tile: no workgroup variable of its own, reads and writes by accessor.
    expect(f.wgsl).not.toMatch(/var<workgroup> fb_red/);
    expect(f.wgsl).toContain('fb_red_set(lid, fb_red_get(lid) + (1.0));');
    expect(workgroupBytes(f.wgsl)).toBe(8 * 16);
  });

  it('refuses kernels of different workgroup sizes', () => {
    expect(() => fuseWgsl(A, B.replace('@workgroup_size(32)', '@workgroup_size(64)'), kinds, kindsB)).toThrow(/workgroup sizes differ \(32 and 64\)/);
  });

  it('keeps B scratch of its own when A has no room for it', () => {
    const f = fuseWgsl(A, B.replaceAll('array<f32, 32>', 'array<f32, 64>'), kinds, kindsB);
    expect(f.wgsl).toMatch(/var<workgroup> fb_red: array<f32, 64>;/);
    expect(workgroupBytes(f.wgsl)).toBe(8 * 16 + 64 * 4);
  });

  it('sends every workgroup id to exactly one body (the entry point arithmetic)', () => {
    for (const [na, nb] of [[10, 3], [3, 10], [1, 1], [100, 1], [7, 7], [2112, 1016]]) {
      for (const strideOverride of [undefined, 1]) {
        const [bCount, stride, total] = fusedSplitValues(na, nb, strideOverride);
        const seenA = new Set<number>();
        const seenB = new Set<number>();
        for (let f = 0; f < total; f++) {
          const q = Math.floor(f / stride);
          if (f % stride === 0 && q < bCount) seenB.add(q);
          else seenA.add(f - Math.min(q + 1, bCount));
        }
        expect(seenB.size).toBe(nb);
        expect(seenA.size).toBe(na);
        expect(Math.max(...seenA)).toBe(na - 1);
        expect(Math.max(...seenB)).toBe(nb - 1);
      }
    }
  });
});

describe('encodeFusedDispatch', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await createContext();
  });
  afterAll(() => ctx?.dispose());

  it('runs both kernels in one dispatch with their own results', async () => {
    const n = 70;
    const src = ctx.tensor(Float32Array.from({ length: 96 }, (_, i) => i * 0.5 - 3), [96], 'f32');
    const dstA = ctx.full([96], 'f32', Number.NaN);
    const dstB = ctx.full([96], 'f32', Number.NaN);
    const uniform = (scale: number) => {
      const b = ctx.device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      ctx.device.queue.writeBuffer(b, 0, new Uint32Array([n, new Uint32Array(new Float32Array([scale]).buffer)[0], 0, 0]));
      return b;
    };
    const [ua, ub] = [uniform(2), uniform(10)];
    const ka = getKernel(ctx, { id: 'test/fuse-a', config: {}, wgsl: () => A, bindings: ['uniform', 'read-only-storage', 'read-only-storage', 'storage'] });
    const kb = getKernel(ctx, { id: 'test/fuse-b', config: {}, wgsl: () => B, bindings: ['uniform', 'read-only-storage', 'storage'] });
    const ga = bindGroup(ctx, ka, [ua, src.buffer, src.buffer, dstA.buffer]);
    const gb = bindGroup(ctx, kb, [ub, src.buffer, dstB.buffer]);
    const enc = ctx.device.createCommandEncoder();
    const seen: Parameters<typeof encodeFusedDispatch>[2][] = [];
    divertDispatches(enc, (d) => seen.push(d), () => {
      // What a wrapper's run() does: its dispatches reach the sink, not the encoder.
      const pass = enc.beginComputePass();
      pass.end();
    });
    expect(seen).toEqual([]);
    const cache = new DispatchCache(ctx, 'test/fused');
    const fused = encodeFusedDispatch(ctx, enc, { kernel: ka, group: ga, workgroups: [3] }, { kernel: kb, group: gb, workgroups: [3] }, cache);
    expect(fused).toBe(true);
    await ctx.checkErrors(async () => {
      ctx.submit([enc.finish()]);
      await ctx.synchronize();
    });
    const s = (await src.toArray()) as Float32Array;
    const a = (await dstA.toArray()) as Float32Array;
    const b = (await dstB.toArray()) as Float32Array;
    for (let i = 0; i < 96; i++) {
      const lane = i % 32;
      const base = i - lane;
      expect(a[i]).toBe(i < n ? s[i] * 2 : Number.NaN);
      expect(b[i]).toBe(i < n ? s[base + 31 - lane] + 1 + 10 : Number.NaN);
    }
    cache.destroy();
    for (const t of [src, dstA, dstB]) t.destroy();
    ua.destroy();
    ub.destroy();
  });
});
