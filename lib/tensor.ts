/** Product of a shape's dimensions. */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * A dense float32 tensor: `data` in row-major order of `shape`. The data array
 * is used as is (never copied), so native kernels read and write it in place.
 */
export class Tensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];

  constructor(data: Float32Array, shape: readonly number[]) {
    if (!(data instanceof Float32Array)) {
      throw new TypeError(`Tensor data must be a Float32Array, got ${describeValue(data)}`);
    }
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new TypeError(`Tensor shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    const expected = shapeSize(shape);
    if (expected !== data.length) {
      throw new RangeError(
        `Tensor data has ${data.length} elements but shape ${formatShape(shape)} needs ${expected}`,
      );
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    // Layers keep the tensors they were given for backward: a tensor whose
    // data or shape could be swapped afterwards would be read as another one.
    // (Its values stay writable; changing them between forward and backward
    // changes the gradient, as an in-place change would in PyTorch.)
    Object.freeze(this);
  }

  /** A zero-filled tensor. */
  static zeros(shape: readonly number[]): Tensor {
    return new Tensor(new Float32Array(shapeSize(shape)), shape);
  }

  get size(): number {
    return this.data.length;
  }
}

export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  if (Array.isArray(v)) return 'an Array';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  return `${typeof v} ${String(v)}`;
}

/** Throws a TypeError unless `x` is a Tensor (what every layer's forward needs). */
export function assertTensor(x: unknown, name: string): asserts x is Tensor {
  if (!(x instanceof Tensor)) throw new TypeError(`${name} must be a Tensor, got ${describeValue(x)}`);
  // `readonly` binds TypeScript only, and a Float32Array over a resizable
  // ArrayBuffer changes length with it: check what the kernels will trust.
  const data: unknown = x.data;
  if (!(data instanceof Float32Array)) throw new TypeError(`${name}.data must be a Float32Array, got ${describeValue(data)}`);
  if (data.length !== shapeSize(x.shape)) {
    throw new RangeError(`${name}.data has ${data.length} elements but its shape ${formatShape(x.shape)} needs ${shapeSize(x.shape)} (was the buffer resized or replaced?)`);
  }
}
