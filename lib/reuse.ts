// Reusable output/gradient buffers. A training loop alternates between a few
// shapes at most (the full batch, the last partial batch, the evaluation
// batch), so each layer keeps a tiny most-recently-used list of tensors and
// allocates only when a shape it has not kept is asked for: no allocation per
// step in steady state.
import { Tensor } from './tensor';

const KEEP = 3;

function matches(shape: readonly number[], d0: number, d1: number, d2: number, d3: number): boolean {
  const rank = d3 >= 0 ? 4 : d2 >= 0 ? 3 : d1 >= 0 ? 2 : 1;
  if (shape.length !== rank || shape[0] !== d0) return false;
  return rank < 2 || (shape[1] === d1 && (rank < 3 || (shape[2] === d2 && (rank < 4 || shape[3] === d3))));
}

/** Whether two typed arrays share any byte of memory. */
export function overlaps(a: ArrayBufferView, b: ArrayBufferView | undefined): boolean {
  if (b === undefined || a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

export class TensorCache {
  private readonly kept: Tensor[] = [];

  /**
   * A tensor of shape [d0(, d1(, d2(, d3)))]; its contents are whatever was
   * last written. Pass the arrays the caller is about to read as `avoid`: a
   * kept tensor sharing memory with them is skipped (`layer.forward(
   * layer.forward(x))` hands a layer its own output as input, and a kernel
   * writing over what it still reads gives wrong numbers, not an error).
   */
  get(d0: number, d1 = -1, d2 = -1, d3 = -1, avoid?: Float32Array, avoid2?: Float32Array): Tensor {
    const kept = this.kept;
    for (let i = 0; i < kept.length; i++) {
      const t = kept[i];
      if (matches(t.shape, d0, d1, d2, d3) && !overlaps(t.data, avoid) && !overlaps(t.data, avoid2)) {
        if (i !== 0) {
          kept.splice(i, 1);
          kept.unshift(t);
        }
        return t;
      }
    }
    const shape = d3 >= 0 ? [d0, d1, d2, d3] : d2 >= 0 ? [d0, d1, d2] : d1 >= 0 ? [d0, d1] : [d0];
    const t = Tensor.zeros(shape);
    kept.unshift(t);
    if (kept.length > KEEP) kept.pop();
    return t;
  }

  /** Drops every kept buffer (frees memory after e.g. a large evaluation batch). */
  clear(): void {
    this.kept.length = 0;
  }
}

/** Int32 companion buffers (pooling argmax), same policy. */
export class IndexCache {
  private readonly kept: Int32Array[] = [];

  get(length: number): Int32Array {
    const kept = this.kept;
    for (let i = 0; i < kept.length; i++) {
      if (kept[i].length === length) {
        const a = kept[i];
        if (i !== 0) {
          kept.splice(i, 1);
          kept.unshift(a);
        }
        return a;
      }
    }
    const a = new Int32Array(length);
    kept.unshift(a);
    if (kept.length > KEEP) kept.pop();
    return a;
  }
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
