// fit / evaluate / predict: learning, determinism, yielding to the event loop
// (an HTTP server answers mid-training), no per-step allocation, callbacks.
import { describe, it, expect, beforeAll } from 'vitest';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Tensor } from '../lib/tensor';
import { loadMnist, type Dataset } from '../lib/data';
import { buildModel } from '../lib/models';
import { SGD, Adam } from '../lib/optim';
import { fit, evaluate, predict, argmax } from '../lib/train';

let train: Dataset;
let test: Dataset;
beforeAll(() => {
  const m = loadMnist(undefined, { limit: 6000, testLimit: 2000 });
  train = m.train;
  test = m.test;
});

function subset(data: Dataset, n: number): Dataset {
  const size = data.inputs.data.length / data.labels.length;
  return { inputs: new Tensor(data.inputs.data.subarray(0, n * size), [n, ...data.inputs.shape.slice(1)]), labels: data.labels.subarray(0, n) };
}

describe('fit with the model used in between its batches', () => {
  it('evaluate() and predict() running concurrently change neither the training nor its result', async () => {
    const run = async (concurrent: boolean) => {
      const model = buildModel('cnn-bn', { seed: 4 });
      const training = fit(model, subset(train, 64 * 12), { optimizer: new SGD({ lr: 0.05, momentum: 0.9 }), epochs: 1, batchSize: 64, seed: 4 });
      let evaluated = null;
      if (concurrent) {
        // Interleaves with fit's batches: each side yields after every batch.
        evaluated = await evaluate(model, subset(test, 64 * 4), { batchSize: 64 });
        predict(model, subset(test, 8).inputs);
      }
      await training;
      return { state: model.stateDict(), evaluated };
    };
    const alone = await run(false);
    const shared = await run(true);
    expect(shared.evaluated!.count).toBe(256);
    // Bit for bit: no fit batch ran in eval mode, no evaluate batch in train
    // mode (which would have moved the running statistics).
    for (const [name, t] of Object.entries(alone.state)) expect(shared.state[name].data, name).toEqual(t.data);
  });

  it('a dataset object changed during fit() is not read with the sizes checked at the start', async () => {
    const model = buildModel('mlp', { seed: 1 });
    const data = subset(train, 256);
    const shrunk = subset(train, 10);
    await fit(model, data, {
      optimizer: new SGD({ lr: 0.05 }), batchSize: 64, seed: 1,
      onBatch: () => { data.inputs = shrunk.inputs; data.labels = shrunk.labels; },
    });
    const reference = buildModel('mlp', { seed: 1 });
    await fit(reference, subset(train, 256), { optimizer: new SGD({ lr: 0.05 }), batchSize: 64, seed: 1 });
    expect(model.stateDict()['1.weight'].data).toEqual(reference.stateDict()['1.weight'].data);
  });

  it('a second fit() of a model still being trained is refused', async () => {
    const model = buildModel('mlp', { seed: 1 });
    const first = fit(model, subset(train, 256), { optimizer: new SGD({ lr: 0.05 }), epochs: 1, batchSize: 64 });
    await expect(fit(model, subset(train, 256), { optimizer: new SGD({ lr: 0.05 }) })).rejects.toThrow(/already being trained by another fit\(\) call/);
    await first;
    await fit(model, subset(train, 64), { optimizer: new SGD({ lr: 0.05 }) });
  });
});

describe('fit', () => {
  it('trains an MLP to > 90% on an MNIST subset and reports each epoch', async () => {
    const model = buildModel('mlp-bn', { seed: 1 });
    const epochs: number[] = [];
    const result = await fit(model, train, {
      optimizer: new SGD({ lr: 0.1, momentum: 0.9 }), epochs: 2, batchSize: 64, seed: 1,
      onEpoch: (e) => void epochs.push(e.epoch),
    });
    expect(epochs).toEqual([1, 2]);
    expect(result.epochs).toHaveLength(2);
    expect(result.epochs[1].loss).toBeLessThan(result.epochs[0].loss);
    expect(result.epochs[0].samplesPerSecond).toBeGreaterThan(0);
    const r = await evaluate(model, test);
    expect(r.count).toBe(2000);
    expect(r.accuracy).toBeGreaterThan(0.9);
    expect(model.training).toBe(true);
  });

  it('the same seed gives bit-identical models; another seed does not', async () => {
    const run = async (seed: number) => {
      const model = buildModel('cnn-bn', { seed });
      await fit(model, subset(train, 200), { optimizer: new SGD({ lr: 0.05, momentum: 0.9 }), epochs: 1, batchSize: 32, seed });
      return model.stateDict();
    };
    const a = await run(5), b = await run(5), c = await run(6);
    for (const key of Object.keys(a)) expect(b[key].data, key).toEqual(a[key].data);
    expect(c['0.weight'].data).not.toEqual(a['0.weight'].data);
  });

  it('yields between batches: an HTTP server answers while training runs', async () => {
    const server = http.createServer((_, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    let fitDone = false;
    let answeredDuringFit = 0;
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const ask = () => http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
      res.resume();
      res.on('end', () => { if (!fitDone) answeredDuringFit++; });
    });
    try {
      await fit(buildModel('mlp', { seed: 2 }), train, {
        optimizer: new Adam(), epochs: 1, batchSize: 16, seed: 2,
        onBatch: (b) => { if (b.batch % 40 === 1) ask(); },
      });
      fitDone = true;
    } finally {
      clearInterval(timer);
      server.close();
    }
    expect(answeredDuringFit).toBeGreaterThanOrEqual(5);
    expect(ticks).toBeGreaterThanOrEqual(5);
  });

  it('allocates nothing per step once shapes are known', async () => {
    const model = buildModel('cnn-bn', { seed: 3 });
    const samples: number[] = [];
    await fit(model, subset(train, 64 * 40), {
      optimizer: new SGD({ lr: 0.05, momentum: 0.9 }), epochs: 1, batchSize: 64, seed: 3,
      onBatch: (b) => { if (b.batch >= 5) samples.push(process.memoryUsage().arrayBuffers); },
    });
    // Typed-array memory is flat: every buffer was allocated in the first steps.
    expect(Math.max(...samples) - samples[0]).toBeLessThan(64 * 1024);
    const x = subset(train, 8).inputs;
    expect(model.forward(x)).toBe(model.forward(x));
  });

  it('awaits onEpoch, stops on abort and restores the mode', async () => {
    const model = buildModel('mlp', { seed: 4 });
    model.eval();
    const log: string[] = [];
    await fit(model, subset(train, 256), {
      optimizer: new SGD({ lr: 0.01 }), epochs: 2, batchSize: 128,
      onBatch: (b) => log.push(`batch ${b.epoch}.${b.batch}`),
      onEpoch: async (e) => { await new Promise((r) => setTimeout(r, 10)); log.push(`epoch ${e.epoch} done`); },
    });
    expect(log).toEqual(['batch 1.1', 'batch 1.2', 'epoch 1 done', 'batch 2.1', 'batch 2.2', 'epoch 2 done']);
    expect(model.training).toBe(false);
    const controller = new AbortController();
    const reason = new Error('stop now');
    await expect(fit(model, subset(train, 1024), {
      optimizer: new SGD({ lr: 0.01 }), batchSize: 32, signal: controller.signal,
      onBatch: (b) => { if (b.batch === 3) controller.abort(reason); },
    })).rejects.toBe(reason);
    expect(model.training).toBe(false);
  });

  it('rejects bad arguments with clear messages', async () => {
    const model = buildModel('mlp', { seed: 0 });
    const optimizer = new SGD({ lr: 0.1 });
    await expect(fit(model, { inputs: train.inputs, labels: train.labels.subarray(0, 10) }, { optimizer })).rejects.toThrow(/6000 inputs but 10 labels/);
    await expect(fit(model, { inputs: [1] as unknown as Tensor, labels: train.labels }, { optimizer })).rejects.toThrow(TypeError);
    await expect(fit(model, train, {} as never)).rejects.toThrow(/options.optimizer must be an Optimizer/);
    await expect(fit(model, train, { optimizer, batchSize: 0 })).rejects.toThrow(/batchSize must be a positive integer/);
  });
});

describe('evaluate / predict', () => {
  it('predict returns eval-mode outputs for any batch split; evaluate agrees with argmax', async () => {
    const model = buildModel('mlp-bn', { seed: 7 });
    await fit(model, subset(train, 1000), { optimizer: new SGD({ lr: 0.1, momentum: 0.9 }), batchSize: 50, seed: 7 });
    const data = subset(test, 333);
    const out = predict(model, data.inputs, { batchSize: 100 });
    expect(out.shape).toEqual([333, 10]);
    expect(predict(model, data.inputs, { batchSize: 333 }).data).toEqual(out.data);
    const classes = argmax(out);
    const correct = classes.reduce((n, c, i) => n + (c === data.labels[i] ? 1 : 0), 0);
    const r = await evaluate(model, data, { batchSize: 64 });
    expect(r.correct).toBe(correct);
    expect(r.accuracy).toBeCloseTo(correct / 333, 12);
    expect(model.training).toBe(true);
  });
});
