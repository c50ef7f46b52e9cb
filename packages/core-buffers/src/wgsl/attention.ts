/**
 * WGSL shared by every attention family: the online-softmax sentinel, logit transforms (soft cap,
 * ALiBi slope), RoPE frequencies and angles, and LSE encoding.
 *
 * Softmax runs in base 2 (logits are pre-multiplied by log2 e), as FlashInfer's kernels do. Masked
 * logits use a large negative finite value instead of -inf, because WGSL implementations may assume
 * finite math; -inf only ever appears as the bit pattern written for an empty row's LSE.
 */

/** Constants and helpers; include once per module. */
export function wgslAttentionCommon(): string {
  return `const NEG_BIG: f32 = -1e30;
const LOG2E: f32 = 1.4426950408889634;
const NEG_INF_BITS: u32 = 0xff800000u;

/** FlashInfer's soft cap: cap * tanh(x / cap); the clamp keeps tanh finite on every backend. */
fn soft_cap(x: f32, cap: f32) -> f32 {
  return cap * tanh(clamp(x / cap, -15.0, 15.0));
}

/** ALiBi slope of qo head h of n (FlashInfer get_alibi_slopes). */
fn alibi_slope(h: u32, n: u32) -> f32 {
  let n2 = 1u << firstLeadingBit(n);
  if (h < n2) {
    return exp2(-8.0 * f32(h + 1u) / f32(n2));
  }
  return exp2(-4.0 * f32(2u * (h - n2) + 1u) / f32(n2));
}

/** RoPE frequency of pair d (0 <= d < head_dim / 2): (1 / scale) * theta^(-2d / head_dim). */
fn rope_freq(d: u32, head_dim: u32, rcp_scale: f32, log2_theta: f32) -> f32 {
  return rcp_scale * exp2(-2.0 * f32(d) / f32(head_dim) * log2_theta);
}

/** (cos, sin) of pos * freq, range-reduced to [-pi, pi] first (sin/cos are only accurate there). */
fn rope_cos_sin(pos: f32, freq: f32) -> vec2<f32> {
  let a = pos * freq;
  let k = round(a * 0.15915494309189535);
  let r = (a - k * 6.28125) - k * 0.0019353071795864769;
  return vec2<f32>(cos(r), sin(r));
}

/** LSE (base 2) as stored bits: m + log2(d), or -inf when nothing was visible. */
fn lse_bits(m: f32, d: f32) -> u32 {
  if (d <= 0.0 || m <= NEG_BIG) {
    return NEG_INF_BITS;
  }
  return bitcast<u32>(m + log2(d));
}

/** A stored LSE read back into the finite domain (-inf becomes NEG_BIG). */
fn lse_from_bits(bits: u32) -> f32 {
  if ((bits & 0x7fffffffu) >= 0x7f800000u) {
    return NEG_BIG;
  }
  return max(bitcast<f32>(bits), NEG_BIG);
}`;
}
