import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BatchNorm1d,
  BatchNorm2d,
  MaxPool2d,
  Sequential,
  Tensor,
  availableIsas,
  batchNormBackward,
  batchNormForward,
  getNumThreads,
  isa,
  setIsa,
  setNumThreads,
} from '../lib/index';
import { maxError, randomArray, refBackward, refForward, type RefLayout } from './reference/batchnorm';
import { centralDifference, makeRng } from './reference/util';

const initialIsa = isa();
const initialThreads = getNumThreads();
afterAll(() => {
  setIsa(initialIsa);
  setNumThreads(initialThreads);
});

/** Builds the input shape for a layer from (N, C, spatial) and the layout. */
function shapeFor(batch: number, channels: number, spatial: number[], channelsLast: boolean): number[] {
  return channelsLast ? [batch, ...spatial, channels] : [batch, channels, ...spatial];
}

function layerFor(channels: number, spatial: number[], options: ConstructorParameters<typeof BatchNorm2d>[1]) {
  return spatial.length === 2 ? new BatchNorm2d(channels, options) : new BatchNorm1d(channels, options);
}

// The matrix the issue names: C, spatial sizes (1 means an (N, C) input), N.
const CHANNELS = [1, 3, 16, 17, 64];
const SPATIAL: number[][] = [[], [7], [15], [16], [17], [28, 28]];
const BATCHES = [2, 3, 64];

describe.each(availableIsas())('ISA %s against the float64 reference', (isaName) => {
  for (const channelsLast of [false, true]) {
    for (const spatial of SPATIAL) {
      for (const channels of CHANNELS) {
        const label = `${channelsLast ? 'NHWC' : 'NCHW'} C=${channels} spatial=${spatial.join('x') || '1'}`;
        it(`forward train/eval + backward, ${label}`, () => {
          setIsa(isaName);
          expect(isa()).toBe(isaName);
          const rng = makeRng(channels * 1000 + spatial.length * 31 + (channelsLast ? 7 : 0));
          const spatialSize = spatial.reduce((a, b) => a * b, 1);
          for (const batch of BATCHES) {
            if (batch * channels * spatialSize > 1_700_000) continue; // keep the suite quick
            for (const relu of [false, true]) {
              const shape = shapeFor(batch, channels, spatial, channelsLast);
              const layout: RefLayout = { batch, channels, spatial: spatialSize, channelsLast };
              const bn = layerFor(channels, spatial, { channelsLast, relu, momentum: 0.3 });
              for (let c = 0; c < channels; c++) {
                bn.weight!.data[c] = 0.5 + rng.uniform();
                bn.bias!.data[c] = rng.normal() * 0.5;
              }
              const x = new Tensor(randomArray(batch * channels * spatialSize, rng, 2, 0.5), shape);
              const ref = refForward(x.data, layout, { gamma: bn.weight!.data, beta: bn.bias!.data, relu });
              const y = bn.forward(x);
              expect(maxError(y.data, ref.y).abs).toBeLessThan(2e-5 * 8);
              // Running statistics: PyTorch rule with the unbiased variance.
              const m = batch * spatialSize;
              for (let c = 0; c < channels; c++) {
                expect(bn.runningMean![c]).toBeCloseTo(0.3 * ref.mean[c], 5);
                expect(bn.runningVar![c]).toBeCloseTo(0.7 + 0.3 * ref.variance[c] * (m / (m - 1)), 4);
              }
              const dy = new Tensor(randomArray(x.size, rng), shape);
              const g = refBackward(x.data, dy.data, layout, { mean: ref.mean, invstd: ref.invstd },
                { gamma: bn.weight!.data, yForMask: relu ? y.data : null });
              const dx = bn.backward(dy);
              const dxScale = g.dx.reduce((m, v) => Math.max(m, Math.abs(v)), 1);
              expect(maxError(dx.data, g.dx).abs / dxScale).toBeLessThan(1e-4);
              const gradScale = Math.sqrt(m) * 4;
              expect(maxError(bn.weight!.grad, g.dgamma).abs / gradScale).toBeLessThan(1e-4);
              expect(maxError(bn.bias!.grad, g.dbeta).abs / gradScale).toBeLessThan(1e-4);

              // Eval mode uses the running statistics; N = 1 is fine there.
              bn.eval();
              const one = new Tensor(x.data.slice(0, channels * spatialSize), shapeFor(1, channels, spatial, channelsLast));
              for (const input of [x, one]) {
                const l: RefLayout = { ...layout, batch: input.shape[0] };
                const refEval = refForward(input.data, l, {
                  gamma: bn.weight!.data, beta: bn.bias!.data, relu,
                  useStats: { mean: bn.runningMean!, variance: bn.runningVar! },
                });
                const yEval = bn.forward(input);
                expect(maxError(yEval.data, refEval.y).abs).toBeLessThan(1e-4);
                const dyEval = new Tensor(randomArray(input.size, rng), input.shape);
                const gEval = refBackward(input.data, dyEval.data, l, { mean: refEval.mean, invstd: refEval.invstd },
                  { gamma: bn.weight!.data, yForMask: relu ? yEval.data : null, batchStatistics: false });
                const dxEval = bn.backward(dyEval);
                expect(maxError(dxEval.data, gEval.dx).abs).toBeLessThan(1e-4);
              }
            }
          }
        });
      }
    }
  }
});

describe('numerics', () => {
  it.each(availableIsas())('keeps the variance of 1e4 + N(0,1) and 1e6 + N(0,1) within 1e-3 (%s)', (isaName) => {
    setIsa(isaName);
    const rng = makeRng(99);
    for (const offset of [1e4, 1e6]) {
      for (const channelsLast of [false, true]) {
        const shape = channelsLast ? [16, 33, 33, 5] : [16, 5, 33, 33];
        const x = new Tensor(randomArray(16 * 5 * 33 * 33, rng, 1, offset), shape);
        const layout: RefLayout = { batch: 16, channels: 5, spatial: 33 * 33, channelsLast };
        const ref = refForward(x.data, layout, {});
        // momentum 1: the running variance is exactly the unbiased batch variance.
        const bn = new BatchNorm2d(5, { channelsLast, momentum: 1 });
        bn.forward(x);
        const m = 16 * 33 * 33;
        for (let c = 0; c < 5; c++) {
          const unbiased = (ref.variance[c] * m) / (m - 1);
          expect(Math.abs(bn.runningVar![c] - unbiased) / unbiased).toBeLessThan(1e-3);
          expect(Math.abs(bn.runningMean![c] - ref.mean[c])).toBeLessThan(1e-3 * Math.abs(ref.mean[c]));
        }
      }
    }
  });

  it.each(availableIsas())('maps a constant channel to beta, never NaN (%s)', (isaName) => {
    setIsa(isaName);
    for (const channelsLast of [false, true]) {
      const bn = new BatchNorm2d(2, { channelsLast });
      bn.bias!.data.set([0.25, -1.5]);
      const x = Tensor.zeros(channelsLast ? [4, 3, 3, 2] : [4, 2, 3, 3]);
      x.data.fill(7.5);
      const y = bn.forward(x);
      for (let i = 0; i < y.size; i++) {
        const c = channelsLast ? i % 2 : Math.floor(i / 9) % 2;
        expect(y.data[i]).toBe(c === 0 ? 0.25 : -1.5);
      }
      const dx = bn.backward(new Tensor(Float32Array.from({ length: x.size }, (_, i) => Math.sin(i)), x.shape));
      expect(dx.data.every(Number.isFinite)).toBe(true);
      expect(Array.from(bn.runningVar!)).toEqual([0.9, 0.9].map(Math.fround));
    }
  });

  it.each(availableIsas())('lets a NaN spread through its channel, fused ReLU included, as PyTorch does (%s)', (isaName) => {
    setIsa(isaName);
    // Flat-planes (30x30), channel-wise (3x3) and channels-last plans; the
    // pooled fusion too. relu(NaN) is NaN (max(0, x) keeps x when x is NaN).
    for (const [channelsLast, h] of [[false, 30], [false, 3], [true, 3]] as const) {
      const shape = channelsLast ? [4, h, h, 2] : [4, 2, h, h];
      const x = new Tensor(Float32Array.from({ length: 8 * h * h }, (_, i) => Math.cos(i)), shape);
      x.data[channelsLast ? 2 : 1] = NaN;  // channel 0
      const channelOf = (i: number) => (channelsLast ? i % 2 : Math.floor(i / (h * h)) % 2);
      const bn = new BatchNorm2d(2, { channelsLast, relu: true });
      const y = bn.forward(x);
      for (let i = 0; i < y.size; i++) {
        if (channelOf(i) === 0) expect(y.data[i], `${isaName} ${shape} [${i}]`).toBeNaN();
        else expect(Number.isFinite(y.data[i]), `${isaName} ${shape} [${i}]`).toBe(true);
      }
      // The running variance is NaN now: eval refuses it instead of guessing.
      bn.eval();
      expect(() => bn.forward(x)).toThrow(/runningVar\[0\] must be >= 0, got nan/);
      if (channelsLast || h < 2) continue;
      const fused = new Sequential([new BatchNorm2d(2, { relu: true }), new MaxPool2d(2)]);
      const pooled = fused.forward(x);
      for (let i = 0; i < pooled.size; i++) {
        const c = Math.floor(i / ((h >> 1) * (h >> 1))) % 2;
        if (c === 0) expect(pooled.data[i], `${isaName} pooled [${i}]`).toBeNaN();
        else expect(Number.isFinite(pooled.data[i])).toBe(true);
      }
    }
  });

  it('gives bit-identical results for 1 and 2 threads', () => {
    setIsa(initialIsa);
    const rng = makeRng(5);
    // NCHW 30x30 planes take the flat passes, 12x12 the channel-wise ones.
    const cases = [
      { channelsLast: false, shape: [8, 24, 30, 30] },
      { channelsLast: false, shape: [16, 24, 12, 12] },
      { channelsLast: true, shape: [8, 30, 30, 24] },
    ];
    for (const { channelsLast, shape } of cases) {
      const x = new Tensor(randomArray(shape.reduce((a, b) => a * b, 1), rng, 3, 1), shape);
      const dy = new Tensor(randomArray(x.size, rng), shape);
      const results = [1, 2].map((threads) => {
        setNumThreads(threads);
        const bn = new BatchNorm2d(24, { channelsLast, relu: true });
        const y = bn.forward(x).data.slice();
        const dx = bn.backward(dy).data.slice();
        return { y, dx, rv: bn.runningVar!.slice(), dg: bn.weight!.grad.slice() };
      });
      expect(Buffer.from(results[0].y.buffer).equals(Buffer.from(results[1].y.buffer))).toBe(true);
      expect(Buffer.from(results[0].dx.buffer).equals(Buffer.from(results[1].dx.buffer))).toBe(true);
      expect(results[0].rv).toEqual(results[1].rv);
      expect(results[0].dg).toEqual(results[1].dg);
    }
    setNumThreads(initialThreads);
  });
});

describe('finite-difference gradients', () => {
  // Loss = sum(w * y) for fixed random w; derivatives by central differences
  // on the float32 kernels with a step large enough to beat rounding.
  it.each([false, true])('dx, dgamma, dbeta match central differences (channelsLast=%s)', (channelsLast) => {
    setIsa(initialIsa);
    const rng = makeRng(11);
    const shape = channelsLast ? [3, 2, 3, 2] : [3, 2, 2, 3];
    const x = new Tensor(randomArray(36, rng, 1.5), shape);
    const w = randomArray(36, rng);
    const bn = new BatchNorm2d(2, { channelsLast });
    bn.weight!.data.set([1.3, 0.7]);
    bn.bias!.data.set([0.2, -0.4]);
    const loss = () => {
      const y = bn.forward(x);
      let s = 0;
      for (let i = 0; i < y.size; i++) s += w[i] * y.data[i];
      return s;
    };
    loss();
    const dx = bn.backward(new Tensor(w.slice(), shape)).data.slice();
    const dgamma = bn.weight!.grad.slice();
    const dbeta = bn.bias!.grad.slice();
    const h = 1e-2;
    const numeric = (arr: Float32Array, i: number) => centralDifference(arr, i, h, loss);
    for (let i = 0; i < x.size; i++) expect(dx[i]).toBeCloseTo(numeric(x.data, i), 2);
    for (let c = 0; c < 2; c++) {
      expect(dgamma[c]).toBeCloseTo(numeric(bn.weight!.data, c), 2);
      expect(dbeta[c]).toBeCloseTo(numeric(bn.bias!.data, c), 2);
    }
  });
});

describe('running statistics', () => {
  it('follows the PyTorch update over several steps, and momentum null is a cumulative average', () => {
    const rng = makeRng(3);
    const ema = new BatchNorm1d(4, { momentum: 0.1 });
    const cumulative = new BatchNorm1d(4, { momentum: null });
    const expectedEma = { mean: [0, 0, 0, 0], variance: [1, 1, 1, 1] };
    const sums = { mean: [0, 0, 0, 0], variance: [0, 0, 0, 0] };
    const steps = 5;
    for (let step = 0; step < steps; step++) {
      const x = new Tensor(randomArray(10 * 4 * 6, rng, 1 + step, step), [10, 4, 6]);
      ema.forward(x);
      cumulative.forward(x);
      const ref = refForward(x.data, { batch: 10, channels: 4, spatial: 6, channelsLast: false }, {});
      for (let c = 0; c < 4; c++) {
        const unbiased = (ref.variance[c] * 60) / 59;
        expectedEma.mean[c] = 0.9 * expectedEma.mean[c] + 0.1 * ref.mean[c];
        expectedEma.variance[c] = 0.9 * expectedEma.variance[c] + 0.1 * unbiased;
        sums.mean[c] += ref.mean[c];
        sums.variance[c] += unbiased;
      }
    }
    expect(ema.numBatchesTracked).toBe(steps);
    for (let c = 0; c < 4; c++) {
      expect(ema.runningMean![c]).toBeCloseTo(expectedEma.mean[c], 4);
      expect(ema.runningVar![c]).toBeCloseTo(expectedEma.variance[c], 3);
      expect(cumulative.runningMean![c]).toBeCloseTo(sums.mean[c] / steps, 4);
      expect(cumulative.runningVar![c]).toBeCloseTo(sums.variance[c] / steps, 3);
    }
  });

  it('uses batch statistics in eval mode when trackRunningStats is false', () => {
    const rng = makeRng(4);
    const bn = new BatchNorm1d(3, { trackRunningStats: false });
    expect(bn.runningMean).toBeNull();
    bn.eval();
    const x = new Tensor(randomArray(5 * 3, rng, 2, 3), [5, 3]);
    const ref = refForward(x.data, { batch: 5, channels: 3, spatial: 1, channelsLast: false }, {});
    expect(maxError(bn.forward(x).data, ref.y).abs).toBeLessThan(1e-5);
  });

  it('does not move running stats in eval mode and supports affine = false', () => {
    const rng = makeRng(8);
    const bn = new BatchNorm2d(2, { affine: false });
    expect(bn.weight).toBeNull();
    expect(bn.parameters()).toEqual([]);
    bn.forward(new Tensor(randomArray(2 * 2 * 3 * 3, rng), [2, 2, 3, 3]));
    const before = bn.runningMean!.slice();
    bn.eval().forward(new Tensor(randomArray(2 * 2 * 3 * 3, rng, 1, 5), [2, 2, 3, 3]));
    expect(bn.runningMean).toEqual(before);
    expect(bn.numBatchesTracked).toBe(1);
  });

  it('warns once per process when momentum looks like a Keras value', () => {
    // A fresh process: the warning is emitted at most once per process.
    const script = `
      const { BatchNorm2d } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'index.js'))});
      new BatchNorm2d(4, { momentum: 0.99 });
      new BatchNorm2d(4, { momentum: 0.9 });
      new BatchNorm2d(4, { momentum: 0.1 });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.includes('BNKIT_MOMENTUM_CONVENTION') || l.includes('NEW batch statistic'));
    expect(lines.length).toBe(1);
    expect(r.stderr).toMatch(/momentum=0\.99 weights the NEW batch statistic.*use 0\.01/);
  });
});

describe('functional API', () => {
  it('writes into caller buffers without allocating new outputs', () => {
    const rng = makeRng(21);
    const x = new Tensor(randomArray(4 * 3 * 5, rng), [4, 3, 5]);
    const out = new Float32Array(x.size);
    const saveMean = new Float32Array(3), saveInvstd = new Float32Array(3);
    const runningMean = new Float32Array(3), runningVar = new Float32Array(3).fill(1);
    const r = batchNormForward(x, { training: true, out, saveMean, saveInvstd, runningMean, runningVar });
    expect(r.y.data).toBe(out);
    expect(r.mean).toBe(saveMean);
    const ref = refForward(x.data, { batch: 4, channels: 3, spatial: 5, channelsLast: false }, {});
    expect(maxError(out, ref.y).abs).toBeLessThan(1e-5);
    const dy = new Tensor(randomArray(x.size, rng), x.shape);
    const g = batchNormBackward(x, dy, r);
    const gRef = refBackward(x.data, dy.data, { batch: 4, channels: 3, spatial: 5, channelsLast: false }, ref, {});
    expect(maxError(g.dx.data, gRef.dx).abs).toBeLessThan(1e-4);
    expect(maxError(g.dbeta, gRef.dbeta).abs).toBeLessThan(1e-4);
  });

  it('reads and writes views at a byte offset into a larger buffer, and nothing outside them', () => {
    const rng = makeRng(22);
    const layout = { batch: 3, channels: 2, spatial: 7, channelsLast: false };
    const n = 3 * 2 * 7;
    const data = randomArray(n, rng), dyData = randomArray(n, rng);
    // Every array a view 5 floats into a buffer padded with a sentinel on both sides.
    const view = (values: Float32Array | number) => {
      const length = typeof values === 'number' ? values : values.length;
      const backing = new Float32Array(length + 10).fill(-7);
      const v = backing.subarray(5, 5 + length);
      if (typeof values !== 'number') v.set(values);
      return { v, backing };
    };
    const x = view(data), dy = view(dyData), out = view(n), dx = view(n);
    const mean = view(2), invstd = view(2), dgamma = view(2), dbeta = view(2), weight = view(new Float32Array([1.5, -0.5]));
    const bias = view(new Float32Array([0.25, 1])), runningMean = view(2), runningVar = view(new Float32Array([1, 1]));
    const xt = new Tensor(x.v, [3, 2, 7]);
    const r = batchNormForward(xt, { training: true, weight: weight.v, bias: bias.v, relu: true, out: out.v,
      saveMean: mean.v, saveInvstd: invstd.v, runningMean: runningMean.v, runningVar: runningVar.v });
    const g = batchNormBackward(xt, new Tensor(dy.v, xt.shape), r, { weight: weight.v, bias: bias.v, relu: true,
      dx: dx.v, dgamma: dgamma.v, dbeta: dbeta.v });
    const ref = refForward(data, layout, { gamma: [1.5, -0.5], beta: [0.25, 1], relu: true });
    const gRef = refBackward(data, dyData, layout, ref, { gamma: [1.5, -0.5], yForMask: out.v });
    expect(maxError(out.v, ref.y).abs).toBeLessThan(1e-5);
    expect(maxError(g.dx.data, gRef.dx).abs).toBeLessThan(1e-4);
    expect(maxError(dgamma.v, gRef.dgamma).abs).toBeLessThan(1e-4);
    for (const { backing } of [x, dy, out, dx, mean, invstd, dgamma, dbeta, weight, bias, runningMean, runningVar]) {
      expect([...backing.subarray(0, 5), ...backing.subarray(backing.length - 5)]).toEqual(new Array(10).fill(-7));
    }
  });

  it('rejects a detached buffer with a RangeError, not a crash', async () => {
    const { native } = await import('../lib/native');
    const x = new Float32Array(12).fill(1);
    const t = new Tensor(x, [2, 3, 2]);
    structuredClone(x.buffer, { transfer: [x.buffer] });
    expect(() => batchNormForward(t, { training: true })).toThrow(/x\.data has 0 elements but its shape \[2, 3, 2\] needs 12/);
    const c = new Float32Array(3);
    expect(() => native.batchNormForwardTrain(x, new Float32Array(12), 2, 3, 2, false, null, null, 1e-5, false, c, c, null, null, 0.1))
      .toThrow(/x has 0 elements, expected 12/);
  });

  it('reuses the layer output buffer for the same shape', () => {
    const bn = new BatchNorm1d(2);
    const a = bn.forward(new Tensor(new Float32Array([1, 2, 3, 4]), [2, 2]));
    const b = bn.forward(new Tensor(new Float32Array([4, 3, 2, 1]), [2, 2]));
    expect(b.data).toBe(a.data);
  });
});

describe('bad input', () => {
  it('rejects wrong lengths, types and channel counts with TypeError/RangeError', () => {
    const bn = new BatchNorm2d(3);
    expect(() => new Tensor(new Float32Array(5), [2, 3])).toThrow(RangeError);
    expect(() => new Tensor(new Float64Array(6) as unknown as Float32Array, [2, 3])).toThrow(TypeError);
    expect(() => bn.forward(new Float32Array(12) as unknown as Tensor)).toThrow(TypeError);
    expect(() => bn.forward(Tensor.zeros([2, 4, 2, 2]))).toThrow(/BatchNorm2d\(3\) got 4 channels in dimension 1 of input shape \[2, 4, 2, 2\]/);
    expect(() => bn.forward(Tensor.zeros([2, 3, 4]))).toThrow(RangeError);
    expect(() => new BatchNorm1d(2).forward(Tensor.zeros([2, 2, 2, 2]))).toThrow(/expects 2D \(N, C\) or 3D/);
  });

  it('rejects bad options', () => {
    expect(() => new BatchNorm2d(0)).toThrow(RangeError);
    expect(() => new BatchNorm2d(2.5)).toThrow(RangeError);
    expect(() => new BatchNorm2d(3, { eps: NaN })).toThrow(/eps must be a finite number > 0/);
    expect(() => new BatchNorm2d(3, { eps: -1 })).toThrow(RangeError);
    expect(() => new BatchNorm2d(3, { momentum: Infinity })).toThrow(/momentum must be a finite number in \[0, 1\] or null/);
    expect(() => new BatchNorm2d(3, { momentum: 1.5 })).toThrow(RangeError);
    expect(() => new BatchNorm2d(3, { affine: 'yes' as unknown as boolean })).toThrow(TypeError);
  });

  it('rejects one value per channel in training, without touching the running stats', () => {
    const bn = new BatchNorm1d(3);
    expect(() => bn.forward(Tensor.zeros([1, 3]))).toThrow(/Expected more than 1 value per channel when training/);
    expect(() => new BatchNorm2d(3).forward(Tensor.zeros([1, 3, 1, 1]))).toThrow(RangeError);
    expect(bn.numBatchesTracked).toBe(0);
    expect(() => bn.eval().forward(Tensor.zeros([1, 3]))).not.toThrow();
    // The functional form is checked in native code too.
    expect(() => batchNormForward(Tensor.zeros([1, 3]), { training: true })).toThrow(/more than 1 value per channel/);
  });

  it('rejects backward before forward and mismatched dy', () => {
    const bn = new BatchNorm2d(2);
    expect(() => bn.backward(Tensor.zeros([2, 2, 2, 2]))).toThrow(/backward\(\) called before forward\(\)/);
    bn.forward(new Tensor(Float32Array.from({ length: 16 }, (_, i) => i), [2, 2, 2, 2]));
    expect(() => bn.backward(Tensor.zeros([2, 2, 4, 1]))).toThrow(/does not match the last forward input shape/);
  });

  it('native entry points validate their own arguments', async () => {
    const { native } = await import('../lib/native');
    const x = new Float32Array(12);
    const c = new Float32Array(3);
    expect(() => native.batchNormForwardTrain(x, new Float32Array(11), 2, 3, 2, false, null, null, 1e-5, false, c, c, null, null, 0.1))
      .toThrow(/y \(out\) has 11 elements, expected 12/);
    expect(() => native.batchNormForwardTrain(x, x, 2, 3, 2, false, null, null, NaN, false, c, c, null, null, 0.1))
      .toThrow(RangeError);
    expect(() => native.batchNormForwardTrain(x, x, 2, 3, 2, false, new Float64Array(3) as unknown as Float32Array, null, 1e-5, false, c, c, null, null, 0.1))
      .toThrow(/weight \(gamma\) must be a Float32Array, got Float64Array/);
    expect(() => native.batchNormBackward(x, x, x, 2, -3, 2, false, c, c, null, null, false, true, null, null))
      .toThrow(/channels must be an integer >= 1/);
    expect(() => native.batchNormForwardEval(x, x, 2, 3, 2, false, c, new Float32Array([1, -1, 1]), null, null, 1e-5, false))
      .toThrow(/runningVar\[1\] must be >= 0/);
  });

  it('setIsa refuses unknown or unsupported paths', () => {
    expect(() => setIsa('sse9' as never)).toThrow(RangeError);
    const unsupported = (['scalar', 'avx2', 'avx512', 'neon'] as const).filter((n) => !availableIsas().includes(n));
    for (const name of unsupported) expect(() => setIsa(name)).toThrow(/not supported/);
    expect(() => setNumThreads(0)).toThrow(RangeError);
  });
});
