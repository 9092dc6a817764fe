// The MNIST CNN stem Conv2d(1 -> C, 3x3, stride 1) + BatchNorm2d (+ ReLU) +
// MaxPool2d(2) fused into one kernel: every ISA against a float64 reference
// written here (convolution, batch norm, ReLU, pooling and their backward),
// against the same layers run one by one, finite differences, thread-count
// determinism, the backward without input gradient, argument validation and
// the model that uses it.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../lib/native';
import { Tensor } from '../lib/tensor';
import { Rng } from '../lib/init';
import { Conv2d, Linear, ReLU, MaxPool2d, Flatten } from '../lib/layers';
import { BatchNorm2d } from '../lib/batchnorm';
import { Sequential } from '../lib/sequential';
import { Module } from '../lib/module';
import { buildModel } from '../lib/models';
import { invstdFromVariance } from '../lib/functional';
import { centralDifference, expectSame, forEachIsa, makeRng, normalArray, relError } from './reference/util';

const initialThreads = native.getNumThreads();
afterAll(() => native.setNumThreads(initialThreads));

interface Geometry { n: number; c: number; h: number; w: number; ph: number; pw: number }
interface StemParams {
  weight: Float32Array;
  convBias: Float32Array | null;
  gamma: Float32Array | null;
  beta: Float32Array | null;
  relu: boolean;
  eps: number;
}
interface Running { mean: Float32Array; variance: Float32Array }

const convOut = (g: Geometry): [number, number] => [g.h + 2 * g.ph - 2, g.w + 2 * g.pw - 2];
const pooledLength = (g: Geometry) => {
  const [oh, ow] = convOut(g);
  return g.n * g.c * (oh >> 1) * (ow >> 1);
};
const describeGeometry = (g: Geometry) => `N=${g.n} C=${g.c} ${g.h}x${g.w} pad=${g.ph}x${g.pw}`;


/** MNIST-like images: mostly exact zeros (so many exactly tied conv outputs), strokes in (0, 1]. */
function digitArray(n: number, seed: number): Float32Array {
  const rng = makeRng(seed), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.uniform() < 0.7 ? 0 : Math.fround(1 - rng.uniform());
  return out;
}


function stemParams(c: number, seed: number, o: { bias: boolean; affine: boolean; relu: boolean }): StemParams {
  return {
    weight: normalArray(9 * c, seed, 0.5),
    convBias: o.bias ? normalArray(c, seed + 1, 0.5) : null,
    gamma: o.affine ? normalArray(c, seed + 2, 0.5, 1) : null,
    beta: o.affine ? normalArray(c, seed + 3, 0.5) : null,
    relu: o.relu,
    eps: 1e-5,
  };
}

function runningStats(c: number, seed: number): Running {
  return {
    mean: normalArray(c, seed, 0.3),
    variance: Float32Array.from(normalArray(c, seed + 1), (v) => 0.5 + v * v),
  };
}

interface KernelRun {
  pooled: Float32Array;
  window: Uint8Array;
  picked: Float32Array;
  mean: Float32Array;
  invstd: Float32Array;
  running: Running;
  dWeight: Float32Array;
  dBias: Float32Array | null;
  dgamma: Float32Array | null;
  dbeta: Float32Array | null;
  dInput: Float32Array | null;
}

/** Forward (training with batch statistics, or eval) then backward of the fused native stem. */
function runKernel(x: Float32Array, g: Geometry, p: StemParams, train: boolean, dy: Float32Array, running: Running,
  options: { momentum?: number; inputGrad?: boolean; moments?: Float64Array } = {}): KernelRun {
  const { n, c, h, w, ph, pw } = g;
  const len = pooledLength(g);
  const pooled = new Float32Array(len).fill(NaN), window = new Uint8Array(len).fill(77), picked = new Float32Array(len).fill(NaN);
  const mean = new Float32Array(c).fill(NaN), invstd = new Float32Array(c).fill(NaN);
  const run: Running = { mean: running.mean.slice(), variance: running.variance.slice() };
  if (train) {
    native.convBatchNormMaxPoolForwardTrain(x, pooled, window, picked, n, c, h, w, ph, pw, p.weight, p.convBias, p.gamma,
      p.beta, p.eps, p.relu, mean, invstd, run.mean, run.variance, options.momentum ?? 0.1, options.moments ?? null);
  } else {
    native.convBatchNormMaxPoolForwardEval(x, pooled, window, picked, n, c, h, w, ph, pw, p.weight, p.convBias, run.mean,
      run.variance, p.gamma, p.beta, p.eps, p.relu);
    mean.set(run.mean);
    invstdFromVariance(run.variance, p.eps, invstd);
  }
  const dWeight = new Float32Array(9 * c), dBias = p.convBias ? new Float32Array(c) : null;
  const dgamma = p.gamma ? new Float32Array(c).fill(NaN) : null, dbeta = p.beta ? new Float32Array(c).fill(NaN) : null;
  const dInput = options.inputGrad === false ? null : new Float32Array(x.length).fill(NaN);
  native.convBatchNormMaxPoolBackward(x, dy, dInput, window, picked, n, c, h, w, ph, pw, p.weight, p.convBias, dWeight,
    dBias, mean, invstd, p.gamma, p.beta, p.relu, train, dgamma, dbeta, train ? options.moments ?? null : null);
  return { pooled, window, picked, mean, invstd, running: run, dWeight, dBias, dgamma, dbeta, dInput };
}

/**
 * Float64 conv(3x3, padding, bias) -> batch norm (batch statistics with the
 * biased variance, or `stats`) -> optional ReLU -> 2x2 max pooling (floor
 * mode, first maximum wins), and its backward from the pooled gradient dy.
 *
 * `kernelWindow`, when given, only settles windows whose two best candidates
 * are within float32 rounding of each other (or a pre-activation within
 * rounding of 0 under ReLU): there the kernel's choice is taken, so a
 * near-tie flipped by rounding does not count as an error. Exact ties are
 * never settled that way: the first maximum must win.
 */
function reference(x: ArrayLike<number>, g: Geometry, p: StemParams, stats: Running | null, dy: ArrayLike<number>,
  kernelWindow?: Uint8Array) {
  const { n, c, h, w, ph, pw } = g;
  const [oh, ow] = convOut(g);
  const plane = oh * ow, m = n * plane, qh = oh >> 1, qw = ow >> 1;
  const pixel = (img: number, r: number, s: number) => (r >= 0 && r < h && s >= 0 && s < w ? x[(img * h + r) * w + s] : 0);
  const conv = new Float64Array(n * c * plane);
  for (let img = 0; img < n; img++) {
    for (let ch = 0; ch < c; ch++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          let sum = p.convBias ? p.convBias[ch] : 0;
          for (let ky = 0; ky < 3; ky++) {
            for (let kx = 0; kx < 3; kx++) sum += p.weight[ch * 9 + ky * 3 + kx] * pixel(img, i + ky - ph, j + kx - pw);
          }
          conv[((img * c + ch) * oh + i) * ow + j] = sum;
        }
      }
    }
  }
  const planeStart = (img: number, ch: number) => (img * c + ch) * plane;
  const mean = new Float64Array(c), variance = new Float64Array(c), invstd = new Float64Array(c);
  for (let ch = 0; ch < c; ch++) {
    let s = 0;
    for (let img = 0; img < n; img++) for (let k = 0; k < plane; k++) s += conv[planeStart(img, ch) + k];
    mean[ch] = s / m;
    let v = 0;
    for (let img = 0; img < n; img++) for (let k = 0; k < plane; k++) v += (conv[planeStart(img, ch) + k] - mean[ch]) ** 2;
    variance[ch] = v / m;
    invstd[ch] = 1 / Math.sqrt((stats ? stats.variance[ch] : variance[ch]) + p.eps);
  }
  const gammaOf = (ch: number) => (p.gamma ? p.gamma[ch] : 1);
  const xhat = new Float64Array(conv.length), z = new Float64Array(conv.length);
  for (let img = 0; img < n; img++) {
    for (let ch = 0; ch < c; ch++) {
      const mu = stats ? stats.mean[ch] : mean[ch];
      for (let k = planeStart(img, ch); k < planeStart(img, ch) + plane; k++) {
        xhat[k] = (conv[k] - mu) * invstd[ch];
        z[k] = xhat[k] * gammaOf(ch) + (p.beta ? p.beta[ch] : 0);
      }
    }
  }
  const act = (k: number) => (p.relu ? Math.max(0, z[k]) : z[k]);
  const pooled = new Float64Array(n * c * qh * qw), route = new Int32Array(pooled.length);
  let settled = 0;
  for (let q = 0; q < n * c; q++) {
    for (let a = 0; a < qh; a++) {
      for (let b = 0; b < qw; b++) {
        const k = (q * qh + a) * qw + b;
        const cell = (code: number) => q * plane + (2 * a + (code >> 1)) * ow + 2 * b + (code & 1);
        let best = cell(0);
        for (let code = 1; code < 4; code++) if (act(cell(code)) > act(best)) best = cell(code);
        pooled[k] = act(best);
        let zBest = cell(0);
        for (let code = 1; code < 4; code++) if (z[cell(code)] > z[zBest]) zBest = cell(code);
        const own = p.relu && !(z[best] > 0) ? -1 : best;
        route[k] = own;
        if (!kernelWindow) continue;
        const theirs = kernelWindow[k] >= 4 ? -1 : cell(kernelWindow[k]);
        if (theirs === own) continue;
        const tol = 2e-5 * (1 + Math.abs(z[zBest]));
        const acceptable = theirs < 0
          ? p.relu && z[zBest] < tol
          : z[theirs] >= z[zBest] - tol && !(z[theirs] === z[zBest] && theirs !== zBest) && (!p.relu || z[theirs] > -tol);
        if (acceptable) {
          route[k] = theirs;
          settled++;
        }
      }
    }
  }
  const dz = new Float64Array(conv.length);
  route.forEach((at, k) => { if (at >= 0) dz[at] += dy[k]; });
  const dgamma = new Float64Array(c), dbeta = new Float64Array(c);
  for (let img = 0; img < n; img++) {
    for (let ch = 0; ch < c; ch++) {
      for (let k = planeStart(img, ch); k < planeStart(img, ch) + plane; k++) {
        dgamma[ch] += dz[k] * xhat[k];
        dbeta[ch] += dz[k];
      }
    }
  }
  const dWeight = new Float64Array(9 * c), dBias = new Float64Array(c), dInput = new Float64Array(n * h * w);
  // Sums of |terms|: in training the conv gradients are sums that cancel (the
  // bias one to ~0), so their float32 error scales with these, not with the result.
  const dBiasTerms = new Float64Array(c), dWeightTerms = new Float64Array(9 * c);
  for (let img = 0; img < n; img++) {
    for (let ch = 0; ch < c; ch++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          const k = ((img * c + ch) * oh + i) * ow + j;
          const dc = stats
            ? gammaOf(ch) * invstd[ch] * dz[k]
            : gammaOf(ch) * invstd[ch] * (dz[k] - dbeta[ch] / m - xhat[k] * dgamma[ch] / m);
          dBias[ch] += dc;
          dBiasTerms[ch] += Math.abs(dc);
          for (let ky = 0; ky < 3; ky++) {
            for (let kx = 0; kx < 3; kx++) {
              const r = i + ky - ph, s = j + kx - pw;
              if (r < 0 || r >= h || s < 0 || s >= w) continue;
              dWeight[ch * 9 + ky * 3 + kx] += dc * x[(img * h + r) * w + s];
              dWeightTerms[ch * 9 + ky * 3 + kx] += Math.abs(dc * x[(img * h + r) * w + s]);
              dInput[(img * h + r) * w + s] += dc * p.weight[ch * 9 + ky * 3 + kx];
            }
          }
        }
      }
    }
  }
  return { pooled, mean, variance, invstd, dWeight, dWeightTerms, dBias, dBiasTerms, dgamma, dbeta, dInput, settled, windows: pooled.length, m };
}

/** max |got - want| / (1 + terms), terms the sum of the magnitudes summed into want. */
function sumError(got: ArrayLike<number>, want: ArrayLike<number>, terms: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + terms[i]));
  return got.length === want.length ? worst : Infinity;
}

/** PyTorch's running-statistics update with the unbiased batch variance. */
function updatedRunning(running: Running, mean: ArrayLike<number>, variance: ArrayLike<number>, m: number, factor: number) {
  return {
    mean: Float64Array.from(running.mean, (r, i) => (1 - factor) * r + factor * mean[i]),
    variance: Float64Array.from(running.variance, (r, i) => (1 - factor) * r + factor * variance[i] * (m / (m - 1))),
  };
}

interface MatrixCase { g: Geometry; flags: { relu: boolean; bias: boolean; affine: boolean }; train: boolean; digits: boolean }

/**
 * A sample of C {1, 3, 16, 32} x H x W {4x4, 5x7, 13x11, 28x28} x padding
 * {0, 1, 2} x relu x conv bias x affine x (N, mode) {1 eval, 2 train, 2 eval,
 * 3 train, 3 eval}: every geometry with every flag combination, each with two
 * of the five (N, mode) pairs in rotation; plus asymmetric padding.
 */
function matrix(): MatrixCase[] {
  const batches: [number, boolean][] = [[1, false], [2, true], [3, false], [3, true], [2, false]];
  const cases: MatrixCase[] = [];
  const sizes = [[4, 4], [5, 7], [13, 11], [28, 28]];
  let k = 0;
  const add = (c: number, h: number, w: number, ph: number, pw: number) => {
    for (let f = 0; f < 8; f++) {
      const flags = { relu: (f & 1) !== 0, bias: (f & 2) !== 0, affine: (f & 4) !== 0 };
      const digits = (k + f) % 3 === 0;
      for (const [n, train] of [batches[k % 5], batches[(k + 2) % 5]]) cases.push({ g: { n, c, h, w, ph, pw }, flags, train, digits });
      k++;
    }
  };
  for (const c of [1, 3, 16, 32]) for (const [h, w] of sizes) for (const pad of [0, 1, 2]) add(c, h, w, pad, pad);
  add(3, 5, 7, 0, 2);
  add(16, 13, 11, 2, 1);
  add(1, 4, 9, 1, 0);
  add(32, 28, 28, 2, 0);
  return cases;
}

describe('fused Conv2d(1 -> C, 3x3) + BatchNorm2d (+ ReLU) + MaxPool2d(2) kernels', () => {
  it('match the float64 reference on every ISA (train and eval, relu, conv bias, affine, padding 0..2)', () => {
    const cases = matrix();
    let settled = 0, windows = 0;
    cases.forEach((tc, index) => {
      const { g, flags, train } = tc;
      const p = { ...stemParams(g.c, 1000 + index, flags), eps: index % 5 === 0 ? 0.01 : 1e-5 };
      const x = tc.digits ? digitArray(g.n * g.h * g.w, 2000 + index) : normalArray(g.n * g.h * g.w, 2000 + index);
      const dy = normalArray(pooledLength(g), 3000 + index);
      const running = runningStats(g.c, 4000 + index);
      forEachIsa((isa) => {
        const got = runKernel(x, g, p, train, dy, running);
        // Per ISA: each may settle near-ties its own way.
        const want = reference(x, g, p, train ? null : running, dy, got.window);
        settled += want.settled;
        windows += want.windows;
        const wantRunning = updatedRunning(running, want.mean, want.variance, want.m, 0.1);
        const what = `${isa} ${describeGeometry(g)} ${JSON.stringify(flags)} train=${train} digits=${tc.digits}`;
        expect(relError(got.pooled, want.pooled), `pooled ${what}`).toBeLessThan(1e-5);
        expect(sumError(got.dWeight, want.dWeight, want.dWeightTerms), `dWeight ${what}`).toBeLessThan(2e-5);
        if (flags.bias) expect(sumError(got.dBias!, want.dBias, want.dBiasTerms), `dBias ${what}`).toBeLessThan(2e-5);
        if (flags.affine) {
          expect(relError(got.dgamma!, want.dgamma), `dgamma ${what}`).toBeLessThan(1e-4);
          expect(relError(got.dbeta!, want.dbeta), `dbeta ${what}`).toBeLessThan(5e-5);
        }
        expect(relError(got.dInput!, want.dInput), `dInput ${what}`).toBeLessThan(1e-4);
        // Without the input gradient, the parameter gradients still match the reference.
        const lean = runKernel(x, g, p, train, dy, running, { inputGrad: false });
        expect(sumError(lean.dWeight, want.dWeight, want.dWeightTerms), `dWeight (no dInput) ${what}`).toBeLessThan(2e-5);
        if (flags.bias) expect(sumError(lean.dBias!, want.dBias, want.dBiasTerms), `dBias (no dInput) ${what}`).toBeLessThan(2e-5);
        if (flags.affine) {
          expect(relError(lean.dgamma!, want.dgamma), `dgamma (no dInput) ${what}`).toBeLessThan(1e-4);
          expect(relError(lean.dbeta!, want.dbeta), `dbeta (no dInput) ${what}`).toBeLessThan(5e-5);
        }
        if (train) {
          expect(relError(got.mean, want.mean), `mean ${what}`).toBeLessThan(2e-6);
          expect(relError(got.invstd, want.invstd), `invstd ${what}`).toBeLessThan(1e-5);
          expect(relError(got.running.mean, wantRunning.mean), `runningMean ${what}`).toBeLessThan(2e-6);
          expect(relError(got.running.variance, wantRunning.variance), `runningVar ${what}`).toBeLessThan(5e-6);
        } else {
          expectSame(got.running.mean, running.mean, `eval keeps runningMean ${what}`);
          expectSame(got.running.variance, running.variance, `eval keeps runningVar ${what}`);
        }
      });
    });
    // Near-ties are rare; the reference decides everything else.
    expect(settled / windows).toBeLessThan(1e-3);
  });

  it('matches the reference on long rows, narrow columns and a full MNIST batch', () => {
    // The last geometry pools 4,149 windows per plane: past one float partial sum (4,096).
    const geometries: Geometry[] = [
      { n: 2, c: 2, h: 4, w: 2101, ph: 0, pw: 0 }, { n: 1, c: 3, h: 3, w: 1037, ph: 1, pw: 2 },
      { n: 3, c: 2, h: 200, w: 4, ph: 0, pw: 0 }, { n: 2, c: 4, h: 97, w: 1, ph: 2, pw: 2 },
      { n: 37, c: 1, h: 6, w: 5, ph: 1, pw: 0 }, { n: 64, c: 32, h: 28, w: 28, ph: 1, pw: 1 },
      { n: 2, c: 2, h: 4, w: 8300, ph: 0, pw: 0 },
    ];
    geometries.forEach((g, index) => {
      const p = stemParams(g.c, 120 + index, { bias: true, affine: true, relu: index % 2 === 0 });
      const x = index === 5 ? digitArray(g.n * g.h * g.w, 130) : normalArray(g.n * g.h * g.w, 130 + index);
      const dy = normalArray(pooledLength(g), 140 + index);
      forEachIsa((isa) => {
        for (const train of index === 5 ? [true] : [true, false]) {
          const got = runKernel(x, g, p, train, dy, runningStats(g.c, 150));
          const want = reference(x, g, p, train ? null : runningStats(g.c, 150), dy, got.window);
          const what = `${isa} ${describeGeometry(g)} train=${train}`;
          expect(relError(got.pooled, want.pooled), `pooled ${what}`).toBeLessThan(1e-5);
          expect(sumError(got.dWeight, want.dWeight, want.dWeightTerms), `dWeight ${what}`).toBeLessThan(2e-5);
          expect(sumError(got.dBias!, want.dBias, want.dBiasTerms), `dBias ${what}`).toBeLessThan(2e-5);
          expect(relError(got.dgamma!, want.dgamma), `dgamma ${what}`).toBeLessThan(1e-4);
          expect(relError(got.dbeta!, want.dbeta), `dbeta ${what}`).toBeLessThan(5e-5);
          expect(relError(got.dInput!, want.dInput), `dInput ${what}`).toBeLessThan(1e-4);
          expect(want.settled / want.windows, what).toBeLessThan(1e-3);
        }
      });
    });
  });

  it('exact ties (blank image areas) go to the first maximum, as in PyTorch', () => {
    forEachIsa((isa) => {
      const g: Geometry = { n: 2, c: 4, h: 12, w: 10, ph: 1, pw: 1 };
      // Blank images but for one pixel: nearly every window is a 4-way exact tie.
      const x = new Float32Array(g.n * g.h * g.w);
      x[37] = 1;
      x[g.h * g.w + 101] = 0.5;
      for (const relu of [false, true]) {
        const p = stemParams(g.c, 50, { bias: true, affine: true, relu });
        const dy = normalArray(pooledLength(g), 51);
        const got = runKernel(x, g, p, true, dy, runningStats(g.c, 52));
        const want = reference(x, g, p, null, dy);
        const [oh, ow] = convOut(g);
        const quiet = (k: number) => {
          // A window whose 4 cells see only zeros (no stroke under any tap).
          const q = Math.floor(k / ((oh >> 1) * (ow >> 1))), a = Math.floor(k / (ow >> 1)) % (oh >> 1), b = k % (ow >> 1);
          const img = Math.floor(q / g.c);
          for (let r = 2 * a - 1; r <= 2 * a + 2; r++) {
            for (let s = 2 * b - 1; s <= 2 * b + 2; s++) {
              if (r >= 0 && r < g.h && s >= 0 && s < g.w && x[(img * g.h + r) * g.w + s] !== 0) return false;
            }
          }
          return true;
        };
        let ties = 0;
        got.window.forEach((code, k) => {
          // Codes >= 4 (clipped by the ReLU) pass no gradient: their position does not matter.
          if (!quiet(k) || code >= 4) return;
          expect(code, `${isa} relu=${relu} window ${k}`).toBe(0);
          ties++;
        });
        expect(ties).toBeGreaterThan(20);
        expect(relError(got.pooled, want.pooled), isa).toBeLessThan(2e-5);
        expect(relError(got.dInput!, want.dInput), isa).toBeLessThan(2e-4);
        expect(sumError(got.dWeight, want.dWeight, want.dWeightTerms), isa).toBeLessThan(2e-5);
        expect(sumError(got.dBias!, want.dBias, want.dBiasTerms), isa).toBeLessThan(2e-5);
      }
    });
  });

  it('accumulates into dWeight and dBias, overwrites dgamma, dbeta and dInput; N=1 training works', () => {
    forEachIsa((isa) => {
      const g: Geometry = { n: 1, c: 3, h: 9, w: 8, ph: 1, pw: 2 };
      const p = stemParams(g.c, 60, { bias: true, affine: true, relu: true });
      const x = normalArray(g.h * g.w, 61), dy = normalArray(pooledLength(g), 62);
      const once = runKernel(x, g, p, true, dy, runningStats(g.c, 63));
      const want = reference(x, g, p, null, dy, once.window);
      expect(sumError(once.dWeight, want.dWeight, want.dWeightTerms), isa).toBeLessThan(2e-5);
      expect(relError(once.dInput!, want.dInput), isa).toBeLessThan(2e-4);
      const dWeight = once.dWeight.slice(), dBias = once.dBias!.slice();
      const dgamma = new Float32Array(3).fill(7), dbeta = new Float32Array(3).fill(-7), dInput = new Float32Array(x.length).fill(9);
      native.convBatchNormMaxPoolBackward(x, dy, dInput, once.window, once.picked, 1, 3, 9, 8, 1, 2, p.weight, p.convBias,
        dWeight, dBias, once.mean, once.invstd, p.gamma, p.beta, true, true, dgamma, dbeta);
      expectSame(dWeight, once.dWeight.map((v) => 2 * v), `${isa} dWeight +=`);
      expectSame(dBias, once.dBias!.map((v) => 2 * v), `${isa} dBias +=`);
      expectSame(dgamma, once.dgamma!, `${isa} dgamma =`);
      expectSame(dbeta, once.dbeta!, `${isa} dbeta =`);
      expectSame(dInput, once.dInput!, `${isa} dInput =`);
      // Null gradient outputs are skipped; the rest stay the same.
      const lean = runKernel(x, g, p, true, dy, runningStats(g.c, 63), { inputGrad: false });
      const dWeightOnly = new Float32Array(27);
      native.convBatchNormMaxPoolBackward(x, dy, null, once.window, once.picked, 1, 3, 9, 8, 1, 2, p.weight, p.convBias,
        dWeightOnly, null, once.mean, once.invstd, p.gamma, p.beta, true, true, null, null);
      expectSame(dWeightOnly, lean.dWeight, `${isa} dWeight alone`);
      expect(sumError(dWeightOnly, want.dWeight, want.dWeightTerms), `${isa} dWeight alone`).toBeLessThan(2e-5);
      native.convBatchNormMaxPoolBackward(x, dy, null, once.window, once.picked, 1, 3, 9, 8, 1, 2, p.weight, p.convBias,
        null, null, once.mean, once.invstd, p.gamma, p.beta, true, true, null, null);
    });
  });

  // The conv gradients may take another (algebraic) route when no input
  // gradient is wanted: equal within rounding, not necessarily bit for bit.
  it('without the input gradient gives the same parameter gradients', () => {
    forEachIsa((isa) => {
      for (const g of [{ n: 3, c: 16, h: 28, w: 28, ph: 1, pw: 1 }, { n: 2, c: 3, h: 5, w: 7, ph: 2, pw: 0 }]) {
        const p = stemParams(g.c, 70, { bias: true, affine: true, relu: true });
        const x = normalArray(g.n * g.h * g.w, 71), dy = normalArray(pooledLength(g), 72);
        for (const train of [true, false]) {
          const full = runKernel(x, g, p, train, dy, runningStats(g.c, 73));
          const lean = runKernel(x, g, p, train, dy, runningStats(g.c, 73), { inputGrad: false });
          const what = `${isa} ${describeGeometry(g)} train=${train}`;
          // The conv gradients come from the same sums either way.
          expectSame(lean.dWeight, full.dWeight, what);
          expectSame(lean.dBias!, full.dBias!, what);
          expectSame(lean.dgamma!, full.dgamma!, what);
          expectSame(lean.dbeta!, full.dbeta!, what);
        }
      }
    });
  });

  it("backward reusing the training forward's patch moments gives the same bits as recomputing them", () => {
    forEachIsa((isa) => {
      for (const g of [{ n: 3, c: 16, h: 28, w: 28, ph: 1, pw: 1 }, { n: 2, c: 3, h: 5, w: 7, ph: 2, pw: 0 }]) {
        const p = stemParams(g.c, 74, { bias: true, affine: true, relu: false });
        const x = normalArray(g.n * g.h * g.w, 75, 1, 3), dy = normalArray(pooledLength(g), 76);
        const moments = new Float64Array(90).fill(NaN);
        const kept = runKernel(x, g, p, true, dy, runningStats(g.c, 77), { moments, inputGrad: false });
        const fresh = runKernel(x, g, p, true, dy, runningStats(g.c, 77), { inputGrad: false });
        const what = `${isa} ${describeGeometry(g)}`;
        expectSame(kept.pooled, fresh.pooled, what);
        expectSame(kept.dWeight, fresh.dWeight, what);
        expectSame(kept.dBias!, fresh.dBias!, what);
        // The first nine are the taps' means over every output position (zero padding included).
        const [oh, ow] = convOut(g);
        for (let t = 0; t < 9; t++) {
          let sum = 0;
          for (let img = 0; img < g.n; img++) {
            for (let r = 0; r < oh; r++) {
              for (let s2 = 0; s2 < ow; s2++) {
                const yy = r + Math.floor(t / 3) - g.ph, xx = s2 + (t % 3) - g.pw;
                if (yy >= 0 && yy < g.h && xx >= 0 && xx < g.w) sum += x[(img * g.h + yy) * g.w + xx];
              }
            }
          }
          expect(Math.abs(moments[t] - sum / (g.n * oh * ow)), `${what} tap ${t}`).toBeLessThan(1e-12 * (1 + Math.abs(sum)));
        }
        // ...then their covariance: symmetric, with a non-negative diagonal.
        for (let t = 0; t < 9; t++) {
          expect(moments[9 + 10 * t], what).toBeGreaterThanOrEqual(0);
          for (let u = 0; u < 9; u++) expect(moments[9 + 9 * t + u], what).toBe(moments[9 + 9 * u + t]);
        }
      }
    });
  });

  it('takes views at any offset and inputs far from zero', () => {
    // Typed-array views one float past an allocation's start: no alignment may be assumed.
    const view = (a: Float32Array) => {
      const v = new Float32Array(a.length + 1).subarray(1);
      v.set(a);
      return v;
    };
    forEachIsa((isa) => {
      const g: Geometry = { n: 3, c: 5, h: 11, w: 21, ph: 1, pw: 0 };
      const base = stemParams(g.c, 110, { bias: true, affine: true, relu: true });
      const p: StemParams = { ...base, weight: view(base.weight), convBias: view(base.convBias!), gamma: view(base.gamma!), beta: view(base.beta!) };
      const x = normalArray(g.n * g.h * g.w, 111), dy = normalArray(pooledLength(g), 112);
      for (const train of [true, false]) {
        const want = runKernel(x, g, base, train, dy, runningStats(g.c, 113));
        const got = runKernel(view(x), g, p, train, view(dy), runningStats(g.c, 113));
        for (const key of ['pooled', 'window', 'dWeight', 'dBias', 'dgamma', 'dbeta', 'dInput'] as const) {
          expectSame(got[key]!, want[key]!, `${isa} ${key} train=${train}`);
        }
      }
      // Images around 100 (conv outputs around 100 times the taps' sum, spread ~1.5): the
      // statistics must not lose the spread to the offset.
      const far = Float32Array.from(normalArray(g.n * g.h * g.w, 114), (v) => 100 + v);
      for (const train of [true, false]) {
        const running = train ? runningStats(g.c, 115) : (() => {
          const r = reference(far, g, base, null, dy);
          return { mean: Float32Array.from(r.mean), variance: Float32Array.from(r.variance) };
        })();
        const got = runKernel(far, g, base, train, dy, running);
        const want = reference(far, g, base, train ? null : running, dy, got.window);
        // float32 conv outputs near 100 carry absolute rounding ~1e-5 into values spread ~1.5.
        expect(relError(got.pooled, want.pooled), `${isa} far pooled train=${train}`).toBeLessThan(2e-5);
        expect(relError(got.dInput!, want.dInput), `${isa} far dInput train=${train}`).toBeLessThan(2e-5);
        expect(relError(got.dgamma!, want.dgamma), `${isa} far dgamma train=${train}`).toBeLessThan(2e-5);
        if (train) expect(relError(got.invstd, want.invstd), `${isa} far invstd`).toBeLessThan(1e-5);
        const lean = runKernel(far, g, base, train, dy, running, { inputGrad: false });
        expect(sumError(lean.dWeight, want.dWeight, want.dWeightTerms), `${isa} far dWeight (no dInput) train=${train}`).toBeLessThan(2e-5);
        expect(sumError(lean.dBias!, want.dBias, want.dBiasTerms), `${isa} far dBias (no dInput) train=${train}`).toBeLessThan(2e-5);
        expect(relError(lean.dgamma!, want.dgamma), `${isa} far dgamma (no dInput) train=${train}`).toBeLessThan(2e-5);
        expect(sumError(got.dWeight, want.dWeight, want.dWeightTerms), `${isa} far dWeight train=${train}`).toBeLessThan(2e-5);
      }
    });
  });

  it('keeps float32 accuracy when the conv output varies far less than its input', () => {
    // Smooth images under differencing filters: the outputs' variance is ~1e-3
    // of the pixels'. Statistics taken from the outputs themselves are as
    // accurate as anywhere else; ones derived from the pixels' moments
    // (w^T cov w) lose digits to cancellation.
    const g: Geometry = { n: 2, c: 3, h: 28, w: 28, ph: 0, pw: 0 };
    const noise = normalArray(g.n * g.h * g.w, 160);
    const x = new Float32Array(noise.length);
    for (let n = 0; n < g.n; n++) {
      for (let i = 0; i < g.h; i++) {
        for (let j = 0; j < g.w; j++) {
          const k = (n * g.h + i) * g.w + j;
          x[k] = Math.sin(0.05 * i + n) + Math.cos(0.07 * j) + 0.01 * noise[k];
        }
      }
    }
    const p = stemParams(g.c, 161, { bias: true, affine: true, relu: false });
    p.weight.fill(0);
    p.weight.set([0, 0, 0, 0, 1, -1, 0, 0, 0], 0);
    p.weight.set([0, 0, 0, 0, 1, 0, 0, -1, 0], 9);
    p.weight.set([0, 0, 0, 1, -2, 1, 0, 0, 0], 18);
    const dy = normalArray(pooledLength(g), 162);
    forEachIsa((isa) => {
      const got = runKernel(x, g, p, true, dy, runningStats(g.c, 163));
      const lean = runKernel(x, g, p, true, dy, runningStats(g.c, 163), { inputGrad: false });
      const want = reference(x, g, p, null, dy, got.window);
      expect(relError(got.invstd, want.invstd), `${isa} invstd`).toBeLessThan(1e-5);
      expect(relError(got.pooled, want.pooled), `${isa} pooled`).toBeLessThan(2e-5);
      expect(relError(got.dInput!, want.dInput), `${isa} dInput`).toBeLessThan(1e-4);
      expect(relError(got.dgamma!, want.dgamma), `${isa} dgamma`).toBeLessThan(1e-4);
      expect(sumError(got.dWeight, want.dWeight, want.dWeightTerms), `${isa} dWeight`).toBeLessThan(2e-5);
      expect(sumError(lean.dWeight, want.dWeight, want.dWeightTerms), `${isa} dWeight (no dInput)`).toBeLessThan(2e-5);
    });
  });

  it('gradients agree with finite differences (train and eval)', () => {
    const g: Geometry = { n: 2, c: 2, h: 7, w: 6, ph: 1, pw: 1 };
    const x = normalArray(g.n * g.h * g.w, 80);
    const dy = normalArray(pooledLength(g), 81);
    const running = runningStats(g.c, 82);
    for (const train of [true, false]) {
      for (const relu of [true, false]) {
        const p = stemParams(g.c, 83, { bias: true, affine: true, relu });
        const got = runKernel(x, g, p, train, dy, running);
        // The loss sum(dy * pooled); the perturbations must not move a window's winner or a ReLU sign.
        const loss = (): number => {
          const len = dy.length, pooled = new Float32Array(len), window = new Uint8Array(len), picked = new Float32Array(len);
          if (train) {
            native.convBatchNormMaxPoolForwardTrain(x, pooled, window, picked, g.n, g.c, g.h, g.w, g.ph, g.pw, p.weight,
              p.convBias, p.gamma, p.beta, p.eps, relu, new Float32Array(g.c), new Float32Array(g.c), null, null, 0);
          } else {
            native.convBatchNormMaxPoolForwardEval(x, pooled, window, picked, g.n, g.c, g.h, g.w, g.ph, g.pw, p.weight,
              p.convBias, running.mean, running.variance, p.gamma, p.beta, p.eps, relu);
          }
          expectSame(window, got.window, 'a probe changed a window code');
          let s = 0;
          for (let i = 0; i < len; i++) s += dy[i] * pooled[i];
          return s;
        };
        const step = 1e-3;
        const probe = (values: Float32Array, i: number): number => centralDifference(values, i, step, loss);
        const check = (values: Float32Array, grads: Float32Array, stride: number, what: string) => {
          for (let i = 0; i < values.length; i += stride) {
            const fd = probe(values, i);
            expect(Math.abs(fd - grads[i]), `${what}[${i}] train=${train} relu=${relu}: fd ${fd} vs ${grads[i]}`)
              .toBeLessThan(2e-2 * (1 + Math.abs(fd)));
          }
        };
        check(x, got.dInput!, 5, 'dInput');
        check(p.weight, got.dWeight, 2, 'dWeight');
        check(p.convBias!, got.dBias!, 1, 'dBias');
        check(p.gamma!, got.dgamma!, 1, 'dgamma');
        check(p.beta!, got.dbeta!, 1, 'dbeta');
      }
    }
  });

  it('gives the same bits for 1, 2 and 3 threads', () => {
    const geometries: Geometry[] = [{ n: 8, c: 32, h: 28, w: 28, ph: 1, pw: 1 }, { n: 5, c: 3, h: 13, w: 11, ph: 2, pw: 0 }];
    forEachIsa((isa) => {
      for (const g of geometries) {
        const p = stemParams(g.c, 90, { bias: true, affine: true, relu: true });
        const x = normalArray(g.n * g.h * g.w, 91), dy = normalArray(pooledLength(g), 92);
        for (const train of [true, false]) {
          for (const inputGrad of [true, false]) {
            const runs = [1, 2, 3].map((t) => {
              native.setNumThreads(t);
              return runKernel(x, g, p, train, dy, runningStats(g.c, 93), { inputGrad });
            });
            native.setNumThreads(initialThreads);
            const what = `${isa} ${describeGeometry(g)} train=${train} inputGrad=${inputGrad}`;
            for (const r of runs.slice(1)) {
              expectSame(r.pooled, runs[0].pooled, what);
              expectSame(r.window, runs[0].window, what);
              expectSame(r.mean, runs[0].mean, what);
              expectSame(r.invstd, runs[0].invstd, what);
              expectSame(r.running.mean, runs[0].running.mean, what);
              expectSame(r.running.variance, runs[0].running.variance, what);
              expectSame(r.dWeight, runs[0].dWeight, what);
              expectSame(r.dBias!, runs[0].dBias!, what);
              expectSame(r.dgamma!, runs[0].dgamma!, what);
              expectSame(r.dbeta!, runs[0].dbeta!, what);
              if (inputGrad) expectSame(r.dInput!, runs[0].dInput!, what);
            }
          }
        }
      }
    });
  });

  it('rejects bad arguments with errors naming them, never crashing', () => {
    // 2 images 6x6, padding 0: a [2, 4, 4, 4] convolution, pooled [2, 4, 2, 2].
    const x = normalArray(72, 100), pooled = new Float32Array(32), window = new Uint8Array(32), picked = new Float32Array(32);
    const c4 = () => new Float32Array(4);
    const weight = normalArray(36, 101);
    type Args = Record<number, unknown>;
    const call = (fn: unknown, base: unknown[], overrides: Args) => () => {
      const args = base.slice();
      for (const [k, v] of Object.entries(overrides)) args[Number(k)] = v;
      (fn as (...a: unknown[]) => void)(...args);
    };
    const train = (o: Args) => call(native.convBatchNormMaxPoolForwardTrain,
      [x, pooled, window, picked, 2, 4, 6, 6, 0, 0, weight, c4(), c4(), c4(), 1e-5, true, c4(), c4(), c4(), c4().fill(1), 0.1], o);
    const evaluate = (o: Args) => call(native.convBatchNormMaxPoolForwardEval,
      [x, pooled, window, picked, 2, 4, 6, 6, 0, 0, weight, null, c4(), c4().fill(1), null, null, 1e-5, false], o);
    const backward = (o: Args) => call(native.convBatchNormMaxPoolBackward,
      [x, pooled, new Float32Array(72), window, picked, 2, 4, 6, 6, 0, 0, weight, c4(), new Float32Array(36), c4(), c4(),
        c4().fill(1), c4(), c4(), true, true, c4(), c4()], o);
    expect(train({})).not.toThrow();
    expect(evaluate({})).not.toThrow();
    expect(backward({})).not.toThrow();

    // Array lengths and types, named with their expected shapes.
    expect(train({ 21: new Float64Array(90) })).not.toThrow();
    expect(train({ 21: new Float64Array(89) })).toThrow(/patchMoments has 89 elements, expected 90/);
    expect(train({ 21: new Float32Array(90) })).toThrow(TypeError);
    expect(backward({ 23: new Float64Array(91) })).toThrow(/patchMoments has 91 elements, expected 90/);
    expect(backward({ 23: [1, 2] })).toThrow(/patchMoments must be a Float64Array/);
    expect(train({ 0: new Float32Array(71) })).toThrow(RangeError);
    expect(train({ 0: new Float32Array(71) })).toThrow(/input \[2, 1, 6, 6\] has 71 elements, expected 72/);
    expect(train({ 1: new Float32Array(31) })).toThrow(/pooled \[2, 4, 2, 2\] has 31 elements/);
    expect(train({ 2: new Int32Array(32) })).toThrow(TypeError);
    expect(train({ 2: new Int32Array(32) })).toThrow(/window \[2, 4, 2, 2\] must be a Uint8Array, got Int32Array/);
    expect(train({ 3: new Float32Array(33) })).toThrow(/picked \[2, 4, 2, 2\] has 33 elements/);
    expect(train({ 10: new Float32Array(35) })).toThrow(/weight \[4, 1, 3, 3\] has 35 elements, expected 36/);
    expect(train({ 10: null })).toThrow(TypeError);
    expect(train({ 10: null })).toThrow(/weight \[4, 1, 3, 3\] must be a Float32Array, got null/);
    expect(train({ 11: new Float32Array(3) })).toThrow(/convBias has 3 elements, expected 4/);
    expect(train({ 11: new Float64Array(4) })).toThrow(/convBias must be a Float32Array, got Float64Array/);
    expect(train({ 12: new Float32Array(5) })).toThrow(/weight \(gamma\) has 5 elements/);
    expect(train({ 13: new Float32Array(5) })).toThrow(/bias \(beta\) has 5 elements/);
    expect(train({ 16: new Float32Array(3) })).toThrow(/saveMean/);
    expect(train({ 17: null })).toThrow(/saveInvstd must be a Float32Array/);
    expect(train({ 18: new Float32Array(1) })).toThrow(/runningMean has 1 elements/);
    expect(train({ 19: new Float32Array(8) })).toThrow(/runningVar has 8 elements/);
    expect(evaluate({ 12: new Float32Array(3) })).toThrow(/runningMean has 3 elements/);
    expect(evaluate({ 13: Float32Array.of(1, 1, -1, 1) })).toThrow(/runningVar\[2\] must be >= 0/);
    expect(evaluate({ 11: new Float32Array(9) })).toThrow(/convBias has 9 elements/);
    expect(backward({ 1: new Float32Array(5) })).toThrow(/dy \[2, 4, 2, 2\] has 5 elements/);
    expect(backward({ 2: new Float32Array(71) })).toThrow(/dInput \[2, 1, 6, 6\] has 71 elements/);
    expect(backward({ 3: new Uint8Array(31) })).toThrow(/window \[2, 4, 2, 2\] has 31 elements/);
    expect(backward({ 4: new Float32Array(2) })).toThrow(/picked/);
    expect(backward({ 13: new Float32Array(9) })).toThrow(/dWeight \[4, 1, 3, 3\] has 9 elements/);
    expect(backward({ 14: new Float32Array(9) })).toThrow(/dBias has 9 elements/);
    expect(backward({ 15: new Float32Array(9) })).toThrow(/mean has 9 elements/);
    expect(backward({ 16: new Float32Array(9) })).toThrow(/invstd has 9 elements/);
    expect(backward({ 21: new Float32Array(9) })).toThrow(/dgamma has 9 elements/);
    expect(backward({ 22: new Float32Array(9) })).toThrow(/dbeta has 9 elements/);
    expect(backward({ 20: 'yes' })).toThrow(/batchStatistics must be a boolean/);

    // Geometry: padding beyond 2, negative or fractional sizes, outputs smaller than one window.
    for (const [fn, at] of [[train, 8], [evaluate, 8], [backward, 9]] as const) {
      expect(fn({ [at]: 3 })).toThrow(RangeError);
      expect(fn({ [at]: 3 })).toThrow(/padding 0\.\.2, got 3x0/);
      expect(fn({ [at + 1]: 7 })).toThrow(/padding 0\.\.2, got 0x7/);
      expect(fn({ [at]: -1 })).toThrow(/padH must be an integer >= 0, got -1/);
      expect(fn({ [at + 1]: 0.5 })).toThrow(/padW must be an integer >= 0, got 0.5/);
      expect(fn({ [at - 1]: 6.5 })).toThrow(/W must be an integer >= 1/);
      expect(fn({ [at - 3]: 0 })).toThrow(/channels must be an integer >= 1, got 0/);
      expect(fn({ [at - 4]: 0 })).toThrow(/batch must be an integer >= 1, got 0/);
      expect(fn({ [at - 4]: '2' })).toThrow(TypeError);
      expect(fn({ [at - 4]: NaN })).toThrow(/batch must be finite/);
    }
    // 2x2 with padding 0 (no output at all) and 3x3 (a 1x1 output): smaller than the pooling window.
    const tiny = (h: number, w: number, ph: number, pw: number) =>
      train({ 0: new Float32Array(2 * h * w), 6: h, 7: w, 8: ph, 9: pw });
    expect(tiny(2, 2, 0, 0)).toThrow(RangeError);
    expect(tiny(2, 2, 0, 0)).toThrow(/3x3 convolution of a 2x2 input with padding 0x0 gives 0x0, smaller than one 2x2 pooling window/);
    expect(tiny(3, 3, 0, 0)).toThrow(/3x3 input with padding 0x0 gives 1x1, smaller than one 2x2/);
    expect(tiny(1, 9, 0, 1)).toThrow(/gives -1x9/);
    expect(tiny(1, 1, 1, 1)).toThrow(/1x1 input with padding 1x1 gives 1x1/);
    expect(evaluate({ 0: new Float32Array(2 * 3 * 6), 6: 3, 7: 6 })).toThrow(/gives 1x4, smaller than one 2x2 pooling window/);
    // A single image of 1x1 with padding 2 gives a 3x3 output: the smallest valid stem, even in training.
    const one = { 0: Float32Array.of(1), 1: new Float32Array(4), 2: new Uint8Array(4), 3: new Float32Array(4), 4: 1, 6: 1, 7: 1, 8: 2, 9: 2 };
    expect(train(one)).not.toThrow();
    // Other scalars and overflowing shapes.
    expect(train({ 14: 0 })).toThrow(/eps must be > 0/);
    expect(train({ 15: 1 })).toThrow(/relu must be a boolean, got the number 1/);
    expect(train({ 20: 1.5 })).toThrow(/momentum must be in \[0, 1\]/);
    expect(train({ 4: 2 ** 40, 5: 2 ** 40 })).toThrow(/tensor shape is too large/);
    expect(() => (native.convBatchNormMaxPoolForwardTrain as () => void)()).toThrow(TypeError);
    expect(() => (native.convBatchNormMaxPoolBackward as () => void)()).toThrow(TypeError);
  });
});

interface ModelOptions {
  c: number;
  padding: number | [number, number];
  bias: boolean;
  affine: boolean;
  relu: boolean;
  momentum?: number | null;
  trackRunningStats?: boolean;
  eps?: number;
}

/** The stem, then a second conv block and a classifier, for inputs [n, 1, h, w]. */
function cnn(seed: number, o: ModelOptions, h: number, w: number): Sequential {
  const rng = new Rng(seed);
  const [ph, pw] = typeof o.padding === 'number' ? [o.padding, o.padding] : o.padding;
  const [sh, sw] = [(h + 2 * ph - 2) >> 1, (w + 2 * pw - 2) >> 1];
  return new Sequential([
    new Conv2d(1, o.c, 3, { padding: o.padding, bias: o.bias, rng }),
    new BatchNorm2d(o.c, { relu: o.relu, affine: o.affine, momentum: o.momentum, trackRunningStats: o.trackRunningStats, eps: o.eps }),
    ...(o.relu ? [new ReLU()] : []),
    new MaxPool2d(2),
    new Conv2d(o.c, 4, 3, { padding: 1, rng }), new BatchNorm2d(4, { relu: true }), new ReLU(), new MaxPool2d(2),
    new Flatten(), new Linear(4 * (sh >> 1) * (sw >> 1), 5, { rng }),
  ]);
}

/** Runs the layer objects one by one (the ReLU after a batch norm that applies it skipped). */
const skipped = (layers: readonly Module[], i: number) =>
  layers[i] instanceof ReLU && i > 0 && layers[i - 1] instanceof BatchNorm2d && (layers[i - 1] as BatchNorm2d).relu;

function unfusedForward(model: Sequential, x: Tensor): Tensor {
  model.layers.forEach((layer, i) => { if (!skipped(model.layers, i)) x = layer.forward(x); });
  return x;
}

function unfusedBackward(model: Sequential, dy: Tensor): Tensor {
  for (let i = model.layers.length - 1; i >= 0; i--) {
    if (!skipped(model.layers, i)) dy = (model.layers[i].backward as (d: Tensor, need: boolean) => Tensor)(dy, true);
  }
  return dy;
}

const stemBn = (model: Sequential) => model.layers[1] as BatchNorm2d;

describe('Sequential fuses the Conv2d(1 -> C) + BatchNorm2d (+ ReLU) + MaxPool2d(2) stem', () => {
  it('plans one step from the convolution to the pooling', () => {
    const base = { c: 4, padding: 1, bias: true, affine: true };
    expect(cnn(1, { ...base, relu: true }, 12, 12).steps().map((s) => [s.first, s.last]))
      .toEqual([[0, 3], [4, 4], [5, 7], [8, 8], [9, 9]]);
    expect(cnn(1, { ...base, relu: false, bias: false, affine: false, padding: [0, 2] }, 12, 12).steps().map((s) => [s.first, s.last]))
      .toEqual([[0, 2], [3, 3], [4, 6], [7, 7], [8, 8]]);
    const rng = new Rng(2);
    const layersOf = (conv: Conv2d, bn = new BatchNorm2d(conv.outChannels)) => new Sequential([conv, bn, new MaxPool2d(2)]).steps().map((s) => [s.first, s.last]);
    // Not the stem: more input channels, other kernels, strides or padding, a channels-last norm, another pooling.
    expect(layersOf(new Conv2d(2, 4, 3, { rng }))).toEqual([[0, 0], [1, 2]]);
    expect(layersOf(new Conv2d(1, 4, 5, { rng }))).toEqual([[0, 0], [1, 2]]);
    expect(layersOf(new Conv2d(1, 4, 3, { stride: 2, rng }))).toEqual([[0, 0], [1, 2]]);
    expect(layersOf(new Conv2d(1, 4, 3, { padding: 3, rng }))).toEqual([[0, 0], [1, 2]]);
    expect(layersOf(new Conv2d(1, 4, 3, { padding: [1, 3], rng }))).toEqual([[0, 0], [1, 2]]);
    expect(layersOf(new Conv2d(1, 4, 3, { rng }), new BatchNorm2d(4, { channelsLast: true }))).toEqual([[0, 0], [1, 1], [2, 2]]);
    expect(new Sequential([new Conv2d(1, 4, 3, { rng }), new BatchNorm2d(4), new MaxPool2d(3, 2)]).steps().map((s) => [s.first, s.last]))
      .toEqual([[0, 0], [1, 1], [2, 2]]);
    expect(layersOf(new Conv2d(1, 4, 3, { rng }), new BatchNorm2d(5))).toEqual([[0, 0], [1, 2]]);
    // A separate ReLU after a batch norm without one is a layer of its own: no fusion.
    expect(new Sequential([new Conv2d(1, 4, 3, { rng }), new BatchNorm2d(4), new ReLU(), new MaxPool2d(2)]).steps().map((s) => [s.first, s.last]))
      .toEqual([[0, 0], [1, 1], [2, 2], [3, 3]]);
  });

  const variants: { o: ModelOptions; h: number; w: number; n: number }[] = [
    { o: { c: 8, padding: 1, bias: true, affine: true, relu: true }, h: 13, w: 11, n: 3 },
    { o: { c: 3, padding: 0, bias: false, affine: true, relu: false, eps: 0.5 }, h: 9, w: 10, n: 2 },
    { o: { c: 16, padding: 2, bias: true, affine: false, relu: true, momentum: null }, h: 8, w: 7, n: 2 },
    { o: { c: 1, padding: [2, 0], bias: false, affine: false, relu: true, momentum: 0.3 }, h: 6, w: 9, n: 4 },
    { o: { c: 4, padding: 1, bias: true, affine: true, relu: true, trackRunningStats: false }, h: 10, w: 10, n: 2 },
  ];

  it('gives the outputs, gradients and running stats of the layers run one by one, over several steps', () => {
    variants.forEach(({ o, h, w, n }, v) => {
      const fused = cnn(10 + v, o, h, w), plain = cnn(10 + v, o, h, w);
      expect(fused.steps()[0]).toMatchObject({ first: 0, last: o.relu ? 3 : 2 });
      const lr = 0.05;
      for (let step = 0; step < 4; step++) {
        const what = `variant ${v} step ${step}`;
        fused.train(true);
        plain.train(true);
        const x = new Tensor(normalArray(n * h * w, 100 * v + step), [n, 1, h, w]);
        const yf = fused.forward(x), yp = unfusedForward(plain, x);
        expect(yf.shape).toEqual(yp.shape);
        expect(relError(yf.data, yp.data), what).toBeLessThan(1e-5);
        const dy = new Tensor(normalArray(yf.data.length, 200 * v + step), yf.shape);
        for (const p of [...fused.parameters(), ...plain.parameters()]) p.grad.fill(0);
        const dxf = fused.backward(dy), dxp = unfusedBackward(plain, dy);
        expect(dxf.shape).toEqual([n, 1, h, w]);
        expect(relError(dxf.data, dxp.data), what).toBeLessThan(1e-5);
        const pf = fused.parameters(), pp = plain.parameters();
        pf.forEach((p, i) => {
          expect(p.name).toBe(pp[i].name);
          expect(relError(p.grad, pp[i].grad), `${p.name} ${what}`).toBeLessThan(2e-5);
        });
        // The same update for both, then identical weights again.
        pf.forEach((p, i) => {
          for (let k = 0; k < p.data.length; k++) p.data[k] -= lr * p.grad[k];
          pp[i].data.set(p.data);
        });
        const bnF = stemBn(fused), bnP = stemBn(plain);
        expect(bnF.numBatchesTracked, what).toBe(bnP.numBatchesTracked);
        if (bnF.trackRunningStats) {
          expect(bnF.numBatchesTracked, what).toBe(step + 1);
          expect(relError(bnF.runningMean!, bnP.runningMean!), `runningMean ${what}`).toBeLessThan(1e-5);
          expect(relError(bnF.runningVar!, bnP.runningVar!), `runningVar ${what}`).toBeLessThan(1e-5);
        }
        const sf = fused.stateDict(), sp = plain.stateDict();
        expect(Object.keys(sf)).toEqual(Object.keys(sp));
        for (const k of Object.keys(sf)) expect(relError(sf[k].data, sp[k].data), `${k} ${what}`).toBeLessThan(1e-5);
      }
      fused.train(false);
      plain.train(false);
      for (const batch of [1, 3]) {
        const x = new Tensor(normalArray(batch * h * w, 999 + v), [batch, 1, h, w]);
        const yf = fused.forward(x), yp = unfusedForward(plain, x);
        expect(relError(yf.data, yp.data), `eval variant ${v} N=${batch}`).toBeLessThan(1e-5);
        const dy = new Tensor(normalArray(yf.data.length, 77), yf.shape);
        for (const p of [...fused.parameters(), ...plain.parameters()]) p.grad.fill(0);
        expect(relError(fused.backward(dy).data, unfusedBackward(plain, dy).data), `eval dx variant ${v}`).toBeLessThan(1e-4);
        fused.parameters().forEach((p, i) => expect(relError(p.grad, plain.parameters()[i].grad), `eval ${p.name} variant ${v}`).toBeLessThan(1e-4));
      }
      // Eval mode leaves the running statistics alone.
      expect(stemBn(fused).numBatchesTracked).toBe(stemBn(fused).trackRunningStats ? 4 : 0);
    });
  });

  it('the stem step matches the float64 reference (through the layer objects)', () => {
    const model = cnn(5, { c: 6, padding: 1, bias: true, affine: true, relu: true }, 12, 9);
    const [conv, bn] = [model.layers[0] as Conv2d, model.layers[1] as BatchNorm2d];
    const stem = model.steps()[0];
    const g: Geometry = { n: 3, c: 6, h: 12, w: 9, ph: 1, pw: 1 };
    const x = new Tensor(normalArray(g.n * g.h * g.w, 7), [3, 1, 12, 9]);
    const y = stem.forward(x);
    expect(y.shape).toEqual([3, 6, 6, 4]);
    const dy = new Tensor(normalArray(y.data.length, 8), y.shape);
    for (const p of model.parameters()) p.grad.fill(0.5);
    const dx = stem.backward(dy, true);
    const p: StemParams = { weight: conv.weight.data, convBias: conv.bias!.data, gamma: bn.weight!.data, beta: bn.bias!.data, relu: true, eps: bn.eps };
    const want = reference(x.data, g, p, null, dy.data);
    expect(relError(y.data, want.pooled)).toBeLessThan(2e-5);
    expect(relError(dx.data, want.dInput)).toBeLessThan(2e-4);
    // Every gradient is accumulated onto what was there.
    expect(sumError(conv.weight.grad, want.dWeight.map((v) => v + 0.5), want.dWeightTerms)).toBeLessThan(2e-5);
    expect(sumError(conv.bias!.grad, want.dBias.map((v) => v + 0.5), want.dBiasTerms)).toBeLessThan(2e-5);
    expect(relError(bn.weight!.grad, want.dgamma.map((v) => v + 0.5))).toBeLessThan(2e-4);
    expect(relError(bn.bias!.grad, want.dbeta.map((v) => v + 0.5))).toBeLessThan(2e-4);
    const m = want.m;
    expect(relError(bn.runningVar!, Float64Array.from(want.variance, (v) => 0.9 + 0.1 * v * m / (m - 1)))).toBeLessThan(1e-5);
  });

  it('backward without the input gradient accumulates the same parameter gradients', () => {
    for (const v of [0, 2, 3]) {
      const { o, h, w, n } = variants[v];
      const a = cnn(20 + v, o, h, w), b = cnn(20 + v, o, h, w);
      const x = new Tensor(normalArray(n * h * w, 30 + v), [n, 1, h, w]);
      const ya = a.forward(x);
      b.forward(x);
      const dy = new Tensor(normalArray(ya.data.length, 40 + v), ya.shape);
      expect(a.backward(dy, false).data.length).toBe(0);
      expect(b.backward(dy, true).shape).toEqual([n, 1, h, w]);
      // Layers after the stem see the same gradients; the stem's conv gets them within rounding.
      a.parameters().forEach((p, i) => {
        if (p.name.startsWith('0.')) expect(relError(p.grad, b.parameters()[i].grad), `${p.name} variant ${v}`).toBeLessThan(1e-5);
        else expectSame(p.grad, b.parameters()[i].grad, `${p.name} variant ${v}`);
      });
    }
  });

  it('gives the same bits for 1 and 2 threads', () => {
    const { o, h, w } = variants[0];
    const runs = [1, 2].map((t) => {
      native.setNumThreads(t);
      const model = cnn(50, o, h, w);
      const x = new Tensor(normalArray(16 * h * w, 51), [16, 1, h, w]);
      const y = model.forward(x);
      const dx = model.backward(new Tensor(normalArray(y.data.length, 52), y.shape));
      return { y: y.data.slice(), dx: dx.data.slice(), grads: model.parameters().map((p) => p.grad.slice()), rv: stemBn(model).runningVar!.slice() };
    });
    native.setNumThreads(initialThreads);
    expectSame(runs[1].y, runs[0].y, 'y');
    expectSame(runs[1].dx, runs[0].dx, 'dx');
    expectSame(runs[1].rv, runs[0].rv, 'runningVar');
    runs[0].grads.forEach((g, i) => expectSame(runs[1].grads[i], g, `grad ${i}`));
  });

  it('reports inputs the kernel does not take as the layers do, and recovers', () => {
    const model = cnn(60, { c: 4, padding: 0, bias: true, affine: true, relu: true }, 8, 8);
    expect(() => model.forward(new Tensor(new Float32Array(2 * 3 * 8 * 8), [2, 3, 8, 8]))).toThrow(/Conv2d/);
    expect(() => model.forward(new Tensor(new Float32Array(64), [1, 8, 8]))).toThrow(/Conv2d/);
    // 3x3 input, padding 0: a 1x1 convolution output, too small for the pooling window.
    const stemOnly = (padding: number) => new Sequential([new Conv2d(1, 4, 3, { padding, rng: new Rng(1) }), new BatchNorm2d(4, { relu: true }), new ReLU(), new MaxPool2d(2)]);
    expect(() => stemOnly(0).forward(new Tensor(normalArray(2 * 9, 1), [2, 1, 3, 3]))).toThrow(/smaller than the 2x2 window/);
    expect(() => stemOnly(0).forward(new Tensor(normalArray(2 * 4, 1), [2, 1, 2, 2]))).toThrow(/smaller than the 3x3 kernel/);
    // One 1x1 image with padding 1: one value per channel, which training cannot normalize.
    expect(() => stemOnly(1).forward(new Tensor(Float32Array.of(1), [1, 1, 1, 1]))).toThrow(/more than 1 value per channel/);
    // ...but with padding 2 it is a 3x3 output, fused, and fine.
    const tiny = stemOnly(2);
    expect(tiny.forward(new Tensor(Float32Array.of(1), [1, 1, 1, 1])).shape).toEqual([1, 4, 1, 1]);
    expect(tiny.backward(new Tensor(Float32Array.of(1, 1, 1, 1), [1, 4, 1, 1])).shape).toEqual([1, 1, 1, 1]);
    const fresh = stemOnly(1);
    expect(() => fresh.backward(new Tensor(new Float32Array(4), [1, 4, 1, 1]))).toThrow(/before forward/);
    fresh.forward(new Tensor(normalArray(2 * 36, 2), [2, 1, 6, 6]));
    expect(() => fresh.backward(new Tensor(new Float32Array(4), [1, 4, 1, 1]))).toThrow(/does not match/);
    // After a rejected input, a good one runs fused again and matches the layers one by one.
    const plain = cnn(60, { c: 4, padding: 0, bias: true, affine: true, relu: true }, 8, 8);
    const x = new Tensor(normalArray(2 * 64, 3), [2, 1, 8, 8]);
    const y = model.forward(x);
    expect(relError(y.data, unfusedForward(plain, x).data)).toBeLessThan(1e-5);
    const dy = new Tensor(normalArray(y.data.length, 4), y.shape);
    expect(relError(model.backward(dy).data, unfusedBackward(plain, dy).data)).toBeLessThan(1e-4);
    model.parameters().forEach((p, i) => expect(relError(p.grad, plain.parameters()[i].grad), p.name).toBeLessThan(1e-4));
  });
});

describe("buildModel('cnn-bn')", () => {
  it('fuses layers 0..3 (conv, batch norm, ReLU, pooling) into one step', () => {
    const model = buildModel('cnn-bn', { seed: 1 });
    expect(model.steps()[0]).toMatchObject({ first: 0, last: 3 });
    expect(model.steps().map((s) => [s.first, s.last]).slice(0, 3)).toEqual([[0, 3], [4, 4], [5, 7]]);
    // Without batch norm there is nothing to fuse the convolution with.
    expect(buildModel('cnn', { seed: 1 }).steps()[0]).toMatchObject({ first: 0, last: 0 });
  });

  it('does so in the compiled package (dist/) too, with the outputs of the layers run one by one', () => {
    const root = path.join(__dirname, '..');
    const script = `
      const { buildModel, Tensor } = require('./dist/index.js');
      const model = buildModel('cnn-bn', { seed: 3 });
      const x = new Tensor(Float32Array.from({ length: 2 * 784 }, (_, i) => ((i * 37) % 101) / 101), [2, 1, 28, 28]);
      const fused = model.steps()[0].forward(x);
      let y = x;
      for (const i of [0, 1, 3]) y = model.layers[i].forward(y);
      let worst = 0;
      for (let i = 0; i < y.data.length; i++) worst = Math.max(worst, Math.abs(y.data[i] - fused.data[i]) / (1 + Math.abs(y.data[i])));
      console.log(JSON.stringify({ steps: model.steps().map((s) => [s.first, s.last]), shape: fused.shape, worst }));
    `;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.steps.slice(0, 3)).toEqual([[0, 3], [4, 4], [5, 7]]);
    expect(out.shape).toEqual([2, 32, 14, 14]);
    expect(out.worst).toBeLessThan(1e-5);
  });
});
