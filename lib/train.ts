// Training and evaluation loops. Both are async and give the event loop a
// turn between batches (setImmediate), so a server that trains in-process
// keeps answering requests; each batch itself is one synchronous native run.
import { Module } from './module';
import { Tensor, assertTensor, formatShape, describeValue } from './tensor';
import { CrossEntropyLoss, type Labels } from './loss';
import { Optimizer } from './optim';
import { Rng, defaultRng, checkSeed } from './init';
import type { Dataset } from './data';

export interface BatchInfo {
  /** 1-based epoch number. */
  epoch: number;
  /** 1-based batch number within the epoch. */
  batch: number;
  batches: number;
  /** Samples processed so far in this epoch. */
  samples: number;
  /** Mean loss of this batch. */
  loss: number;
  /** Seconds since the epoch started. */
  seconds: number;
}

export interface EpochInfo {
  epoch: number;
  epochs: number;
  /** Mean training loss over the epoch's samples. */
  loss: number;
  /** Wall-clock time of the epoch's batches (onEpoch excluded). */
  seconds: number;
  samplesPerSecond: number;
}

export interface FitOptions {
  /** Optimizer; if created without parameters it is attached to the model's. */
  optimizer: Optimizer;
  /** Default 1. */
  epochs?: number;
  /** Default 64. The last batch of an epoch may be smaller (nothing is dropped). */
  batchSize?: number;
  /** Reshuffle the samples every epoch. Default true. */
  shuffle?: boolean;
  /** Seed of the shuffling order (default: drawn from the global generator, see manualSeed). */
  seed?: number;
  /** Loss function. Default: a new CrossEntropyLoss. */
  loss?: CrossEntropyLoss;
  /** Called after every batch. */
  onBatch?: (info: BatchInfo) => void;
  /** Called after every epoch; a returned promise is awaited (e.g. an evaluation). */
  onEpoch?: (info: EpochInfo) => void | Promise<void>;
  /** Stops training between batches (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

export interface FitResult {
  epochs: EpochInfo[];
}

export interface EvaluateResult {
  /** Mean cross-entropy. */
  loss: number;
  /** Fraction of samples whose arg-max output equals the label. */
  accuracy: number;
  correct: number;
  count: number;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function checkDataset(data: Dataset, name: string): { count: number; sampleShape: number[]; sampleSize: number } {
  if (data === null || typeof data !== 'object') throw new TypeError(`${name} must be { inputs: Tensor, labels }, got ${describeValue(data)}`);
  assertTensor(data.inputs, `${name}.inputs`);
  const labels = data.labels;
  if (!(labels instanceof Uint8Array || labels instanceof Int32Array)) {
    throw new TypeError(`${name}.labels must be a Uint8Array or Int32Array, got ${describeValue(labels)}`);
  }
  const shape = data.inputs.shape;
  if (shape.length < 2 || shape[0] < 1) throw new RangeError(`${name}.inputs must have shape [N, ...] with N >= 1, got ${formatShape(shape)}`);
  if (labels.length !== shape[0]) throw new RangeError(`${name} has ${shape[0]} inputs but ${labels.length} labels`);
  const sampleShape = shape.slice(1);
  return { count: shape[0], sampleShape, sampleSize: sampleShape.reduce((a, b) => a * b, 1) };
}

function positiveInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${describeValue(v)}`);
  return v;
}

/** Batch input/label buffers, one pair per batch size (full and last partial batch). */
class BatchBuffers {
  private readonly kept = new Map<number, { inputs: Tensor; labels: Labels }>();
  constructor(private readonly sampleShape: number[], private readonly labelType: 'u8' | 'i32') {}

  get(size: number): { inputs: Tensor; labels: Labels } {
    let b = this.kept.get(size);
    if (!b) {
      const sampleSize = this.sampleShape.reduce((a, c) => a * c, 1);
      b = {
        inputs: new Tensor(new Float32Array(size * sampleSize), [size, ...this.sampleShape]),
        labels: this.labelType === 'u8' ? new Uint8Array(size) : new Int32Array(size),
      };
      this.kept.set(size, b);
    }
    return b;
  }
}

/** Copies samples order[from..from+size) into the batch buffers. */
function gather(data: Dataset, sampleSize: number, order: Uint32Array, from: number, batch: { inputs: Tensor; labels: Labels }): void {
  const src = data.inputs.data, dst = batch.inputs.data, labels = batch.labels, n = labels.length;
  for (let b = 0; b < n; b++) {
    const s = order[from + b];
    labels[b] = data.labels[s];
    // A typed-array copy: less than half the time of an element loop (~65 us per MNIST batch).
    dst.set(src.subarray(s * sampleSize, (s + 1) * sampleSize), b * sampleSize);
  }
}

// Models a fit() is training. Two fits of one model would interleave their
// batches and optimizers; that is refused rather than done silently.
const modelsInFit = new WeakSet<Module>();

/**
 * Trains `model` on `data` with cross-entropy: per batch zeroGrad, forward,
 * loss, backward, optimizer step. Resolves after the last epoch.
 *
 * Other code may use the model between batches (fit yields to the event
 * loop after each): evaluate() or predict() switch it to eval mode while
 * they run, so every batch sets train mode again before its forward pass, and
 * every evaluate() batch sets eval mode again; a batch's forward, backward
 * and step run in one turn, so no one sees its half-done state.
 */
export async function fit(model: Module, dataset: Dataset, options: FitOptions): Promise<FitResult> {
  if (!(model instanceof Module)) throw new TypeError(`model must be a Module, got ${describeValue(model)}`);
  if (modelsInFit.has(model)) throw new Error('fit: this model is already being trained by another fit() call that has not finished');
  if (options === null || typeof options !== 'object') throw new TypeError(`fit options must be an object, got ${describeValue(options)}`);
  const { count, sampleShape, sampleSize } = checkDataset(dataset, 'data');
  // The data as checked: fit yields between batches, and a dataset object
  // changed meanwhile must not be read with the old sizes.
  const data: Dataset = { inputs: dataset.inputs, labels: dataset.labels };
  const optimizer = options.optimizer;
  if (!(optimizer instanceof Optimizer)) throw new TypeError(`options.optimizer must be an Optimizer (SGD, Adam), got ${describeValue(optimizer)}`);
  optimizer.attach(model);
  const epochs = positiveInt(options.epochs ?? 1, 'epochs');
  const batchSize = positiveInt(options.batchSize ?? 64, 'batchSize');
  const shuffle = options.shuffle ?? true;
  const rng = new Rng(options.seed === undefined ? defaultRng().nextUint32() : checkSeed(options.seed));
  const loss = options.loss ?? new CrossEntropyLoss();
  const buffers = new BatchBuffers(sampleShape, data.labels instanceof Uint8Array ? 'u8' : 'i32');
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  const batches = Math.ceil(count / batchSize);
  const wasTraining = model.training;
  const history: EpochInfo[] = [];
  // Skips input gradients nobody reads (e.g. conv1's backward-data).
  const backward = model.backward as (dy: Tensor, needInputGrad?: boolean) => Tensor;
  modelsInFit.add(model);
  try {
    for (let epoch = 1; epoch <= epochs; epoch++) {
      if (shuffle) rng.shuffle(order);
      let lossSum = 0;
      let seconds = 0;
      const started = performance.now();
      for (let b = 0; b < batches; b++) {
        if (options.signal?.aborted) throw options.signal.reason ?? new Error('fit aborted');
        const from = b * batchSize;
        const batch = buffers.get(Math.min(batchSize, count - from));
        gather(data, sampleSize, order, from, batch);
        model.train();
        optimizer.zeroGrad();
        const value = loss.forward(model.forward(batch.inputs), batch.labels);
        backward.call(model, loss.backward(), false);
        optimizer.step();
        lossSum += value * batch.labels.length;
        seconds = (performance.now() - started) / 1000;
        options.onBatch?.({ epoch, batch: b + 1, batches, samples: from + batch.labels.length, loss: value, seconds });
        await nextTurn();
      }
      seconds = (performance.now() - started) / 1000;
      const info: EpochInfo = { epoch, epochs, loss: lossSum / count, seconds, samplesPerSecond: count / seconds };
      history.push(info);
      await options.onEpoch?.(info);
    }
  } finally {
    modelsInFit.delete(model);
    model.train(wasTraining);
  }
  return { epochs: history };
}

export interface EvaluateOptions {
  /** Default 250. */
  batchSize?: number;
}

/** Loss and accuracy of `model` in eval mode (the previous mode is restored). */
export async function evaluate(model: Module, dataset: Dataset, options: EvaluateOptions = {}): Promise<EvaluateResult> {
  if (!(model instanceof Module)) throw new TypeError(`model must be a Module, got ${describeValue(model)}`);
  const { count, sampleShape, sampleSize } = checkDataset(dataset, 'data');
  const data: Dataset = { inputs: dataset.inputs, labels: dataset.labels };  // as checked (see fit)
  const batchSize = positiveInt(options.batchSize ?? 250, 'batchSize');
  const loss = new CrossEntropyLoss();
  const wasTraining = model.training;
  model.eval();
  let lossSum = 0;
  let correct = 0;
  try {
    for (let from = 0; from < count; from += batchSize) {
      const n = Math.min(batchSize, count - from);
      const inputs = sliceBatch(data.inputs, sampleShape, sampleSize, from, n);
      const labels = data.labels.subarray(from, from + n);
      model.eval();
      const logits = model.forward(inputs);
      lossSum += loss.forward(logits, labels) * n;
      correct += countCorrect(logits, labels);
      await nextTurn();
    }
  } finally {
    model.train(wasTraining);
  }
  return { loss: lossSum / count, accuracy: correct / count, correct, count };
}

function sliceBatch(inputs: Tensor, sampleShape: number[], sampleSize: number, from: number, n: number): Tensor {
  return new Tensor(inputs.data.subarray(from * sampleSize, (from + n) * sampleSize), [n, ...sampleShape]);
}

function countCorrect(logits: Tensor, labels: Labels): number {
  const [n, classes] = logits.shape;
  const y = logits.data;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (y[i * classes + c] > y[i * classes + best]) best = c;
    if (best === labels[i]) correct++;
  }
  return correct;
}

/**
 * Model outputs for `inputs` [N, ...] in eval mode, computed in batches and
 * copied into a new tensor (the previous mode is restored).
 */
export function predict(model: Module, inputs: Tensor, options: EvaluateOptions = {}): Tensor {
  if (!(model instanceof Module)) throw new TypeError(`model must be a Module, got ${describeValue(model)}`);
  assertTensor(inputs, 'inputs');
  if (inputs.shape.length < 2 || inputs.shape[0] < 1) throw new RangeError(`inputs must have shape [N, ...] with N >= 1, got ${formatShape(inputs.shape)}`);
  const batchSize = positiveInt(options.batchSize ?? 250, 'batchSize');
  const count = inputs.shape[0];
  const sampleShape = inputs.shape.slice(1);
  const sampleSize = inputs.data.length / count;
  const wasTraining = model.training;
  model.eval();
  try {
    let out: Tensor | null = null;
    for (let from = 0; from < count; from += batchSize) {
      const n = Math.min(batchSize, count - from);
      const y = model.forward(sliceBatch(inputs, sampleShape, sampleSize, from, n));
      const rowSize = y.data.length / n;
      out ??= new Tensor(new Float32Array(count * rowSize), [count, ...y.shape.slice(1)]);
      out.data.set(y.data, from * rowSize);
    }
    return out!;
  } finally {
    model.train(wasTraining);
  }
}

/** Index of the largest value in each row of [N, C] outputs. */
export function argmax(outputs: Tensor): Int32Array {
  assertTensor(outputs, 'outputs');
  if (outputs.shape.length !== 2) throw new RangeError(`argmax expects [N, C] outputs, got ${formatShape(outputs.shape)}`);
  const [n, classes] = outputs.shape;
  if (classes < 1) throw new RangeError(`argmax needs at least one class, got outputs of shape ${formatShape(outputs.shape)}`);
  const result = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (outputs.data[i * classes + c] > outputs.data[i * classes + best]) best = c;
    result[i] = best;
  }
  return result;
}
