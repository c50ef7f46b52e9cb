/** Page tables shared by the graph tests: each request's pages drawn from one random permutation. */
import { permutation } from '@webinfer/reference';

export function randomPageTable(r: () => number, kvLens: number[], pageSize: number, numPages: number) {
  const perm = permutation(r, numPages);
  const indptr = [0];
  const indices: number[] = [];
  const lastPageLen: number[] = [];
  for (const len of kvLens) {
    const pages = Math.ceil(len / pageSize);
    for (let i = 0; i < pages; i++) indices.push(perm[indices.length]);
    indptr.push(indices.length);
    lastPageLen.push(pages === 0 ? 0 : len - (pages - 1) * pageSize);
  }
  return { indptr, indices, lastPageLen };
}
