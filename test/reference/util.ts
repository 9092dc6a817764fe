// Small helpers shared by the layer/optimizer/training tests.
import { expect } from 'vitest';
import { Rng } from '../../lib/init';
import { availableIsas, isa, setIsa, type IsaName } from '../../lib/runtime';

export function randomArray(n: number, rng: Rng, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.uniform(-scale, scale);
  return a;
}

/**
 * Asserts |actual - expected| <= tol * max(1, max|expected|) elementwise: a
 * relative bound on the array's scale, so values near zero are not held to
 * an impossible relative precision.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = 'values'): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let scale = 1;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  let worst = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    if (!(err <= worst)) { worst = err; at = i; }
  }
  if (!(worst <= tol * scale)) {
    throw new Error(`${what}: max error ${worst} at [${at}] (actual ${actual[at]}, expected ${expected[at]}) exceeds ${tol} x scale ${scale}`);
  }
}

/**
 * (loss(v[i] + h) - loss(v[i] - h)) / 2h, leaving v[i] as it was: the
 * central-difference estimate of d loss / d v[i].
 */
export function centralDifference(values: Float32Array | Float64Array, i: number, h: number, loss: () => number): number {
  const keep = values[i];
  values[i] = keep + h;
  const up = loss();
  values[i] = keep - h;
  const down = loss();
  values[i] = keep;
  return (up - down) / (2 * h);
}

/** Runs `body` once per kernel path this CPU and build support, restoring the original path. */
export function forEachIsa(body: (name: IsaName) => void): void {
  const original = isa();
  try {
    for (const name of availableIsas()) {
      setIsa(name);
      body(name);
    }
  } finally {
    setIsa(original);
  }
}

/** Deterministic pseudo-random numbers for tests (mulberry32 + Box-Muller). */
export function makeRng(seed: number): { uniform(): number; normal(): number } {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    uniform,
    normal: () => {
      const u = 1 - uniform(), v = uniform();
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    },
  };
}

/** Deterministic uniform values in [lo, hi) (makeRng's uniform stream). */
export function rngArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const rng = makeRng(seed), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rng.uniform();
  return out;
}

/** max |got - want| / (1 + |want|), NaN-propagating. */
export function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

/** n seeded normal values, offset + scale * N(0, 1), as float32. */
export function normalArray(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const rng = makeRng(seed), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = offset + scale * rng.normal();
  return out;
}

/** Elementwise identity (NaN equals NaN), reporting the first difference; fast on large arrays. */
export function expectSame(got: ArrayLike<number>, want: ArrayLike<number>, what = ''): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    const a = got[i], b = want[i];
    if (!(a === b || (a !== a && b !== b))) expect(a, `${what} [${i}]`).toBe(b);
  }
}
