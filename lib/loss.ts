// Softmax cross-entropy with integer class labels, fused and numerically
// stable (log-sum-exp with the row max subtracted), mean over the batch, as
// torch.nn.CrossEntropyLoss() with its defaults.
import { native } from './native';
import { Tensor, assertTensor, formatShape, describeValue } from './tensor';
import { TensorCache } from './reuse';

export type Labels = Uint8Array | Int32Array;

export class CrossEntropyLoss {
  private readonly probs = new TensorCache();
  private readonly grads = new TensorCache();
  private savedProbs: Tensor | null = null;
  private savedLabels: Labels | null = null;

  /** Mean loss over the batch for logits [N, C] and labels (N class indices in [0, C)). */
  forward(logits: Tensor, labels: Labels): number {
    assertTensor(logits, 'logits');
    if (logits.shape.length !== 2 || logits.shape[0] < 1 || logits.shape[1] < 1) {
      throw new RangeError(`CrossEntropyLoss expects logits of shape [N, C], got ${formatShape(logits.shape)}`);
    }
    if (!(labels instanceof Uint8Array || labels instanceof Int32Array)) {
      throw new TypeError(`labels must be a Uint8Array or Int32Array, got ${describeValue(labels)}`);
    }
    const [n, classes] = logits.shape;
    if (labels.length !== n) throw new RangeError(`labels has ${labels.length} entries but logits ${formatShape(logits.shape)} has batch size ${n}`);
    for (let i = 0; i < n; i++) {
      const label = labels[i];
      if (label < 0 || label >= classes) throw new RangeError(`labels[${i}] = ${label} is outside [0, ${classes}) for logits ${formatShape(logits.shape)}`);
    }
    const probs = this.probs.get(n, classes);
    const loss = native.softmaxCrossEntropyForward(logits.data, n, classes, labels, probs.data);
    this.savedProbs = probs;
    this.savedLabels = labels;
    return loss;
  }

  /** dLoss/dlogits = (softmax - onehot) / N for the last forward (a buffer reused by the next call). */
  backward(): Tensor {
    const probs = this.savedProbs, labels = this.savedLabels;
    if (!probs || !labels) throw new TypeError('CrossEntropyLoss.backward() called before forward()');
    const [n, classes] = probs.shape;
    const grad = this.grads.get(n, classes);
    native.softmaxCrossEntropyBackward(probs.data, n, classes, labels, grad.data);
    return grad;
  }

  /** Softmax probabilities of the last forward, [N, C]. */
  get probabilities(): Tensor | null {
    return this.savedProbs;
  }
}
