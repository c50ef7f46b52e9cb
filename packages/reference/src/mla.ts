/**
 * DeepSeek MLA (FlashInfer BatchMLAPagedAttentionWrapper numerics): one latent head shared by all
 * heads; logits = (q_nope·ckv + q_pe·kpe) * smScale; output = softmax · ckv.
 */
import { type AttentionRefResult, attentionRef } from './attention';

export interface MlaRefArgs {
  /** `[qoLen, H, Dckv]`. */
  qNope: ArrayLike<number>;
  /** `[qoLen, H, Dkpe]` (already rotated). */
  qPe: ArrayLike<number>;
  /** `[kvLen, Dckv]`. */
  ckv: ArrayLike<number>;
  /** `[kvLen, Dkpe]`. */
  kpe: ArrayLike<number>;
  qoLen: number;
  kvLen: number;
  numHeads: number;
  headDimCkv: number;
  headDimKpe: number;
  causal?: boolean;
  /** Required (FlashInfer passes 1/sqrt(192) for DeepSeek). */
  smScale: number;
}

export function mlaRef(a: MlaRefArgs): AttentionRefResult {
  const dc = a.headDimCkv;
  const dp = a.headDimKpe;
  const dqk = dc + dp;
  const q = new Float64Array(a.qoLen * a.numHeads * dqk);
  for (let t = 0; t < a.qoLen * a.numHeads; t++) {
    for (let d = 0; d < dc; d++) q[t * dqk + d] = a.qNope[t * dc + d];
    for (let d = 0; d < dp; d++) q[t * dqk + dc + d] = a.qPe[t * dp + d];
  }
  const k = new Float64Array(a.kvLen * dqk);
  for (let j = 0; j < a.kvLen; j++) {
    for (let d = 0; d < dc; d++) k[j * dqk + d] = a.ckv[j * dc + d];
    for (let d = 0; d < dp; d++) k[j * dqk + dc + d] = a.kpe[j * dp + d];
  }
  return attentionRef({
    q,
    k,
    v: a.ckv,
    qoLen: a.qoLen,
    kvLen: a.kvLen,
    numQoHeads: a.numHeads,
    numKvHeads: 1,
    headDimQk: dqk,
    headDimVo: dc,
    causal: a.causal,
    smScale: a.smScale,
  });
}
