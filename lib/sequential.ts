// Sequential container with PyTorch-compatible naming ("0.weight",
// "1.running_mean", ...) and the .bnk model file (see model-file.ts).
import * as fs from 'node:fs';
import { Module, type Parameter, type BufferState } from './module';
import { Tensor, assertTensor, formatShape, describeValue, shapeSize } from './tensor';
import { BatchNorm1d, BatchNorm2d, type BatchNormOptions } from './batchnorm';
import { Linear, Conv2d, ReLU, Sigmoid, MaxPool2d, Flatten, Dropout, type LayerConfig } from './layers';
import { Rng } from './init';
import { encodeModelFile, decodeModelFile, writeFileAtomic, ModelFileError } from './model-file';
import { sameShape } from './reuse';
import { BatchNormMaxPool2d, ConvBatchNormMaxPool2d } from './fused-pool';

/** Name -> tensor, in PyTorch's state_dict order. Tensors share memory with the model. */
export type StateDict = Record<string, Tensor>;

/** What loadStateDict accepts per entry: a Tensor or anything with data and shape. */
export interface TensorLike {
  data: Float32Array;
  shape: readonly number[];
}

type AnyBatchNorm = BatchNorm1d | BatchNorm2d;

function isBatchNorm(m: Module): m is AnyBatchNorm {
  return m instanceof BatchNorm1d || m instanceof BatchNorm2d;
}

const NOT_COMPUTED = new Tensor(new Float32Array(0), [0]);

/**
 * One unit of Sequential's work: layers first..last (inclusive) run as one.
 * A BatchNorm with fused ReLU absorbs the ReLU after it, a BatchNorm2d
 * (+ ReLU) followed by MaxPool2d(2) runs as one native kernel, and so does a
 * one-channel 3x3 Conv2d in front of such a pair (see fused-pool.ts). Exposed for
 * profiling (bench/mnist.mjs times each step).
 */
export interface SequentialStep {
  readonly first: number;
  readonly last: number;
  forward(x: Tensor): Tensor;
  backward(dy: Tensor, needInputGrad: boolean): Tensor;
}

function layerStep(layer: Module, first: number, last: number): SequentialStep {
  return {
    first, last,
    forward: (x) => layer.forward(x),
    backward: (dy, needInputGrad) => (layer.backward as (dy: Tensor, needDx: boolean) => Tensor)(dy, needInputGrad),
  };
}

function planSteps(layers: readonly Module[], skip: readonly boolean[]): SequentialStep[] {
  const steps: SequentialStep[] = [];
  // The layer after `i` and any ReLUs fused into it.
  const after = (i: number) => {
    let end = i + 1;
    while (end < layers.length && skip[end]) end++;
    return end;
  };
  for (let i = 0; i < layers.length; ) {
    const end = after(i);
    const stemPool = i + 1 < layers.length ? after(i + 1) : layers.length;
    if (stemPool < layers.length && ConvBatchNormMaxPool2d.applies(layers[i], layers[i + 1], layers[stemPool])) {
      const fused = new ConvBatchNormMaxPool2d(layers[i] as Conv2d, layers[i + 1] as BatchNorm2d, layers[stemPool] as MaxPool2d);
      steps.push({ first: i, last: stemPool, forward: (x) => fused.forward(x), backward: (dy, need) => fused.backward(dy, need) });
      i = stemPool + 1;
    } else if (end < layers.length && BatchNormMaxPool2d.applies(layers[i], layers[end])) {
      const fused = new BatchNormMaxPool2d(layers[i] as BatchNorm2d, layers[end] as MaxPool2d);
      steps.push({ first: i, last: end, forward: (x) => fused.forward(x), backward: (dy, need) => fused.backward(dy, need) });
      i = end + 1;
    } else {
      steps.push(layerStep(layers[i], i, end - 1));
      i = end;
    }
  }
  return steps;
}

/** Applies layers in order; backward runs them in reverse. */
export class Sequential extends Module {
  readonly layers: readonly Module[];
  /** Free-form JSON-serializable data stored in the model file (e.g. input normalization). */
  metadata: Record<string, unknown> = {};
  /** skip[i]: layer i is a ReLU right after a BatchNorm that already applies ReLU (fused). */
  private readonly skip: boolean[];
  private readonly plan: readonly SequentialStep[];
  private readonly firstTrainable: number;
  private readonly namedParameters: Parameter[];

  constructor(layers: Module[]) {
    super();
    if (!Array.isArray(layers)) throw new TypeError(`Sequential expects an array of layers, got ${describeValue(layers)}`);
    layers.forEach((layer, i) => {
      if (!(layer instanceof Module)) throw new TypeError(`Sequential layer ${i} must be a Module, got ${describeValue(layer)}`);
      // A layer keeps the input and output of its last forward for backward,
      // so one instance cannot stand at two places (PyTorch's autograd can
      // share a module; here the second use would overwrite the first's state).
      const first = layers.indexOf(layer);
      if (first !== i) throw new RangeError(`Sequential layers ${first} and ${i} are the same ${layer.constructor.name} instance; use two instances (weights can be copied with loadStateDict)`);
    });
    this.layers = Object.freeze([...layers]);
    this.skip = layers.map((layer, i) => layer instanceof ReLU && i > 0 && isBatchNorm(layers[i - 1]) && (layers[i - 1] as AnyBatchNorm).relu);
    this.plan = Object.freeze(planSteps(this.layers, this.skip));
    const first = layers.findIndex((l) => l.parameters().length > 0);
    this.firstTrainable = first < 0 ? layers.length : first;
    this.namedParameters = [];
    layers.forEach((layer, i) => {
      for (const p of layer.parameters()) this.namedParameters.push({ name: `${i}.${p.name}`, shape: p.shape, data: p.data, grad: p.grad });
    });
  }

  forward(x: Tensor): Tensor {
    assertTensor(x, 'input');
    const plan = this.plan;
    for (let i = 0; i < plan.length; i++) x = plan[i].forward(x);
    return x;
  }

  /**
   * Backpropagates dy (the gradient w.r.t. the last forward's output),
   * accumulating every parameter's grad. Returns dL/dinput, or an empty tensor
   * when needInputGrad is false (then layers before the first trainable one
   * are skipped: nothing upstream needs their gradients).
   */
  backward(dy: Tensor, needInputGrad = true): Tensor {
    assertTensor(dy, 'dy');
    const plan = this.plan;
    const stop = needInputGrad ? 0 : this.firstTrainable;
    for (let s = plan.length - 1; s >= 0 && plan[s].first >= stop; s--) {
      dy = plan[s].backward(dy, needInputGrad || plan[s].first > this.firstTrainable);
    }
    return needInputGrad ? dy : NOT_COMPUTED;
  }

  /** How forward/backward group the layers (see SequentialStep). */
  steps(): readonly SequentialStep[] {
    return this.plan;
  }

  override train(mode = true): this {
    this.training = mode;
    for (const layer of this.layers) layer.train(mode);
    return this;
  }

  /** Every parameter, named "<layer index>.<name>", in PyTorch's order; data and grad are the live arrays. */
  override parameters(): Parameter[] {
    return this.namedParameters.slice();
  }

  override buffers(): BufferState[] {
    const out: BufferState[] = [];
    this.layers.forEach((layer, i) => {
      for (const b of layer.buffers()) out.push({ name: `${i}.${b.name}`, shape: b.shape, data: b.data });
    });
    return out;
  }

  /**
   * Parameters and buffers by name, as PyTorch's state_dict(): per layer its
   * parameters, then its buffers (BatchNorm: running_mean, running_var,
   * num_batches_tracked). Tensors share memory with the model, except
   * num_batches_tracked (a copy: it is a number in the layer).
   */
  stateDict(): StateDict {
    const state: StateDict = {};
    this.layers.forEach((layer, i) => {
      if (layer instanceof Sequential) {
        for (const [name, t] of Object.entries(layer.stateDict())) state[`${i}.${name}`] = t;
        return;
      }
      for (const p of layer.parameters()) state[`${i}.${p.name}`] = new Tensor(p.data, p.shape);
      for (const b of layer.buffers()) state[`${i}.${b.name}`] = new Tensor(b.data, b.shape);
      if (isBatchNorm(layer) && layer.trackRunningStats) {
        state[`${i}.num_batches_tracked`] = new Tensor(Float32Array.of(layer.numBatchesTracked), []);
      }
    });
    return state;
  }

  /**
   * Copies values into the model. Every name must match and every shape must
   * agree; nothing is modified unless the whole dict is valid.
   */
  loadStateDict(state: Record<string, TensorLike>): void {
    if (state === null || typeof state !== 'object') throw new TypeError(`state must be an object, got ${describeValue(state)}`);
    const own = this.stateDict();
    const missing = Object.keys(own).filter((k) => !(k in state));
    const unexpected = Object.keys(state).filter((k) => !(k in own));
    if (missing.length || unexpected.length) {
      const parts = [];
      if (missing.length) parts.push(`missing ${missing.join(', ')}`);
      if (unexpected.length) parts.push(`unexpected ${unexpected.join(', ')}`);
      throw new RangeError(`loadStateDict: keys do not match the model: ${parts.join('; ')}`);
    }
    for (const [name, target] of Object.entries(own)) {
      const source = state[name];
      if (!source || !(source.data instanceof Float32Array) || !Array.isArray(source.shape)) {
        throw new TypeError(`loadStateDict: ${name} must be a Tensor (Float32Array data and a shape), got ${describeValue(source)}`);
      }
      if (!sameShape(source.shape, target.shape) || source.data.length !== shapeSize(target.shape)) {
        throw new RangeError(`loadStateDict: size mismatch for ${name}: got shape ${formatShape(source.shape)} (${source.data.length} values), the model has ${formatShape(target.shape)}`);
      }
      // A count: a NaN or negative one would surface later as a bad momentum
      // the user never set (momentum: null averages over it).
      if (name.endsWith('num_batches_tracked') && !(Number.isInteger(source.data[0]) && source.data[0] >= 0)) {
        throw new RangeError(`loadStateDict: ${name} must be a non-negative integer, got ${source.data[0]}`);
      }
    }
    this.applyState(state);
  }

  private applyState(state: Record<string, TensorLike>, prefix = ''): void {
    this.layers.forEach((layer, i) => {
      const at = `${prefix}${i}.`;
      if (layer instanceof Sequential) return layer.applyState(state, at);
      for (const p of layer.parameters()) p.data.set(state[at + p.name].data);
      for (const b of layer.buffers()) b.data.set(state[at + b.name].data);
      if (isBatchNorm(layer) && layer.trackRunningStats) layer.numBatchesTracked = Math.round(state[`${at}num_batches_tracked`].data[0]);
    });
  }

  /** The architecture as JSON-serializable layer configs (what save() stores). */
  config(): LayerConfig {
    return { type: 'Sequential', layers: this.layers.map((layer, i) => layerConfig(layer, i)) };
  }

  /**
   * Writes architecture, parameters, buffers and `metadata` to `path`
   * atomically (a crash leaves the old file or the complete new one).
   */
  save(path: string, metadata: Record<string, unknown> = this.metadata): void {
    if (typeof path !== 'string' || path === '') throw new TypeError(`path must be a non-empty string, got ${describeValue(path)}`);
    const tensors = Object.entries(this.stateDict()).map(([name, t]) => ({ name, shape: [...t.shape], data: t.data }));
    writeFileAtomic(path, encodeModelFile({ architecture: this.layers.map((layer, i) => layerConfig(layer, i)), tensors, metadata }));
  }

  /** Reads a model written by save(); throws a ModelFileError / RangeError naming the problem. */
  static load(path: string): Sequential {
    if (typeof path !== 'string' || path === '') throw new TypeError(`path must be a non-empty string, got ${describeValue(path)}`);
    const contents = decodeModelFile(fs.readFileSync(path), path);
    let model: Sequential;
    try {
      model = new Sequential(contents.architecture.map((c, i) => layerFromConfig(c, `layer ${i}`)));
    } catch (e) {
      throw new ModelFileError('BAD_HEADER', `bnkit model file ${path}: invalid architecture: ${(e as Error).message}`);
    }
    const state: Record<string, TensorLike> = {};
    for (const t of contents.tensors) {
      if (t.name in state) throw new ModelFileError('BAD_HEADER', `bnkit model file ${path}: tensor ${t.name} appears twice`);
      state[t.name] = t;
    }
    try {
      model.loadStateDict(state);
    } catch (e) {
      throw new ModelFileError('BAD_HEADER', `bnkit model file ${path}: ${(e as Error).message}`);
    }
    model.metadata = contents.metadata;
    return model;
  }

  override toString(): string {
    const lines = this.layers.map((l, i) => {
      const text = isBatchNorm(l) ? `${l.constructor.name}(${l.numFeatures}${l.relu ? ', relu' : ''})` : String(l);
      const pooled = !this.skip[i] && this.plan.some((step) => step.last === i && step.first < i);
      const note = this.skip[i] ? '  [fused into the BatchNorm above]' : pooled ? '  [fused with the BatchNorm above]' : '';
      return `  (${i}) ${text.split('\n').join('\n  ')}${note}`;
    });
    return `Sequential(\n${lines.join('\n')}\n)`;
  }
}

function batchNormConfig(layer: AnyBatchNorm): LayerConfig {
  return {
    type: layer instanceof BatchNorm2d ? 'BatchNorm2d' : 'BatchNorm1d',
    numFeatures: layer.numFeatures, eps: layer.eps, momentum: layer.momentum, affine: layer.affine,
    trackRunningStats: layer.trackRunningStats, channelsLast: layer.channelsLast, relu: layer.relu,
  };
}

function layerConfig(layer: Module, index: number): LayerConfig {
  if (isBatchNorm(layer)) return batchNormConfig(layer);
  const configurable = layer as Module & { config?: () => LayerConfig };
  if (typeof configurable.config === 'function') return configurable.config();
  throw new TypeError(`layer ${index} (${layer.constructor.name}) cannot be saved: it has no config()`);
}

// Layers rebuilt from a file get their values from the file; a private
// generator keeps construction from consuming the global random stream.
function layerFromConfig(raw: unknown, where: string): Module {
  if (raw === null || typeof raw !== 'object') throw new TypeError(`${where}: config is not an object`);
  const c = raw as Record<string, unknown>;
  const rng = new Rng(0);
  const num = (key: string): number => c[key] as number;
  switch (c.type) {
    case 'Linear':
      return new Linear(num('inFeatures'), num('outFeatures'), { bias: c.bias !== false, rng });
    case 'Conv2d':
      return new Conv2d(num('inChannels'), num('outChannels'), c.kernelSize as [number, number], {
        stride: c.stride as [number, number], padding: c.padding as [number, number], bias: c.bias !== false, rng,
      });
    case 'ReLU':
      return new ReLU();
    case 'Sigmoid':
      return new Sigmoid();
    case 'MaxPool2d':
      return new MaxPool2d(num('kernelSize'), num('stride'));
    case 'Flatten':
      return new Flatten();
    case 'Dropout':
      return new Dropout(num('p'), { rng });
    case 'BatchNorm1d':
    case 'BatchNorm2d': {
      const options: BatchNormOptions = {
        eps: c.eps as number, momentum: c.momentum as number | null, affine: c.affine as boolean,
        trackRunningStats: c.trackRunningStats as boolean, channelsLast: c.channelsLast as boolean, relu: c.relu as boolean,
      };
      return c.type === 'BatchNorm2d' ? new BatchNorm2d(num('numFeatures'), options) : new BatchNorm1d(num('numFeatures'), options);
    }
    case 'Sequential':
      if (!Array.isArray(c.layers)) throw new TypeError(`${where}: Sequential config has no layers`);
      return new Sequential(c.layers.map((l, i) => layerFromConfig(l, `${where}.${i}`)));
    default:
      throw new TypeError(`${where}: unknown layer type ${JSON.stringify(c.type)}`);
  }
}
