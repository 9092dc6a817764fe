import type { Tensor } from './tensor';

/** A trainable array and its gradient, in PyTorch's layout for the owning layer. */
export interface Parameter {
  /** e.g. "weight" or "bias" (prefixed by the layer index inside a Sequential). */
  name: string;
  shape: readonly number[];
  data: Float32Array;
  /** Accumulated by backward(); cleared by zeroGrad() or the optimizer's zeroGrad(). */
  grad: Float32Array;
}

/** State that is saved with a model but not trained (running statistics). */
export interface BufferState {
  name: string;
  shape: readonly number[];
  data: Float32Array;
}

/**
 * Base of every layer: a forward/backward pair on Tensors plus PyTorch-like
 * train()/eval() mode, parameters and buffers.
 */
export abstract class Module {
  /** True in training mode (the default), as in PyTorch. */
  training = true;

  abstract forward(x: Tensor): Tensor;
  /** Gradient w.r.t. the last forward's input; accumulates parameter gradients. */
  abstract backward(dy: Tensor): Tensor;

  train(mode = true): this {
    this.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  parameters(): Parameter[] {
    return [];
  }

  buffers(): BufferState[] {
    return [];
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.grad.fill(0);
  }
}
