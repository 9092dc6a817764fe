// Layers against the float64 reference (every kernel path), finite-difference
// gradients through a Sequential, initialization, Dropout and error messages.
import { describe, it, expect } from 'vitest';
import { Tensor } from '../lib/tensor';
import { Rng, manualSeed } from '../lib/init';
import { Linear, Conv2d, ReLU, Sigmoid, MaxPool2d, Flatten, Dropout } from '../lib/layers';
import { BatchNorm1d, BatchNorm2d } from '../lib/batchnorm';
import { Sequential } from '../lib/sequential';
import { CrossEntropyLoss } from '../lib/loss';
import * as R from './reference/nn';
import { refForward as refBatchNorm } from './reference/batchnorm';
import { centralDifference, randomArray, expectClose, forEachIsa } from './reference/util';

const TOL = 2e-5;

describe('Linear vs float64 reference', () => {
  for (const [batch, inF, outF, bias] of [[5, 37, 19, true], [1, 1, 1, true], [64, 300, 17, false], [3, 128, 10, true]] as const) {
    it(`batch ${batch}, ${inF} -> ${outF}${bias ? '' : ', no bias'} on every ISA`, () => {
      const rng = new Rng(batch * 1000 + inF);
      const layer = new Linear(inF, outF, { bias, rng });
      const x = new Tensor(randomArray(batch * inF, rng), [batch, inF]);
      const dy = new Tensor(randomArray(batch * outF, rng), [batch, outF]);
      const w = layer.weight.data, b = layer.bias?.data ?? null;
      const ref = R.linearBackward(x.data, batch, inF, w, outF, dy.data);
      forEachIsa((isa) => {
        layer.zeroGrad();
        const y = layer.forward(x);
        expect(y.shape).toEqual([batch, outF]);
        expectClose(y.data, R.linearForward(x.data, batch, inF, w, b, outF), TOL, `${isa} y`);
        const dx = layer.backward(dy);
        expectClose(dx.data, ref.dx, TOL, `${isa} dx`);
        expectClose(layer.weight.grad, ref.dw, TOL, `${isa} dweight`);
        if (layer.bias) expectClose(layer.bias.grad, ref.db, TOL, `${isa} dbias`);
      });
    });
  }

  it('uses PyTorch layout: weight [out, in], y = x W^T + b', () => {
    const layer = new Linear(2, 3);
    layer.weight.data.set([1, 2, 3, 4, 5, 6]);
    layer.bias!.data.set([0.5, -1, 0]);
    const y = layer.forward(new Tensor(Float32Array.of(1, 10), [1, 2]));
    expect([...y.data]).toEqual([21.5, 42, 65]);
    expect(layer.parameters().map((p) => [p.name, p.shape])).toEqual([['weight', [3, 2]], ['bias', [3]]]);
  });

  it('accumulates gradients across backward calls until zeroGrad', () => {
    const rng = new Rng(3);
    const layer = new Linear(8, 4, { rng });
    const x = new Tensor(randomArray(16, rng), [2, 8]);
    const dy = new Tensor(randomArray(8, rng), [2, 4]);
    layer.forward(x);
    layer.backward(dy);
    const once = layer.weight.grad.slice();
    layer.backward(dy);
    expectClose(layer.weight.grad, once.map((v) => 2 * v), 1e-6, 'doubled grad');
    layer.zeroGrad();
    expect(layer.weight.grad.every((v) => v === 0)).toBe(true);
  });
});

describe('Conv2d vs float64 reference', () => {
  const cases: Array<R.ConvGeometry & { bias: boolean }> = [
    { n: 2, c: 3, h: 9, w: 11, oc: 5, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1, bias: true },
    { n: 3, c: 2, h: 8, w: 7, oc: 4, kh: 3, kw: 2, sh: 2, sw: 1, ph: 0, pw: 1, bias: true },
    { n: 2, c: 1, h: 28, w: 28, oc: 32, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1, bias: true },
    { n: 2, c: 32, h: 14, w: 14, oc: 64, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1, bias: true },
    { n: 1, c: 4, h: 5, w: 5, oc: 3, kh: 5, kw: 5, sh: 1, sw: 1, ph: 0, pw: 0, bias: false },
    { n: 2, c: 3, h: 6, w: 6, oc: 2, kh: 1, kw: 1, sh: 3, sw: 3, ph: 2, pw: 2, bias: true },
  ];
  for (const g of cases) {
    it(`N${g.n} C${g.c} ${g.h}x${g.w} -> ${g.oc}, kernel ${g.kh}x${g.kw}, stride ${g.sh}x${g.sw}, pad ${g.ph}x${g.pw}${g.bias ? '' : ', no bias'}`, () => {
      const rng = new Rng(g.c * 100 + g.oc);
      const layer = new Conv2d(g.c, g.oc, [g.kh, g.kw], { stride: [g.sh, g.sw], padding: [g.ph, g.pw], bias: g.bias, rng });
      const [oh, ow] = R.convOutput(g);
      const x = new Tensor(randomArray(g.n * g.c * g.h * g.w, rng), [g.n, g.c, g.h, g.w]);
      const dy = new Tensor(randomArray(g.n * g.oc * oh * ow, rng), [g.n, g.oc, oh, ow]);
      const yRef = R.conv2dForward(x.data, layer.weight.data, layer.bias?.data ?? null, g);
      const ref = R.conv2dBackward(x.data, layer.weight.data, dy.data, g);
      forEachIsa((isa) => {
        layer.zeroGrad();
        const y = layer.forward(x);
        expect(y.shape).toEqual([g.n, g.oc, oh, ow]);
        expectClose(y.data, yRef, TOL, `${isa} y`);
        const dx = layer.backward(dy);
        expectClose(dx.data, ref.dx, TOL, `${isa} dx`);
        expectClose(layer.weight.grad, ref.dw, TOL, `${isa} dweight`);
        if (layer.bias) expectClose(layer.bias.grad, ref.db, TOL, `${isa} dbias`);
      });
    });
  }

  it('uses PyTorch layout: weight [out, in, kh, kw] as cross-correlation', () => {
    const layer = new Conv2d(1, 1, [1, 2], { bias: false });
    layer.weight.data.set([1, 10]);
    // y[i, j] = x[i, j] * 1 + x[i, j + 1] * 10
    const y = layer.forward(new Tensor(Float32Array.of(1, 2, 3, 4, 5, 6), [1, 1, 2, 3]));
    expect(y.shape).toEqual([1, 1, 2, 2]);
    expect([...y.data]).toEqual([21, 32, 54, 65]);
    expect(new Conv2d(3, 8, 5).weight.shape).toEqual([8, 3, 5, 5]);
  });
});

describe('reference self-check: float64 backward equals central differences', () => {
  it('conv2d and linear', () => {
    const rng = new Rng(11);
    const g: R.ConvGeometry = { n: 2, c: 2, h: 5, w: 4, oc: 3, kh: 3, kw: 2, sh: 2, sw: 1, ph: 1, pw: 0 };
    const x = Float64Array.from(randomArray(g.n * g.c * g.h * g.w, rng));
    const w = Float64Array.from(randomArray(g.oc * g.c * g.kh * g.kw, rng));
    const [oh, ow] = R.convOutput(g);
    const r = Float64Array.from(randomArray(g.n * g.oc * oh * ow, rng));
    const loss = () => R.conv2dForward(x, w, null, g).reduce((s, v, i) => s + v * r[i], 0);
    const grads = R.conv2dBackward(x, w, r, g);
    const h = 1e-6;
    for (const [arr, grad] of [[x, grads.dx], [w, grads.dw]] as const) {
      for (let i = 0; i < arr.length; i += 3) {
        expect(Math.abs(centralDifference(arr, i, h, loss) - grad[i])).toBeLessThan(1e-7);
      }
    }
    const lx = Float64Array.from(randomArray(12, rng)), lw = Float64Array.from(randomArray(30, rng)), lr = Float64Array.from(randomArray(10, rng));
    const lloss = () => R.linearForward(lx, 2, 6, lw, null, 5).reduce((s, v, i) => s + v * lr[i], 0);
    const lg = R.linearBackward(lx, 2, 6, lw, 5, lr);
    for (let i = 0; i < lw.length; i++) {
      expect(Math.abs(centralDifference(lw, i, h, lloss) - lg.dw[i])).toBeLessThan(1e-7);
    }
  });
});

describe('MaxPool2d, ReLU, Sigmoid vs float64 reference', () => {
  for (const [n, c, h, w, k, s] of [[2, 3, 8, 8, 2, 2], [1, 2, 7, 9, 2, 2], [2, 2, 9, 9, 3, 2], [64, 4, 28, 28, 2, 2]] as const) {
    it(`MaxPool2d(${k}, stride ${s}) on [${n}, ${c}, ${h}, ${w}]`, () => {
      const rng = new Rng(h * w + k);
      const x = new Tensor(randomArray(n * c * h * w, rng), [n, c, h, w]);
      const pool = new MaxPool2d(k, s);
      const ref = R.maxPool2dForward(x.data, n, c, h, w, k, s);
      const dy = new Tensor(randomArray(ref.y.length, rng), [n, c, ref.oh, ref.ow]);
      const dxRef = R.maxPool2dBackward(dy.data, ref.from, x.data.length);
      forEachIsa((isa) => {
        const y = pool.forward(x);
        expect(y.shape).toEqual([n, c, ref.oh, ref.ow]);
        expectClose(y.data, ref.y, 0, `${isa} y`);
        // Stale values in the reused gradient buffer must not leak through.
        const dx = pool.backward(dy);
        dx.data.fill(7);
        expectClose(pool.backward(dy).data, dxRef, 1e-6, `${isa} dx`);
      });
    });
  }

  it('ReLU and Sigmoid forward/backward on every ISA (odd length, tails)', () => {
    const rng = new Rng(5);
    const x = new Tensor(randomArray(3 * 37, rng, 6), [3, 37]);
    const dy = new Tensor(randomArray(3 * 37, rng), [3, 37]);
    forEachIsa((isa) => {
      const relu = new ReLU();
      const yr = relu.forward(x);
      expectClose(yr.data, R.relu(x.data), 0, `${isa} relu`);
      expectClose(relu.backward(dy).data, R.reluGrad(R.relu(x.data), dy.data), 0, `${isa} relu grad`);
      const sig = new Sigmoid();
      const ys = sig.forward(x);
      expectClose(ys.data, R.sigmoid(x.data), 1e-6, `${isa} sigmoid`);
      expectClose(sig.backward(dy).data, R.sigmoidGrad(R.sigmoid(x.data), dy.data), 1e-6, `${isa} sigmoid grad`);
    });
  });

  it('Flatten is a view in both directions', () => {
    const x = new Tensor(new Float32Array(2 * 3 * 4 * 5).map((_, i) => i), [2, 3, 4, 5]);
    const f = new Flatten();
    const y = f.forward(x);
    expect(y.shape).toEqual([2, 60]);
    expect(y.data).toBe(x.data);
    expect(f.forward(x)).toBe(y);
    const dx = f.backward(y);
    expect(dx.shape).toEqual([2, 3, 4, 5]);
    expect(dx.data).toBe(y.data);
  });
});

/**
 * Cross-entropy of `model`'s architecture evaluated entirely in float64 by
 * the reference ops, with the given parameter values (in parameters() order).
 */
function referenceLoss(model: Sequential, params: Float64Array[], x: Float64Array, inputShape: readonly number[], labels: Uint8Array): number {
  let h: Float64Array = x;
  let shape = [...inputShape];
  let k = 0;
  for (const layer of model.layers) {
    const p = params.slice(k, k + layer.parameters().length);
    k += p.length;
    if (layer instanceof Conv2d) {
      const g = { n: shape[0], c: shape[1], h: shape[2], w: shape[3], oc: layer.outChannels, kh: layer.kernelSize[0], kw: layer.kernelSize[1],
        sh: layer.stride[0], sw: layer.stride[1], ph: layer.padding[0], pw: layer.padding[1] };
      h = R.conv2dForward(h, p[0], p[1] ?? null, g);
      shape = [g.n, g.oc, ...R.convOutput(g)];
    } else if (layer instanceof BatchNorm1d || layer instanceof BatchNorm2d) {
      const l = { batch: shape[0], channels: shape[1], spatial: shape.slice(2).reduce((a, b) => a * b, 1), channelsLast: false };
      h = refBatchNorm(h, l, { gamma: p[0], beta: p[1], eps: layer.eps }).y;
      if (layer.relu) h = R.relu(h);
    } else if (layer instanceof ReLU) {
      h = R.relu(h);
    } else if (layer instanceof Sigmoid) {
      h = R.sigmoid(h);
    } else if (layer instanceof MaxPool2d) {
      const r = R.maxPool2dForward(h, shape[0], shape[1], shape[2], shape[3], layer.kernelSize, layer.stride);
      h = r.y;
      shape = [shape[0], shape[1], r.oh, r.ow];
    } else if (layer instanceof Flatten) {
      shape = [shape[0], h.length / shape[0]];
    } else if (layer instanceof Linear) {
      h = R.linearForward(h, shape[0], layer.inFeatures, p[0], p[1] ?? null, layer.outFeatures);
      shape = [shape[0], layer.outFeatures];
    } else {
      throw new Error(`no reference for ${layer.constructor.name}`);
    }
  }
  return R.softmaxCrossEntropy(h, shape[0], shape[1], labels).loss;
}

describe('finite differences through Sequential', () => {
  function smallCnn(rng: Rng): Sequential {
    return new Sequential([
      new Conv2d(2, 4, 3, { padding: 1, rng }),
      new BatchNorm2d(4, { relu: true }),
      new ReLU(),
      new MaxPool2d(2),
      new Conv2d(4, 3, 2, { stride: 2, rng }),
      new Sigmoid(),
      new Flatten(),
      new Linear(12, 6, { rng }),
      new BatchNorm1d(6),
      new ReLU(),
      new Linear(6, 5, { rng }),
    ]);
  }

  it('analytic gradients equal float64 central differences of a float64 forward (every ISA)', () => {
    forEachIsa((isa) => {
      const rng = new Rng(21);
      const model = smallCnn(rng);
      const x = new Tensor(randomArray(6 * 2 * 8 * 8, rng), [6, 2, 8, 8]);
      const labels = Uint8Array.from({ length: 6 }, (_, i) => i % 5);
      const loss = new CrossEntropyLoss();
      model.zeroGrad();
      loss.forward(model.forward(x), labels);
      const dx = model.backward(loss.backward()).data.slice();
      // Differences of the float64 model: exact to ~1e-9, no float32 noise;
      // h is far too small to cross a ReLU kink or a max-pool switch.
      const params = model.parameters().map((p) => Float64Array.from(p.data));
      const x64 = Float64Array.from(x.data);
      const h = 1e-6;
      const fd = (values: Float64Array, i: number): number =>
        centralDifference(values, i, h, () => referenceLoss(model, params, x64, x.shape, labels));
      let significant = 0;
      model.parameters().forEach((p, k) => {
        for (let j = 0; j < 5; j++) {
          const i = rng.int(p.data.length);
          if (Math.abs(p.grad[i]) > 1e-3) significant++;
          expect(Math.abs(p.grad[i] - fd(params[k], i)), `${isa} ${p.name}[${i}]`).toBeLessThan(1e-4 * Math.max(1, Math.abs(p.grad[i])));
        }
      });
      for (let j = 0; j < 16; j++) {
        const i = rng.int(x64.length);
        expect(Math.abs(dx[i] - fd(x64, i)), `${isa} input[${i}]`).toBeLessThan(1e-4);
      }
      // The check must see real gradients, not zeros agreeing with zeros.
      expect(significant).toBeGreaterThan(25);
    });
  });

  it('skipping unused input gradients leaves parameter gradients unchanged', () => {
    const rng = new Rng(4);
    const model = smallCnn(rng);
    const x = new Tensor(randomArray(4 * 2 * 8 * 8, rng), [4, 2, 8, 8]);
    const labels = Uint8Array.of(0, 1, 2, 3);
    const loss = new CrossEntropyLoss();
    const run = (needInputGrad: boolean) => {
      model.zeroGrad();
      loss.forward(model.forward(x), labels);
      const dx = model.backward(loss.backward(), needInputGrad);
      return { dx, grads: model.parameters().map((p) => p.grad.slice()) };
    };
    const full = run(true), partial = run(false);
    expect(full.dx.shape).toEqual([4, 2, 8, 8]);
    expect(partial.dx.data.length).toBe(0);
    partial.grads.forEach((g, i) => expect(g).toEqual(full.grads[i]));
  });
});

describe('initialization', () => {
  it('Linear and Conv2d follow PyTorch defaults: U(-1/sqrt(fanIn), 1/sqrt(fanIn)) for weight and bias', () => {
    for (const [layer, fanIn] of [[new Linear(1000, 60, { rng: new Rng(1) }), 1000], [new Conv2d(32, 64, 3, { rng: new Rng(2) }), 288]] as const) {
      const bound = 1 / Math.sqrt(fanIn);
      for (const p of layer.parameters()) {
        const d = p.data;
        expect(Math.max(...d)).toBeLessThanOrEqual(bound);
        expect(Math.min(...d)).toBeGreaterThanOrEqual(-bound);
      }
      const w = layer.weight.data;
      const mean = w.reduce((a, b) => a + b, 0) / w.length;
      const variance = w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length;
      expect(Math.abs(mean)).toBeLessThan(0.05 * bound);
      expect(variance / (bound * bound / 3)).toBeCloseTo(1, 1);
    }
  });

  it('the same seed gives the same weights; another seed does not', () => {
    const a = new Conv2d(3, 4, 3, { rng: new Rng(7) }), b = new Conv2d(3, 4, 3, { rng: new Rng(7) }), c = new Conv2d(3, 4, 3, { rng: new Rng(8) });
    expect(a.weight.data).toEqual(b.weight.data);
    expect(a.bias!.data).toEqual(b.bias!.data);
    expect(a.weight.data).not.toEqual(c.weight.data);
    manualSeed(5);
    const d = new Linear(10, 10);
    manualSeed(5);
    expect(new Linear(10, 10).weight.data).toEqual(d.weight.data);
  });

  it('Rng: uniform in [0, 1), normal with mean 0 and variance 1, unbiased int', () => {
    const rng = new Rng(123);
    let sum = 0, sq = 0;
    const n = 100000;
    for (let i = 0; i < n; i++) {
      const u = rng.next();
      expect(u >= 0 && u < 1).toBe(true);
      const z = rng.normal();
      sum += z;
      sq += z * z;
    }
    expect(Math.abs(sum / n)).toBeLessThan(0.02);
    expect(sq / n).toBeCloseTo(1, 1);
    const counts = new Array(3).fill(0);
    for (let i = 0; i < 30000; i++) counts[rng.int(3)]++;
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(400);
    expect(() => new Rng(-1)).toThrow(RangeError);
  });
});

describe('Dropout', () => {
  it('zeroes about p of the inputs and scales the rest by 1/(1-p) in training; identity in eval', () => {
    const x = new Tensor(new Float32Array(20000).fill(2), [100, 200]);
    const drop = new Dropout(0.25, { rng: new Rng(1) });
    const y = drop.forward(x);
    const zeros = y.data.filter((v) => v === 0).length;
    expect(Math.abs(zeros / 20000 - 0.25)).toBeLessThan(0.02);
    expect(y.data.every((v) => v === 0 || Math.abs(v - 2 / 0.75) < 1e-6)).toBe(true);
    const dy = new Tensor(new Float32Array(20000).fill(1), [100, 200]);
    const dx = drop.backward(dy);
    for (let i = 0; i < 20000; i++) expect(dx.data[i]).toBeCloseTo(y.data[i] / 2, 6);
    drop.eval();
    expect(drop.forward(x)).toBe(x);
    expect(drop.backward(dy)).toBe(dy);
  });

  it('same seed, same masks', () => {
    const x = new Tensor(new Float32Array(1000).fill(1), [10, 100]);
    const a = new Dropout(0.5, { rng: new Rng(9) }).forward(x).data.slice();
    const b = new Dropout(0.5, { rng: new Rng(9) }).forward(x).data.slice();
    expect(a).toEqual(b);
  });
});

describe('buffers are reused, not reallocated', () => {
  it('forward/backward return the same tensors for a repeated shape and keep a few shapes', () => {
    const rng = new Rng(2);
    const conv = new Conv2d(1, 2, 3, { padding: 1, rng });
    const big = new Tensor(randomArray(4 * 36, rng), [4, 1, 6, 6]);
    const small = new Tensor(randomArray(36, rng), [1, 1, 6, 6]);
    const y1 = conv.forward(big);
    const g1 = conv.backward(y1);
    conv.forward(small);
    expect(conv.forward(big)).toBe(y1);
    expect(conv.backward(y1)).toBe(g1);
  });
});

describe('errors name the problem', () => {
  it('constructor arguments', () => {
    expect(() => new Linear(0, 3)).toThrow(/inFeatures must be a positive integer/);
    expect(() => new Conv2d(1, 2, [3, 3, 3] as unknown as number)).toThrow(/kernelSize/);
    expect(() => new Conv2d(1, 2, 3, { padding: -1 })).toThrow(/padding must be an integer >= 0/);
    expect(() => new Dropout(1.5)).toThrow(/p must be in \[0, 1\]/);
    expect(() => new MaxPool2d(0)).toThrow(/kernelSize/);
  });

  it('input shapes', () => {
    expect(() => new Linear(4, 2).forward(Tensor.zeros([3, 5]))).toThrow(/Linear\(4, 2\) expects input of shape \[N, 4\], got \[3, 5\]/);
    expect(() => new Conv2d(3, 2, 3).forward(Tensor.zeros([1, 2, 5, 5]))).toThrow(/expects input of shape \[N, 3, H, W\], got \[1, 2, 5, 5\]/);
    expect(() => new Conv2d(1, 2, 5).forward(Tensor.zeros([1, 1, 3, 3]))).toThrow(/smaller than the 5x5 kernel/);
    expect(() => new MaxPool2d(2).forward(Tensor.zeros([2, 3]))).toThrow(/4D/);
    expect(() => new Linear(2, 2).forward([1, 2] as unknown as Tensor)).toThrow(TypeError);
  });

  it('backward misuse', () => {
    expect(() => new Linear(2, 2).backward(Tensor.zeros([1, 2]))).toThrow(/before forward/);
    const l = new Linear(2, 2);
    l.forward(Tensor.zeros([3, 2]));
    expect(() => l.backward(Tensor.zeros([2, 2]))).toThrow(/dy shape \[2, 2\] does not match the last output shape \[3, 2\]/);
  });
});
