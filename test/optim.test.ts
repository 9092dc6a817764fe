// SGD / Adam against float64 versions of PyTorch's update rules, and the
// cross-entropy loss against its float64 definition, on every kernel path.
import { describe, it, expect } from 'vitest';
import { Tensor } from '../lib/tensor';
import { Rng } from '../lib/init';
import { Linear } from '../lib/layers';
import { SGD, Adam, type SGDOptions, type AdamOptions } from '../lib/optim';
import { CrossEntropyLoss } from '../lib/loss';
import type { Parameter } from '../lib/module';
import * as R from './reference/nn';
import { randomArray, expectClose, forEachIsa } from './reference/util';

// Lengths around vector widths so full vectors and tails are both exercised.
const LENGTHS = [1, 7, 16, 33, 1000];

function makeParams(rng: Rng): Parameter[] {
  return LENGTHS.map((n, i) => ({ name: `p${i}`, shape: [n], data: randomArray(n, rng), grad: new Float32Array(n) }));
}

describe('SGD matches torch.optim.SGD', () => {
  const variants: SGDOptions[] = [
    { lr: 0.1 },
    { lr: 0.05, momentum: 0.9 },
    { lr: 0.05, momentum: 0.9, dampening: 0.3 },
    { lr: 0.02, momentum: 0.8, nesterov: true },
    { lr: 0.1, momentum: 0.9, weightDecay: 1e-2 },
    { lr: 0.1, weightDecay: 5e-3 },
  ];
  for (const options of variants) {
    it(JSON.stringify(options), () => {
      forEachIsa((isa) => {
        const rng = new Rng(1);
        const params = makeParams(rng);
        const ref = params.map((p) => Float64Array.from(p.data));
        const velocity = params.map((p) => new Float64Array(p.data.length));
        const opt = new SGD(params, options);
        for (let step = 0; step < 6; step++) {
          params.forEach((p) => p.grad.set(randomArray(p.data.length, rng)));
          opt.step();
          params.forEach((p, k) => R.sgdStep(ref[k], p.grad, velocity[k], {
            lr: options.lr, momentum: options.momentum ?? 0, dampening: options.dampening ?? 0,
            weightDecay: options.weightDecay ?? 0, nesterov: options.nesterov ?? false, first: step === 0,
          }));
          params.forEach((p, k) => expectClose(p.data, ref[k], 1e-6, `${isa} step ${step} ${p.name}`));
        }
      });
    });
  }

  it('lr can change between steps (schedules)', () => {
    const p: Parameter = { name: 'w', shape: [1], data: Float32Array.of(1), grad: Float32Array.of(1) };
    const opt = new SGD([p], { lr: 0.5 });
    opt.step();
    opt.lr = 0.25;
    opt.step();
    expect(p.data[0]).toBeCloseTo(0.25, 7);
  });
});

describe('Adam matches torch.optim.Adam', () => {
  const variants: AdamOptions[] = [{}, { lr: 0.01, betas: [0.8, 0.99], eps: 1e-6 }, { lr: 0.003, weightDecay: 0.01 }];
  for (const options of variants) {
    it(JSON.stringify(options), () => {
      forEachIsa((isa) => {
        const rng = new Rng(2);
        const params = makeParams(rng);
        const ref = params.map((p) => Float64Array.from(p.data));
        const m = params.map((p) => new Float64Array(p.data.length));
        const v = params.map((p) => new Float64Array(p.data.length));
        const opt = new Adam(params, options);
        for (let step = 1; step <= 8; step++) {
          params.forEach((p) => p.grad.set(randomArray(p.data.length, rng)));
          opt.step();
          params.forEach((p, k) => R.adamStep(ref[k], p.grad, m[k], v[k], {
            step, lr: options.lr ?? 1e-3, beta1: options.betas?.[0] ?? 0.9, beta2: options.betas?.[1] ?? 0.999,
            eps: options.eps ?? 1e-8, weightDecay: options.weightDecay ?? 0,
          }));
          params.forEach((p, k) => expectClose(p.data, ref[k], 2e-6, `${isa} step ${step} ${p.name}`));
        }
        expect(opt.stepCount).toBe(8);
      });
    });
  }
});

describe('optimizer API', () => {
  it('takes parameters from the constructor or attach(); zeroGrad clears them', () => {
    const layer = new Linear(3, 2);
    layer.weight.grad.fill(1);
    const opt = new SGD({ lr: 0.1 });
    expect(() => opt.step()).toThrow(/has no parameters/);
    opt.attach(layer);
    opt.attach(layer); // the same parameters again: fine
    expect(() => opt.attach(new Linear(3, 2))).toThrow(/already attached to other parameters/);
    const before = layer.weight.data.slice();
    opt.step();
    expect(layer.weight.data[0]).toBeCloseTo(before[0] - 0.1, 6);
    opt.zeroGrad();
    expect(layer.weight.grad.every((g) => g === 0)).toBe(true);
    expect(new Adam(layer).parameters.length).toBe(2);
  });

  it('rejects invalid hyper-parameters with the name of the option', () => {
    expect(() => new SGD({} as SGDOptions)).toThrow(/lr must be a finite number >= 0, got undefined/);
    expect(() => new SGD({ lr: -1 })).toThrow(/lr must be/);
    expect(() => new SGD({ lr: 0.1, nesterov: true })).toThrow(/nesterov momentum requires momentum > 0 and dampening = 0/);
    expect(() => new SGD({ lr: 0.1, momentum: NaN })).toThrow(/momentum/);
    expect(() => new Adam({ betas: [0.9, 1] })).toThrow(/betas\[1\] must be a finite number in \[0, 1\)/);
    expect(() => new Adam({ eps: -1 })).toThrow(/eps/);
  });
});

describe('CrossEntropyLoss', () => {
  it('loss and gradient match the float64 definition on every ISA', () => {
    const rng = new Rng(4);
    for (const [n, classes] of [[64, 10], [3, 17], [1, 2]] as const) {
      const logits = new Tensor(randomArray(n * classes, rng, 5), [n, classes]);
      const labels = Int32Array.from({ length: n }, () => rng.int(classes));
      const ref = R.softmaxCrossEntropy(logits.data, n, classes, labels);
      forEachIsa((isa) => {
        const loss = new CrossEntropyLoss();
        expect(loss.forward(logits, labels)).toBeCloseTo(ref.loss, 5);
        expectClose(loss.backward().data, ref.dlogits, 1e-6, `${isa} dlogits [${n}, ${classes}]`);
        expectClose(loss.probabilities!.data, ref.probs, 1e-6, `${isa} probs`);
        expect(loss.forward(logits, Uint8Array.from(labels))).toBeCloseTo(ref.loss, 5);
      });
    }
  });

  it('is numerically stable for huge logits', () => {
    const logits = new Tensor(Float32Array.of(1000, -1000, 0, 3e4, 3e4 + 2, -3e4), [2, 3]);
    const loss = new CrossEntropyLoss();
    const value = loss.forward(logits, Uint8Array.of(1, 0));
    expect(value).toBeCloseTo((2000 + 2.1269280110429727) / 2, 3);
    expect(loss.backward().data.every(Number.isFinite)).toBe(true);
  });

  it('rejects bad labels and shapes', () => {
    const loss = new CrossEntropyLoss();
    const logits = Tensor.zeros([2, 3]);
    expect(() => loss.forward(logits, Uint8Array.of(0, 3))).toThrow(/labels\[1\] = 3 is outside \[0, 3\)/);
    expect(() => loss.forward(logits, Int32Array.of(-1, 0))).toThrow(/labels\[0\] = -1/);
    expect(() => loss.forward(logits, Uint8Array.of(0))).toThrow(/labels has 1 entries but logits \[2, 3\] has batch size 2/);
    expect(() => loss.forward(Tensor.zeros([6]), Uint8Array.of(0))).toThrow(/expects logits of shape \[N, C\]/);
    expect(() => loss.forward(logits, [0, 1] as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => new CrossEntropyLoss().backward()).toThrow(/before forward/);
  });
});
