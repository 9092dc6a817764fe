// Layers of a feed-forward network, each a forward/backward pair on Tensors
// with PyTorch's parameter layouts (Conv2d weight [out, in, kh, kw], Linear
// weight [out, in]) and default initialization. Outputs and gradients live in
// buffers owned by the layer and reused while shapes repeat: copy a result if
// you need it after the next call.
import { native } from './native';
import { Module, type Parameter } from './module';
import { Tensor, assertTensor, formatShape, describeValue } from './tensor';
import { TensorCache, IndexCache, sameShape } from './reuse';
import { Rng, defaultRng, kaimingUniform, fanInUniform } from './init';

/** Serializable description of a layer (stored in model files). */
export interface LayerConfig {
  type: string;
  [key: string]: unknown;
}

/** A layer that can describe itself for Sequential.save(). */
export interface ConfigurableLayer {
  config(): LayerConfig;
}

/** Returned by backward(dy, false): the input gradient was not computed. */
const NOT_COMPUTED = new Tensor(new Float32Array(0), [0]);

function positiveInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${describeValue(v)}`);
  }
  return v;
}

function pair(v: unknown, name: string, min: number): [number, number] {
  const check = (x: unknown): number => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < min) {
      throw new RangeError(`${name} must be an integer >= ${min} or a pair of them, got ${JSON.stringify(v) ?? describeValue(v)}`);
    }
    return x;
  };
  if (Array.isArray(v)) {
    if (v.length !== 2) throw new RangeError(`${name} must be a number or a pair [h, w], got ${JSON.stringify(v)}`);
    return [check(v[0]), check(v[1])];
  }
  const x = check(v);
  return [x, x];
}

function checkRng(rng: unknown): Rng | undefined {
  if (rng !== undefined && !(rng instanceof Rng)) throw new TypeError(`rng must be an Rng, got ${describeValue(rng)}`);
  return rng;
}

function noSavedInput(layer: Module): never {
  throw new TypeError(`${layer.constructor.name}.backward() called before forward(): there is no saved input`);
}

function checkGradShape(layer: Module, dy: Tensor, expected: readonly number[]): void {
  if (!sameShape(dy.shape, expected)) {
    throw new RangeError(`${layer.constructor.name}.backward(): dy shape ${formatShape(dy.shape)} does not match the last output shape ${formatShape(expected)}`);
  }
}

function parameter(name: string, shape: number[]): Parameter {
  let n = 1;
  for (const d of shape) n *= d;
  return { name, shape, data: new Float32Array(n), grad: new Float32Array(n) };
}

export interface LinearOptions {
  /** Learnable bias. Default true. */
  bias?: boolean;
  /** Generator for the initial weights (default: the global one, see manualSeed). */
  rng?: Rng;
}

/** y = x W^T + b on (N, in) inputs; weight [out, in] and its init as torch.nn.Linear. */
export class Linear extends Module implements ConfigurableLayer {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  private readonly out = new TensorCache();
  private readonly inGrad = new TensorCache();
  private input: Tensor | null = null;
  private output: Tensor | null = null;

  constructor(inFeatures: number, outFeatures: number, options: LinearOptions = {}) {
    super();
    this.inFeatures = positiveInt(inFeatures, 'inFeatures');
    this.outFeatures = positiveInt(outFeatures, 'outFeatures');
    const rng = checkRng(options.rng) ?? defaultRng();
    this.weight = parameter('weight', [outFeatures, inFeatures]);
    kaimingUniform(this.weight.data, inFeatures, rng);
    this.bias = options.bias === false ? null : parameter('bias', [outFeatures]);
    if (this.bias) fanInUniform(this.bias.data, inFeatures, rng);
  }

  forward(x: Tensor): Tensor {
    assertTensor(x, 'input');
    if (x.shape.length !== 2 || x.shape[1] !== this.inFeatures) {
      throw new RangeError(`Linear(${this.inFeatures}, ${this.outFeatures}) expects input of shape [N, ${this.inFeatures}], got ${formatShape(x.shape)}`);
    }
    const n = x.shape[0];
    const y = this.out.get(n, this.outFeatures, -1, -1, x.data);
    native.linearForward(x.data, n, this.inFeatures, this.weight.data, this.bias?.data ?? null, this.outFeatures, y.data);
    this.input = x;
    this.output = y;
    return y;
  }

  /** Accumulates weight/bias gradients; returns dL/dx unless needInputGrad is false. */
  backward(dy: Tensor, needInputGrad = true): Tensor {
    assertTensor(dy, 'dy');
    const x = this.input ?? noSavedInput(this);
    checkGradShape(this, dy, this.output!.shape);
    const n = x.shape[0];
    const dx = needInputGrad ? this.inGrad.get(n, this.inFeatures, -1, -1, dy.data, x.data) : null;
    native.linearBackward(x.data, n, this.inFeatures, this.weight.data, this.outFeatures, dy.data, dx ? dx.data : null,
      this.weight.grad, this.bias ? this.bias.grad : null);
    return dx ?? NOT_COMPUTED;
  }

  override parameters(): Parameter[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }

  config(): LayerConfig {
    return { type: 'Linear', inFeatures: this.inFeatures, outFeatures: this.outFeatures, bias: this.bias !== null };
  }

  override toString(): string {
    return `Linear(${this.inFeatures}, ${this.outFeatures}${this.bias ? '' : ', bias=false'})`;
  }
}

export interface Conv2dOptions {
  /** Step between windows: a number or [h, w]. Default 1. */
  stride?: number | [number, number];
  /** Zero padding on each side: a number or [h, w]. Default 0. */
  padding?: number | [number, number];
  /** Learnable bias. Default true. */
  bias?: boolean;
  rng?: Rng;
}

/** 2-D convolution (cross-correlation, as PyTorch) on NCHW inputs; weight [out, in, kh, kw]. */
export class Conv2d extends Module implements ConfigurableLayer {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  private readonly out = new TensorCache();
  private readonly inGrad = new TensorCache();
  private input: Tensor | null = null;
  private output: Tensor | null = null;

  constructor(inChannels: number, outChannels: number, kernelSize: number | [number, number], options: Conv2dOptions = {}) {
    super();
    this.inChannels = positiveInt(inChannels, 'inChannels');
    this.outChannels = positiveInt(outChannels, 'outChannels');
    this.kernelSize = pair(kernelSize, 'kernelSize', 1);
    this.stride = pair(options.stride ?? 1, 'stride', 1);
    this.padding = pair(options.padding ?? 0, 'padding', 0);
    const [kh, kw] = this.kernelSize;
    const rng = checkRng(options.rng) ?? defaultRng();
    const fanIn = inChannels * kh * kw;
    this.weight = parameter('weight', [outChannels, inChannels, kh, kw]);
    kaimingUniform(this.weight.data, fanIn, rng);
    this.bias = options.bias === false ? null : parameter('bias', [outChannels]);
    if (this.bias) fanInUniform(this.bias.data, fanIn, rng);
  }

  /** Output [N, outC, outH, outW] for an input shape; throws naming the shape if it does not fit. */
  outputShape(shape: readonly number[]): [number, number, number, number] {
    if (shape.length !== 4 || shape[1] !== this.inChannels) {
      throw new RangeError(`${this} expects input of shape [N, ${this.inChannels}, H, W], got ${formatShape(shape)}`);
    }
    const [kh, kw] = this.kernelSize;
    const oh = Math.floor((shape[2] + 2 * this.padding[0] - kh) / this.stride[0]) + 1;
    const ow = Math.floor((shape[3] + 2 * this.padding[1] - kw) / this.stride[1]) + 1;
    if (oh < 1 || ow < 1 || shape[0] < 1) {
      throw new RangeError(`${this}: input ${formatShape(shape)} is smaller than the ${kh}x${kw} kernel (after padding)`);
    }
    return [shape[0], this.outChannels, oh, ow];
  }

  forward(x: Tensor): Tensor {
    assertTensor(x, 'input');
    const [n, oc, oh, ow] = this.outputShape(x.shape);
    const y = this.out.get(n, oc, oh, ow, x.data);
    native.conv2dForward(x.data, n, this.inChannels, x.shape[2], x.shape[3], this.weight.data, this.bias?.data ?? null,
      oc, this.kernelSize[0], this.kernelSize[1], this.stride[0], this.stride[1], this.padding[0], this.padding[1], y.data);
    this.input = x;
    this.output = y;
    return y;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor {
    assertTensor(dy, 'dy');
    const x = this.input ?? noSavedInput(this);
    checkGradShape(this, dy, this.output!.shape);
    const [n, c, h, w] = x.shape;
    const dx = needInputGrad ? this.inGrad.get(n, c, h, w, dy.data, x.data) : null;
    native.conv2dBackward(x.data, n, c, h, w, this.weight.data, this.outChannels, this.kernelSize[0], this.kernelSize[1],
      this.stride[0], this.stride[1], this.padding[0], this.padding[1], dy.data, dx ? dx.data : null,
      this.weight.grad, this.bias ? this.bias.grad : null);
    return dx ?? NOT_COMPUTED;
  }

  override parameters(): Parameter[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }

  config(): LayerConfig {
    return {
      type: 'Conv2d', inChannels: this.inChannels, outChannels: this.outChannels, kernelSize: [...this.kernelSize],
      stride: [...this.stride], padding: [...this.padding], bias: this.bias !== null,
    };
  }

  override toString(): string {
    const [kh, kw] = this.kernelSize;
    return `Conv2d(${this.inChannels}, ${this.outChannels}, kernel=${kh}x${kw}, stride=${this.stride.join('x')}, padding=${this.padding.join('x')}${this.bias ? '' : ', bias=false'})`;
  }
}

/** Elementwise activation whose backward needs only its own output. */
abstract class Activation extends Module implements ConfigurableLayer {
  private readonly out = new TensorCache();
  private readonly inGrad = new TensorCache();
  private output: Tensor | null = null;

  protected abstract apply(x: Float32Array, y: Float32Array): void;
  protected abstract gradient(y: Float32Array, dy: Float32Array, dx: Float32Array): void;

  forward(x: Tensor): Tensor {
    assertTensor(x, 'input');
    const y = reuseLike(this.out, x.shape);
    this.apply(x.data, y.data);
    this.output = y;
    return y;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor {
    assertTensor(dy, 'dy');
    const y = this.output ?? noSavedInput(this);
    checkGradShape(this, dy, y.shape);
    if (!needInputGrad) return NOT_COMPUTED;
    const dx = reuseLike(this.inGrad, y.shape);
    this.gradient(y.data, dy.data, dx.data);
    return dx;
  }

  config(): LayerConfig {
    return { type: this.constructor.name };
  }

  override toString(): string {
    return `${this.constructor.name}()`;
  }
}

/** A cached tensor of any rank 1-4 shape (activations keep the input's shape). */
function reuseLike(cache: TensorCache, shape: readonly number[]): Tensor {
  switch (shape.length) {
    case 1: return cache.get(shape[0]);
    case 2: return cache.get(shape[0], shape[1]);
    case 3: return cache.get(shape[0], shape[1], shape[2]);
    case 4: return cache.get(shape[0], shape[1], shape[2], shape[3]);
    default: throw new RangeError(`expected an input with 1 to 4 dimensions, got shape ${formatShape(shape)}`);
  }
}

/** max(0, x). Directly after a BatchNorm created with `relu: true`, Sequential skips it (already applied). */
export class ReLU extends Activation {
  protected apply(x: Float32Array, y: Float32Array): void {
    native.reluForward(x, y);
  }
  protected gradient(y: Float32Array, dy: Float32Array, dx: Float32Array): void {
    native.reluBackward(y, dy, dx);
  }
}

/** 1 / (1 + exp(-x)). */
export class Sigmoid extends Activation {
  protected apply(x: Float32Array, y: Float32Array): void {
    native.sigmoidForward(x, y);
  }
  protected gradient(y: Float32Array, dy: Float32Array, dx: Float32Array): void {
    native.sigmoidBackward(y, dy, dx);
  }
}

/** Uint8 companion buffers (pooling window codes), kept like TensorCache keeps tensors. */
export class ByteCache {
  private readonly kept: Uint8Array[] = [];

  get(length: number): Uint8Array {
    const at = this.kept.findIndex((a) => a.length === length);
    if (at >= 0) {
      const a = this.kept[at];
      if (at !== 0) {
        this.kept.splice(at, 1);
        this.kept.unshift(a);
      }
      return a;
    }
    const a = new Uint8Array(length);
    this.kept.unshift(a);
    if (this.kept.length > 3) this.kept.pop();
    return a;
  }
}

/**
 * Max pooling over k x k windows (stride defaults to k, no padding, floor mode), NCHW.
 * The common 2x2 / stride 2 case records one byte per output (which of the
 * four inputs won) instead of a 32-bit index, and its backward writes dx in
 * one dense pass instead of zero-filling and scattering.
 */
export class MaxPool2d extends Module implements ConfigurableLayer {
  readonly kernelSize: number;
  readonly stride: number;
  private readonly out = new TensorCache();
  private readonly inGrad = new TensorCache();
  private readonly indices = new IndexCache();
  private readonly windows = new ByteCache();
  private input: Tensor | null = null;
  private output: Tensor | null = null;
  private argmax: Int32Array | null = null;
  private window: Uint8Array | null = null;

  constructor(kernelSize: number, stride?: number) {
    super();
    this.kernelSize = positiveInt(kernelSize, 'kernelSize');
    this.stride = stride === undefined ? kernelSize : positiveInt(stride, 'stride');
  }

  forward(x: Tensor): Tensor {
    assertTensor(x, 'input');
    if (x.shape.length !== 4) throw new RangeError(`${this} expects a 4D (N, C, H, W) input, got shape ${formatShape(x.shape)}`);
    const [n, c, h, w] = x.shape;
    const k = this.kernelSize;
    if (h < k || w < k) throw new RangeError(`${this}: input ${formatShape(x.shape)} is smaller than the ${k}x${k} window`);
    const oh = Math.floor((h - k) / this.stride) + 1;
    const ow = Math.floor((w - k) / this.stride) + 1;
    const y = this.out.get(n, c, oh, ow);
    if (k === 2 && this.stride === 2) {
      const window = (this.window = this.windows.get(y.data.length));
      native.maxPool2x2Forward(x.data, n, c, h, w, y.data, window);
      this.argmax = null;
    } else {
      const argmax = (this.argmax = this.indices.get(y.data.length));
      native.maxPool2dForward(x.data, n, c, h, w, k, this.stride, y.data, argmax);
      this.window = null;
    }
    this.input = x;
    this.output = y;
    return y;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor {
    assertTensor(dy, 'dy');
    const x = this.input ?? noSavedInput(this);
    checkGradShape(this, dy, this.output!.shape);
    if (!needInputGrad) return NOT_COMPUTED;
    const [n, c, h, w] = x.shape;
    const dx = this.inGrad.get(n, c, h, w);
    if (this.window) {
      native.maxPool2x2Backward(dy.data, this.window, n, c, h, w, dx.data);
    } else {
      native.maxPool2dBackward(dy.data, this.argmax!, dx.data);
    }
    return dx;
  }

  config(): LayerConfig {
    return { type: 'MaxPool2d', kernelSize: this.kernelSize, stride: this.stride };
  }

  override toString(): string {
    return `MaxPool2d(${this.kernelSize}${this.stride !== this.kernelSize ? `, stride=${this.stride}` : ''})`;
  }
}

/** Reshapes [N, d1, d2, ...] to [N, d1*d2*...] without copying. */
export class Flatten extends Module implements ConfigurableLayer {
  private lastIn: Tensor | null = null;
  private lastOut: Tensor | null = null;
  private lastDy: Tensor | null = null;
  private lastDx: Tensor | null = null;

  forward(x: Tensor): Tensor {
    assertTensor(x, 'input');
    if (x.shape.length < 2) throw new RangeError(`Flatten expects an input with a batch dimension, got shape ${formatShape(x.shape)}`);
    // Same input object as last time (layers reuse their outputs): reuse the view.
    if (x !== this.lastIn) {
      this.lastIn = x;
      this.lastOut = new Tensor(x.data, [x.shape[0], x.data.length / Math.max(1, x.shape[0])]);
    }
    return this.lastOut!;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor {
    assertTensor(dy, 'dy');
    const x = this.lastIn ?? noSavedInput(this);
    checkGradShape(this, dy, this.lastOut!.shape);
    if (!needInputGrad) return NOT_COMPUTED;
    if (dy !== this.lastDy || !sameShape(this.lastDx!.shape, x.shape)) {
      this.lastDy = dy;
      this.lastDx = new Tensor(dy.data, x.shape);
    }
    return this.lastDx!;
  }

  config(): LayerConfig {
    return { type: 'Flatten' };
  }

  override toString(): string {
    return 'Flatten()';
  }
}

export interface DropoutOptions {
  /** Generator for the masks (default: a stream forked from the global one at construction). */
  rng?: Rng;
}

/**
 * Zeroes each input with probability p during training and scales the rest
 * by 1 / (1 - p) (inverted dropout, as PyTorch); identity in eval mode.
 */
export class Dropout extends Module implements ConfigurableLayer {
  readonly p: number;
  private readonly rng: Rng;
  private readonly out = new TensorCache();
  private readonly inGrad = new TensorCache();
  private readonly masks = new TensorCache();
  private mask: Tensor | null = null;
  private passThrough = true;
  private lastShape: readonly number[] | null = null;

  constructor(p = 0.5, options: DropoutOptions = {}) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new RangeError(`dropout probability p must be in [0, 1], got ${describeValue(p)}`);
    this.p = p;
    this.rng = checkRng(options.rng) ?? defaultRng().fork();
  }

  forward(x: Tensor): Tensor {
    assertTensor(x, 'input');
    this.passThrough = !this.training || this.p === 0;
    this.lastShape = x.shape;
    if (this.passThrough) return x;
    const y = reuseLike(this.out, x.shape);
    const mask = (this.mask = reuseLike(this.masks, x.shape));
    const scale = this.p === 1 ? 0 : 1 / (1 - this.p);
    const m = mask.data, xd = x.data, yd = y.data, p = this.p, rng = this.rng;
    for (let i = 0; i < m.length; i++) {
      const keep = rng.nextUint32() >= p * 4294967296 ? scale : 0;
      m[i] = keep;
      yd[i] = xd[i] * keep;
    }
    return y;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor {
    assertTensor(dy, 'dy');
    checkGradShape(this, dy, this.lastShape ?? noSavedInput(this));
    if (this.passThrough) return dy;
    const mask = this.mask!;
    if (!needInputGrad) return NOT_COMPUTED;
    const dx = reuseLike(this.inGrad, dy.shape);
    const m = mask.data, g = dy.data, d = dx.data;
    for (let i = 0; i < m.length; i++) d[i] = g[i] * m[i];
    return dx;
  }

  config(): LayerConfig {
    return { type: 'Dropout', p: this.p };
  }

  override toString(): string {
    return `Dropout(p=${this.p})`;
  }
}
