/**
 * What the tensor-core (subgroup-matrix) kernels of every family share: the device check and the
 * small WGSL builders their generators use.
 */
import type { GpuContext } from '../context';

/**
 * Why `ctx` can't run a 16x16x16 f16 -> f32 subgroup-matrix kernel with one fixed subgroup size,
 * or undefined when it can. Families add their own dtype and size checks after this.
 */
export function subgroupMatrixF16Support(ctx: GpuContext): string | undefined {
  if (!ctx.features.has('chromium-experimental-subgroup-matrix')) return 'the device offers no subgroup matrices';
  if (!ctx.hasF16 || !ctx.hasSubgroups) return 'it needs the shader-f16 and subgroups features';
  const ok = ctx.subgroupMatrixConfigs.some((m) => m.M === 16 && m.N === 16 && m.K === 16 && m.componentType === 'f16' && m.resultComponentType === 'f32');
  if (!ok) return 'the device has no 16x16x16 f16->f32 subgroup-matrix config';
  if (ctx.subgroupMinSize !== ctx.subgroupMaxSize || ![16, 32, 64].includes(ctx.subgroupMinSize)) {
    return 'it needs one fixed subgroup size of 16, 32 or 64';
  }
  return undefined;
}

/** WGSL statements reducing `v` (max or sum) over `lanes` consecutive lanes (a power of two). */
export function wgslShuffleReduce(v: string, op: 'max' | '+', lanes: number): string {
  const lines: string[] = [];
  for (let m = 1; m < lanes; m *= 2) {
    lines.push(op === 'max' ? `${v} = max(${v}, subgroupShuffleXor(${v}, ${m}u));` : `${v} += subgroupShuffleXor(${v}, ${m}u);`);
  }
  return lines.join(' ');
}

/** WGSL expression: two vec4<f32> as 8 f16 in one 16-byte word (vec4<u32>). */
export function wgslPackF16x8(a: string, b: string): string {
  return `vec4<u32>(pack2x16float(${a}.xy), pack2x16float(${a}.zw), pack2x16float(${b}.xy), pack2x16float(${b}.zw))`;
}

/**
 * WGSL visiting every O result block (16 x 16 f32 `o_0`, `o_1`, ... in registers) `perStage` at a
 * time (default 2) through an f32 staging area of rows `stride` 16-byte words apart at word `base`
 * (16 · perStage columns a row): the lane owning row `rr` (`lanesPerRow` lanes a row, share `lr`)
 * sees 4 values as `var o` and, per stage, the line `column(stage)` (which names the columns for
 * `body`). `reload` writes `o` back and reloads the blocks (a rescale); without it the blocks are
 * only read (the output write). Runs in uniform control flow (barriers).
 */
export function wgslStagedResultPairs(o: {
  blocks: number;
  base: string;
  stride: number;
  lanesPerRow: number;
  column: (stage: number) => string;
  body: string;
  reload: boolean;
  perStage?: 1 | 2;
}): string {
  const k = o.perStage ?? 2;
  const per = (16 * k) / (4 * o.lanesPerRow); // 4-wide units a lane takes of a stage's columns
  const result = 'subgroup_matrix_result<f32, 16, 16>';
  const second = /^\d+u$/.test(o.base) ? `${Number.parseInt(o.base, 10) + 4}u` : `${o.base} + 4u`;
  const at = (i: number) => (i === 0 ? o.base : second);
  return Array.from({ length: o.blocks / k }, (_, st) => `${Array.from({ length: k }, (_, i) => `subgroupMatrixStore<row_major>(&smem, ${at(i)}, o_${k * st + i}, ${o.stride}u);`).join('\n    ')}
    workgroupBarrier();
    for (var e = 0u; e < ${per}u; e++) {
      let q4 = lr * ${per}u + e;
      let at = ${o.base} + rr * ${o.stride}u + q4;
      var o = bitcast<vec4<f32>>(smem[at]);
      ${o.column(st)}
      ${o.body}
      ${o.reload ? 'smem[at] = bitcast<vec4<u32>>(o);' : ''}
    }
    workgroupBarrier();
    ${
      o.reload
        ? `${Array.from({ length: k }, (_, i) => `o_${k * st + i} = subgroupMatrixLoad<${result}, row_major>(&smem, ${at(i)}, ${o.stride}u);`).join('\n    ')}
    workgroupBarrier();`
        : ''
    }`).join('\n    ');
}

/**
 * WGSL writing the lane's `columns` probabilities p = exp2(x[i] - `mRef`) as f16 (`p16`), 8 a
 * 16-byte store, into row `rr` of a P area at word `base` (rows `stride` words apart; the lane's
 * share `lr` starts at column lr * columns), and setting `tile_l` to the sum of the rounded values
 * (the ones P V multiplies).
 */
export function wgslWriteP16(o: { mRef: string; columns: number; base: string; stride: number }): string {
  const words = Array.from({ length: o.columns / 8 }, (_, w) => {
    const h = (k: number) => `vec4<f16>(${[0, 1, 2, 3].map((i) => `p16(x[${w * 8 + k * 4 + i}], ${o.mRef})`).join(', ')})`;
    return `{
        let h0 = ${h(0)};
        let h1 = ${h(1)};
        sum += dot(vec4<f32>(h0) + vec4<f32>(h1), vec4<f32>(1.0));
        smem[${o.base} + rr * ${o.stride}u + lr * ${o.columns / 8}u + ${w}u] = vec4<u32>(bitcast<vec2<u32>>(h0), bitcast<vec2<u32>>(h1));
      }`;
  });
  return `{
      var sum = 0.0;
      ${words.join('\n      ')}
      tile_l = sum;
    }`;
}
