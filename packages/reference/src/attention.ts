/**
 * Float64 attention for one request, with every FlashInfer option (see shared/spec §0):
 * GQA, sm_scale, soft cap, ALiBi, RoPE (LLaMA), bottom-right causal, custom mask, sliding window,
 * attention sinks. Returns the output and the base-2 LSE.
 */
import { getAlibiSlopes } from './alibi';
import { applyRopeLlama } from './rope';

export type PosEncodingMode = 'NONE' | 'ROPE_LLAMA' | 'ALIBI';

export interface AttentionRefOptions {
  causal?: boolean;
  /** Bool (or 0/1) `[qoLen, kvLen]`, true = keep. Replaces `causal`; the window still applies. */
  customMask?: ArrayLike<boolean | number>;
  /** -1 disables; w >= 0 keeps keys j >= p_i - w. */
  windowLeft?: number;
  /** 0 disables; cap > 0 gives cap * tanh(s * smScale / cap). */
  logitsSoftCap?: number;
  /** Default 1/sqrt(headDimQk). */
  smScale?: number;
  posEncodingMode?: PosEncodingMode;
  ropeScale?: number;
  ropeTheta?: number;
  /** Per qo head natural-log logit added to the softmax denominator (no value, unscaled). */
  sinks?: ArrayLike<number>;
  /** Multiplies the output (FlashInfer's v_scale). */
  vScale?: number;
}

export interface AttentionRefArgs extends AttentionRefOptions {
  /** `[qoLen, Hq, Dqk]` row-major. */
  q: ArrayLike<number>;
  /** `[kvLen, Hkv, Dqk]` row-major. */
  k: ArrayLike<number>;
  /** `[kvLen, Hkv, Dvo]` row-major. */
  v: ArrayLike<number>;
  qoLen: number;
  kvLen: number;
  numQoHeads: number;
  numKvHeads: number;
  headDimQk: number;
  /** Default headDimQk. */
  headDimVo?: number;
}

export interface AttentionRefResult {
  /** `[qoLen, Hq, Dvo]`. */
  o: Float64Array;
  /** `[qoLen, Hq]`, base 2; -inf for rows with nothing visible. */
  lse: Float64Array;
}

const LOG2E = Math.LOG2E;

/** The visibility of key j to query row i (FlashInfer's mask rules, bottom-right aligned). */
export function isVisible(
  i: number,
  j: number,
  qoLen: number,
  kvLen: number,
  opts: Pick<AttentionRefOptions, 'causal' | 'customMask' | 'windowLeft'>,
): boolean {
  const p = kvLen - qoLen + i;
  if (opts.customMask) {
    if (!opts.customMask[i * kvLen + j]) return false;
  } else if (opts.causal && j > p) {
    return false;
  }
  const w = opts.windowLeft ?? -1;
  if (w >= 0 && j < p - w) return false;
  return true;
}

export function attentionRef(args: AttentionRefArgs): AttentionRefResult {
  const { qoLen, kvLen, numQoHeads: hq, numKvHeads: hkv, headDimQk: dqk } = args;
  const dvo = args.headDimVo ?? dqk;
  if (hq % hkv !== 0) throw new Error(`attentionRef: ${hq} qo heads not divisible by ${hkv} kv heads`);
  const group = hq / hkv;
  const smScale = args.smScale ?? 1 / Math.sqrt(dqk);
  const cap = args.logitsSoftCap ?? 0;
  const mode = args.posEncodingMode ?? 'NONE';
  if (mode === 'ALIBI' && cap > 0) {
    throw new Error('attentionRef: ALiBi with a soft cap is not a supported combination (FlashInfer quirk)');
  }
  let q = args.q;
  let k = args.k;
  if (mode === 'ROPE_LLAMA') {
    const qPos = Array.from({ length: qoLen }, (_, i) => kvLen - qoLen + i);
    const kPos = Array.from({ length: kvLen }, (_, j) => j);
    q = applyRopeLlama(q, qoLen, hq, dqk, qPos, args.ropeScale, args.ropeTheta);
    k = applyRopeLlama(k, kvLen, hkv, dqk, kPos, args.ropeScale, args.ropeTheta);
  }
  const slopes = mode === 'ALIBI' ? getAlibiSlopes(hq) : undefined;
  const vScale = args.vScale ?? 1;
  const o = new Float64Array(qoLen * hq * dvo);
  const lse = new Float64Array(qoLen * hq);
  const logits = new Float64Array(kvLen);
  const keep = new Uint8Array(kvLen);
  for (let i = 0; i < qoLen; i++) {
    for (let h = 0; h < hq; h++) {
      const kh = Math.floor(h / group);
      const qBase = (i * hq + h) * dqk;
      let m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < kvLen; j++) {
        keep[j] = isVisible(i, j, qoLen, kvLen, args) ? 1 : 0;
        if (!keep[j]) continue;
        const kBase = (j * hkv + kh) * dqk;
        let s = 0;
        for (let d = 0; d < dqk; d++) s += q[qBase + d] * k[kBase + d];
        let x = s * smScale;
        if (cap > 0) x = cap * Math.tanh(x / cap);
        if (slopes) x += slopes[h] * (j - i);
        logits[j] = x;
        if (x > m) m = x;
      }
      const sink = args.sinks ? args.sinks[h] : undefined;
      if (sink !== undefined && sink > m) m = sink;
      let denom = 0;
      const oBase = (i * hq + h) * dvo;
      for (let j = 0; j < kvLen; j++) {
        if (!keep[j]) continue;
        const p = Math.exp(logits[j] - m);
        denom += p;
        const vBase = (j * hkv + kh) * dvo;
        for (let d = 0; d < dvo; d++) o[oBase + d] += p * args.v[vBase + d];
      }
      const visibleDenom = denom;
      if (sink !== undefined) denom += Math.exp(sink - m);
      if (denom === 0 || m === Number.NEGATIVE_INFINITY) {
        lse[i * hq + h] = Number.NEGATIVE_INFINITY;
        for (let d = 0; d < dvo; d++) o[oBase + d] = 0;
        continue;
      }
      for (let d = 0; d < dvo; d++) o[oBase + d] = visibleDenom === 0 ? 0 : (o[oBase + d] / denom) * vScale;
      lse[i * hq + h] = (m + Math.log(denom)) * LOG2E;
    }
  }
  return { o, lse };
}
