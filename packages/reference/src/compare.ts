/** Closeness checks for kernel tests: |actual - expected| <= atol + rtol * |expected|, NaN fails. */

export interface CloseReport {
  ok: boolean;
  /** Elements compared. */
  count: number;
  mismatches: number;
  maxAbsError: number;
  /** max |a - e| / max(|e|, tiny) over elements. */
  maxRelError: number;
  /** First failing element, if any. */
  first?: { index: number; actual: number; expected: number };
}

export function compareClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: { rtol: number; atol: number },
): CloseReport {
  if (actual.length !== expected.length) {
    throw new Error(`compareClose: length ${actual.length} vs expected ${expected.length}`);
  }
  let mismatches = 0;
  let maxAbs = 0;
  let maxRel = 0;
  let first: CloseReport['first'];
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    let bad: boolean;
    if (Number.isNaN(e)) bad = !Number.isNaN(a);
    else if (e === Number.POSITIVE_INFINITY || e === Number.NEGATIVE_INFINITY) bad = a !== e;
    else {
      const err = Math.abs(a - e);
      bad = !(err <= tol.atol + tol.rtol * Math.abs(e)); // NaN in `a` fails here
      if (Number.isFinite(err)) {
        maxAbs = Math.max(maxAbs, err);
        maxRel = Math.max(maxRel, err / Math.max(Math.abs(e), 1e-30));
      }
    }
    if (bad) {
      mismatches++;
      if (!first) first = { index: i, actual: a, expected: e };
    }
  }
  return { ok: mismatches === 0, count: actual.length, mismatches, maxAbsError: maxAbs, maxRelError: maxRel, first };
}

/** Throws with a readable summary unless actual ≈ expected. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: { rtol: number; atol: number },
  what = 'tensor',
): CloseReport {
  const r = compareClose(actual, expected, tol);
  if (!r.ok) {
    const f = r.first!;
    throw new Error(
      `${what}: ${r.mismatches}/${r.count} elements differ (rtol ${tol.rtol}, atol ${tol.atol}); ` +
        `first at ${f.index}: got ${f.actual}, expected ${f.expected}; max abs err ${r.maxAbsError.toExponential(3)}`,
    );
  }
  return r;
}
