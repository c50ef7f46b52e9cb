import { describe, expect, it } from 'vitest';
import {
  applyRopeLlama,
  attentionRef,
  gatherPagedRef,
  getAlibiSlopes,
  isVisible,
  mergeStateRef,
  mergeStatesRef,
  mlaRef,
  packbitsRef,
  randn,
  rng,
  segmentPackbitsRef,
  testSeed,
} from '../src';

const one = (o: Partial<Parameters<typeof attentionRef>[0]>) =>
  attentionRef({ q: [1], k: [0], v: [1], qoLen: 1, kvLen: 1, numQoHeads: 1, numKvHeads: 1, headDimQk: 1, smScale: 1, ...o });

describe('attentionRef on hand-worked cases', () => {
  it('softmax weights and base-2 LSE', () => {
    // logits [0, ln 3] -> weights [1/4, 3/4]; o = 2/4 + 6*3/4 = 5; lse = log2(1 + 3) = 2
    const r = one({ q: [1], k: [0, Math.log(3)], v: [2, 6], kvLen: 2 });
    expect(r.o[0]).toBeCloseTo(5, 12);
    expect(r.lse[0]).toBeCloseTo(2, 12);
  });

  it('default smScale is 1/sqrt(headDimQk)', () => {
    // D = 4, q.k = 4 -> logit 4/2 = 2; with a zero-logit key the weight of key 1 is e^2/(1+e^2)
    const r = attentionRef({
      q: [1, 1, 1, 1],
      k: [0, 0, 0, 0, 1, 1, 1, 1],
      v: [0, 0, 0, 0, 1, 1, 1, 1],
      qoLen: 1,
      kvLen: 2,
      numQoHeads: 1,
      numKvHeads: 1,
      headDimQk: 4,
    });
    const w = Math.exp(2) / (1 + Math.exp(2));
    expect(r.o[0]).toBeCloseTo(w, 12);
  });

  it('causal mask is bottom-right aligned', () => {
    // qo 2, kv 3: row 0 is at position 1, row 1 at 2
    const vis = (i: number, j: number) => isVisible(i, j, 2, 3, { causal: true });
    expect([vis(0, 0), vis(0, 1), vis(0, 2)]).toEqual([true, true, false]);
    expect([vis(1, 0), vis(1, 1), vis(1, 2)]).toEqual([true, true, true]);
  });

  it('rows with no visible key give o = 0 and lse = -inf (qo_len > kv_len)', () => {
    const r = one({ q: [1, 1, 1], k: [0.5], v: [7], qoLen: 3, kvLen: 1, causal: true });
    expect(Array.from(r.o)).toEqual([0, 0, 7]);
    expect(r.lse[0]).toBe(Number.NEGATIVE_INFINITY);
    expect(r.lse[1]).toBe(Number.NEGATIVE_INFINITY);
    expect(r.lse[2]).toBeCloseTo(0.5 * Math.LOG2E, 12);
  });

  it('windowLeft keeps the last w+1 keys in decode', () => {
    const vis = [0, 1, 2, 3, 4].map((j) => isVisible(0, j, 1, 5, { windowLeft: 1 }));
    expect(vis).toEqual([false, false, false, true, true]);
    // without causal the window still bounds from below
    expect(isVisible(0, 4, 2, 5, { windowLeft: 0 })).toBe(true);
    expect(isVisible(0, 2, 2, 5, { windowLeft: 0 })).toBe(false);
  });

  it('custom mask replaces causal', () => {
    const mask = [false, true];
    expect(isVisible(0, 0, 1, 2, { causal: true, customMask: mask })).toBe(false);
    expect(isVisible(0, 1, 1, 2, { causal: true, customMask: mask })).toBe(true);
  });

  it('soft cap applies cap * tanh(s * smScale / cap)', () => {
    const r = one({ q: [2], k: [5], v: [3], smScale: 1, logitsSoftCap: 5 });
    expect(r.o[0]).toBeCloseTo(3, 12);
    expect(r.lse[0]).toBeCloseTo(5 * Math.tanh(2) * Math.LOG2E, 12);
  });

  it('a sink adds exp(sink) to the denominator and the LSE, with no value', () => {
    const r = one({ q: [1], k: [0], v: [8], sinks: [Math.log(3)] });
    expect(r.o[0]).toBeCloseTo(2, 12); // 8 * 1/(1+3)
    expect(r.lse[0]).toBeCloseTo(2, 12); // log2(1 + 3)
    const empty = one({ q: [1, 1], k: [0], v: [8], qoLen: 2, kvLen: 1, causal: true, sinks: [1] });
    expect(empty.o[0]).toBe(0);
    expect(empty.lse[0]).toBeCloseTo(Math.LOG2E, 12);
  });

  it('ALiBi bias slope*(j - i) is not scaled by smScale', () => {
    const s = 2 ** -8; // slope of head 0 of 1
    const r = attentionRef({
      q: [0],
      k: [1, 1, 1],
      v: [1, 0, 0],
      qoLen: 1,
      kvLen: 3,
      numQoHeads: 1,
      numKvHeads: 1,
      headDimQk: 1,
      smScale: 100,
      posEncodingMode: 'ALIBI',
    });
    expect(r.o[0]).toBeCloseTo(1 / (1 + Math.exp(s) + Math.exp(2 * s)), 12);
  });

  it('vScale multiplies the output', () => {
    expect(one({ v: [3], vScale: 0.5 }).o[0]).toBeCloseTo(1.5, 12);
  });

  it('GQA maps qo head h to kv head floor(h / group)', () => {
    // Hq 4, Hkv 2, one key: output of each head is its kv head's value
    const r = attentionRef({
      q: [1, 1, 1, 1],
      k: [0, 0],
      v: [10, 20],
      qoLen: 1,
      kvLen: 1,
      numQoHeads: 4,
      numKvHeads: 2,
      headDimQk: 1,
    });
    expect(Array.from(r.o)).toEqual([10, 10, 20, 20]);
  });
});

describe('rope, alibi, masks', () => {
  it('rotates half of the head dim by pos * freq', () => {
    const out = applyRopeLlama([1, 0], 1, 1, 2, [1]);
    expect(out[0]).toBeCloseTo(Math.cos(1), 12);
    expect(out[1]).toBeCloseTo(Math.sin(1), 12);
    // D = 4: dim 1 uses theta^(-2/4) = 0.01; ropeScale 2 halves the angle
    const out4 = applyRopeLlama([0, 1, 0, 0], 1, 1, 4, [10], 2, 1e4);
    expect(out4[1]).toBeCloseTo(Math.cos(0.05), 12);
    expect(out4[3]).toBeCloseTo(Math.sin(0.05), 12);
  });

  it('ALiBi slopes match get_alibi_slopes for powers of two and not', () => {
    expect(Array.from(getAlibiSlopes(8))).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((k) => 2 ** -k));
    const s12 = Array.from(getAlibiSlopes(12));
    expect(s12.slice(0, 8)).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((k) => 2 ** -k));
    for (const [i, v] of s12.slice(8).entries()) expect(v).toBeCloseTo(Math.fround(2 ** (-0.5 * (2 * i + 1))), 7);
  });

  it('packs bits little-endian, each segment from a fresh byte', () => {
    expect(Array.from(packbitsRef([1, 0, 0, 0, 0, 0, 0, 0, 1]))).toEqual([1, 1]);
    expect(Array.from(packbitsRef([0, 1, 1]))).toEqual([6]);
    const bits = [1, 1, 1, /* seg 2 */ 1, 0, 0, 0, 0, 0, 0, 0, 1];
    const { packed, byteIndptr } = segmentPackbitsRef(bits, [0, 3, 12]);
    expect(Array.from(byteIndptr)).toEqual([0, 1, 3]);
    expect(Array.from(packed)).toEqual([7, 1, 1]);
  });
});

describe('merging partial states', () => {
  it('merging two halves of the keys equals attention over all keys', () => {
    const seed = testSeed();
    const r = rng(seed);
    const [qo, kv, h, d] = [3, 10, 2, 4];
    const q = randn(r, qo * h * d);
    const k = randn(r, kv * h * d);
    const v = randn(r, kv * h * d);
    const base = { qoLen: qo, numQoHeads: h, numKvHeads: h, headDimQk: d };
    const full = attentionRef({ ...base, q, k, v, kvLen: kv });
    const split = 6;
    const a = attentionRef({ ...base, q, k: k.slice(0, split * h * d), v: v.slice(0, split * h * d), kvLen: split, smScale: 0.5 });
    const b = attentionRef({ ...base, q, k: k.slice(split * h * d), v: v.slice(split * h * d), kvLen: kv - split, smScale: 0.5 });
    const m = mergeStateRef(a.o, a.lse, b.o, b.lse, d);
    const fullHalf = attentionRef({ ...base, q, k, v, kvLen: kv, smScale: 0.5 });
    for (const [i, x] of m.v.entries()) expect(x, `seed ${seed}`).toBeCloseTo(fullHalf.o[i], 10);
    for (const [i, x] of m.s.entries()) expect(x, `seed ${seed}`).toBeCloseTo(fullHalf.lse[i], 10);
    expect(full.o.length).toBe(qo * h * d);
  });

  it('two empty states merge to (0, -inf); mergeStates folds S states', () => {
    const e = mergeStateRef([5], [Number.NEGATIVE_INFINITY], [6], [Number.NEGATIVE_INFINITY], 1);
    expect(e.v[0]).toBe(0);
    expect(e.s[0]).toBe(Number.NEGATIVE_INFINITY);
    // states with lse 1 and 1: equal weights
    const ms = mergeStatesRef([2, 4], [1, 1], 1, 2, 1, 1);
    expect(ms.v[0]).toBeCloseTo(3, 12);
    expect(ms.s[0]).toBeCloseTo(2, 12);
  });
});

describe('MLA and paged helpers', () => {
  it('mlaRef equals attention with k = [ckv, kpe] and v = ckv', () => {
    const r = rng(7);
    const [qo, kv, h, dc, dp] = [2, 5, 3, 4, 2];
    const qNope = randn(r, qo * h * dc);
    const qPe = randn(r, qo * h * dp);
    const ckv = randn(r, kv * dc);
    const kpe = randn(r, kv * dp);
    const m = mlaRef({ qNope, qPe, ckv, kpe, qoLen: qo, kvLen: kv, numHeads: h, headDimCkv: dc, headDimKpe: dp, smScale: 0.3, causal: true });
    // by hand for head 1, row 0 (position 3: keys 0..3)
    const logits = [0, 1, 2, 3].map((j) => {
      let s = 0;
      for (let d = 0; d < dc; d++) s += qNope[(0 * h + 1) * dc + d] * ckv[j * dc + d];
      for (let d = 0; d < dp; d++) s += qPe[(0 * h + 1) * dp + d] * kpe[j * dp + d];
      return s * 0.3;
    });
    const mx = Math.max(...logits);
    const w = logits.map((x) => Math.exp(x - mx));
    const z = w.reduce((a, b) => a + b);
    const o0 = w.reduce((acc, wj, j) => acc + (wj / z) * ckv[j * dc], 0);
    expect(m.o[(0 * h + 1) * dc]).toBeCloseTo(o0, 12);
  });

  it('gathers a request from NHD and HND pages', () => {
    // 3 pages of size 2, 1 head, D 1; request uses pages [2, 0] with 3 tokens
    const nhd = { data: [10, 11, 20, 21, 30, 31], layout: 'NHD' as const, pageSize: 2, numHeads: 1, headDim: 1 };
    expect(Array.from(gatherPagedRef(nhd, [0, 2], [2, 0], 3, 0))).toEqual([30, 31, 10]);
    // HND with 2 heads: page p, head h, slot s at ((p*2 + h)*2 + s)
    const hnd = { data: [0, 1, 2, 3, 4, 5, 6, 7], layout: 'HND' as const, pageSize: 2, numHeads: 2, headDim: 1 };
    expect(Array.from(gatherPagedRef(hnd, [0, 1], [1], 2, 0))).toEqual([4, 6, 5, 7]);
  });
});
