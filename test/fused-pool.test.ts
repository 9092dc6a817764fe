// 2x2 max pooling with window codes, and BatchNorm2d (+ ReLU) + MaxPool2d(2)
// fused into one kernel: every ISA against the float64 references (BN, then
// pooling), against the unfused native layers (forward bit for bit), finite
// differences, thread-count determinism, Sequential's automatic fusion, and
// argument validation.
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../lib/native';
import { Tensor } from '../lib/tensor';
import { Rng } from '../lib/init';
import { Conv2d, Linear, ReLU, MaxPool2d, Flatten } from '../lib/layers';
import { BatchNorm2d } from '../lib/batchnorm';
import { Sequential } from '../lib/sequential';
import { invstdFromVariance } from '../lib/functional';
import * as NN from './reference/nn';
import * as BN from './reference/batchnorm';
import { centralDifference, expectSame, forEachIsa, makeRng, normalArray, relError } from './reference/util';

const initialThreads = native.getNumThreads();
afterAll(() => native.setNumThreads(initialThreads));

type Shape = [number, number, number, number];
const SHAPES: Shape[] = [
  [2, 1, 4, 4], [2, 3, 5, 7], [2, 17, 6, 9], [2, 32, 28, 28], [64, 3, 7, 6], [64, 32, 14, 14], [2, 1, 2, 2],
  [3, 2, 3, 2], [2, 1, 2, 2100], [1, 17, 9, 8], [1, 32, 28, 28],
];


/** Small integers: many exact ties inside windows. */
function tiedArray(n: number, seed: number): Float32Array {
  const rng = makeRng(seed), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rng.uniform() * 4) - 1;
  return out;
}


const outLength = ([n, c, h, w]: Shape) => n * c * (h >> 1) * (w >> 1);
const codeOf = (from: number, h: number, w: number) => 2 * ((Math.floor(from / w) % h) % 2) + (from % w) % 2;

describe('maxPool2x2 (window codes)', () => {
  it('matches the reference and the int32 kernel on every ISA, ties and odd sizes included', () => {
    forEachIsa((isa) => {
      for (const shape of SHAPES) {
        const [n, c, h, w] = shape;
        for (const x of [normalArray(n * c * h * w, 1), tiedArray(n * c * h * w, 2)]) {
          const ref = NN.maxPool2dForward(x, n, c, h, w, 2, 2);
          const y = new Float32Array(outLength(shape)), window = new Uint8Array(y.length);
          native.maxPool2x2Forward(x, n, c, h, w, y, window);
          expectSame(y, ref.y, `${isa} ${shape}`);
          expectSame(window, Array.from(ref.from, (f) => codeOf(f, h, w)), `${isa} ${shape}`);
          const dy = normalArray(y.length, 3), dx = new Float32Array(x.length).fill(NaN);
          native.maxPool2x2Backward(dy, window, n, c, h, w, dx);
          expectSame(dx, NN.maxPool2dBackward(dy, ref.from, x.length), `${isa} ${shape}`);
        }
      }
    });
  });

  it('lets a NaN win exactly as the int32 kernel does, and codes >= 4 pass no gradient', () => {
    forEachIsa((isa) => {
      const [n, c, h, w] = [2, 3, 6, 10];
      const x = normalArray(n * c * h * w, 4);
      for (let i = 0; i < x.length; i += 7) x[i] = NaN;
      x[5] = Infinity;
      x[50] = -Infinity;
      const y = new Float32Array(n * c * 3 * 5), window = new Uint8Array(y.length);
      const y32 = new Float32Array(y.length), arg = new Int32Array(y.length);
      native.maxPool2x2Forward(x, n, c, h, w, y, window);
      native.maxPool2dForward(x, n, c, h, w, 2, 2, y32, arg);
      expectSame(y, y32, isa);
      expectSame(window, Array.from(arg, (f) => codeOf(f, h, w)), isa);
      window.fill(4);
      window[0] = 255;
      const dx = new Float32Array(x.length).fill(NaN);
      native.maxPool2x2Backward(new Float32Array(y.length).fill(1), window, n, c, h, w, dx);
      expect(dx.every((v) => v === 0)).toBe(true);
    });
  });

  it('the MaxPool2d layer uses it and still matches the reference', () => {
    const x = new Tensor(tiedArray(2 * 3 * 9 * 8, 5), [2, 3, 9, 8]);
    const pool = new MaxPool2d(2);
    const ref = NN.maxPool2dForward(x.data, 2, 3, 9, 8, 2, 2);
    expectSame(pool.forward(x).data, ref.y);
    const dy = new Tensor(normalArray(ref.y.length, 6), [2, 3, 4, 4]);
    expectSame(pool.backward(dy).data, NN.maxPool2dBackward(dy.data, ref.from, x.data.length));
  });
});

interface FusedRun {
  pooled: Float32Array;
  window: Uint8Array;
  picked: Float32Array;
  mean: Float32Array;
  invstd: Float32Array;
  runningMean: Float32Array;
  runningVar: Float32Array;
  dx: Float32Array;
  dgamma: Float32Array;
  dbeta: Float32Array;
}

interface Params {
  gamma: Float32Array | null;
  beta: Float32Array | null;
  relu: boolean;
  train: boolean;
  runningMean: Float32Array;
  runningVar: Float32Array;
}

function params(c: number, seed: number, relu: boolean, train: boolean, affine = true): Params {
  return {
    gamma: affine ? normalArray(c, seed, 0.5, 1) : null,
    beta: affine ? normalArray(c, seed + 1, 0.5) : null,
    relu, train,
    runningMean: normalArray(c, seed + 2, 0.3),
    runningVar: Float32Array.from(normalArray(c, seed + 3), (v) => 0.5 + v * v),
  };
}

function runFused(x: Float32Array, shape: Shape, p: Params, dy: Float32Array, momentum = 0.1): FusedRun {
  const [n, c, h, w] = shape;
  const pooled = new Float32Array(outLength(shape)).fill(NaN), window = new Uint8Array(pooled.length);
  const picked = new Float32Array(pooled.length).fill(NaN);
  const mean = new Float32Array(c), invstd = new Float32Array(c);
  const runningMean = p.runningMean.slice(), runningVar = p.runningVar.slice();
  if (p.train) {
    native.batchNormMaxPoolForwardTrain(x, pooled, window, picked, n, c, h, w, p.gamma, p.beta, 1e-5, p.relu, mean,
      invstd, runningMean, runningVar, momentum);
  } else {
    native.batchNormMaxPoolForwardEval(x, pooled, window, picked, n, c, h, w, runningMean, runningVar, p.gamma, p.beta,
      1e-5, p.relu);
    mean.set(runningMean);
    invstdFromVariance(runningVar, 1e-5, invstd);
  }
  const dx = new Float32Array(x.length).fill(NaN), dgamma = new Float32Array(c), dbeta = new Float32Array(c);
  native.batchNormMaxPoolBackward(x, dy, dx, window, picked, n, c, h, w, mean, invstd, p.gamma, p.beta, p.relu, p.train,
    dgamma, dbeta);
  return { pooled, window, picked, mean, invstd, runningMean, runningVar, dx, dgamma, dbeta };
}

/** The same computation with the two unfused native kernels (batch norm, then 2x2 pooling). */
function runUnfused(x: Float32Array, shape: Shape, p: Params, dy: Float32Array) {
  const [n, c, h, w] = shape;
  const y = new Float32Array(x.length), mean = new Float32Array(c), invstd = new Float32Array(c);
  const runningMean = p.runningMean.slice(), runningVar = p.runningVar.slice();
  if (p.train) {
    native.batchNormForwardTrain(x, y, n, c, h * w, false, p.gamma, p.beta, 1e-5, p.relu, mean, invstd, runningMean, runningVar, 0.1);
  } else {
    native.batchNormForwardEval(x, y, n, c, h * w, false, runningMean, runningVar, p.gamma, p.beta, 1e-5, p.relu);
    mean.set(runningMean);
    invstdFromVariance(runningVar, 1e-5, invstd);
  }
  const pooled = new Float32Array(outLength(shape)), arg = new Int32Array(pooled.length);
  native.maxPool2dForward(y, n, c, h, w, 2, 2, pooled, arg);
  const dyFull = new Float32Array(x.length), dx = new Float32Array(x.length);
  native.maxPool2dBackward(dy, arg, dyFull);
  const dgamma = new Float32Array(c), dbeta = new Float32Array(c);
  native.batchNormBackward(x, dyFull, dx, n, c, h * w, false, mean, invstd, p.gamma, p.beta, p.relu, p.train, dgamma, dbeta);
  return { pooled, runningMean, runningVar, dx, dgamma, dbeta };
}

/** Float64: BN (+ReLU) by the BN reference, pooling and its backward by the pooling reference. */
function runReference(x: Float32Array, shape: Shape, p: Params, dy: Float32Array) {
  const [n, c, h, w] = shape;
  const layout = { batch: n, channels: c, spatial: h * w, channelsLast: false };
  const f = BN.refForward(x, layout, {
    gamma: p.gamma, beta: p.beta, relu: p.relu, useStats: p.train ? undefined : { mean: p.runningMean, variance: p.runningVar },
  });
  const pool = NN.maxPool2dForward(f.y, n, c, h, w, 2, 2);
  const dyFull = NN.maxPool2dBackward(dy, pool.from, x.length);
  const b = BN.refBackward(x, dyFull, layout, { mean: f.mean, invstd: f.invstd }, {
    gamma: p.gamma, yForMask: p.relu ? f.y : null, batchStatistics: p.train,
  });
  const m = n * h * w;
  const runningMean = Float64Array.from(p.runningMean, (r, i) => 0.9 * r + 0.1 * f.mean[i]);
  const runningVar = Float64Array.from(p.runningVar, (r, i) => 0.9 * r + 0.1 * f.variance[i] * (m / (m - 1)));
  return { pooled: pool.y, dx: b.dx, dgamma: b.dgamma, dbeta: b.dbeta, runningMean, runningVar, mean: f.mean };
}

describe('fused BatchNorm2d + MaxPool2d(2) kernels', () => {
  it('match the float64 reference on every ISA (train and eval, relu or not, odd sizes)', () => {
    forEachIsa((isa) => {
      SHAPES.forEach((shape, k) => {
        const [n, c, h, w] = shape;
        for (const train of [true, false]) {
          for (const relu of [true, false]) {
            const x = normalArray(n * c * h * w, 10 + k, 2, 0.5);
            const p = params(c, 20 + k, relu, train, k % 3 !== 2);
            const dy = normalArray(outLength(shape), 30 + k);
            const got = runFused(x, shape, p, dy);
            const want = runReference(x, shape, p, dy);
            const what = `${isa} ${shape} train=${train} relu=${relu}`;
            expect(relError(got.pooled, want.pooled), what).toBeLessThan(2e-5);
            expect(relError(got.dx, want.dx), what).toBeLessThan(2e-4);
            if (p.gamma) {
              expect(relError(got.dgamma, want.dgamma), what).toBeLessThan(2e-4);
              expect(relError(got.dbeta, want.dbeta), what).toBeLessThan(2e-4);
            }
            if (train) {
              expect(relError(got.mean, want.mean), what).toBeLessThan(1e-5);
              expect(relError(got.runningMean, want.runningMean), what).toBeLessThan(1e-5);
              expect(relError(got.runningVar, want.runningVar), what).toBeLessThan(1e-5);
            } else {
              expectSame(got.runningMean, p.runningMean);
            }
          }
        }
      });
    });
  });

  it('forward equals the unfused kernels bit for bit, ties included; gradients agree', () => {
    forEachIsa((isa) => {
      SHAPES.forEach((shape, k) => {
        const [n, c, h, w] = shape;
        for (const train of [true, false]) {
          for (const x of [tiedArray(n * c * h * w, 40 + k), normalArray(n * c * h * w, 50 + k)]) {
            const p = params(c, 60 + k, true, train);
            const dy = normalArray(outLength(shape), 70 + k);
            const got = runFused(x, shape, p, dy);
            const want = runUnfused(x, shape, p, dy);
            const what = `${isa} ${shape} train=${train}`;
            expectSame(got.pooled, want.pooled, what);
            expectSame(got.runningMean, want.runningMean, what);
            expectSame(got.runningVar, want.runningVar, what);
            // Sums over up to 12,544 values in float, taken in another order.
            expect(relError(got.dx, want.dx), what).toBeLessThan(1e-5);
            expect(relError(got.dgamma, want.dgamma), what).toBeLessThan(1e-4);
            expect(relError(got.dbeta, want.dbeta), what).toBeLessThan(1e-4);
          }
        }
      });
    });
  });

  it('window codes mark outputs the ReLU clipped (no gradient), and dx may be skipped', () => {
    const shape: Shape = [2, 3, 6, 6];
    const x = normalArray(216, 80), p = params(3, 81, true, true), dy = normalArray(outLength(shape), 82);
    const got = runFused(x, shape, p, dy);
    got.window.forEach((code, i) => expect(code >= 4).toBe(!(got.pooled[i] > 0)));
    // picked is x at the window's maximum.
    const ref = NN.maxPool2dForward(x.map((v, i) => (v - got.mean[Math.floor(i / 36) % 3]) * Math.sign(p.gamma![Math.floor(i / 36) % 3])), 2, 3, 6, 6, 2, 2);
    got.window.forEach((code, i) => { if (code < 4) expect(got.picked[i]).toBe(x[ref.from[i]]); });
    const dgamma = new Float32Array(3), dbeta = new Float32Array(3);
    native.batchNormMaxPoolBackward(x, dy, null, got.window, got.picked, 2, 3, 6, 6, got.mean, got.invstd, p.gamma, p.beta, true, true, dgamma, dbeta);
    expectSame(dgamma, got.dgamma);
    expectSame(dbeta, got.dbeta);
  });

  it('a NaN gradient on a window the ReLU clipped goes nowhere (every ISA, small and large planes)', () => {
    forEachIsa((isa) => {
      for (const shape of [[4, 3, 14, 14], [2, 2, 40, 60]] as Shape[]) {
        const [n, c, h, w] = shape;
        const x = normalArray(n * c * h * w, 90), p = params(c, 91, true, true), dy = normalArray(outLength(shape), 92);
        const clean = runFused(x, shape, p, dy);
        const clipped = Array.from(clean.window, (code, i) => (code >= 4 ? i : -1)).filter((i) => i >= 0);
        expect(clipped.length, isa).toBeGreaterThan(0);
        const dyNaN = dy.slice();
        for (const i of clipped) dyNaN[i] = NaN;
        const got = runFused(x, shape, p, dyNaN);
        expectSame(got.dx, clean.dx, isa);
        expectSame(got.dgamma, clean.dgamma, isa);
        expectSame(got.dbeta, clean.dbeta, isa);
      }
    });
  });

  it('gradients agree with finite differences (train and eval)', () => {
    const shape: Shape = [2, 2, 5, 6];
    const [n, c, h, w] = shape;
    // Distinct values spaced apart: a small step never changes a window's winner or a ReLU sign.
    const order = normalArray(n * c * h * w, 90);
    const x = new Float32Array(order.length);
    Array.from(x.keys()).sort((a, b) => order[a] - order[b]).forEach((at, rank) => { x[at] = (rank - 30) / 8; });
    for (const train of [true, false]) {
      const p = params(c, 91, true, train);
      const dy = normalArray(outLength(shape), 92);
      const got = runFused(x, shape, p, dy);
      const loss = (xs: Float32Array, gamma: Float32Array | null, beta: Float32Array | null): number => {
        const pooled = new Float32Array(dy.length), window = new Uint8Array(dy.length), picked = new Float32Array(dy.length);
        const rm = p.runningMean.slice(), rv = p.runningVar.slice();
        if (train) {
          native.batchNormMaxPoolForwardTrain(xs, pooled, window, picked, n, c, h, w, gamma, beta, 1e-5, true,
            new Float32Array(c), new Float32Array(c), null, null, 0);
        } else {
          native.batchNormMaxPoolForwardEval(xs, pooled, window, picked, n, c, h, w, rm, rv, gamma, beta, 1e-5, true);
        }
        let s = 0;
        for (let i = 0; i < dy.length; i++) s += dy[i] * pooled[i];
        return s;
      };
      const step = 1e-3;
      const probe = (values: Float32Array, i: number, f: () => number): number => centralDifference(values, i, step, f);
      for (let i = 0; i < x.length; i += 7) {
        const fd = probe(x, i, () => loss(x, p.gamma, p.beta));
        expect(Math.abs(fd - got.dx[i]), `dx[${i}] train=${train}`).toBeLessThan(2e-2 * (1 + Math.abs(fd)));
      }
      for (let j = 0; j < c; j++) {
        const fg = probe(p.gamma!, j, () => loss(x, p.gamma, p.beta));
        const fb = probe(p.beta!, j, () => loss(x, p.gamma, p.beta));
        expect(Math.abs(fg - got.dgamma[j])).toBeLessThan(2e-2 * (1 + Math.abs(fg)));
        expect(Math.abs(fb - got.dbeta[j])).toBeLessThan(2e-2 * (1 + Math.abs(fb)));
      }
    }
  });

  it('gives the same bits for 1, 2 and 3 threads', () => {
    // Small planes (14x14, 9x11) are pooled in memory order after channel-wise statistics,
    // 28x28 ones take the flat-planes plan, and large channels (130x128) go channel by channel.
    const shapes: Shape[] = [[64, 32, 14, 14], [5, 3, 9, 11], [8, 16, 28, 28], [16, 2, 130, 128]];
    forEachIsa((isa) => {
      for (const shape of shapes) {
        const [n, c, h, w] = shape;
        const x = normalArray(n * c * h * w, 100), p = params(c, 101, true, true), dy = normalArray(outLength(shape), 102);
        const runs = [1, 2, 3].map((t) => {
          native.setNumThreads(t);
          return runFused(x, shape, p, dy);
        });
        native.setNumThreads(initialThreads);
        for (const r of runs.slice(1)) {
          expectSame(r.pooled, runs[0].pooled, isa);
          expectSame(r.dx, runs[0].dx, isa);
          expectSame(r.dgamma, runs[0].dgamma, isa);
        }
      }
    });
  });

  it('rejects bad arguments with errors naming them', () => {
    const x = new Float32Array(2 * 3 * 4 * 4), pooled = new Float32Array(24), window = new Uint8Array(24);
    const picked = new Float32Array(24);
    const c3 = () => new Float32Array(3);
    const train = (overrides: Record<number, unknown>) => () => {
      const args: unknown[] = [x, pooled, window, picked, 2, 3, 4, 4, null, null, 1e-5, true, c3(), c3(), null, null, 0.1];
      for (const [k, v] of Object.entries(overrides)) args[Number(k)] = v;
      (native.batchNormMaxPoolForwardTrain as (...a: unknown[]) => void)(...args);
    };
    expect(train({})).not.toThrow();
    expect(train({ 0: new Float32Array(5) })).toThrow(RangeError);
    expect(train({ 0: new Float32Array(5) })).toThrow(/x \[2, 3, 4, 4\]/);
    expect(train({ 1: new Float32Array(23) })).toThrow(/pooled/);
    expect(train({ 2: new Int32Array(24) })).toThrow(TypeError);
    expect(train({ 2: new Int32Array(24) })).toThrow(/window \[2, 3, 2, 2\] must be a Uint8Array/);
    expect(train({ 3: null })).toThrow(/picked .* must be a Float32Array/);
    expect(train({ 6: 1, 0: new Float32Array(24), 1: new Float32Array(6), 2: new Uint8Array(6) })).toThrow(/H and W >= 2/);
    expect(train({ 4: 0 })).toThrow(/batch must be an integer >= 1/);
    expect(train({ 10: 0 })).toThrow(/eps must be > 0/);
    expect(train({ 16: 2 })).toThrow(/momentum/);
    expect(train({ 8: new Float32Array(2) })).toThrow(/gamma/);
    expect(train({ 11: 1 })).toThrow(/relu must be a boolean/);
    expect(() => native.batchNormMaxPoolForwardEval(x, pooled, window, picked, 2, 3, 4, 4, c3(), Float32Array.of(1, -1, 1), null, null, 1e-5, true))
      .toThrow(/runningVar\[1\] must be >= 0/);
    expect(() => native.batchNormMaxPoolBackward(x, new Float32Array(5), null, window, picked, 2, 3, 4, 4, c3(), c3(), null, null, true, true, null, null))
      .toThrow(/dy \[2, 3, 2, 2\]/);
    expect(() => native.batchNormMaxPoolBackward(x, pooled, null, window, new Float32Array(2), 2, 3, 4, 4, c3(), c3(), null, null, true, true, null, null))
      .toThrow(/picked/);
    expect(() => native.maxPool2x2Forward(x, 2, 3, 4, 4, pooled, new Uint8Array(3))).toThrow(/window .* has 3 elements/);
    expect(() => native.maxPool2x2Backward(pooled, window, 2, 3, 4, 4, new Float32Array(3))).toThrow(/dx/);
    expect(() => native.maxPool2x2Forward(x, 2, 3, 4, 4.5, pooled, window)).toThrow(/W must be an integer/);
  });
});

function cnn(rng: Rng, relu: boolean): Sequential {
  return new Sequential([
    new Conv2d(2, 4, 3, { padding: 1, rng }), new BatchNorm2d(4, { relu }), ...(relu ? [new ReLU()] : []), new MaxPool2d(2),
    new Conv2d(4, 6, 3, { padding: 1, rng }), new BatchNorm2d(6, { relu: true }), new ReLU(), new MaxPool2d(2),
    new Flatten(), new Linear(6 * 3 * 2, 5, { rng }),
  ]);
}

/** Runs the layers one by one (a fused ReLU skipped, as before pooling fusion existed). */
function unfusedForward(model: Sequential, x: Tensor): Tensor {
  model.layers.forEach((layer, i) => {
    const skip = layer instanceof ReLU && i > 0 && (model.layers[i - 1] as BatchNorm2d).relu === true;
    if (!skip) x = layer.forward(x);
  });
  return x;
}

function unfusedBackward(model: Sequential, dy: Tensor): Tensor {
  for (let i = model.layers.length - 1; i >= 0; i--) {
    const layer = model.layers[i];
    const skip = layer instanceof ReLU && i > 0 && (model.layers[i - 1] as BatchNorm2d).relu === true;
    if (!skip) dy = (layer.backward as (d: Tensor, need: boolean) => Tensor)(dy, true);
  }
  return dy;
}

describe('Sequential fuses BatchNorm2d (+ ReLU) + MaxPool2d(2)', () => {
  it('plans the fused steps', () => {
    const model = cnn(new Rng(1), true);
    expect(model.steps().map((s) => [s.first, s.last])).toEqual([[0, 0], [1, 3], [4, 4], [5, 7], [8, 8], [9, 9]]);
    expect(String(model)).toMatch(/MaxPool2d\(2\)\s+\[fused with the BatchNorm above\]/);
    const noRelu = cnn(new Rng(1), false);
    expect(noRelu.steps().map((s) => [s.first, s.last])).toEqual([[0, 0], [1, 2], [3, 3], [4, 6], [7, 7], [8, 8]]);
    const notFused = new Sequential([new BatchNorm2d(2, { channelsLast: true }), new MaxPool2d(2), new BatchNorm2d(2), new MaxPool2d(3, 2)]);
    expect(notFused.steps().map((s) => [s.first, s.last])).toEqual([[0, 0], [1, 1], [2, 2], [3, 3]]);
  });

  it('gives the outputs, gradients and running stats of the layers run one by one', () => {
    for (const relu of [true, false]) {
      const fused = cnn(new Rng(7), relu), plain = cnn(new Rng(7), relu);
      for (const [step, n] of [[0, 3], [1, 3], [2, 1]] as const) {
        const train = step < 2;
        fused.train(train);
        plain.train(train);
        const x = new Tensor(normalArray(n * 2 * 13 * 9, 200 + step), [n, 2, 13, 9]);
        const yf = fused.forward(x);
        const yp = unfusedForward(plain, x);
        expectSame(yf.data, yp.data, `step ${step}`);
        const dy = new Tensor(normalArray(yf.data.length, 300 + step), yf.shape);
        for (const p of [...fused.parameters(), ...plain.parameters()]) p.grad.fill(0);
        const dxf = fused.backward(dy);
        const dxp = unfusedBackward(plain, dy);
        expect(relError(dxf.data, dxp.data), `step ${step}`).toBeLessThan(1e-5);
        const pf = fused.parameters(), pp = plain.parameters();
        pf.forEach((p, i) => expect(relError(p.grad, pp[i].grad), `${p.name} step ${step}`).toBeLessThan(1e-5));
        const sf = fused.stateDict(), sp = plain.stateDict();
        expect(Object.keys(sf)).toEqual(Object.keys(sp));
        for (const k of Object.keys(sf)) expectSame(sf[k].data, sp[k].data, k);
      }
    }
  });

  it('backward without the input gradient still accumulates every parameter gradient', () => {
    const a = cnn(new Rng(3), true), b = cnn(new Rng(3), true);
    const x = new Tensor(normalArray(2 * 2 * 12 * 8, 400), [2, 2, 12, 8]);
    const dy = new Tensor(normalArray(2 * 5, 401), [2, 5]);
    a.forward(x);
    b.forward(x);
    expect(a.backward(dy, false).data.length).toBe(0);
    b.backward(dy, true);
    a.parameters().forEach((p, i) => expectSame(p.grad, b.parameters()[i].grad, p.name));
  });

  it('reports bad inputs as the layers do', () => {
    const model = cnn(new Rng(1), true);
    expect(() => model.forward(new Tensor(new Float32Array(2 * 3 * 8 * 8), [2, 3, 8, 8]))).toThrow(/Conv2d/);
    const pooled = new Sequential([new BatchNorm2d(3, { relu: true }), new ReLU(), new MaxPool2d(2)]);
    expect(() => pooled.forward(new Tensor(new Float32Array(2 * 4 * 4 * 4), [2, 4, 4, 4]))).toThrow(/BatchNorm2d\(3\) got 4 channels/);
    expect(() => pooled.forward(new Tensor(new Float32Array(2 * 3 * 1 * 4), [2, 3, 1, 4]))).toThrow(/smaller than the 2x2 window/);
    expect(() => pooled.forward(new Tensor(new Float32Array(1 * 3 * 1 * 1), [1, 3, 1, 1]))).toThrow(/more than 1 value per channel/);
    const fresh = new Sequential([new BatchNorm2d(3, { relu: true }), new MaxPool2d(2)]);
    expect(() => fresh.backward(new Tensor(new Float32Array(3), [1, 3, 1, 1]))).toThrow(/before forward/);
    fresh.forward(new Tensor(normalArray(2 * 3 * 4 * 4, 500), [2, 3, 4, 4]));
    expect(() => fresh.backward(new Tensor(new Float32Array(3), [1, 3, 1, 1]))).toThrow(/does not match/);
  });
});
