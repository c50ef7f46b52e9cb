/**
 * The few vitest APIs the package tests use, so their bundles run on a bare GPU host (node and
 * dawn.node, no node_modules): describe(.each) / it(.each) / beforeAll / afterAll and expect with
 * toBe, toEqual, toThrow, the number comparisons, toBeCloseTo, toBeNaN, toContain, toMatch, toHaveLength. `runRegistered()` runs what a test file registered.
 */
import { isDeepStrictEqual } from 'node:util';

type Fn = () => unknown | Promise<unknown>;
interface Scope {
  name: string;
  before: Fn[];
  after: Fn[];
  items: (Scope | { name: string; fn: Fn })[];
}

const root: Scope = { name: '', before: [], after: [], items: [] };
let current = root;

function describeImpl(name: string, body: () => void): void {
  const scope: Scope = { name, before: [], after: [], items: [] };
  current.items.push(scope);
  const outer = current;
  current = scope;
  try {
    body();
  } finally {
    current = outer;
  }
}
describeImpl.each =
  <T>(rows: readonly T[]) =>
  (template: string, body: (row: T) => void): void => {
    rows.forEach((row, i) => {
      const args = Array.isArray(row) ? (row as unknown[]) : [row];
      describeImpl(title(template, row, i), () => (body as (...a: unknown[]) => void)(...args));
    });
  };
export const describe = describeImpl;

/** vitest's `$name` / `%s` / `%i` title formatting, enough for readable names. */
function title(template: string, row: unknown, i: number): string {
  if (row && typeof row === 'object' && !Array.isArray(row)) {
    return template.replace(/\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, k) => JSON.stringify((row as Record<string, unknown>)[k]) ?? 'undefined');
  }
  const args = Array.isArray(row) ? [...row] : [row];
  const t = template.replace(/%[sdijo#]/g, (m) => (m === '%#' ? String(i) : String(args.shift())));
  return t;
}

function itImpl(name: string, fn: Fn): void {
  current.items.push({ name, fn });
}
itImpl.each =
  <T>(rows: readonly T[]) =>
  (template: string, fn: (row: T) => unknown): void => {
    rows.forEach((row, i) => {
      const args = Array.isArray(row) ? (row as unknown[]) : [row];
      current.items.push({ name: title(template, row, i), fn: () => (fn as (...a: unknown[]) => unknown)(...args) });
    });
  };
export const it = itImpl;
export const test = itImpl;

export function beforeAll(fn: Fn): void {
  current.before.push(fn);
}
export function afterAll(fn: Fn): void {
  current.after.push(fn);
}

class AssertionError extends Error {}

function matches(err: unknown, want: unknown): boolean {
  if (want === undefined) return true;
  const msg = err instanceof Error ? err.message : String(err);
  if (want instanceof RegExp) return want.test(msg);
  if (typeof want === 'string') return msg.includes(want);
  if (typeof want === 'function') return err instanceof (want as new (...a: unknown[]) => unknown);
  return false;
}

export function expect(actual: unknown) {
  // Each matcher states its condition and what it expected; `.not` inverts the condition.
  const make = (negate: boolean) => {
    const check = (ok: boolean, what: string) => {
      if (ok === negate) throw new AssertionError(`${negate ? 'not: ' : ''}${what}`);
    };
    const n = actual as number;
    return {
      toBe: (want: unknown) => check(Object.is(actual, want), `expected ${String(actual)} to be ${String(want)}`),
      toEqual: (want: unknown) =>
        check(
          isDeepStrictEqual(JSON.parse(JSON.stringify(actual) ?? 'null'), JSON.parse(JSON.stringify(want) ?? 'null')),
          `expected ${JSON.stringify(actual)?.slice(0, 300)} to equal ${JSON.stringify(want)?.slice(0, 300)}`,
        ),
      toBeGreaterThan: (want: number) => check(n > want, `expected ${String(actual)} > ${want}`),
      toBeGreaterThanOrEqual: (want: number) => check(n >= want, `expected ${String(actual)} >= ${want}`),
      toBeLessThan: (want: number) => check(n < want, `expected ${String(actual)} < ${want}`),
      toBeLessThanOrEqual: (want: number) => check(n <= want, `expected ${String(actual)} <= ${want}`),
      toBeCloseTo: (want: number, digits = 2) => check(Math.abs(n - want) < 10 ** -digits / 2, `expected ${String(actual)} to be close to ${want} (${digits} digits)`),
      toBeNaN: () => check(Number.isNaN(actual), `expected ${String(actual)} to be NaN`),
      toContain: (want: unknown) => check((actual as { includes(x: unknown): boolean }).includes(want), `expected ${String(actual).slice(0, 300)} to contain ${String(want)}`),
      toMatch: (want: RegExp | string) =>
        check(typeof want === 'string' ? String(actual).includes(want) : want.test(String(actual)), `expected ${String(actual).slice(0, 300)} to match ${String(want)}`),
      toHaveLength: (want: number) => check((actual as { length: number }).length === want, `expected length ${(actual as { length: number }).length} to be ${want}`),
      toThrow: (want?: unknown) => {
        let thrown: { e: unknown } | undefined;
        try {
          (actual as () => unknown)();
        } catch (e) {
          thrown = { e };
        }
        check(thrown !== undefined && matches(thrown.e, want), thrown ? `threw ${String(thrown.e)}, expected ${String(want)}` : `expected a throw matching ${String(want)}`);
      },
    };
  };
  return Object.assign(make(false), { not: make(true) });
}

/** Runs every registered test in order; returns [passed, failed]. */
export async function runRegistered(log: (line: string) => void): Promise<[number, number]> {
  let passed = 0;
  let failed = 0;
  const run = async (scope: Scope, prefix: string): Promise<void> => {
    for (const b of scope.before) await b();
    for (const item of scope.items) {
      if ('items' in item) {
        await run(item, `${prefix}${item.name} > `);
        continue;
      }
      const t0 = performance.now();
      try {
        await item.fn();
        passed++;
        log(`  ok   ${prefix}${item.name} (${(performance.now() - t0).toFixed(0)} ms)`);
      } catch (e) {
        failed++;
        log(`  FAIL ${prefix}${item.name}: ${e instanceof Error ? e.message.slice(0, 600) : String(e)}`);
      }
    }
    for (const a of scope.after) await a();
  };
  await run(root, '');
  return [passed, failed];
}
