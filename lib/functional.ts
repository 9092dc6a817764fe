// Batch norm as functions on caller-owned buffers. The layers in
// batchnorm.ts are built on these; users who manage their own memory can call
// them directly and pass `out` arrays to avoid any allocation.
import { native } from './native';
import { Tensor, assertTensor, formatShape, describeValue } from './tensor';

/** How a tensor maps onto (batch, channels, spatial) for the kernels. */
export interface BatchNormLayout {
  batch: number;
  channels: number;
  /** Product of the spatial dimensions (1 for an (N, C) input). */
  spatial: number;
  channelsLast: boolean;
}

/**
 * Reads the layout of `shape`: planar is [N, C, ...spatial]; channels-last is
 * [N, ...spatial, C]. An (N, C) input is the same in both.
 */
export function batchNormLayout(shape: readonly number[], channelsLast = false): BatchNormLayout {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new TypeError(`batch norm shape must be an array of non-negative integers, got ${describeValue(shape)}`);
  }
  if (shape.length < 2) {
    throw new RangeError(`batch norm expects an input with at least 2 dimensions (N, C, ...), got shape ${formatShape(shape)}`);
  }
  const batch = shape[0];
  const channels = channelsLast ? shape[shape.length - 1] : shape[1];
  let spatial = 1;
  const spatialDims = channelsLast ? shape.slice(1, -1) : shape.slice(2);
  for (const d of spatialDims) spatial *= d;
  if (batch < 1 || channels < 1 || spatial < 1) {
    throw new RangeError(`batch norm input shape ${formatShape(shape)} has an empty dimension`);
  }
  return { batch, channels, spatial, channelsLast };
}

export interface BatchNormForwardOptions {
  /** gamma, length C; omitted means 1. */
  weight?: Float32Array | null;
  /** beta, length C; omitted means 0. */
  bias?: Float32Array | null;
  /** Updated in place in training mode when given; used for normalization in eval mode. */
  runningMean?: Float32Array | null;
  runningVar?: Float32Array | null;
  /** true: normalize with batch statistics (and update running stats if given). */
  training: boolean;
  /**
   * Weight of the NEW batch statistic in the running average (PyTorch
   * convention; Keras' momentum=0.99 corresponds to 0.01 here). Default 0.1.
   */
  momentum?: number;
  eps?: number;
  /** Apply ReLU to the output in the same pass. */
  relu?: boolean;
  /** Input is [N, ...spatial, C]. */
  channelsLast?: boolean;
  /** Output buffer to write (may be x.data for in-place). */
  out?: Float32Array;
  /** Buffers for the saved statistics, length C. */
  saveMean?: Float32Array;
  saveInvstd?: Float32Array;
}

export interface BatchNormForwardResult {
  y: Tensor;
  /** Mean used to normalize each channel (batch mean in training, running mean in eval). */
  mean: Float32Array;
  /** 1 / sqrt(var + eps) used for each channel. */
  invstd: Float32Array;
}

/**
 * eps as the kernels use it, in float32: a value that rounds to 0 (below
 * ~7e-46) or to Infinity (above ~3.4e38) would give NaN or all-zero outputs.
 */
export function checkEps(eps: unknown): number {
  const f = typeof eps === 'number' ? Math.fround(eps) : NaN;
  if (!(f > 0 && Number.isFinite(f))) {
    throw new RangeError(`eps must be a finite number > 0 that float32 can hold (about 1.4e-45 to 3.4e38), got ${describeValue(eps)}`);
  }
  return eps as number;
}

function checkFactor(momentum: number, name = 'momentum'): number {
  if (typeof momentum !== 'number' || !Number.isFinite(momentum) || momentum < 0 || momentum > 1) {
    throw new RangeError(`${name} must be a finite number in [0, 1], got ${describeValue(momentum)}`);
  }
  return momentum;
}

function channelBuffer(buffer: Float32Array | undefined, channels: number, name: string): Float32Array {
  if (buffer === undefined) return new Float32Array(channels);
  if (!(buffer instanceof Float32Array) || buffer.length !== channels) {
    throw new RangeError(`${name} must be a Float32Array of length ${channels}, got ${describeValue(buffer)}${buffer instanceof Float32Array ? ` of length ${buffer.length}` : ''}`);
  }
  return buffer;
}

/** 1 / sqrt(var + eps) rounded to float32 exactly as the kernels do. */
export function invstdFromVariance(variance: Float32Array, eps: number, out?: Float32Array): Float32Array {
  if (!(variance instanceof Float32Array)) throw new TypeError(`variance must be a Float32Array, got ${describeValue(variance)}`);
  checkEps(eps);
  if (out !== undefined && (!(out instanceof Float32Array) || out.length !== variance.length)) {
    throw new RangeError(`out must be a Float32Array of length ${variance.length}, got ${describeValue(out)}${out instanceof Float32Array ? ` of length ${out.length}` : ''}`);
  }
  const result = out ?? new Float32Array(variance.length);
  const epsF = Math.fround(eps);
  for (let c = 0; c < variance.length; c++) result[c] = Math.fround(1 / Math.sqrt(variance[c] + epsF));
  return result;
}

/**
 * Batch-norm forward. In training mode normalizes with the biased batch
 * variance and, if running buffers are given, updates them with the unbiased
 * variance (PyTorch semantics). In eval mode uses the running statistics.
 */
export function batchNormForward(x: Tensor, options: BatchNormForwardOptions): BatchNormForwardResult {
  assertTensor(x, 'x');
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`batchNormForward needs options ({ training: boolean, ... }), got ${describeValue(options)}`);
  }
  const layout = batchNormLayout(x.shape, options.channelsLast ?? false);
  const { batch, channels, spatial, channelsLast } = layout;
  const eps = checkEps(options.eps ?? 1e-5);
  const relu = options.relu ?? false;
  const out = options.out ?? new Float32Array(x.data.length);
  const mean = channelBuffer(options.saveMean, channels, 'saveMean');
  const invstd = channelBuffer(options.saveInvstd, channels, 'saveInvstd');
  const gamma = options.weight ?? null;
  const beta = options.bias ?? null;
  if (options.training) {
    const factor = checkFactor(options.momentum ?? 0.1);
    native.batchNormForwardTrain(x.data, out, batch, channels, spatial, channelsLast, gamma, beta, eps, relu,
      mean, invstd, options.runningMean ?? null, options.runningVar ?? null, factor);
  } else {
    if (!options.runningMean || !options.runningVar) {
      throw new TypeError('batchNormForward in eval mode (training: false) needs runningMean and runningVar');
    }
    native.batchNormForwardEval(x.data, out, batch, channels, spatial, channelsLast, options.runningMean,
      options.runningVar, gamma, beta, eps, relu);
    mean.set(options.runningMean);
    invstdFromVariance(options.runningVar, eps, invstd);
  }
  return { y: new Tensor(out, x.shape), mean, invstd };
}

export interface BatchNormBackwardOptions {
  weight?: Float32Array | null;
  /** Needed with relu: the ReLU mask is recomputed from x. */
  bias?: Float32Array | null;
  relu?: boolean;
  channelsLast?: boolean;
  /** Whether the forward used batch statistics (training). Default true. */
  training?: boolean;
  /** Output buffers; dx may be dy.data for in-place. */
  dx?: Float32Array;
  dgamma?: Float32Array;
  dbeta?: Float32Array;
}

export interface BatchNormBackwardResult {
  dx: Tensor;
  /** sum(dy * xhat) per channel (overwritten, not accumulated). */
  dgamma: Float32Array;
  /** sum(dy) per channel. */
  dbeta: Float32Array;
}

/**
 * Batch-norm backward from the saved statistics of the forward pass:
 * dgamma = sum(dy * xhat), dbeta = sum(dy),
 * dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) in training
 * (dx = gamma * invstd * dy when the statistics were constants).
 */
export function batchNormBackward(
  x: Tensor,
  dy: Tensor,
  saved: { mean: Float32Array; invstd: Float32Array },
  options: BatchNormBackwardOptions = {},
): BatchNormBackwardResult {
  assertTensor(x, 'x');
  assertTensor(dy, 'dy');
  if (dy.shape.length !== x.shape.length || dy.shape.some((d, i) => d !== x.shape[i])) {
    throw new RangeError(`dy shape ${formatShape(dy.shape)} does not match the input shape ${formatShape(x.shape)}`);
  }
  const { batch, channels, spatial, channelsLast } = batchNormLayout(x.shape, options.channelsLast ?? false);
  if (saved === null || typeof saved !== 'object') {
    throw new TypeError(`batchNormBackward needs the forward pass's saved statistics { mean, invstd }, got ${describeValue(saved)}`);
  }
  const dx = options.dx ?? new Float32Array(x.data.length);
  const dgamma = channelBuffer(options.dgamma, channels, 'dgamma');
  const dbeta = channelBuffer(options.dbeta, channels, 'dbeta');
  native.batchNormBackward(x.data, dy.data, dx, batch, channels, spatial, channelsLast, saved.mean, saved.invstd,
    options.weight ?? null, options.bias ?? null, options.relu ?? false, options.training ?? true, dgamma, dbeta);
  return { dx: new Tensor(dx, x.shape), dgamma, dbeta };
}
