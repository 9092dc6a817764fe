// Seeded random numbers and PyTorch's default initializers. Everything random
// in bnkit (weights, shuffling, dropout) draws from an Rng so that the same
// seed gives the same model, bit for bit, on every machine: only 32-bit
// integer arithmetic (Math.imul) and IEEE double math are involved.
import { describeValue } from './tensor';

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** splitmix32: spreads a seed's bits so that seeds 0, 1, 2... give unrelated streams. */
function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Checks a seed: a non-negative safe integer. */
export function checkSeed(seed: unknown, name = 'seed'): number {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`${name} must be a non-negative safe integer, got ${describeValue(seed)}`);
  }
  return seed;
}

/**
 * xoshiro128** generator (period 2^128 - 1) seeded through splitmix32. Small,
 * fast in JS (no BigInt) and statistically sound for initialization and
 * shuffling; not for cryptography.
 */
export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  /** Second Box-Muller output, kept for the next normal() call. */
  private spare: number | null = null;

  constructor(seed = 0) {
    this.seed(seed);
  }

  /** Restarts the stream from `seed`. */
  seed(seed: number): this {
    checkSeed(seed);
    // Both 32-bit halves of the seed feed the state, so seeds above 2^32 differ too.
    const state = { s: (seed >>> 0) ^ Math.imul(Math.floor(seed / 0x100000000) >>> 0, 0x27d4eb2d) };
    this.s0 = splitmix32(state);
    this.s1 = splitmix32(state);
    this.s2 = splitmix32(state);
    this.s3 = splitmix32(state);
    this.spare = null;
    return this;
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform double in [low, high). */
  uniform(low = 0, high = 1): number {
    return low + (high - low) * this.next();
  }

  /** Normal deviate (Box-Muller; the second value of each pair is kept for the next call). */
  normal(mean = 0, std = 1): number {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return mean + std * z;
    }
    const u1 = 1 - this.next(); // (0, 1]: log(u1) is finite
    const u2 = this.next();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return mean + std * r * Math.cos(2 * Math.PI * u2);
  }

  /** Unbiased integer in [0, n) for 1 <= n <= 2^32 (rejection sampling). */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 0x100000000) {
      throw new RangeError(`n must be an integer in [1, 2^32], got ${describeValue(n)}`);
    }
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const u = this.nextUint32();
      if (u < limit) return u % n;
    }
  }

  /** Fisher-Yates shuffle in place. */
  shuffle<T extends { length: number; [i: number]: number }>(array: T): T {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  /** A new generator seeded from this one (independent stream, advances this one). */
  fork(): Rng {
    return new Rng(this.nextUint32() * 0x200000 + (this.nextUint32() >>> 11));
  }
}

let globalRng = new Rng(0);

/**
 * Seeds the generator layers use when none is passed (like torch.manual_seed).
 * The default seed is 0, so a process that never calls it is reproducible too.
 */
export function manualSeed(seed: number): void {
  globalRng = new Rng(checkSeed(seed));
}

/** The process-wide generator used by layers created without an `rng` option. */
export function defaultRng(): Rng {
  return globalRng;
}

/** Fills `target` with U(low, high). */
export function uniform(target: Float32Array, low: number, high: number, rng: Rng = globalRng): Float32Array {
  checkTarget(target);
  if (!Number.isFinite(low) || !Number.isFinite(high) || low > high) {
    throw new RangeError(`uniform needs finite bounds with low <= high, got low ${describeValue(low)}, high ${describeValue(high)}`);
  }
  for (let i = 0; i < target.length; i++) target[i] = rng.uniform(low, high);
  return target;
}

/** Fills `target` with N(mean, std^2). */
export function normal(target: Float32Array, mean: number, std: number, rng: Rng = globalRng): Float32Array {
  checkTarget(target);
  if (!Number.isFinite(mean) || !Number.isFinite(std) || std < 0) {
    throw new RangeError(`normal needs a finite mean and a finite std >= 0, got mean ${describeValue(mean)}, std ${describeValue(std)}`);
  }
  for (let i = 0; i < target.length; i++) target[i] = rng.normal(mean, std);
  return target;
}

/**
 * He/Kaiming uniform, as torch.nn.init.kaiming_uniform_ with leaky-ReLU slope
 * `a`: bound = sqrt(6 / ((1 + a^2) * fanIn)). PyTorch's Linear and Conv2d use
 * a = sqrt(5), which gives bound = 1 / sqrt(fanIn).
 */
export function kaimingUniform(target: Float32Array, fanIn: number, rng: Rng = globalRng, a = Math.sqrt(5)): Float32Array {
  checkFan(fanIn, 'fanIn');
  if (!Number.isFinite(a)) throw new RangeError(`the negative slope a must be finite, got ${describeValue(a)}`);
  const bound = Math.sqrt(6 / ((1 + a * a) * fanIn));
  return uniform(target, -bound, bound, rng);
}

/** Glorot/Xavier uniform: bound = gain * sqrt(6 / (fanIn + fanOut)). */
export function xavierUniform(target: Float32Array, fanIn: number, fanOut: number, rng: Rng = globalRng, gain = 1): Float32Array {
  checkFan(fanIn, 'fanIn');
  checkFan(fanOut, 'fanOut');
  if (!Number.isFinite(gain)) throw new RangeError(`gain must be finite, got ${describeValue(gain)}`);
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return uniform(target, -bound, bound, rng);
}

/** The bias init PyTorch's Linear and Conv2d use: U(-1/sqrt(fanIn), 1/sqrt(fanIn)). */
export function fanInUniform(target: Float32Array, fanIn: number, rng: Rng = globalRng): Float32Array {
  checkFan(fanIn, 'fanIn');
  const bound = 1 / Math.sqrt(fanIn);
  return uniform(target, -bound, bound, rng);
}

function checkTarget(target: unknown): void {
  if (!(target instanceof Float32Array)) throw new TypeError(`the target must be a Float32Array, got ${describeValue(target)}`);
}

function checkFan(fan: number, name: string): void {
  if (!Number.isInteger(fan) || fan < 1) throw new RangeError(`${name} must be a positive integer, got ${describeValue(fan)}`);
}
