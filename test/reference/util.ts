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
