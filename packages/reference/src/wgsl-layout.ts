/**
 * Workgroup-memory facts of generated WGSL, for tests that cannot run a kernel (the tensor-core
 * kernels on lavapipe): which `var<workgroup>` a module declares and how many bytes each takes.
 */

/** Bytes of a WGSL workgroup type: scalars, vectors, atomics, arrays of them and named structs. */
export function wgslTypeBytes(type: string, structs: ReadonlyMap<string, number>): number {
  const t = type.replace(/\s+/g, '');
  const arr = /^array<(.+),(\d+)u?>$/.exec(t);
  if (arr) return wgslTypeBytes(arr[1], structs) * Number(arr[2]);
  const scalar: Record<string, number> = { f16: 2, f32: 4, u32: 4, i32: 4, 'atomic<u32>': 4, 'atomic<i32>': 4 };
  if (t in scalar) return scalar[t];
  const vec = /^vec([234])<(f16|f32|u32|i32)>$/.exec(t);
  if (vec) return (vec[1] === '3' ? 4 : Number(vec[1])) * scalar[vec[2]];
  const s = structs.get(t);
  if (s !== undefined) return s;
  throw new Error(`unknown workgroup type ${type}`);
}

/** Every `var<workgroup>` of a module with its size in bytes (structs of 4-byte fields only). */
export function wgslWorkgroupVariables(wgsl: string): { name: string; bytes: number }[] {
  const structs = new Map<string, number>();
  for (const m of wgsl.matchAll(/struct\s+(\w+)\s*\{([^}]*)\}/g)) {
    structs.set(m[1], m[2].split(',').filter((f) => f.trim()).length * 4);
  }
  return [...wgsl.matchAll(/var<workgroup>\s+(\w+)\s*:\s*([^;]+);/g)].map((m) => ({ name: m[1], bytes: wgslTypeBytes(m[2], structs) }));
}
