/**
 * Probe of the tensor-core path (`chromium-experimental-subgroup-matrix`): which WGSL spelling of
 * the builtins this Dawn accepts, and whether a 16x16x16 f16 -> f32 multiply-accumulate (with the
 * right operand read column-major, as K^T is in attention) gives the exact product. Results go to
 * the table's `verify` column; nothing is timed. Groundwork for the prefill and MLA MMA kernels.
 */
import type { GpuContext } from '@webinfer/core-buffers';
import { BatchPrefillWithRaggedKVCacheWrapper } from '@webinfer/prefill';
import { attentionRef } from '@webinfer/reference';
import type { CaseResult, SuiteOptions } from '../types';

interface Spelling {
  name: string;
  loadLeft: string;
  loadRight: string;
  store: string;
}

const SPELLINGS: Spelling[] = [
  {
    name: 'template row_major/col_major',
    loadLeft: 'subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, 0u, 16u)',
    loadRight: 'subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&b, 0u, 16u)',
    store: 'subgroupMatrixStore<row_major>(&c, 0u, acc, 16u)',
  },
  {
    name: 'template load, old store',
    loadLeft: 'subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, 0u, 16u)',
    loadRight: 'subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&b, 0u, 16u)',
    store: 'subgroupMatrixStore(&c, 0u, acc, false, 16u)',
  },
  {
    name: 'bool col_major argument (deprecated)',
    loadLeft: 'subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&a, 0u, false, 16u)',
    loadRight: 'subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&b, 0u, true, 16u)',
    store: 'subgroupMatrixStore(&c, 0u, acc, false, 16u)',
  },
];

function wgsl(s: Spelling): string {
  return `enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@compute @workgroup_size(32)
fn main() {
  let ma = ${s.loadLeft};
  let mb = ${s.loadRight};
  var acc = subgroup_matrix_result<f32, 16, 16>();
  acc = subgroupMatrixMultiplyAccumulate(ma, mb, acc);
  ${s.store};
}`;
}

/** A layout case: offsets and strides (elements) of A, B and C in workgroup memory. */
interface WorkgroupLayout {
  name: string;
  oa: number;
  sa: number;
  ob: number;
  sb: number;
  oc: number;
  sc: number;
  /** Also round-trip C through a result-matrix load before the final store. */
  reloadResult?: boolean;
  /** Workgroup size (a multiple of the subgroup size; only subgroup 0's matrices are used). */
  wg?: number;
}

const LAYOUTS: WorkgroupLayout[] = [
  { name: 'workgroup mem, offset 0, stride 16', oa: 0, sa: 16, ob: 0, sb: 16, oc: 0, sc: 16 },
  { name: 'workgroup mem, offsets 8, stride 24', oa: 8, sa: 24, ob: 8, sb: 24, oc: 8, sc: 24 },
  { name: 'workgroup mem, attention strides 136/32', oa: 16, sa: 136, ob: 32, sb: 136, oc: 16, sc: 32 },
  { name: 'workgroup mem, result reload', oa: 0, sa: 16, ob: 0, sb: 16, oc: 0, sc: 32, reloadResult: true },
  { name: 'workgroup mem, 64 threads', oa: 0, sa: 16, ob: 0, sb: 16, oc: 0, sc: 16, wg: 64 },
];

function workgroupWgsl(l: WorkgroupLayout): string {
  const wg = l.wg ?? 32;
  return `enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
var<workgroup> a_s: array<f16, ${l.oa + 16 * l.sa}>;
var<workgroup> b_s: array<f16, ${l.ob + 16 * l.sb}>;
var<workgroup> c_s: array<f32, ${l.oc + 16 * l.sc}>;
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) lid: u32) {
  for (var i = lid; i < 256u; i += ${wg}u) {
    a_s[${l.oa}u + (i / 16u) * ${l.sa}u + i % 16u] = a[i];
    b_s[${l.ob}u + (i / 16u) * ${l.sb}u + i % 16u] = b[i];
  }
  workgroupBarrier();
  let ma = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a_s, ${l.oa}u, ${l.sa}u);
  let mb = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&b_s, ${l.ob}u, ${l.sb}u);
  var acc = subgroup_matrix_result<f32, 16, 16>();
  acc = subgroupMatrixMultiplyAccumulate(ma, mb, acc);
  subgroupMatrixStore<row_major>(&c_s, ${l.oc}u, acc, ${l.sc}u);
  workgroupBarrier();
  ${
    l.reloadResult
      ? `let back = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>, row_major>(&c_s, ${l.oc}u, ${l.sc}u);
  workgroupBarrier();
  subgroupMatrixStore<row_major>(&c_s, ${l.oc}u, back, ${l.sc}u);
  workgroupBarrier();`
      : ''
  }
  for (var i = lid; i < 256u; i += ${wg}u) {
    c[i] = c_s[${l.oc}u + (i / 16u) * ${l.sc}u + i % 16u];
  }
}`;
}

export async function probeSubgroupMatrix(ctx: GpuContext, opts: SuiteOptions): Promise<CaseResult[]> {
  const base = { suite: 'probe', timeMs: Number.NaN, p10Ms: Number.NaN, p90Ms: Number.NaN, gbs: Number.NaN, tflops: Number.NaN, bytes: 0, flops: 0, planCpuUs: Number.NaN, runCpuUs: Number.NaN, timing: 'queue' as const };
  if (!ctx.hasF16 || !ctx.features.has('chromium-experimental-subgroup-matrix')) {
    return [{ ...base, name: 'subgroup matrix', verified: 'not offered by this device' }];
  }
  const results: CaseResult[] = [];
  const configs = ctx.subgroupMatrixConfigs.map((c) => `${c.M}x${c.N}x${c.K} ${c.componentType}->${c.resultComponentType}`).join(', ');
  results.push({ ...base, name: 'configs offered', verified: configs || 'none listed' });
  // A (M x K) row-major and B stored as N x K row-major (so B^T is the right operand, col_major).
  const n = 16;
  const aHost = Float32Array.from({ length: n * n }, (_, i) => ((i * 7) % 13) / 8 - 0.75);
  const bHost = Float32Array.from({ length: n * n }, (_, i) => ((i * 5) % 11) / 8 - 0.6);
  const want = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += aHost[i * n + k] * bHost[j * n + k];
    want[i * n + j] = s;
  }
  const a = ctx.tensor(aHost, [n * n], 'f16');
  const b = ctx.tensor(bHost, [n * n], 'f16');
  for (const s of SPELLINGS) {
    opts.progress(`probe ${s.name}`);
    const module = ctx.device.createShaderModule({ code: wgsl(s), label: `probe ${s.name}` });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error').map((m) => m.message.split('\n')[0]);
    const warnings = info.messages.filter((m) => m.type === 'warning').map((m) => m.message.split('\n')[0]);
    if (errors.length > 0) {
      results.push({ ...base, name: s.name, verified: `does not compile: ${errors[0].slice(0, 160)}` });
      continue;
    }
    const c = ctx.full([n * n], 'f32', Number.NaN);
    try {
      await ctx.checkErrors(async () => {
        const pipeline = await ctx.device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
        const group = ctx.device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: [a, b, c].map((t, binding) => ({ binding, resource: { buffer: t.buffer } })),
        });
        const enc = ctx.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(1);
        pass.end();
        ctx.submit([enc.finish()]);
      });
      const got = (await c.toArray()) as Float32Array;
      let maxErr = 0;
      for (let i = 0; i < n * n; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]));
      const note = warnings.length ? ` (warning: ${warnings[0].slice(0, 100)})` : '';
      results.push({ ...base, name: s.name, verified: `${maxErr < 1e-3 ? 'ok' : 'WRONG'}: max abs err ${maxErr.toExponential(2)} vs exact A·Bᵀ${note}` });
    } catch (e) {
      results.push({ ...base, name: s.name, verified: `runs with errors: ${String(e).slice(0, 160)}` });
    } finally {
      c.destroy();
    }
  }
  for (const l of LAYOUTS) {
    opts.progress(`probe ${l.name}`);
    results.push({ ...base, name: l.name, verified: await runProbe(ctx, workgroupWgsl(l), a, b, want) });
  }
  a.destroy();
  b.destroy();
  {
    // S = Q Kᵀ exactly as the prefill kernel computes it: Q 16x64 and K 32x64 in padded workgroup
    // rows, four k-blocks accumulated, two 16-column blocks stored to a 16x32 tile.
    const qv = Float32Array.from({ length: 16 * 64 }, (_, i) => ((i * 7) % 17 - 8) / 16);
    const kv = Float32Array.from({ length: 32 * 64 }, (_, i) => ((i * 5) % 17 - 8) / 16);
    const sWant = new Float32Array(16 * 32);
    for (let m = 0; m < 16; m++) for (let n = 0; n < 32; n++) {
      let acc = 0;
      for (let d = 0; d < 64; d++) acc += qv[m * 64 + d] * kv[n * 64 + d];
      sWant[m * 32 + n] = acc;
    }
    const qt = ctx.tensor(qv, [qv.length], 'f16');
    const kt = ctx.tensor(kv, [kv.length], 'f16');
    const variants = [
      ['S = Q Kᵀ like the kernel (Q fragments before the loop)', qkWgsl(true)],
      ['S = Q Kᵀ, Q loaded inside the loop', qkWgsl(false)],
      ['S = Q Kᵀ with enable subgroups + a shuffle', qkWgsl(true).replace('enable f16;', 'enable f16;\nenable subgroups;').replace('  workgroupBarrier();\n  for (var i = lid; i < 512u', '  workgroupBarrier();\n  let z = subgroupShuffleXor(s_s[lid], 1u) * 0.0;\n  for (var i = lid; i < 512u').replace('c[i] = s_s[i];', 'c[i] = s_s[i] + z;')],
      ['S = Q Kᵀ after a 36-byte workgroup struct', qkWgsl(true).replace('var<workgroup> q_s', 'struct W { a: array<u32, 9> }\nvar<workgroup> w0: W;\nvar<workgroup> q_s').replace('workgroupBarrier();', 'if (lid == 0u) { w0.a[0] = 1u; }\n  workgroupBarrier();')],
      ['S = Q Kᵀ with the kernel\'s other tiles declared (v_s, p_s)', qkWgsl(true).replace('var<workgroup> s_s', 'var<workgroup> v_s: array<f16, 2304>;\nvar<workgroup> s_s').replace('@compute', 'var<workgroup> p_s: array<f16, 640>;\n@compute').replace('  workgroupBarrier();\n  let q0', '  v_s[lid] = f16(1.0); p_s[lid] = f16(2.0);\n  workgroupBarrier();\n  let q0').replace('c[i] = s_s[i];', 'c[i] = s_s[i] + 0.0 * f32(v_s[i] + p_s[i]);')],
      ['S = Q Kᵀ with Q and K written as f16(x) from u32 words', qkWgsl(true).replace('@group(0) @binding(0) var<storage, read> a: array<f16>;\n@group(0) @binding(1) var<storage, read> b: array<f16>;', '@group(0) @binding(0) var<storage, read> a: array<u32>;\n@group(0) @binding(1) var<storage, read> b: array<u32>;').replace('q_s[(i / 64u) * 72u + i % 64u] = a[i];', 'q_s[(i / 64u) * 72u + i % 64u] = f16(unpack2x16float(a[i / 2u])[i % 2u]);').replace('k_s[(i / 64u) * 72u + i % 64u] = b[i];', 'k_s[(i / 64u) * 72u + i % 64u] = f16(unpack2x16float(b[i / 2u])[i % 2u]);')],
      ['S = Q Kᵀ, tiles stored 4 f16 per lane (unpack2x16float)', qk4Wgsl(false)],
      ['S = Q Kᵀ, tiles stored 4 f16 per lane (bitcast vec2<f16>)', qk4Wgsl(true)],
      ['S = Q Kᵀ inside a runtime-bounded loop', qkWgsl(false).replace('  for (var nb = 0u; nb < 2u; nb++) {', '  for (var t = 0u; t < arrayLength(&a) / 1024u; t++) {\n  workgroupBarrier();\n  for (var nb = 0u; nb < 2u; nb++) {').replace('    subgroupMatrixStore<row_major>(&s_s, nb * 16u, s, 32u);\n  }', '    subgroupMatrixStore<row_major>(&s_s, nb * 16u, s, 32u);\n  }\n  }')],
      ['S = Q Kᵀ after a 36-byte workgroup struct written first', qkWgsl(true).replace('var<workgroup> q_s', 'struct W { a: array<u32, 9> }\nvar<workgroup> w0: W;\nvar<workgroup> q_s').replace('fn main(@builtin(local_invocation_index) lid: u32) {', 'fn main(@builtin(local_invocation_index) lid: u32) {\n  if (lid == 0u) { w0.a[0] = 1u; }\n  let w = workgroupUniformLoad(&w0);').replace('c[i] = s_s[i];', 'c[i] = s_s[i] + 0.0 * f32(w.a[0]);')],
      ['S = Q Kᵀ after a 6-byte f16 workgroup array written first', qkWgsl(true).replace('var<workgroup> q_s', 'var<workgroup> h0: array<f16, 3>;\nvar<workgroup> q_s').replace('fn main(@builtin(local_invocation_index) lid: u32) {', 'fn main(@builtin(local_invocation_index) lid: u32) {\n  if (lid < 3u) { h0[lid] = f16(lid); }\n  workgroupBarrier();').replace('c[i] = s_s[i];', 'c[i] = s_s[i] + 0.0 * f32(h0[i % 3u]);')],
      ['S = Q Kᵀ with K in a u32 workgroup array (f16 pairs, offsets in u32)', qkUnits(qkWgsl(true), 2).replace('var<workgroup> k_s: array<f16, 2304>;', 'var<workgroup> k_s: array<u32, 1152>;').replace('for (var i = lid; i < 2048u; i += 32u) { k_s[(i / 64u) * 72u + i % 64u] = b[i]; }', 'for (var i = lid; i < 1024u; i += 32u) { k_s[(i / 32u) * 36u + i % 32u] = pack2x16float(vec2<f32>(f32(b[2u * i]), f32(b[2u * i + 1u]))); }')],
      ['S = Q Kᵀ with K in a vec4<u32> workgroup array (offsets in vec4)', qkUnits(qkWgsl(true), 8).replace('var<workgroup> k_s: array<f16, 2304>;', 'var<workgroup> k_s: array<vec4<u32>, 288>;').replace('for (var i = lid; i < 2048u; i += 32u) { k_s[(i / 64u) * 72u + i % 64u] = b[i]; }', 'for (var i = lid; i < 256u; i += 32u) { let e = 8u * i; k_s[(i / 8u) * 9u + i % 8u] = vec4<u32>(pack2x16float(vec2<f32>(f32(b[e]), f32(b[e + 1u]))), pack2x16float(vec2<f32>(f32(b[e + 2u]), f32(b[e + 3u]))), pack2x16float(vec2<f32>(f32(b[e + 4u]), f32(b[e + 5u]))), pack2x16float(vec2<f32>(f32(b[e + 6u]), f32(b[e + 7u])))); }')],
      ['S = Q Kᵀ with 128 threads (4 subgroups, all on the same rows)', qkWgsl(true).replace('@workgroup_size(32u)', '@workgroup_size(128u)').replaceAll('i += 32u', 'i += 128u')],
    ] as const;
    for (const [name, code] of variants) {
      opts.progress(`probe ${name}`);
      results.push({ ...base, name, verified: await runProbe(ctx, code, qt, kt, sWant) });
    }
    {
      // Four subgroups, each its own 16 rows (offsets from subgroup_id), with the uniformity diagnostic off.
      const q64 = Float32Array.from({ length: 64 * 64 }, (_, i) => ((i * 7) % 17 - 8) / 16);
      const s64 = new Float32Array(64 * 32);
      for (let m = 0; m < 64; m++) for (let n = 0; n < 32; n++) {
        let acc = 0;
        for (let d = 0; d < 64; d++) acc += q64[m * 64 + d] * kv[n * 64 + d];
        s64[m * 32 + n] = acc;
      }
      const q64t = ctx.tensor(q64, [q64.length], 'f16');
      opts.progress('probe S = Q Kᵀ, 4 subgroups on their own rows');
      for (const builtin of [true, false]) {
        results.push({ ...base, name: `S = Q Kᵀ, 4 subgroups on their own 16 rows (diagnostic off, ${builtin ? 'subgroup_id' : 'lid / 32'})`, verified: await runProbe(ctx, qkMultiWgsl(builtin), q64t, kt, s64) });
      }
      q64t.destroy();
    }
    qt.destroy();
    kt.destroy();
  }
  for (const [qo, kv, causal] of [[16, 16, false], [16, 32, false], [16, 64, false], [32, 64, true]] as const) {
    opts.progress(`probe prefill tensor-core ${qo}x${kv}`);
    results.push({ ...base, name: `prefill tensor-core qo ${qo} kv ${kv} causal ${causal}`, verified: await prefillPattern(ctx, qo, kv, causal) });
  }
  return results;
}

/** As qkWgsl, but each lane converts 4 elements from u32 words and stores them as 4 f16, as the kernel does. */
function qk4Wgsl(nativeUnpack: boolean): string {
  const un = nativeUnpack ? (w: string) => `vec2<f32>(bitcast<vec2<f16>>(${w}))` : (w: string) => `unpack2x16float(${w})`;
  return qkWgsl(true)
    .replace('@group(0) @binding(0) var<storage, read> a: array<f16>;\n@group(0) @binding(1) var<storage, read> b: array<f16>;', '@group(0) @binding(0) var<storage, read> a: array<u32>;\n@group(0) @binding(1) var<storage, read> b: array<u32>;')
    .replace(
      'for (var i = lid; i < 1024u; i += 32u) { q_s[(i / 64u) * 72u + i % 64u] = a[i]; }',
      `for (var i = lid; i < 256u; i += 32u) { let r = i / 16u; let u = i % 16u; let x = vec4<f32>(${un('a[i * 2u]')}, ${un('a[i * 2u + 1u]')}); let o = r * 72u + u * 4u; q_s[o] = f16(x.x); q_s[o + 1u] = f16(x.y); q_s[o + 2u] = f16(x.z); q_s[o + 3u] = f16(x.w); }`,
    )
    .replace(
      'for (var i = lid; i < 2048u; i += 32u) { k_s[(i / 64u) * 72u + i % 64u] = b[i]; }',
      `for (var i = lid; i < 512u; i += 32u) { let r = i / 16u; let u = i % 16u; let x = vec4<f32>(${un('b[i * 2u]')}, ${un('b[i * 2u + 1u]')}); let o = r * 72u + u * 4u; k_s[o] = f16(x.x); k_s[o + 1u] = f16(x.y); k_s[o + 2u] = f16(x.z); k_s[o + 3u] = f16(x.w); }`,
    );
}

/** 64 query rows x 32 keys over D 64 with 128 threads: subgroup s owns rows 16s..16s+15. */
function qkMultiWgsl(builtin: boolean): string {
  return `diagnostic(off, chromium.subgroup_matrix_uniformity);
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
var<workgroup> q_s: array<f16, ${64 * 72}>;
var<workgroup> k_s: array<f16, ${32 * 72}>;
var<workgroup> s_s: array<f32, ${64 * 32}>;
@compute @workgroup_size(128u)
fn main(@builtin(local_invocation_index) lid: u32${builtin ? ', @builtin(subgroup_id) sg: u32' : ''}) {
  ${builtin ? '' : 'let sg = lid / 32u;'}
  for (var i = lid; i < ${64 * 64}u; i += 128u) { q_s[(i / 64u) * 72u + i % 64u] = a[i]; }
  for (var i = lid; i < ${32 * 64}u; i += 128u) { k_s[(i / 64u) * 72u + i % 64u] = b[i]; }
  workgroupBarrier();
  for (var nb = 0u; nb < 2u; nb++) {
    var s = subgroup_matrix_result<f32, 16, 16>();
    for (var i = 0u; i < 4u; i++) {
      let q = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&q_s, sg * ${16 * 72}u + i * 16u, 72u);
      let k = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&k_s, nb * ${16 * 72}u + i * 16u, 72u);
      s = subgroupMatrixMultiplyAccumulate(q, k, s);
    }
    subgroupMatrixStore<row_major>(&s_s, sg * ${16 * 32}u + nb * 16u, s, 32u);
  }
  workgroupBarrier();
  for (var i = lid; i < ${64 * 32}u; i += 128u) { c[i] = s_s[i]; }
}`;
}

/** The K matrix loads of qkWgsl(true) with offsets and stride in units of `per` f16 (a u32 or vec4 array). */
function qkUnits(code: string, per: number): string {
  return code.replace(/subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>\(&k_s, nb \* 1152u \+ (\d+)u, 72u\)/g, (_, off) => `subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&k_s, nb * ${1152 / per}u + ${Number(off) / per}u, ${72 / per}u)`);
}

function qkWgsl(hoist: boolean): string {
  const frag = (i: number) => `subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&q_s, ${i * 16}u, 72u)`;
  return `enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
var<workgroup> q_s: array<f16, ${16 * 72}>;
var<workgroup> k_s: array<f16, ${32 * 72}>;
var<workgroup> s_s: array<f32, ${16 * 32}>;
@compute @workgroup_size(32u)
fn main(@builtin(local_invocation_index) lid: u32) {
  for (var i = lid; i < ${16 * 64}u; i += 32u) { q_s[(i / 64u) * 72u + i % 64u] = a[i]; }
  for (var i = lid; i < ${32 * 64}u; i += 32u) { k_s[(i / 64u) * 72u + i % 64u] = b[i]; }
  workgroupBarrier();
  ${hoist ? [0, 1, 2, 3].map((i) => `let q${i} = ${frag(i)};`).join('\n  ') : ''}
  for (var nb = 0u; nb < 2u; nb++) {
    var s = subgroup_matrix_result<f32, 16, 16>();
    ${[0, 1, 2, 3]
      .map((i) => `s = subgroupMatrixMultiplyAccumulate(${hoist ? `q${i}` : frag(i)}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&k_s, nb * ${16 * 72}u + ${i * 16}u, 72u), s);`)
      .join('\n    ')}
    subgroupMatrixStore<row_major>(&s_s, nb * 16u, s, 32u);
  }
  workgroupBarrier();
  for (var i = lid; i < 512u; i += 32u) { c[i] = s_s[i]; }
}`;
}

/** Runs the tensor-core prefill on a small problem and describes where it is wrong. */
async function prefillPattern(ctx: GpuContext, qo: number, kv: number, causal: boolean): Promise<string> {
  const [H, D] = [1, 64];
  const val = (i: number, s: number) => (((i * s) % 17) - 8) / 16;
  const qh = Float32Array.from({ length: qo * H * D }, (_, i) => val(i, 7));
  const kh = Float32Array.from({ length: kv * H * D }, (_, i) => val(i, 5));
  const vh = Float32Array.from({ length: kv * H * D }, (_, i) => val(i, 3));
  const w = new BatchPrefillWithRaggedKVCacheWrapper(ctx, ctx.empty([1 << 20], 'u8'));
  try {
    await ctx.checkErrors(() => w.plan({ qoIndptr: [0, qo], kvIndptr: [0, kv], numQoHeads: H, numKvHeads: H, headDimQk: D, causal, useTensorCores: true }));
    const [o, lse] = await ctx.checkErrors(() => w.runReturnLse(ctx.tensor(qh, [qo, H, D], 'f16'), ctx.tensor(kh, [kv, H, D], 'f16'), ctx.tensor(vh, [kv, H, D], 'f16')));
    const og = (await o.toArray()) as Float32Array;
    const lg = (await lse.toArray()) as Float32Array;
    const want = attentionRef({ q: qh, k: kh, v: vh, qoLen: qo, kvLen: kv, numQoHeads: H, numKvHeads: H, headDimQk: D, causal });
    const badRows: number[] = [];
    const lseErr: string[] = [];
    for (let r = 0; r < qo; r++) {
      let bad = false;
      for (let d = 0; d < D; d++) if (Math.abs(og[r * D + d] - want.o[r * D + d]) > 3e-3) bad = true;
      if (bad) badRows.push(r);
      if (r < 4) lseErr.push(`${lg[r].toFixed(4)}/${want.lse[r].toFixed(4)}`);
    }
    const r0 = Array.from({ length: 6 }, (_, d) => `${og[d].toFixed(3)}/${want.o[d].toFixed(3)}`).join(' ');
    return `bad rows ${badRows.length}/${qo} [${badRows.slice(0, 8).join(',')}]; lse got/want rows 0-3: ${lseErr.join(' ')}; o row 0 d0-5: ${r0}`;
  } catch (e) {
    return `error: ${String(e).slice(0, 300)}`;
  } finally {
    w.destroy();
  }
}

/** Compiles and runs a probe kernel (bindings a, b, c) and compares c with `want`. */
async function runProbe(ctx: GpuContext, code: string, a: { buffer: GPUBuffer }, b: { buffer: GPUBuffer }, want: Float32Array): Promise<string> {
  const module = ctx.device.createShaderModule({ code, label: 'probe' });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error').map((m) => m.message.split('\n')[0]);
  if (errors.length > 0) return `does not compile: ${errors[0].slice(0, 200)}`;
  const c = ctx.full([want.length], 'f32', Number.NaN);
  try {
    await ctx.checkErrors(async () => {
      const pipeline = await ctx.device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const group = ctx.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [a, b, c].map((t, binding) => ({ binding, resource: { buffer: t.buffer } })),
      });
      const enc = ctx.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(1);
      pass.end();
      ctx.submit([enc.finish()]);
    });
    const got = (await c.toArray()) as Float32Array;
    let maxErr = 0;
    let firstBad = -1;
    for (let i = 0; i < want.length; i++) {
      const e = Math.abs(got[i] - want[i]);
      if (!(e < 1e-3) && firstBad < 0) firstBad = i;
      maxErr = Math.max(maxErr, Number.isNaN(e) ? Number.POSITIVE_INFINITY : e);
    }
    return firstBad < 0 ? `ok: max abs err ${maxErr.toExponential(2)}` : `WRONG: first bad element ${firstBad} got ${got[firstBad]} want ${want[firstBad]}; max err ${maxErr.toExponential(2)}`;
  } catch (e) {
    return `runs with errors: ${String(e).slice(0, 200)}`;
  } finally {
    c.destroy();
  }
}
