// bnkit against oneDNN, the library issue 2 measures it against: the same
// inputs through both give the same outputs (an independent implementation,
// so a cross-check of semantics as well as numbers), and the benchmark's
// --onednn mode times both in one run. Needs the system oneDNN (Debian's
// libdnnl-dev, which .ci/run installs and requires); elsewhere the tests are
// skipped.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, batchNormBackward, batchNormForward, isa } from '../lib/index';
import { refBackward, refForward } from './reference/batchnorm';

const repo = path.resolve(__dirname, '..');
const installed = fs.existsSync('/usr/include/dnnl.hpp') || fs.existsSync('/usr/include/oneapi/dnnl/dnnl.hpp');
// .ci/run installs oneDNN, so there a missing library is a failure, not a skip.
const required = process.env.BNKIT_REQUIRE_ONEDNN === '1';

interface OneDnn {
  create(x: Float32Array, dy: Float32Array, n: number, c: number, spatial: number[], channelsLast: boolean,
    gamma: Float32Array, beta: Float32Array): unknown;
  run(handle: unknown, op: string, calls: number): number;
  outputs(handle: unknown): Record<'y' | 'mean' | 'variance' | 'dx' | 'dgamma' | 'dbeta', Float32Array>;
  setThreads(n: number): void;
  implementation(handle: unknown): Record<'fwd-train' | 'fwd-eval' | 'bwd', string>;
  release(handle: unknown): void;
  version(): string;
}

function seeded(length: number, seed: number, offset: number, spread: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return offset + spread * (s / 2 ** 32 - 0.5);
  });
}

// Largest difference from the float64 reference, relative to the largest |reference| value.
function relativeError(actual: ArrayLike<number>, reference: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < reference.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - reference[i]));
    scale = Math.max(scale, Math.abs(reference[i]));
  }
  return diff / scale;
}

// Both libraries must match the float64 definition (oneDNN within float
// accumulation error, which is what makes it a check of the semantics:
// biased variance, dgamma = sum(dy * xhat), dx through the batch statistics),
// and bnkit must be at least as accurate as oneDNN.
function expectBothAgree(ours: ArrayLike<number>, theirs: ArrayLike<number>, reference: ArrayLike<number>, what: string): void {
  expect(ours.length, what).toBe(reference.length);
  expect(theirs.length, what).toBe(reference.length);
  const oursError = relativeError(ours, reference);
  const theirError = relativeError(theirs, reference);
  expect(theirError, `oneDNN ${what} vs float64`).toBeLessThan(1e-4);
  expect(oursError, `bnkit ${what} vs float64`).toBeLessThan(1e-5);
  expect(oursError, `bnkit ${what} error ${oursError} vs oneDNN's ${theirError}`).toBeLessThanOrEqual(theirError + 1e-6);
}

describe.skipIf(!installed && !required)('oneDNN cross-check', () => {
  let onednn: OneDnn;
  beforeAll(async () => {
    const { loadOneDnn } = await import('../bench/lib/onednn.mjs');
    onednn = loadOneDnn({ log: () => {} }) as OneDnn;
  }, 180_000);

  const cases = [
    { n: 3, c: 17, spatial: [5, 4], channelsLast: false },
    { n: 3, c: 17, spatial: [5, 4], channelsLast: true },
    { n: 2, c: 64, spatial: [9], channelsLast: false },
    { n: 2, c: 64, spatial: [9], channelsLast: true },
    { n: 6, c: 33, spatial: [], channelsLast: false },
    { n: 4, c: 32, spatial: [7, 7], channelsLast: true },
  ];
  for (const { n, c, spatial, channelsLast } of cases) {
    const label = `${channelsLast ? 'channels-last' : 'channels-first'} [${n}, ${c}${spatial.map((s) => `, ${s}`).join('')}]`;
    it(`training forward, inference forward and backward agree on ${label}`, () => {
      const size = n * c * spatial.reduce((a, b) => a * b, 1);
      const shape = channelsLast ? [n, ...spatial, c] : [n, c, ...spatial];
      // A large common offset: both sides must subtract the mean carefully.
      const x = seeded(size, 1 + c, 100, 6);
      const dy = seeded(size, 7 + n, 0, 2);
      const gamma = seeded(c, 3, 1, 1);
      const beta = seeded(c, 5, 0, 1);
      onednn.setThreads(2);
      const h = onednn.create(x, dy, n, c, spatial, channelsLast, gamma, beta);
      expect(onednn.run(h, 'fwd-train', 1)).toBeGreaterThan(0);
      expect(onednn.run(h, 'bwd', 1)).toBeGreaterThan(0);
      const ref = onednn.outputs(h);

      const layout = { batch: n, channels: c, spatial: spatial.reduce((a, b) => a * b, 1), channelsLast };
      const f64 = refForward(x, layout, { gamma, beta });
      const b64 = refBackward(x, dy, layout, f64, { gamma });

      const train = batchNormForward(new Tensor(x, shape), { training: true, weight: gamma, bias: beta, channelsLast });
      expectBothAgree(train.mean, ref.mean, f64.mean, 'mean');
      const variance = train.invstd.map((s) => 1 / (s * s) - 1e-5);
      expectBothAgree(variance, ref.variance, f64.variance, 'variance');
      expectBothAgree(train.y.data, ref.y, f64.y, 'y');

      const back = batchNormBackward(new Tensor(x, shape), new Tensor(dy, shape), { mean: train.mean, invstd: train.invstd },
        { weight: gamma, bias: beta, channelsLast });
      expectBothAgree(back.dbeta, ref.dbeta, b64.dbeta, 'dbeta');
      expectBothAgree(back.dgamma, ref.dgamma, b64.dgamma, 'dgamma');
      expectBothAgree(back.dx.data, ref.dx, b64.dx, 'dx');

      // Inference with the batch statistics as running ones gives the training output again.
      onednn.run(h, 'fwd-eval', 1);
      const evaluated = batchNormForward(new Tensor(x, shape), {
        training: false, weight: gamma, bias: beta, runningMean: ref.mean, runningVar: ref.variance, channelsLast,
      });
      expectBothAgree(evaluated.y.data, onednn.outputs(h).y, f64.y, 'eval y');
    });
  }

  it('rejects bad arguments with errors, not crashes', () => {
    const x = new Float32Array(12);
    expect(() => onednn.create(x, x, 2, 3, [3], false, new Float32Array(3), new Float32Array(2))).toThrow(/gamma and beta c/);
    expect(() => onednn.create(x, x, 2, 3, [1, 1, 2], false, new Float32Array(3), new Float32Array(3))).toThrow(/0, 1 or 2/);
    const h = onednn.create(x.fill(1), x, 2, 3, [2], false, new Float32Array(3), new Float32Array(3));
    expect(() => onednn.run(h, 'sideways', 1)).toThrow(/op must be/);
    expect(() => onednn.run(h, 'bwd', 0)).toThrow(/calls must be >= 1/);
    expect(() => onednn.run({}, 'bwd', 1)).toThrow(/handle/);
    expect(() => onednn.create(x, x, 2, 3, 2 as unknown as number[], false, new Float32Array(3), new Float32Array(3))).toThrow(/spatial must be an array/);
    expect(Object.keys(onednn.implementation(h)).sort()).toEqual(['bwd', 'fwd-eval', 'fwd-train']);
    onednn.release(h);
    expect(() => onednn.run(h, 'bwd', 1)).toThrow(/released/);
    expect(() => onednn.outputs(h)).toThrow(/released/);
  });

  it('bench bn --onednn times oneDNN side by side and reports the ratios', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bnkit-bench-onednn-'));
    const json = path.join(dir, 'bn.json');
    try {
      const r = spawnSync(process.execPath, [path.join(repo, 'bench', 'run.mjs'), 'bn', '--quick', '--onednn', '--shapes', 'S5',
        '--threads', '1', '--isa', isa(), '--json', json], { cwd: repo, encoding: 'utf8', timeout: 180_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('Side by side with oneDNN');
      const out = JSON.parse(fs.readFileSync(json, 'utf8'));
      expect(out.options.onednn).toBe(true);
      expect(out.onednn.version).toBe(onednn.version());
      expect(out.onednn.results).toHaveLength(2 * 3);
      for (const row of out.onednn.results) {
        expect(row.medianUs).toBeGreaterThan(0);
        expect(typeof row.implementation).toBe('string');
      }
      expect(out.results).toHaveLength(2 * 3);
      for (const row of out.results) {
        const theirs = out.onednn.results.find((o: { layout: string; op: string }) => o.layout === row.layout && o.op === row.op);
        expect(row.onednn.medianUs).toBe(theirs.medianUs);
        expect(row.onednn.speedup).toBeCloseTo(theirs.medianUs / row.medianUs, 9);
      }
      expect(out.summary.onednnSideBySide).toHaveLength(2 * 3);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 200_000);
});
