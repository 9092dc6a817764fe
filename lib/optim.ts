// SGD and Adam with PyTorch's update rules; the per-parameter updates run in
// native code over the live Float32Arrays (no copies, no per-step allocation).
import { native } from './native';
import { Module, type Parameter } from './module';
import { describeValue } from './tensor';

type ParameterSource = readonly Parameter[] | Module;

function number(value: unknown, name: string, min: number, max = Infinity, maxOpen = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (maxOpen && value === max)) {
    const range = max === Infinity ? `>= ${min}` : `in [${min}, ${max}${maxOpen ? ')' : ']'}`;
    throw new RangeError(`${name} must be a finite number ${range}, got ${describeValue(value)}`);
  }
  return value;
}

function resolve(source: ParameterSource): Parameter[] {
  const params = source instanceof Module ? source.parameters() : source;
  if (!Array.isArray(params)) throw new TypeError(`parameters must be an array of parameters or a Module, got ${describeValue(source)}`);
  params.forEach((p, i) => {
    if (!p || !(p.data instanceof Float32Array) || !(p.grad instanceof Float32Array) || p.data.length !== p.grad.length) {
      throw new TypeError(`parameter ${i} must have Float32Array data and grad of equal length, got ${describeValue(p)}`);
    }
  });
  return [...params];
}

/**
 * Base of the optimizers. Parameters are given to the constructor
 * (`new SGD(model.parameters(), {...})`) or attached later: fit() attaches
 * its model's parameters to an optimizer created with options only.
 */
export abstract class Optimizer {
  private params: Parameter[] | null = null;
  /** Learning rate; may be changed between steps (schedules). */
  lr: number;

  protected constructor(source: ParameterSource | null, lr: number) {
    this.lr = number(lr, 'lr', 0);
    if (source !== null) this.attach(source);
  }

  /** Binds the optimizer to these parameters (once; a second, different set is an error). */
  attach(source: ParameterSource): this {
    const params = resolve(source);
    if (this.params) {
      const same = params.length === this.params.length && params.every((p, i) => p.data === this.params![i].data);
      if (!same) throw new Error(`${this.constructor.name} is already attached to other parameters; create one optimizer per model`);
      return this;
    }
    this.params = params;
    this.onAttach(params);
    return this;
  }

  get parameters(): readonly Parameter[] {
    return this.params ?? [];
  }

  protected attached(): Parameter[] {
    if (!this.params) throw new Error(`${this.constructor.name} has no parameters: pass model.parameters() to the constructor or use it through fit()`);
    return this.params;
  }

  zeroGrad(): void {
    for (const p of this.attached()) p.grad.fill(0);
  }

  protected onAttach(_params: Parameter[]): void {}

  /** Applies one update from the accumulated gradients. */
  abstract step(): void;
}

export interface SGDOptions {
  lr: number;
  /** Default 0 (plain SGD). */
  momentum?: number;
  /** Default 0. */
  dampening?: number;
  /** L2 penalty added to the gradient. Default 0. */
  weightDecay?: number;
  /** Nesterov momentum (needs momentum > 0 and dampening 0). Default false. */
  nesterov?: boolean;
}

/**
 * Stochastic gradient descent as torch.optim.SGD: g = grad + weightDecay * p;
 * v = g on the first step, then v = momentum * v + (1 - dampening) * g;
 * p -= lr * (nesterov ? g + momentum * v : v).
 */
export class SGD extends Optimizer {
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  private velocity: Float32Array[] = [];
  private started = false;

  constructor(options: SGDOptions);
  constructor(params: ParameterSource, options: SGDOptions);
  constructor(a: ParameterSource | SGDOptions, b?: SGDOptions) {
    const [source, options] = splitArgs<SGDOptions>(a, b, 'SGD');
    super(null, options.lr);
    this.momentum = number(options.momentum ?? 0, 'momentum', 0);
    this.dampening = number(options.dampening ?? 0, 'dampening', 0, 1);
    this.weightDecay = number(options.weightDecay ?? 0, 'weightDecay', 0);
    if (options.nesterov !== undefined && typeof options.nesterov !== 'boolean') throw new TypeError(`nesterov must be a boolean, got ${describeValue(options.nesterov)}`);
    this.nesterov = options.nesterov ?? false;
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new RangeError('nesterov momentum requires momentum > 0 and dampening = 0');
    }
    if (source) this.attach(source);
  }

  protected override onAttach(params: Parameter[]): void {
    this.velocity = this.momentum !== 0 ? params.map((p) => new Float32Array(p.data.length)) : [];
  }

  step(): void {
    const params = this.attached();
    const lr = number(this.lr, 'lr', 0);
    // PyTorch's first step sets v = g (no dampening), later steps blend.
    const firstStep = !this.started;
    for (let i = 0; i < params.length; i++) {
      const p = params[i];
      native.sgdStep(p.data, p.grad, this.momentum !== 0 ? this.velocity[i] : null, lr, this.momentum, this.dampening,
        this.weightDecay, this.nesterov, firstStep);
    }
    this.started = true;
  }
}

export interface AdamOptions {
  /** Default 1e-3. */
  lr?: number;
  /** Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** L2 penalty added to the gradient (Adam, not AdamW). Default 0. */
  weightDecay?: number;
}

/**
 * Adam as torch.optim.Adam: g = grad + weightDecay * p; m = b1 m + (1-b1) g;
 * v = b2 v + (1-b2) g^2; p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
 */
export class Adam extends Optimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Number of steps taken. */
  stepCount = 0;
  private m: Float32Array[] = [];
  private v: Float32Array[] = [];

  constructor(options?: AdamOptions);
  constructor(params: ParameterSource, options?: AdamOptions);
  constructor(a?: ParameterSource | AdamOptions, b?: AdamOptions) {
    const [source, options] = splitArgs<AdamOptions>(a ?? {}, b ?? (isSource(a) ? {} : undefined), 'Adam');
    super(null, options.lr ?? 1e-3);
    const betas = options.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) throw new TypeError(`betas must be a pair [beta1, beta2], got ${describeValue(betas)}`);
    this.beta1 = number(betas[0], 'betas[0]', 0, 1, true);
    this.beta2 = number(betas[1], 'betas[1]', 0, 1, true);
    this.eps = number(options.eps ?? 1e-8, 'eps', 0);
    this.weightDecay = number(options.weightDecay ?? 0, 'weightDecay', 0);
    if (source) this.attach(source);
  }

  protected override onAttach(params: Parameter[]): void {
    this.m = params.map((p) => new Float32Array(p.data.length));
    this.v = params.map((p) => new Float32Array(p.data.length));
  }

  step(): void {
    const params = this.attached();
    const lr = number(this.lr, 'lr', 0);
    this.stepCount += 1;
    for (let i = 0; i < params.length; i++) {
      const p = params[i];
      native.adamStep(p.data, p.grad, this.m[i], this.v[i], this.stepCount, lr, this.beta1, this.beta2, this.eps, this.weightDecay);
    }
  }
}

function isSource(v: unknown): v is ParameterSource {
  return Array.isArray(v) || v instanceof Module;
}

function splitArgs<O>(a: unknown, b: unknown, name: string): [ParameterSource | null, O] {
  const source = isSource(a) ? a : null;
  const options = source ? b : a;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${name} options must be an object, got ${describeValue(options)}`);
  }
  return [source, options as O];
}
