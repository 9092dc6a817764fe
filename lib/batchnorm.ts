// BatchNorm1d / BatchNorm2d layers with PyTorch semantics (see README,
// "Semantics"). Outputs and gradients live in buffers owned by the layer and
// reused while the input shape stays the same: copy a result if you need it
// after the next call.
import { native } from './native';
import { Module, type Parameter, type BufferState } from './module';
import { Tensor, assertTensor, formatShape, describeValue } from './tensor';
import { overlaps } from './reuse';
import { batchNormLayout, checkEps, invstdFromVariance, type BatchNormLayout } from './functional';

export interface BatchNormOptions {
  /** Added to the variance for stability. Default 1e-5. */
  eps?: number;
  /**
   * Weight of the NEW batch statistic in the running averages: running =
   * (1 - momentum) * running + momentum * batch. Default 0.1 (PyTorch).
   * Keras / TF.js / ONNX use the opposite convention (0.99 weighting the old
   * value): Keras momentum m corresponds to 1 - m here. null means a
   * cumulative moving average over all batches seen.
   */
  momentum?: number | null;
  /** Learnable per-channel weight (gamma) and bias (beta). Default true. */
  affine?: boolean;
  /** Keep running mean/var for eval mode. Default true. */
  trackRunningStats?: boolean;
  /** Input is channels-last: [N, H, W, C] (2d) or [N, L, C] (1d). Default false. */
  channelsLast?: boolean;
  /** Fuse a ReLU after the normalization (forward and backward). Default false. */
  relu?: boolean;
}

let momentumWarningShown = false;

function validateOptions(numFeatures: number, options: BatchNormOptions): Required<Omit<BatchNormOptions, 'momentum'>> & { momentum: number | null } {
  if (!Number.isInteger(numFeatures) || numFeatures < 1) {
    throw new RangeError(`numFeatures must be a positive integer, got ${describeValue(numFeatures)}`);
  }
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`options must be an object, got ${describeValue(options)}`);
  }
  const eps = checkEps(options.eps ?? 1e-5);
  const momentum = options.momentum === undefined ? 0.1 : options.momentum;
  if (momentum !== null) {
    if (typeof momentum !== 'number' || !Number.isFinite(momentum) || momentum < 0 || momentum > 1) {
      throw new RangeError(`momentum must be a finite number in [0, 1] or null, got ${describeValue(momentum)}`);
    }
    if (momentum > 0.5 && !momentumWarningShown) {
      momentumWarningShown = true;
      process.emitWarning(
        `BatchNorm momentum=${momentum} weights the NEW batch statistic (PyTorch convention). ` +
          `If this value comes from Keras/TF.js/ONNX (which weight the old value), use ${+(1 - momentum).toFixed(6)}.`,
        { code: 'BNKIT_MOMENTUM_CONVENTION' },
      );
    }
  }
  for (const key of ['affine', 'trackRunningStats', 'channelsLast', 'relu'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean') {
      throw new TypeError(`${key} must be a boolean, got ${describeValue(options[key])}`);
    }
  }
  return {
    eps,
    momentum,
    affine: options.affine ?? true,
    trackRunningStats: options.trackRunningStats ?? true,
    channelsLast: options.channelsLast ?? false,
    relu: options.relu ?? false,
  };
}

abstract class BatchNormBase extends Module {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly channelsLast: boolean;
  readonly relu: boolean;
  /** gamma, initialized to 1; null when affine is false. */
  readonly weight: Parameter | null;
  /** beta, initialized to 0; null when affine is false. */
  readonly bias: Parameter | null;
  /** null when trackRunningStats is false. */
  readonly runningMean: Float32Array | null;
  readonly runningVar: Float32Array | null;
  /** Number of training batches seen (drives momentum = null). */
  numBatchesTracked = 0;

  private output: Tensor | null = null;
  private inputGrad: Tensor | null = null;
  private readonly savedMean: Float32Array;
  private readonly savedInvstd: Float32Array;
  private readonly dgamma: Float32Array;
  private readonly dbeta: Float32Array;
  private saved: { x: Tensor; batchStatistics: boolean; layout: BatchNormLayout } | null = null;

  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    super();
    const o = validateOptions(numFeatures, options);
    this.numFeatures = numFeatures;
    this.eps = o.eps;
    this.momentum = o.momentum;
    this.affine = o.affine;
    this.trackRunningStats = o.trackRunningStats;
    this.channelsLast = o.channelsLast;
    this.relu = o.relu;
    const c = numFeatures;
    this.weight = o.affine ? { name: 'weight', shape: [c], data: new Float32Array(c).fill(1), grad: new Float32Array(c) } : null;
    this.bias = o.affine ? { name: 'bias', shape: [c], data: new Float32Array(c), grad: new Float32Array(c) } : null;
    this.runningMean = o.trackRunningStats ? new Float32Array(c) : null;
    this.runningVar = o.trackRunningStats ? new Float32Array(c).fill(1) : null;
    this.savedMean = new Float32Array(c);
    this.savedInvstd = new Float32Array(c);
    this.dgamma = new Float32Array(c);
    this.dbeta = new Float32Array(c);
  }

  /** Allowed input ranks, e.g. [2, 3] for BatchNorm1d. */
  protected abstract readonly ranks: readonly number[];
  protected abstract describeExpected(): string;

  private layoutOf(x: Tensor): BatchNormLayout {
    if (!this.ranks.includes(x.shape.length)) {
      throw new RangeError(`${this.constructor.name} expects ${this.describeExpected()}, got shape ${formatShape(x.shape)}`);
    }
    const layout = batchNormLayout(x.shape, this.channelsLast);
    if (layout.channels !== this.numFeatures) {
      const dim = this.channelsLast ? x.shape.length - 1 : 1;
      throw new RangeError(
        `${this.constructor.name}(${this.numFeatures}) got ${layout.channels} channels in dimension ${dim} of input shape ${formatShape(x.shape)}`,
      );
    }
    return layout;
  }

  // The last output again if it has this shape and does not share memory
  // with `avoid` (training keeps x for backward: writing y over it, as
  // layer.forward(layer.forward(x)) would, must not happen).
  private reuse(current: Tensor | null, shape: readonly number[], avoid?: Float32Array): Tensor {
    if (current && current.shape.length === shape.length && current.shape.every((d, i) => d === shape[i]) &&
      !overlaps(current.data, avoid)) return current;
    return Tensor.zeros(shape);
  }

  forward(x: Tensor): Tensor {
    assertTensor(x, 'input');
    const layout = this.layoutOf(x);
    const { batch, channels, spatial, channelsLast } = layout;
    const y = (this.output = this.reuse(this.output, x.shape, x.data));
    const gamma = this.weight?.data ?? null;
    const beta = this.bias?.data ?? null;
    const useBatchStatistics = this.training || !this.trackRunningStats;
    if (useBatchStatistics) {
      let factor = 0;
      const update = this.training && this.trackRunningStats;
      if (update) {
        if (batch * spatial <= 1) {
          // Checked here too so the counter does not move on a rejected batch.
          throw new RangeError(`Expected more than 1 value per channel when training, got input of shape ${formatShape(x.shape)}`);
        }
        this.numBatchesTracked += 1;
        factor = this.momentum ?? 1 / this.numBatchesTracked;
      }
      native.batchNormForwardTrain(x.data, y.data, batch, channels, spatial, channelsLast, gamma, beta, this.eps,
        this.relu, this.savedMean, this.savedInvstd, update ? this.runningMean : null, update ? this.runningVar : null,
        factor);
    } else {
      native.batchNormForwardEval(x.data, y.data, batch, channels, spatial, channelsLast, this.runningMean!,
        this.runningVar!, gamma, beta, this.eps, this.relu);
      this.savedMean.set(this.runningMean!);
      invstdFromVariance(this.runningVar!, this.eps, this.savedInvstd);
    }
    this.saved = { x, batchStatistics: useBatchStatistics, layout };
    return y;
  }

  backward(dy: Tensor): Tensor {
    assertTensor(dy, 'dy');
    if (!this.saved) {
      throw new TypeError(`${this.constructor.name}.backward() called before forward(): there is no saved input`);
    }
    const { x, batchStatistics, layout } = this.saved;
    if (dy.shape.length !== x.shape.length || dy.shape.some((d, i) => d !== x.shape[i])) {
      throw new RangeError(`dy shape ${formatShape(dy.shape)} does not match the last forward input shape ${formatShape(x.shape)}`);
    }
    const dx = (this.inputGrad = this.reuse(this.inputGrad, x.shape));
    const { batch, channels, spatial, channelsLast } = layout;
    native.batchNormBackward(x.data, dy.data, dx.data, batch, channels, spatial, channelsLast, this.savedMean,
      this.savedInvstd, this.weight?.data ?? null, this.bias?.data ?? null, this.relu, batchStatistics,
      this.weight ? this.dgamma : null, this.bias ? this.dbeta : null);
    if (this.weight && this.bias) {
      const gw = this.weight.grad, gb = this.bias.grad;
      for (let c = 0; c < channels; c++) {
        gw[c] += this.dgamma[c];
        gb[c] += this.dbeta[c];
      }
    }
    return dx;
  }

  override parameters(): Parameter[] {
    return this.weight && this.bias ? [this.weight, this.bias] : [];
  }

  override buffers(): BufferState[] {
    if (!this.runningMean || !this.runningVar) return [];
    return [
      { name: 'running_mean', shape: [this.numFeatures], data: this.runningMean },
      { name: 'running_var', shape: [this.numFeatures], data: this.runningVar },
    ];
  }

  /** Running mean to 0, running var to 1, counter to 0 (PyTorch reset_running_stats). */
  resetRunningStats(): void {
    this.runningMean?.fill(0);
    this.runningVar?.fill(1);
    this.numBatchesTracked = 0;
  }
}

/** Batch norm over (N, C) or (N, C, L) inputs ([N, L, C] with channelsLast). */
export class BatchNorm1d extends BatchNormBase {
  protected readonly ranks = [2, 3] as const;
  protected describeExpected(): string {
    return this.channelsLast ? '2D (N, C) or 3D (N, L, C) input' : '2D (N, C) or 3D (N, C, L) input';
  }
}

/** Batch norm over (N, C, H, W) inputs ([N, H, W, C] with channelsLast). */
export class BatchNorm2d extends BatchNormBase {
  protected readonly ranks = [4] as const;
  protected describeExpected(): string {
    return this.channelsLast ? '4D (N, H, W, C) input' : '4D (N, C, H, W) input';
  }
}
