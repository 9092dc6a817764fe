// BatchNorm2d (with or without its fused ReLU) followed by MaxPool2d(2), run
// as one native kernel. Sequential uses it automatically; the two layer
// objects stay what they are (parameters, buffers, saving, standalone use).
// Only the pooled output and one byte per output window are written: the
// full-size normalized activation and its gradient never exist. A one-channel
// 3x3 convolution in front of the pair (the MNIST CNNs' stem) joins the same
// kernel, so its full-size output never exists either.
import { native } from './native';
import { Tensor, formatShape } from './tensor';
import { TensorCache, sameShape } from './reuse';
import { BatchNorm2d } from './batchnorm';
import { MaxPool2d, Conv2d, ByteCache } from './layers';
import { invstdFromVariance } from './functional';
import { Module } from './module';

const NOT_COMPUTED = new Tensor(new Float32Array(0), [0]);
/** kStemMomentsLength in binding/kernels/batchnorm/batchnorm.h. */
const STEM_MOMENTS_LENGTH = 9 + 9 * 9;

/** The pooled-size arrays a fused forward writes. */
interface PooledOutputs {
  y: Tensor;
  window: Uint8Array;
  picked: Float32Array;
}

/** What backward needs from the last forward. */
interface Saved extends PooledOutputs {
  x: Tensor;
  batchStatistics: boolean;
}

/** One fused forward's native calls: with batch statistics (training) or with the running ones. */
interface PooledKernels {
  train(out: PooledOutputs, update: boolean, factor: number): void;
  evaluate(out: PooledOutputs): void;
}

/**
 * The batch-norm + pooling part shared by the fused steps: mode handling,
 * running statistics, saved state and the gamma/beta gradients.
 */
abstract class PooledBatchNorm {
  private readonly out = new TensorCache();
  private readonly windows = new ByteCache();
  private readonly picks = new TensorCache();
  protected readonly savedMean: Float32Array;
  protected readonly savedInvstd: Float32Array;
  private readonly dgamma: Float32Array;
  private readonly dbeta: Float32Array;
  protected saved: Saved | null = null;

  constructor(readonly bn: BatchNorm2d, readonly pool: MaxPool2d) {
    const c = bn.numFeatures;
    this.savedMean = new Float32Array(c);
    this.savedInvstd = new Float32Array(c);
    this.dgamma = new Float32Array(c);
    this.dbeta = new Float32Array(c);
  }

  /**
   * Pools a [n, c, h, w] batch-norm input (`x` is what backward will need)
   * with the kernel for the layer's mode.
   */
  protected pooledForward(x: Tensor, n: number, c: number, h: number, w: number, kernels: PooledKernels): Tensor {
    const bn = this.bn;
    const y = this.out.get(n, c, h >> 1, w >> 1);
    const out: PooledOutputs = { y, window: this.windows.get(y.data.length), picked: this.picks.get(y.data.length).data };
    const batchStatistics = bn.training || !bn.trackRunningStats;
    if (batchStatistics) {
      const update = bn.training && bn.trackRunningStats;
      let factor = 0;
      if (update) {
        if (n * h * w <= 1) {
          throw new RangeError(`Expected more than 1 value per channel when training, got input of shape ${formatShape([n, c, h, w])}`);
        }
        bn.numBatchesTracked += 1;
        factor = bn.momentum ?? 1 / bn.numBatchesTracked;
      }
      kernels.train(out, update, factor);
    } else {
      kernels.evaluate(out);
      this.savedMean.set(bn.runningMean!);
      invstdFromVariance(bn.runningVar!, bn.eps, this.savedInvstd);
    }
    this.saved = { ...out, x, batchStatistics };
    return out.y;
  }

  /** The saved forward state for a backward with pooled gradient dy. */
  protected savedFor(dy: Tensor, what: string): Saved {
    const saved = this.saved;
    if (!saved) throw new TypeError(`${what} backward() called before forward(): there is no saved input`);
    if (!sameShape(dy.shape, saved.y.shape)) {
      throw new RangeError(`MaxPool2d.backward(): dy shape ${formatShape(dy.shape)} does not match the last output shape ${formatShape(saved.y.shape)}`);
    }
    return saved;
  }

  /** The gamma/beta gradient outputs of the native backward (null without affine). */
  protected get gammaBetaGrads(): [Float32Array | null, Float32Array | null] {
    return [this.bn.weight ? this.dgamma : null, this.bn.bias ? this.dbeta : null];
  }

  /** Adds the native backward's gamma/beta gradients to the layer's. */
  protected accumulateGammaBeta(): void {
    const bn = this.bn;
    if (!bn.weight || !bn.bias) return;
    const gw = bn.weight.grad, gb = bn.bias.grad;
    for (let i = 0; i < gw.length; i++) {
      gw[i] += this.dgamma[i];
      gb[i] += this.dbeta[i];
    }
  }
}

export class BatchNormMaxPool2d extends PooledBatchNorm {
  private readonly inGrad = new TensorCache();
  /** The last forward ran the two layers one by one (an input the kernel does not take). */
  private unfused = false;

  /** True when `bn` then `pool` can run as one kernel (NCHW batch norm, 2x2 windows with stride 2). */
  static applies(bn: Module, pool: Module): boolean {
    return bn instanceof BatchNorm2d && !bn.channelsLast && pool instanceof MaxPool2d && pool.kernelSize === 2 && pool.stride === 2;
  }

  forward(x: Tensor): Tensor {
    const bn = this.bn;
    const [n, c, h, w] = x.shape;
    // Anything unusual (wrong rank or channels, windows that do not fit) goes
    // through the layers themselves, which also give the usual error messages.
    this.unfused = x.shape.length !== 4 || c !== bn.numFeatures || !(h >= 2 && w >= 2);
    if (this.unfused) {
      this.saved = null;
      return this.pool.forward(bn.forward(x));
    }
    const gamma = bn.weight?.data ?? null;
    const beta = bn.bias?.data ?? null;
    return this.pooledForward(x, n, c, h, w, {
      train: (out, update, factor) => native.batchNormMaxPoolForwardTrain(x.data, out.y.data, out.window, out.picked, n, c, h, w,
        gamma, beta, bn.eps, bn.relu, this.savedMean, this.savedInvstd, update ? bn.runningMean : null,
        update ? bn.runningVar : null, factor),
      evaluate: (out) => native.batchNormMaxPoolForwardEval(x.data, out.y.data, out.window, out.picked, n, c, h, w,
        bn.runningMean!, bn.runningVar!, gamma, beta, bn.eps, bn.relu),
    });
  }

  /** Accumulates gamma/beta gradients; returns dL/dx unless needInputGrad is false. */
  backward(dy: Tensor, needInputGrad = true): Tensor {
    if (this.unfused) return this.bn.backward(this.pool.backward(dy, true));
    const saved = this.savedFor(dy, 'BatchNorm2d + MaxPool2d');
    const bn = this.bn;
    const { x } = saved;
    const [n, c, h, w] = x.shape;
    const dx = needInputGrad ? this.inGrad.get(n, c, h, w) : null;
    const [dgamma, dbeta] = this.gammaBetaGrads;
    native.batchNormMaxPoolBackward(x.data, dy.data, dx ? dx.data : null, saved.window, saved.picked, n, c, h, w, this.savedMean,
      this.savedInvstd, bn.weight?.data ?? null, bn.bias?.data ?? null, bn.relu, saved.batchStatistics, dgamma, dbeta);
    this.accumulateGammaBeta();
    return dx ?? NOT_COMPUTED;
  }
}

/**
 * The stem Conv2d(1 -> C, 3x3, stride 1) + BatchNorm2d (+ ReLU) + MaxPool2d(2)
 * as one native kernel: the convolution's output (C times the input's size)
 * is recomputed from the input whenever a pass needs it and never stored, and
 * its gradient goes straight into the convolution's weight gradient.
 * Sequential uses it automatically; the three layer objects stay what they are.
 */
export class ConvBatchNormMaxPool2d extends PooledBatchNorm {
  private readonly inGrad = new TensorCache();
  /** The training forward's input patch moments (9 tap means, 9 x 9 covariance), which backward reuses. */
  private readonly patchMoments = new Float64Array(STEM_MOMENTS_LENGTH);
  private readonly rest: BatchNormMaxPool2d;
  private unfused = false;

  /** True for Conv2d(1 -> C, 3x3, stride 1, padding <= 2) then BatchNorm2d(C) and a fusable MaxPool2d. */
  static applies(conv: Module, bn: Module, pool: Module): boolean {
    return conv instanceof Conv2d && conv.inChannels === 1 && conv.kernelSize[0] === 3 && conv.kernelSize[1] === 3 &&
      conv.stride[0] === 1 && conv.stride[1] === 1 && conv.padding[0] <= 2 && conv.padding[1] <= 2 &&
      BatchNormMaxPool2d.applies(bn, pool) && (bn as BatchNorm2d).numFeatures === conv.outChannels;
  }

  constructor(readonly conv: Conv2d, bn: BatchNorm2d, pool: MaxPool2d) {
    super(bn, pool);
    this.rest = new BatchNormMaxPool2d(bn, pool);
  }

  forward(x: Tensor): Tensor {
    const conv = this.conv, bn = this.bn;
    const [n, inC, h, w] = x.shape;
    const [ph, pw] = conv.padding;
    const oh = h + 2 * ph - 2, ow = w + 2 * pw - 2;
    // Inputs the kernel does not take run through the layers (and their errors).
    this.unfused = x.shape.length !== 4 || inC !== 1 || !(oh >= 2 && ow >= 2);
    if (this.unfused) {
      this.saved = null;
      return this.rest.forward(conv.forward(x));
    }
    const c = conv.outChannels;
    const weight = conv.weight.data, convBias = conv.bias?.data ?? null;
    const gamma = bn.weight?.data ?? null;
    const beta = bn.bias?.data ?? null;
    return this.pooledForward(x, n, c, oh, ow, {
      train: (out, update, factor) => native.convBatchNormMaxPoolForwardTrain(x.data, out.y.data, out.window, out.picked, n, c, h,
        w, ph, pw, weight, convBias, gamma, beta, bn.eps, bn.relu, this.savedMean, this.savedInvstd,
        update ? bn.runningMean : null, update ? bn.runningVar : null, factor, this.patchMoments),
      evaluate: (out) => native.convBatchNormMaxPoolForwardEval(x.data, out.y.data, out.window, out.picked, n, c, h, w, ph, pw,
        weight, convBias, bn.runningMean!, bn.runningVar!, gamma, beta, bn.eps, bn.relu),
    });
  }

  /** Accumulates the conv's and the batch norm's parameter gradients; returns dL/dinput unless needInputGrad is false. */
  backward(dy: Tensor, needInputGrad = true): Tensor {
    if (this.unfused) return this.conv.backward(this.rest.backward(dy, true), needInputGrad);
    const saved = this.savedFor(dy, 'Conv2d + BatchNorm2d + MaxPool2d');
    const conv = this.conv, bn = this.bn;
    const { x } = saved;
    const [n, , h, w] = x.shape;
    const dInput = needInputGrad ? this.inGrad.get(n, 1, h, w) : null;
    const [dgamma, dbeta] = this.gammaBetaGrads;
    native.convBatchNormMaxPoolBackward(x.data, dy.data, dInput ? dInput.data : null, saved.window, saved.picked, n,
      conv.outChannels, h, w, conv.padding[0], conv.padding[1], conv.weight.data, conv.bias?.data ?? null, conv.weight.grad,
      conv.bias?.grad ?? null, this.savedMean, this.savedInvstd, bn.weight?.data ?? null, bn.bias?.data ?? null, bn.relu,
      saved.batchStatistics, dgamma, dbeta, saved.batchStatistics ? this.patchMoments : null);
    this.accumulateGammaBeta();
    return dInput ?? NOT_COMPUTED;
  }
}
