import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GpuContext, ValueError, Workspace, createContext } from '../src';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await createContext();
});
afterAll(() => ctx?.dispose());

describe('Workspace', () => {
  it('carves aligned, non-overlapping regions', () => {
    const ws = new Workspace(ctx, ctx.empty([1 << 16], 'u8'));
    const regions = ws.carve({ partialO: 1000, partialLse: 12, schedule: 0 });
    const align = ctx.limits.minStorageBufferOffsetAlignment;
    const list = Object.values(regions);
    for (const r of list) expect(r.offset % align).toBe(0);
    for (let i = 1; i < list.length; i++) {
      expect(list[i].offset).toBeGreaterThanOrEqual(list[i - 1].offset + list[i - 1].size);
    }
    expect(ws.binding(regions.schedule).size).toBeGreaterThan(0); // empty regions still bind
  });

  it('starts after the offset of a view and reports how much a plan needs', () => {
    const base = ctx.empty([4096], 'u8');
    const ws = new Workspace(ctx, base.slice(0, 300, 4096));
    expect(ws.base % ctx.limits.minStorageBufferOffsetAlignment).toBe(0);
    expect(ws.base).toBeGreaterThanOrEqual(300);
    expect(() => ws.carve({ big: 8192 })).toThrow(ValueError);
    expect(() => ws.carve({ big: 8192 })).toThrow(/workspaceBuffer: needs 8192 bytes/);
    expect(() => ws.carve({ bad: -1 })).toThrow(/invalid size/);
  });

  it('wraps a raw GPUBuffer', () => {
    const buffer = ctx.device.createBuffer({ size: 1024, usage: GPUBufferUsage.STORAGE });
    const ws = new Workspace(ctx, buffer);
    expect(ws.capacity).toBe(1024);
    buffer.destroy();
  });
});
