/**
 * GEMM ceilings of this stack (bench --suite probe-gemm): how fast a plain matrix multiply runs
 * when written in WGSL, with operands staged through workgroup memory as attention kernels must.
 * The FMA and MMA ceilings of `ceilings.ts` / `probe-subgroup-matrix` keep every operand in
 * registers; attention's compute-bound kernels (f32 prefill, MLA) are GEMMs with a softmax between
 * them, so a tiled GEMM is the realistic roof they sit under.
 *
 *   f32    C = A B in f32 FMAs: 128 x 128 block tiles, 8 x 8 thread micro-tiles (A transposed in
 *          workgroup memory so both operands are 16-byte reads), the next k-tile's loads in
 *          registers during this one's math
 *   f16    C = A B on f16 subgroup matrices (f32 accumulate), 128 x 128 block tiles, 8 subgroups
 *          of 32 x 64 or 4 of 64 x 64, k-tiles of 32 or 64 staged as f16
 * Both are checked at sampled elements against a float64 product on the CPU.
 */
import { bindGroup, encodeDispatch, type GpuContext, getKernel, median, timeGpu } from '@webinfer/core-buffers';
import type { CaseResult, SuiteOptions } from '../types';

interface SgemmConfig {
  n: number;
  /** k per staged tile (8, 16 or 32). */
  bk: number;
}

/**
 * f32 SGEMM, square n (a multiple of 128), 256 threads, 128 x 128 tiles: thread (tx, ty) of the
 * 16 x 16 grid owns rows 4ty.. and 64 + 4ty.. and columns 4tx.. and 64 + 4tx.. (8 x 8).
 */
function sgemmWgsl(c: SgemmConfig): string {
  const { n, bk } = c;
  const N4 = n / 4;
  const aLoads = (128 * bk) / 4 / 256; // vec4 of A per thread per k-tile
  const bLoads = (bk * 128) / 4 / 256;
  const acc = Array.from({ length: 8 }, (_, i) => `var c${i}0 = vec4<f32>(0.0); var c${i}1 = vec4<f32>(0.0);`).join('\n  ');
  const fmas = Array.from({ length: 8 }, (_, i) => {
    const a = `${i < 4 ? 'a0' : 'a1'}.${'xyzw'[i % 4]}`;
    return `c${i}0 = fma(vec4<f32>(${a}), b0, c${i}0); c${i}1 = fma(vec4<f32>(${a}), b1, c${i}1);`;
  }).join('\n      ');
  // A tile element (row r, k) comes from A[by*128 + r][k0 + k]; a thread reads 4 consecutive k.
  const aFetch = Array.from({ length: aLoads }, (_, i) => `let ai${i} = lid + ${i * 256}u; ra${i} = a[(by * 128u + ai${i} / ${bk / 4}u) * ${N4}u + (k0 / 4u) + ai${i} % ${bk / 4}u];`).join('\n    ');
  const aPut = Array.from({ length: aLoads }, (_, i) => `{ let ai = lid + ${i * 256}u; let r = ai / ${bk / 4}u; let k = (ai % ${bk / 4}u) * 4u;
      as_[(k) * 32u + r / 4u][r % 4u] = ra${i}.x; as_[(k + 1u) * 32u + r / 4u][r % 4u] = ra${i}.y;
      as_[(k + 2u) * 32u + r / 4u][r % 4u] = ra${i}.z; as_[(k + 3u) * 32u + r / 4u][r % 4u] = ra${i}.w; }`).join('\n    ');
  const bFetch = Array.from({ length: bLoads }, (_, i) => `let bi${i} = lid + ${i * 256}u; rb${i} = b[(k0 + bi${i} / 32u) * ${N4}u + bx * 32u + bi${i} % 32u];`).join('\n    ');
  const bPut = Array.from({ length: bLoads }, (_, i) => `bs[lid + ${i * 256}u] = rb${i};`).join('\n    ');
  const store = Array.from({ length: 8 }, (_, i) => {
    const row = i < 4 ? `ty * 4u + ${i}u` : `64u + ty * 4u + ${i - 4}u`;
    return `{ let r = by * 128u + ${row}; c[r * ${N4}u + bx * 32u + tx] = c${i}0; c[r * ${N4}u + bx * 32u + 16u + tx] = c${i}1; }`;
  }).join('\n  ');
  return `@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
var<workgroup> as_: array<vec4<f32>, ${bk * 32}>;  // A^T tile: [k][128 rows as 32 vec4]
var<workgroup> bs: array<vec4<f32>, ${bk * 32}>;   // B tile: [k][128 cols as 32 vec4]
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bx = wg.x;
  let by = wg.y;
  let tx = lid % 16u;
  let ty = lid / 16u;
  ${acc}
  ${Array.from({ length: aLoads }, (_, i) => `var ra${i}: vec4<f32>;`).join(' ')}
  ${Array.from({ length: bLoads }, (_, i) => `var rb${i}: vec4<f32>;`).join(' ')}
  var k0 = 0u;
  {
    ${aFetch}
    ${bFetch}
  }
  for (var t = 0u; t < ${n / bk}u; t++) {
    workgroupBarrier();
    ${aPut}
    ${bPut}
    workgroupBarrier();
    k0 = (t + 1u) * ${bk}u;
    if (k0 < ${n}u) {
      ${aFetch}
      ${bFetch}
    }
    for (var k = 0u; k < ${bk}u; k++) {
      let a0 = as_[k * 32u + ty];
      let a1 = as_[k * 32u + 16u + ty];
      let b0 = bs[k * 32u + tx];
      let b1 = bs[k * 32u + 16u + tx];
      ${fmas}
    }
  }
  ${store}
}`;
}

interface HgemmConfig {
  n: number;
  /** k per staged tile (32 or 64). */
  bk: number;
  /** Block tile rows and columns. */
  bm: number;
  bn: number;
  /** Subgroup grid over the block tile (rows x columns); each subgroup owns mi x nj 16 x 16 blocks. */
  sgm: number;
  sgn: number;
}

/** f16 subgroup-matrix GEMM (f32 result), square n, subgroups of 32 lanes, bm x bn block tiles. */
function hgemmWgsl(c: HgemmConfig): string {
  const { n, bk, bm, bn, sgm, sgn } = c;
  const WG = sgm * sgn * 32;
  const mi = bm / 16 / sgm; // 16-row blocks a subgroup owns
  const nj = bn / 16 / sgn;
  const U = n / 8; // 16-byte units (8 f16) per row of A or B
  const AS = bk / 8 + 1; // A tile row stride in units (padded)
  const BU = bn / 8; // units per B tile row
  const BS = BU + 1; // B tile row stride in units (padded)
  const aUnits = (bm * bk) / 8; // units per A tile
  const bUnits = bk * BU;
  const per = (aUnits + bUnits) / WG;
  const left = 'subgroup_matrix_left<f16, 16, 16>';
  const right = 'subgroup_matrix_right<f16, 16, 16>';
  const result = 'subgroup_matrix_result<f32, 16, 16>';
  const fetch = Array.from({ length: per }, (_, i) => {
    return `{ let u = lid + ${i * WG}u;
      if (u < ${aUnits}u) { let r = u / ${bk / 8}u; let k = u % ${bk / 8}u; r${i} = a[(by * ${bm}u + r) * ${U}u + k0 / 8u + k]; }
      else { let v = u - ${aUnits}u; let kr = v / ${BU}u; let col = v % ${BU}u; r${i} = b[(k0 + kr) * ${U}u + bx * ${BU}u + col]; } }`;
  }).join('\n    ');
  const put = Array.from({ length: per }, (_, i) => {
    return `{ let u = lid + ${i * WG}u;
      if (u < ${aUnits}u) { let r = u / ${bk / 8}u; let k = u % ${bk / 8}u; smem[r * ${AS}u + k] = r${i}; }
      else { let v = u - ${aUnits}u; let kr = v / ${BU}u; let col = v % ${BU}u; smem[${bm * AS}u + kr * ${BS}u + col] = r${i}; } }`;
  }).join('\n    ');
  const blocks = Array.from({ length: mi }, (_, i) => Array.from({ length: nj }, (_, j) => [i, j] as const)).flat();
  const accs = blocks.map(([i, j]) => `var acc${i}_${j} = ${result}();`).join(' ');
  const mma = Array.from({ length: bk / 16 }, (_, kk) => {
    const la = Array.from({ length: mi }, (_, i) => `let a${i} = subgroupMatrixLoad<${left}, row_major>(&smem, (sr + ${i * 16}u) * ${AS}u + ${kk * 2}u, ${AS}u);`).join(' ');
    const lb = Array.from({ length: nj }, (_, j) => `let b${j} = subgroupMatrixLoad<${right}, row_major>(&smem, ${bm * AS}u + ${kk * 16}u * ${BS}u + sc / 8u + ${j * 2}u, ${BS}u);`).join(' ');
    const ops = blocks.map(([i, j]) => `acc${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc${i}_${j});`).join(' ');
    return `{ ${la} ${lb} ${ops} }`;
  }).join('\n      ');
  const store = blocks.map(([i, j]) => `subgroupMatrixStore<row_major>(&c, (by * ${bm}u + sr + ${i * 16}u) * ${n}u + bx * ${bn}u + sc + ${j * 16}u, acc${i}_${j}, ${n}u);`).join('\n  ');
  return `diagnostic(off, chromium.subgroup_matrix_uniformity);
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
var<workgroup> smem: array<vec4<u32>, ${bm * AS + bk * BS}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bx = wg.x;
  let by = wg.y;
  let s = lid / 32u;
  let sr = (s / ${sgn}u) * ${mi * 16}u;
  let sc = (s % ${sgn}u) * ${nj * 16}u;
  ${accs}
  ${Array.from({ length: per }, (_, i) => `var r${i} = vec4<u32>(0u);`).join(' ')}
  var k0 = 0u;
  {
    ${fetch}
  }
  for (var t = 0u; t < ${n / bk}u; t++) {
    workgroupBarrier();
    ${put}
    workgroupBarrier();
    k0 = (t + 1u) * ${bk}u;
    if (k0 < ${n}u) {
      ${fetch}
    }
    ${mma}
  }
  ${store}
}`;
}

/** Small exact values (multiples of 1/8 in [-1, 1)): f16 holds them and products are exact. */
const value = (i: number, salt: number) => (((Math.imul(i, 0x9e3779b1) + salt) >>> 0) % 17 - 8) / 8;

export async function probeGemm(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  const n = opts.quick ? 256 : 4096;
  const results: CaseResult[] = [];
  const aHost = Float32Array.from({ length: n * n }, (_, i) => value(i, 1));
  const bHost = Float32Array.from({ length: n * n }, (_, i) => value(i, 7));
  const flops = 2 * n * n * n;
  const check = (got: Float32Array): string => {
    let worst = 0;
    for (let s = 0; s < 64; s++) {
      const r = (s * 977 + 13) % n;
      const col = (s * 1571 + 101) % n;
      let want = 0;
      for (let k = 0; k < n; k++) want += aHost[r * n + k] * bHost[k * n + col];
      worst = Math.max(worst, Math.abs(got[r * n + col] - want) / Math.max(1, Math.abs(want)));
    }
    return `${worst < 1e-5 ? 'ok' : 'WRONG'} (64 sampled elements, max rel err ${worst.toExponential(1)})`;
  };
  const cases: { name: string; dtype: 'f32' | 'f16'; wgsl: string; id: string; grid?: [number, number] }[] = [
    { name: `f32 SGEMM ${n}^3, 128x128 tiles, k-tile 8, 8x8 per thread`, dtype: 'f32', wgsl: sgemmWgsl({ n, bk: 8 }), id: 'sgemm8' },
    { name: `f32 SGEMM ${n}^3, 128x128 tiles, k-tile 16, 8x8 per thread`, dtype: 'f32', wgsl: sgemmWgsl({ n, bk: 16 }), id: 'sgemm16' },
    { name: `f32 SGEMM ${n}^3, 128x128 tiles, k-tile 32, 8x8 per thread`, dtype: 'f32', wgsl: sgemmWgsl({ n, bk: 32 }), id: 'sgemm32' },
  ];
  if (ctx.hasF16 && ctx.features.has('chromium-experimental-subgroup-matrix') && ctx.subgroupMinSize === 32 && ctx.subgroupMaxSize === 32) {
    for (const [bm, bn, sgm, sgn, bk] of [
      [128, 128, 4, 2, 32],
      [128, 128, 4, 2, 64],
      [128, 128, 2, 2, 64],
      [128, 256, 2, 4, 32],
      [256, 128, 4, 2, 32],
    ] as const) {
      const name = `f16 subgroup-matrix GEMM ${n}^3 (f32 accumulate), ${bm}x${bn} tiles, ${sgm * sgn} subgroups of ${bm / sgm}x${bn / sgn}, k-tile ${bk}`;
      if (n % bm === 0 && n % bn === 0) cases.push({ name, dtype: 'f16', wgsl: hgemmWgsl({ n, bk, bm, bn, sgm, sgn }), id: `hgemm-${bm}x${bn}-${sgm}x${sgn}-${bk}`, grid: [n / bn, n / bm] });
    }
  }
  const outBase = { suite: 'probe-gemm', p10Ms: Number.NaN, p90Ms: Number.NaN, gbs: Number.NaN, bytes: 0, flops, planCpuUs: Number.NaN, runCpuUs: Number.NaN };
  for (const k of cases) {
    if (opts.filter && !k.name.includes(opts.filter)) continue;
    opts.progress(`probe-gemm ${k.name}`);
    const a = ctx.tensor(aHost, [n * n], k.dtype);
    const b = ctx.tensor(bHost, [n * n], k.dtype);
    const c = ctx.full([n * n], 'f32', Number.NaN);
    try {
      const kernel = getKernel(ctx, { id: `bench/${k.id}`, config: { n }, wgsl: () => k.wgsl, bindings: ['read-only-storage', 'read-only-storage', 'storage'] });
      const group = bindGroup(ctx, kernel, [a.buffer, b.buffer, c.buffer]);
      const grid: [number, number] = k.grid ?? [n / 128, n / 128];
      await ctx.checkErrors(() => {
        const enc = ctx.device.createCommandEncoder();
        encodeDispatch(enc, kernel, group, grid);
        ctx.submit([enc.finish()]);
      });
      const verified = opts.verify ? check((await c.toArray()) as Float32Array) : undefined;
      const t = await timeGpu(ctx, (enc) => encodeDispatch(enc, kernel, group, grid), { warmup: 3, warmupMs: opts.quick ? 0 : 1000, iterations: opts.quick ? 3 : 50 });
      const sorted = [...t.samples].sort((x, y) => x - y);
      const ms = median(t.samples);
      results.push({ ...outBase, name: k.name, timeMs: ms, p10Ms: sorted[Math.floor(0.1 * (sorted.length - 1))], p90Ms: sorted[Math.floor(0.9 * (sorted.length - 1))], tflops: flops / (ms * 1e-3) / 1e12, timing: t.source, verified });
    } finally {
      a.destroy();
      b.destroy();
      c.destroy();
    }
  }
  return results;
}
