// Float64 references for the training kernels, written from the definitions
// with plain loops (no blocking, no packing) so they share nothing with the
// native code they check.

export type Num = ArrayLike<number>;

/** op(A) * op(B) * alpha + beta * C, all row-major. */
export function refGemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Num, B: Num, beta: number, C: Num,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const a = transA ? A[k * M + i] : A[i * K + k];
        const b = transB ? B[j * K + k] : B[k * N + j];
        s += a * b;
      }
      out[i * N + j] = alpha * s + (beta === 0 ? 0 : beta * C[i * N + j]);
    }
  }
  return out;
}

export interface ConvCfg {
  batch: number; inC: number; H: number; W: number; outC: number; kh: number; kw: number;
  sh: number; sw: number; ph: number; pw: number;
}

export const outSize = (c: ConvCfg) => ({
  oH: Math.floor((c.H + 2 * c.ph - c.kh) / c.sh) + 1,
  oW: Math.floor((c.W + 2 * c.pw - c.kw) / c.sw) + 1,
});

/** Visits every (n, oc, oy, ox, ic, ky, kx) term with its x and y indices. */
function forEachTerm(c: ConvCfg, visit: (yi: number, xi: number, wi: number, oc: number) => void): void {
  const { oH, oW } = outSize(c);
  for (let n = 0; n < c.batch; n++)
    for (let oc = 0; oc < c.outC; oc++)
      for (let oy = 0; oy < oH; oy++)
        for (let ox = 0; ox < oW; ox++) {
          const yi = ((n * c.outC + oc) * oH + oy) * oW + ox;
          for (let ic = 0; ic < c.inC; ic++)
            for (let ky = 0; ky < c.kh; ky++) {
              const iy = oy * c.sh - c.ph + ky;
              if (iy < 0 || iy >= c.H) continue;
              for (let kx = 0; kx < c.kw; kx++) {
                const ix = ox * c.sw - c.pw + kx;
                if (ix < 0 || ix >= c.W) continue;
                visit(yi, ((n * c.inC + ic) * c.H + iy) * c.W + ix, ((oc * c.inC + ic) * c.kh + ky) * c.kw + kx, oc);
              }
            }
        }
}

export function refConvForward(c: ConvCfg, x: Num, w: Num, bias: Num | null): Float64Array {
  const { oH, oW } = outSize(c);
  const y = new Float64Array(c.batch * c.outC * oH * oW);
  if (bias) for (let i = 0; i < y.length; i++) y[i] = bias[Math.floor(i / (oH * oW)) % c.outC];
  forEachTerm(c, (yi, xi, wi) => { y[yi] += x[xi] * w[wi]; });
  return y;
}

export function refConvBackward(c: ConvCfg, x: Num, w: Num, dy: Num) {
  const { oH, oW } = outSize(c);
  const dx = new Float64Array(c.batch * c.inC * c.H * c.W);
  const dw = new Float64Array(c.outC * c.inC * c.kh * c.kw);
  const db = new Float64Array(c.outC);
  forEachTerm(c, (yi, xi, wi) => {
    dx[xi] += dy[yi] * w[wi];
    dw[wi] += dy[yi] * x[xi];
  });
  for (let i = 0; i < dy.length; i++) db[Math.floor(i / (oH * oW)) % c.outC] += dy[i];
  return { dx, dw, db };
}

export function refMaxPool(x: Num, planes: number, H: number, W: number, k: number, s: number) {
  const oH = Math.floor((H - k) / s) + 1, oW = Math.floor((W - k) / s) + 1;
  const y = new Float64Array(planes * oH * oW), arg = new Int32Array(y.length);
  for (let p = 0; p < planes; p++)
    for (let oy = 0; oy < oH; oy++)
      for (let ox = 0; ox < oW; ox++) {
        let best = -Infinity, at = -1;
        for (let ky = 0; ky < k; ky++)
          for (let kx = 0; kx < k; kx++) {
            const i = (p * H + oy * s + ky) * W + ox * s + kx;
            if (at < 0 || x[i] > best) { best = x[i]; at = i; }
          }
        const o = (p * oH + oy) * oW + ox;
        y[o] = best;
        arg[o] = at;
      }
  return { y, arg };
}

export function refSoftmaxCE(logits: Num, batch: number, classes: number, labels: Num) {
  const probs = new Float64Array(batch * classes);
  let loss = 0;
  for (let b = 0; b < batch; b++) {
    let mx = -Infinity;
    for (let c = 0; c < classes; c++) mx = Math.max(mx, logits[b * classes + c]);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[b * classes + c] - mx);
    for (let c = 0; c < classes; c++) probs[b * classes + c] = Math.exp(logits[b * classes + c] - mx) / sum;
    loss += Math.log(sum) + mx - logits[b * classes + labels[b]];
  }
  return { loss: loss / batch, probs };
}

/** torch.optim.SGD as documented, on float64 state. */
export function refSgd(
  param: Float64Array, grads: Float64Array[], o: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean },
): Float64Array {
  const p = Float64Array.from(param);
  let buf: Float64Array | null = null;
  for (const grad of grads) {
    const d = grad.map((g, i) => g + o.weightDecay * p[i]);
    if (o.momentum !== 0) {
      if (!buf) buf = Float64Array.from(d);
      else for (let i = 0; i < d.length; i++) buf[i] = o.momentum * buf[i] + (1 - o.dampening) * d[i];
      for (let i = 0; i < d.length; i++) d[i] = o.nesterov ? d[i] + o.momentum * buf[i] : buf[i];
    }
    for (let i = 0; i < p.length; i++) p[i] -= o.lr * d[i];
  }
  return p;
}

/** torch.optim.Adam (no amsgrad) as documented, on float64 state. */
export function refAdam(
  param: Float64Array, grads: Float64Array[], o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number },
): Float64Array {
  const p = Float64Array.from(param), m = new Float64Array(p.length), v = new Float64Array(p.length);
  grads.forEach((grad, t) => {
    const step = t + 1;
    const bc1 = 1 - o.beta1 ** step, bc2 = 1 - o.beta2 ** step;
    for (let i = 0; i < p.length; i++) {
      const g = grad[i] + o.weightDecay * p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      p[i] -= (o.lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + o.eps);
    }
  });
  return p;
}

/** Deterministic uniform values in [lo, hi) (mulberry32). */
export function rngArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** max |got - want| / (1 + |want|), NaN-propagating. */
export function relError(got: Num, want: Num): number {
  if (got.length !== want.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
    if (!(e <= worst)) worst = e;
  }
  return worst;
}
