/**
 * Probe of the tensor-core path (`chromium-experimental-subgroup-matrix`): which WGSL spelling of
 * the builtins this Dawn accepts, and whether a 16x16x16 f16 -> f32 multiply-accumulate (with the
 * right operand read column-major, as K^T is in attention) gives the exact product. Results go to
 * the table's `verify` column; nothing is timed. Groundwork for the prefill and MLA MMA kernels.
 */
import type { GpuContext } from '@webinfer/core-buffers';
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
  a.destroy();
  b.destroy();
  return results;
}
