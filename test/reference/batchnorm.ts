// Float64 batch-norm reference, written from the textbook definition and
// independent of the kernels: plain loops over an explicit index function.

export interface RefLayout {
  batch: number;
  channels: number;
  spatial: number;
  channelsLast: boolean;
}

export function refIndex(l: RefLayout, n: number, c: number, s: number): number {
  return l.channelsLast ? (n * l.spatial + s) * l.channels + c : (n * l.channels + c) * l.spatial + s;
}

export interface RefForward {
  y: Float64Array;
  mean: Float64Array;
  /** biased batch variance */
  variance: Float64Array;
  invstd: Float64Array;
}

export function refForward(
  x: ArrayLike<number>,
  l: RefLayout,
  opts: { gamma?: ArrayLike<number> | null; beta?: ArrayLike<number> | null; eps?: number; relu?: boolean;
    useStats?: { mean: ArrayLike<number>; variance: ArrayLike<number> } },
): RefForward {
  const eps = opts.eps ?? 1e-5;
  const M = l.batch * l.spatial;
  const y = new Float64Array(x.length);
  const mean = new Float64Array(l.channels), variance = new Float64Array(l.channels), invstd = new Float64Array(l.channels);
  for (let c = 0; c < l.channels; c++) {
    let mu: number, v: number;
    if (opts.useStats) {
      mu = opts.useStats.mean[c];
      v = opts.useStats.variance[c];
    } else {
      let s = 0;
      for (let n = 0; n < l.batch; n++) for (let i = 0; i < l.spatial; i++) s += x[refIndex(l, n, c, i)];
      mu = s / M;
      let q = 0;
      for (let n = 0; n < l.batch; n++) for (let i = 0; i < l.spatial; i++) q += (x[refIndex(l, n, c, i)] - mu) ** 2;
      v = q / M;
    }
    const is = 1 / Math.sqrt(v + eps);
    mean[c] = mu;
    variance[c] = v;
    invstd[c] = is;
    const g = opts.gamma ? opts.gamma[c] : 1, b = opts.beta ? opts.beta[c] : 0;
    for (let n = 0; n < l.batch; n++) {
      for (let i = 0; i < l.spatial; i++) {
        const j = refIndex(l, n, c, i);
        const pre = g * (x[j] - mu) * is + b;
        y[j] = opts.relu ? Math.max(0, pre) : pre;
      }
    }
  }
  return { y, mean, variance, invstd };
}

/**
 * Backward through batch norm (+ optional ReLU whose mask is given by the
 * forward output `yForMask`, as autograd would use it).
 */
export function refBackward(
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  l: RefLayout,
  stats: { mean: ArrayLike<number>; invstd: ArrayLike<number> },
  opts: { gamma?: ArrayLike<number> | null; yForMask?: ArrayLike<number> | null; batchStatistics?: boolean },
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const M = l.batch * l.spatial;
  const batchStatistics = opts.batchStatistics ?? true;
  const dx = new Float64Array(x.length), dgamma = new Float64Array(l.channels), dbeta = new Float64Array(l.channels);
  const g = (j: number) => (opts.yForMask && opts.yForMask[j] <= 0 ? 0 : dy[j]);
  for (let c = 0; c < l.channels; c++) {
    const mu = stats.mean[c], is = stats.invstd[c], gamma = opts.gamma ? opts.gamma[c] : 1;
    let sdy = 0, sdyx = 0;
    for (let n = 0; n < l.batch; n++) {
      for (let i = 0; i < l.spatial; i++) {
        const j = refIndex(l, n, c, i);
        sdy += g(j);
        sdyx += g(j) * (x[j] - mu) * is;
      }
    }
    dgamma[c] = sdyx;
    dbeta[c] = sdy;
    for (let n = 0; n < l.batch; n++) {
      for (let i = 0; i < l.spatial; i++) {
        const j = refIndex(l, n, c, i);
        const xhat = (x[j] - mu) * is;
        dx[j] = batchStatistics ? gamma * is * (g(j) - sdy / M - xhat * sdyx / M) : gamma * is * g(j);
      }
    }
  }
  return { dx, dgamma, dbeta };
}

export function randomArray(length: number, rng: { normal(): number }, scale = 1, offset = 0): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = offset + scale * rng.normal();
  return out;
}

/** max |a - b| / (atol + |b|) style error: returns the worst of |a-b| - rtol*|b|. */
export function maxError(actual: ArrayLike<number>, expected: ArrayLike<number>): { abs: number; at: number } {
  let worst = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i] - expected[i]);
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  return { abs: worst, at };
}
