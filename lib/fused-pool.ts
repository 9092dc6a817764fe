// BatchNorm2d (with or without its fused ReLU) followed by MaxPool2d(2), run
// as one native kernel. Sequential uses it automatically; the two layer
// objects stay what they are (parameters, buffers, saving, standalone use).
// Only the pooled output and one byte per output window are written: the
// full-size normalized activation and its gradient never exist.
import { native } from './native';
import { Tensor, formatShape } from './tensor';
import { TensorCache, sameShape } from './reuse';
import { BatchNorm2d } from './batchnorm';
import { MaxPool2d, ByteCache } from './layers';
import { invstdFromVariance } from './functional';
import { Module } from './module';

const NOT_COMPUTED = new Tensor(new Float32Array(0), [0]);

interface Saved {
  x: Tensor;
  y: Tensor;
  window: Uint8Array;
  picked: Float32Array;
  batchStatistics: boolean;
}

export class BatchNormMaxPool2d {
  private readonly out = new TensorCache();
  private readonly inGrad = new TensorCache();
  private readonly windows = new ByteCache();
  private readonly picks = new TensorCache();
  private readonly savedMean: Float32Array;
  private readonly savedInvstd: Float32Array;
  private readonly dgamma: Float32Array;
  private readonly dbeta: Float32Array;
  private saved: Saved | null = null;
  /** The last forward ran the two layers one by one (an input the kernel does not take). */
  private unfused = false;

  /** True when `bn` then `pool` can run as one kernel (NCHW batch norm, 2x2 windows with stride 2). */
  static applies(bn: Module, pool: Module): boolean {
    return bn instanceof BatchNorm2d && !bn.channelsLast && pool instanceof MaxPool2d && pool.kernelSize === 2 && pool.stride === 2;
  }

  constructor(readonly bn: BatchNorm2d, readonly pool: MaxPool2d) {
    const c = bn.numFeatures;
    this.savedMean = new Float32Array(c);
    this.savedInvstd = new Float32Array(c);
    this.dgamma = new Float32Array(c);
    this.dbeta = new Float32Array(c);
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
    const y = this.out.get(n, c, h >> 1, w >> 1);
    const window = this.windows.get(y.data.length);
    const picked = this.picks.get(y.data.length).data;
    const gamma = bn.weight?.data ?? null;
    const beta = bn.bias?.data ?? null;
    const batchStatistics = bn.training || !bn.trackRunningStats;
    if (batchStatistics) {
      const update = bn.training && bn.trackRunningStats;
      let factor = 0;
      if (update) {
        if (n * h * w <= 1) {
          throw new RangeError(`Expected more than 1 value per channel when training, got input of shape ${formatShape(x.shape)}`);
        }
        bn.numBatchesTracked += 1;
        factor = bn.momentum ?? 1 / bn.numBatchesTracked;
      }
      native.batchNormMaxPoolForwardTrain(x.data, y.data, window, picked, n, c, h, w, gamma, beta, bn.eps, bn.relu,
        this.savedMean, this.savedInvstd, update ? bn.runningMean : null, update ? bn.runningVar : null, factor);
    } else {
      native.batchNormMaxPoolForwardEval(x.data, y.data, window, picked, n, c, h, w, bn.runningMean!, bn.runningVar!, gamma,
        beta, bn.eps, bn.relu);
      this.savedMean.set(bn.runningMean!);
      invstdFromVariance(bn.runningVar!, bn.eps, this.savedInvstd);
    }
    this.saved = { x, y, window, picked, batchStatistics };
    return y;
  }

  /** Accumulates gamma/beta gradients; returns dL/dx unless needInputGrad is false. */
  backward(dy: Tensor, needInputGrad = true): Tensor {
    if (this.unfused) return this.bn.backward(this.pool.backward(dy, true));
    const saved = this.saved;
    if (!saved) throw new TypeError('BatchNorm2d + MaxPool2d backward() called before forward(): there is no saved input');
    if (!sameShape(dy.shape, saved.y.shape)) {
      throw new RangeError(`MaxPool2d.backward(): dy shape ${formatShape(dy.shape)} does not match the last output shape ${formatShape(saved.y.shape)}`);
    }
    const bn = this.bn;
    const { x } = saved;
    const [n, c, h, w] = x.shape;
    const dx = needInputGrad ? this.inGrad.get(n, c, h, w) : null;
    native.batchNormMaxPoolBackward(x.data, dy.data, dx ? dx.data : null, saved.window, saved.picked, n, c, h, w, this.savedMean,
      this.savedInvstd, bn.weight?.data ?? null, bn.bias?.data ?? null, bn.relu, saved.batchStatistics,
      bn.weight ? this.dgamma : null, bn.bias ? this.dbeta : null);
    if (bn.weight && bn.bias) {
      const gw = bn.weight.grad, gb = bn.bias.grad;
      for (let i = 0; i < c; i++) {
        gw[i] += this.dgamma[i];
        gb[i] += this.dbeta[i];
      }
    }
    return dx ?? NOT_COMPUTED;
  }
}
