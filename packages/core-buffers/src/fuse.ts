/**
 * Two kernels in one dispatch. WebGPU runs the dispatches of a command buffer one after another
 * whenever a later one writes a buffer (Dawn puts a pipeline barrier there), so a bandwidth-bound
 * kernel and a compute-bound one cannot share the GPU unless they are one dispatch. `fuseWgsl`
 * makes that dispatch from the two kernels' own WGSL:
 *   - B's module-scope names get a prefix, both entry points become plain functions, and a new
 *     entry point sends each workgroup to one body: B's workgroups are spread evenly through the
 *     dispatch (every `stride`-th id), A's take the rest, so both run side by side;
 *   - bindings are renumbered A then B (then one uniform with the split), and bindings a body
 *     never reads are dropped, so the pair fits the device's storage-buffer limit;
 *   - B's f32/u32 workgroup arrays move into A's largest workgroup array when they fit: a
 *     workgroup runs one body only, so their workgroup memory can be the same bytes.
 * The bodies see `workgroup_id` = (their own linear id, 0, 0), which every webinfer kernel reads
 * as `wg.x + wg.y * groups_x`.
 */
import type { GpuContext } from './context';
import type { DispatchCache } from './dispatch-cache';
import { type BindingKind, type BufferBinding, type DivertedDispatch, bindGroupEntries, encodeDispatch, foldWorkgroups, getKernel, isGpuBuffer } from './kernel-cache';

export interface FusedWgsl {
  wgsl: string;
  /** Fused binding index of each of A's bindings, or -1 where A never reads it. */
  aBindings: number[];
  bBindings: number[];
  /** Binding of the split uniform (`FUSED_SPLIT_BYTES` bytes). */
  splitBinding: number;
  workgroupSize: number;
  /** Bindings of the fused layout, in order. */
  layout: BindingKind[];
}

/** The split uniform: B's workgroup count, the stride between B's ids, all workgroups. */
export const FUSED_SPLIT_BYTES = 16;

export function fusedSplitValues(aGroups: number, bGroups: number, strideOverride?: number): Uint32Array {
  const total = aGroups + bGroups;
  const spread = bGroups > 0 ? Math.max(1, Math.floor(total / bGroups)) : total + 1;
  const stride = strideOverride !== undefined ? Math.max(1, Math.min(strideOverride, spread)) : spread;
  return Uint32Array.from([bGroups, stride, total, 0]);
}

interface Item {
  text: string;
  kind: 'directive' | 'fn' | 'struct' | 'var' | 'const' | 'alias' | 'override' | 'other';
  name?: string;
  binding?: number;
  entry?: { workgroupSize: number; params: { builtin: string; name: string; type: string }[]; body: string };
}

const stripComments = (s: string) => s.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');

/** Module-scope items of a WGSL module (split at `;` and closing `}` at brace depth 0). */
function items(wgsl: string): Item[] {
  const src = stripComments(wgsl);
  const out: Item[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < src.length; i++) {
    const ch = src[i];
    if (ch === '{') depth++;
    else if (ch === '}') {
      depth--;
      if (depth === 0) {
        // A struct or function body closes the item (a `;` may follow a struct).
        let end = i + 1;
        while (end < src.length && /[ \t]/.test(src[end])) end++;
        if (src[end] === ';') end++;
        out.push(parse(src.slice(start, end)));
        start = end;
        i = end - 1;
      }
    } else if (ch === ';' && depth === 0) {
      out.push(parse(src.slice(start, i + 1)));
      start = i + 1;
    }
  }
  if (src.slice(start).trim()) throw new Error(`WGSL fusion: unterminated text at the end of a module: ${src.slice(start, start + 80)}`);
  return out.filter((it) => it.text.trim() !== '' && it.text.trim() !== ';');
}

function parse(raw: string): Item {
  const text = raw.trim();
  if (/^(enable|requires|diagnostic)\b/.test(text)) return { text, kind: 'directive' };
  const attrs = /^((?:@\w+(?:\([^)]*\))?\s*)*)/.exec(text)![1];
  const rest = text.slice(attrs.length);
  const m = /^(fn|struct|var(?:<[^>]*>)?|const|alias|override)\s+(\w+)/.exec(rest);
  if (!m) return { text, kind: 'other' };
  const kind = (m[1].startsWith('var') ? 'var' : m[1]) as Item['kind'];
  const item: Item = { text, kind, name: m[2] };
  const b = /@binding\((\d+)\)/.exec(attrs);
  if (b) item.binding = Number(b[1]);
  const wg = /@workgroup_size\((\d+)\)/.exec(attrs);
  if (kind === 'fn' && /@compute/.test(attrs)) {
    if (!wg) throw new Error('WGSL fusion: the entry point needs a literal @workgroup_size(n)');
    const bodyStart = rest.indexOf('{');
    const sig = rest.slice(rest.indexOf('(') + 1, rest.lastIndexOf(')', bodyStart));
    const params = [...sig.matchAll(/@builtin\((\w+)\)\s*(\w+)\s*:\s*([\w<>]+)/g)].map((p) => ({ builtin: p[1], name: p[2], type: p[3] }));
    item.entry = { workgroupSize: Number(wg[1]), params, body: rest.slice(bodyStart) };
  }
  return item;
}

const BUILTINS_PASSED = new Set(['local_invocation_index', 'local_invocation_id', 'subgroup_invocation_id', 'subgroup_size']);

/** The entry point's body as a plain function `name` of its builtins. */
function entryAsFunction(it: Item, name: string): string {
  const e = it.entry!;
  for (const p of e.params) {
    if (p.builtin !== 'workgroup_id' && !BUILTINS_PASSED.has(p.builtin)) throw new Error(`WGSL fusion: builtin ${p.builtin} is not supported in a fused body`);
  }
  return `fn ${name}(${e.params.map((p) => `${p.name}: ${p.type}`).join(', ')}) ${e.body}`;
}

const WORDS_OF: Record<string, number> = { f32: 1, u32: 1, i32: 1, 'vec2<u32>': 2, 'vec4<u32>': 4 };

/**
 * The fused module of A and B (WGSL as their generators write it), with binding kinds `aKinds`,
 * `bKinds` in binding order.
 */
export function fuseWgsl(a: string, b: string, aKinds: readonly BindingKind[], bKinds: readonly BindingKind[]): FusedWgsl {
  const A = items(a);
  const B = items(b);
  const entryA = A.find((it) => it.entry);
  const entryB = B.find((it) => it.entry);
  if (!entryA || !entryB) throw new Error('WGSL fusion: each module needs one @compute entry point');
  const wgSize = entryA.entry!.workgroupSize;
  if (entryB.entry!.workgroupSize !== wgSize) {
    throw new Error(`WGSL fusion: workgroup sizes differ (${wgSize} and ${entryB.entry!.workgroupSize})`);
  }
  // B's module-scope names get a prefix. Struct members keep theirs (they are reached after '.',
  // which the rename skips, and may share a name with a function, e.g. soft_cap).
  const prefix = 'fb_';
  const names = B.filter((it) => it.name).map((it) => it.name!);
  const renameRe = names.length ? new RegExp(`(?<![\\w.])(${names.join('|')})(?!\\w)`, 'g') : undefined;
  const renameText = (s: string) => (renameRe ? s.replace(renameRe, `${prefix}$1`) : s);
  const renameB = (s: string) => {
    if (!/^struct\s/.test(s)) return renameText(s);
    const open = s.indexOf('{');
    return renameText(s.slice(0, open)) + s.slice(open).replace(/(\w+)(\s*:\s*)([^,}]+)/g, (_m, member, colon, type) => `${member}${colon}${renameText(type)}`);
  };

  const bodyA = A.filter((it) => it.kind !== 'directive').map((it) => (it === entryA ? entryAsFunction(it, 'fa_main') : it.text));
  const bodyB = B.filter((it) => it.kind !== 'directive').map((it) => renameB(it === entryB ? entryAsFunction(it, 'main') : it.text));

  // B's scalar workgroup arrays into A's largest workgroup array.
  const arrayRe = /^var<workgroup>\s+(\w+)\s*:\s*array<(f32|u32|i32|vec2<u32>|vec4<u32>)\s*,\s*(\d+)\s*>\s*;$/;
  let target: { name: string; words: number; per: number } | undefined;
  for (const it of A) {
    const m = arrayRe.exec(it.text);
    if (m && it.kind === 'var') {
      const per = WORDS_OF[m[2]];
      const words = per * Number(m[3]);
      if (!target || words > target.words) target = { name: m[1], words, per };
    }
  }
  let joinedB = bodyB.join('\n');
  const aliases: { name: string; type: string; count: number }[] = [];
  for (const it of B) {
    const m = arrayRe.exec(it.text);
    if (m && (m[2] === 'f32' || m[2] === 'u32')) aliases.push({ name: `${prefix}${m[1]}`, type: m[2], count: Number(m[3]) });
  }
  const aliasWords = aliases.reduce((s, x) => s + x.count, 0);
  if (target && aliases.length && aliasWords <= target.words) {
    let offset = 0;
    const T = target;
    for (const x of aliases) {
      const at = (i: string) => (T.per === 1 ? `${T.name}[${offset}u + ${i}]` : `${T.name}[(${offset}u + ${i}) / ${T.per}u][(${offset}u + ${i}) % ${T.per}u]`);
      // T holds u32 words (f32 arrays are bitcast; an f32 target is viewed the other way).
      const tf32 = /array<f32/.test(A.find((it) => it.name === T.name)!.text);
      const load = (i: string) => (x.type === 'f32' ? (tf32 ? at(i) : `bitcast<f32>(${at(i)})`) : tf32 ? `bitcast<u32>(${at(i)})` : at(i));
      const store = (v: string) => (x.type === 'f32' ? (tf32 ? v : `bitcast<u32>(${v})`) : tf32 ? `bitcast<f32>(${v})` : v);
      const decl = new RegExp(`var<workgroup>\\s+${x.name}\\s*:[^;]*;`);
      joinedB = joinedB.replace(
        decl,
        `fn ${x.name}_get(i: u32) -> ${x.type} { return ${load('i')}; }\nfn ${x.name}_set(i: u32, v: ${x.type}) { ${at('i')} = ${store('v')}; }`,
      );
      joinedB = joinedB
        .replace(new RegExp(`${x.name}\\[([^\\[\\]]+)\\]\\s*([-+*/])=\\s*([^;]+);`, 'g'), `${x.name}_set($1, ${x.name}_get($1) $2 ($3));`)
        .replace(new RegExp(`${x.name}\\[([^\\[\\]]+)\\]\\s*=(?!=)\\s*([^;]+);`, 'g'), `${x.name}_set($1, $2);`)
        .replace(new RegExp(`${x.name}\\[([^\\[\\]]+)\\]`, 'g'), `${x.name}_get($1)`);
      if (new RegExp(`${x.name}(?!_[gs]et\\()(?!\\w)`).test(joinedB.replace(/fn \w+_[gs]et\(/g, ''))) {
        throw new Error(`WGSL fusion: ${x.name} is used other than by index; it cannot share workgroup memory`);
      }
      offset += x.count;
    }
  }

  // Bindings: A's then B's, renumbered, those never read dropped.
  const joinedA = bodyA.join('\n');
  const layout: BindingKind[] = [];
  const keep = (src: string, all: string, list: Item[], kinds: readonly BindingKind[], rename: (s: string) => string) => {
    const map: number[] = kinds.map(() => -1);
    let text = src;
    for (const it of list.filter((x) => x.binding !== undefined)) {
      const name = rename(it.name!);
      const uses = all.match(new RegExp(`(?<![\\w.])${name}(?!\\w)`, 'g'))?.length ?? 0;
      const declText = rename(it.text);
      if (uses <= 1) {
        text = text.replace(declText, '');
        continue;
      }
      map[it.binding!] = layout.length;
      text = text.replace(declText, declText.replace(/@binding\(\d+\)/, `@binding(${layout.length})`));
      layout.push(kinds[it.binding!]);
    }
    return { text, map };
  };
  const keptA = keep(joinedA, joinedA, A, aKinds, (s) => s);
  const keptB = keep(joinedB, joinedB, B, bKinds, renameB);
  const splitBinding = layout.length;
  layout.push('uniform');

  const directives = [...new Set([...A, ...B].filter((it) => it.kind === 'directive').map((it) => it.text))];
  // The entry point: every builtin either body takes, once.
  const builtins = new Map<string, string>();
  for (const p of [...entryA.entry!.params, ...entryB.entry!.params]) if (p.builtin !== 'workgroup_id') builtins.set(p.builtin, p.type);
  const args = (e: Item, id: string) => e.entry!.params.map((p) => (p.builtin === 'workgroup_id' ? `vec3<u32>(${id}, 0u, 0u)` : `fused_${p.builtin}`)).join(', ');
  const entry = `struct FusedSplit { b_count: u32, stride: u32, total: u32, pad: u32 }
@group(0) @binding(${splitBinding}) var<uniform> fused_split: FusedSplit;

@compute @workgroup_size(${wgSize})
fn main(@builtin(workgroup_id) fused_wg: vec3<u32>, @builtin(num_workgroups) fused_nwg: vec3<u32>${[...builtins].map(([b, t]) => `, @builtin(${b}) fused_${b}: ${t}`).join('')}) {
  let f = fused_wg.x + fused_wg.y * fused_nwg.x;
  if (f >= fused_split.total) { return; }
  let q = f / fused_split.stride;
  if (f % fused_split.stride == 0u && q < fused_split.b_count) {
    ${prefix}main(${args(entryB, 'q')});
  } else {
    fa_main(${args(entryA, 'f - min(q + 1u, fused_split.b_count)')});
  }
}`;
  return {
    wgsl: `${directives.join('\n')}\n${keptA.text}\n// ---- fused body B\n${keptB.text}\n// ---- entry\n${entry}\n`,
    aBindings: keptA.map,
    bBindings: keptB.map,
    splitBinding,
    workgroupSize: wgSize,
    layout,
  };
}

const ELEMENT_BYTES: Record<string, number> = { f32: 4, u32: 4, i32: 4, 'atomic<u32>': 4, 'atomic<i32>': 4, 'vec2<u32>': 8, 'vec2<f32>': 8, 'vec4<u32>': 16, 'vec4<f32>': 16 };

/**
 * Workgroup memory a module declares, in bytes (each variable rounded up to 16), or undefined
 * when a type is not one this estimate knows. Structs count 4 bytes a field.
 */
export function workgroupBytes(wgsl: string): number | undefined {
  const src = stripComments(wgsl);
  const structs = new Map<string, number>();
  for (const m of src.matchAll(/struct\s+(\w+)\s*\{([^}]*)\}/g)) structs.set(m[1], (m[2].match(/:/g)?.length ?? 0) * 4);
  let total = 0;
  for (const m of src.matchAll(/var<workgroup>\s+\w+\s*:\s*([^;]+);/g)) {
    const type = m[1].trim();
    const arr = /^array<\s*(.+?)\s*,\s*(\d+)\s*>$/.exec(type);
    const bytes = arr ? (ELEMENT_BYTES[arr[1]] ?? structs.get(arr[1])) : (ELEMENT_BYTES[type] ?? structs.get(type));
    if (bytes === undefined) return undefined;
    total += Math.ceil(((arr ? Number(arr[2]) : 1) * bytes) / 16) * 16;
  }
  return total;
}

const fusedCache = new Map<string, FusedWgsl>();

/**
 * Encodes dispatches `a` and `b` as one fused dispatch when the device allows it (equal
 * workgroup sizes, bindings within the storage-buffer limit, workgroup memory within its limit,
 * direct dispatch sizes) and returns true; otherwise encodes nothing and returns why not.
 */
export function encodeFusedDispatch(
  ctx: GpuContext,
  encoder: GPUCommandEncoder,
  a: DivertedDispatch,
  b: DivertedDispatch,
  cache: DispatchCache,
  /** B's workgroups every `stride` ids (default: spread over the whole dispatch; 1: B first). */
  stride?: number,
): true | string {
  if ('buffer' in a.workgroups || 'buffer' in b.workgroups) return 'an indirect dispatch';
  const count = (w: readonly [number, number?, number?]) => w[0] * (w[1] ?? 1) * (w[2] ?? 1);
  const aEntries = bindGroupEntries(a.group);
  const bEntries = bindGroupEntries(b.group);
  if (!aEntries || !bEntries) return 'a bind group not made by webinfer';
  const key = `${a.kernel.key}|${b.kernel.key}`;
  let fused = fusedCache.get(key);
  if (!fused) {
    try {
      fused = fuseWgsl(a.kernel.wgsl, b.kernel.wgsl, a.kernel.bindings, b.kernel.bindings);
    } catch (e) {
      return String((e as Error).message ?? e);
    }
    fusedCache.set(key, fused);
  }
  const storage = fused.layout.filter((k) => k !== 'uniform').length;
  const smem = workgroupBytes(fused.wgsl);
  if (storage > ctx.limits.maxStorageBuffersPerShaderStage) return `${storage} storage buffers, over the device's ${ctx.limits.maxStorageBuffersPerShaderStage}`;
  if (smem === undefined) return 'workgroup memory of unknown size';
  if (smem > ctx.limits.maxComputeWorkgroupStorageSize) return `${smem} bytes of workgroup memory, over the device's ${ctx.limits.maxComputeWorkgroupStorageSize}`;
  const f = fused;
  const kernel = getKernel(ctx, { id: 'fused', config: { a: a.kernel.key, b: b.kernel.key }, wgsl: () => f.wgsl, bindings: f.layout });
  const aGroups = count(a.workgroups as readonly [number, number?, number?]);
  const bGroups = count(b.workgroups as readonly [number, number?, number?]);
  const uniform = cache.uniform(fusedSplitValues(aGroups, bGroups, stride).buffer as ArrayBuffer, true);
  const entries: GPUBufferBinding[] = new Array(f.layout.length);
  const asBinding = (x: BufferBinding): GPUBufferBinding => (isGpuBuffer(x) ? { buffer: x } : x);
  f.aBindings.forEach((to, from) => {
    if (to >= 0) entries[to] = asBinding(aEntries[from]);
  });
  f.bBindings.forEach((to, from) => {
    if (to >= 0) entries[to] = asBinding(bEntries[from]);
  });
  entries[f.splitBinding] = { buffer: uniform };
  const group = cache.bindGroup(kernel, entries);
  encodeDispatch(encoder, kernel, group, foldWorkgroups(ctx, aGroups + bGroups));
  return true;
}
