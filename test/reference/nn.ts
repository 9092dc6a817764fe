// Float64 reference implementations of the NN operations, written for
// clarity (plain loops, no tiling) so the native kernels and the layers can
// be checked against them. Inputs may be any numeric arrays.
type Num = ArrayLike<number>;

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

export function linearForward(x: Num, n: number, inF: number, w: Num, b: Num | null, outF: number): Float64Array {
  const y = new Float64Array(n * outF);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o] : 0;
      for (let k = 0; k < inF; k++) s += x[i * inF + k] * w[o * inF + k];
      y[i * outF + o] = s;
    }
  }
  return y;
}

export function linearBackward(x: Num, n: number, inF: number, w: Num, outF: number, dy: Num) {
  const dx = new Float64Array(n * inF), dw = new Float64Array(outF * inF), db = new Float64Array(outF);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < outF; o++) {
      const g = dy[i * outF + o];
      db[o] += g;
      for (let k = 0; k < inF; k++) {
        dx[i * inF + k] += g * w[o * inF + k];
        dw[o * inF + k] += g * x[i * inF + k];
      }
    }
  }
  return { dx, dw, db };
}

export interface ConvGeometry {
  n: number; c: number; h: number; w: number; oc: number; kh: number; kw: number;
  sh: number; sw: number; ph: number; pw: number;
}

export function convOutput(g: ConvGeometry): [number, number] {
  return [Math.floor((g.h + 2 * g.ph - g.kh) / g.sh) + 1, Math.floor((g.w + 2 * g.pw - g.kw) / g.sw) + 1];
}

export function conv2dForward(x: Num, weight: Num, bias: Num | null, g: ConvGeometry): Float64Array {
  const [oh, ow] = convOutput(g);
  const y = new Float64Array(g.n * g.oc * oh * ow);
  for (let b = 0; b < g.n; b++) for (let o = 0; o < g.oc; o++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) {
    let s = bias ? bias[o] : 0;
    for (let c = 0; c < g.c; c++) for (let u = 0; u < g.kh; u++) for (let v = 0; v < g.kw; v++) {
      const r = i * g.sh - g.ph + u, q = j * g.sw - g.pw + v;
      if (r < 0 || r >= g.h || q < 0 || q >= g.w) continue;
      s += x[((b * g.c + c) * g.h + r) * g.w + q] * weight[((o * g.c + c) * g.kh + u) * g.kw + v];
    }
    y[((b * g.oc + o) * oh + i) * ow + j] = s;
  }
  return y;
}

export function conv2dBackward(x: Num, weight: Num, dy: Num, g: ConvGeometry) {
  const [oh, ow] = convOutput(g);
  const dx = new Float64Array(g.n * g.c * g.h * g.w), dw = new Float64Array(g.oc * g.c * g.kh * g.kw), db = new Float64Array(g.oc);
  for (let b = 0; b < g.n; b++) for (let o = 0; o < g.oc; o++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) {
    const gy = dy[((b * g.oc + o) * oh + i) * ow + j];
    db[o] += gy;
    for (let c = 0; c < g.c; c++) for (let u = 0; u < g.kh; u++) for (let v = 0; v < g.kw; v++) {
      const r = i * g.sh - g.ph + u, q = j * g.sw - g.pw + v;
      if (r < 0 || r >= g.h || q < 0 || q >= g.w) continue;
      const xi = ((b * g.c + c) * g.h + r) * g.w + q, wi = ((o * g.c + c) * g.kh + u) * g.kw + v;
      dx[xi] += gy * weight[wi];
      dw[wi] += gy * x[xi];
    }
  }
  return { dx, dw, db };
}

/** Max pooling (first maximum wins on ties, as PyTorch); `from` holds the flat input index of each output. */
export function maxPool2dForward(x: Num, n: number, c: number, h: number, w: number, k: number, s: number) {
  const oh = Math.floor((h - k) / s) + 1, ow = Math.floor((w - k) / s) + 1;
  const y = new Float64Array(n * c * oh * ow), from = new Int32Array(y.length);
  for (let p = 0; p < n * c; p++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) {
    let best = -Infinity, at = -1;
    for (let u = 0; u < k; u++) for (let v = 0; v < k; v++) {
      const xi = (p * h + i * s + u) * w + j * s + v;
      if (x[xi] > best || at < 0) { best = x[xi]; at = xi; }
    }
    y[(p * oh + i) * ow + j] = best;
    from[(p * oh + i) * ow + j] = at;
  }
  return { y, from, oh, ow };
}

export function maxPool2dBackward(dy: Num, from: Int32Array, inputLength: number): Float64Array {
  const dx = new Float64Array(inputLength);
  for (let i = 0; i < dy.length; i++) dx[from[i]] += dy[i];
  return dx;
}

export const relu = (x: Num): Float64Array => Float64Array.from(x, (v) => (v > 0 ? v : 0));
export const reluGrad = (y: Num, dy: Num): Float64Array => Float64Array.from(dy, (g, i) => (y[i] > 0 ? g : 0));
export const sigmoid = (x: Num): Float64Array => Float64Array.from(x, (v) => 1 / (1 + Math.exp(-v)));
export const sigmoidGrad = (y: Num, dy: Num): Float64Array => Float64Array.from(dy, (g, i) => g * y[i] * (1 - y[i]));

export function softmaxCrossEntropy(logits: Num, n: number, classes: number, labels: Num) {
  const probs = new Float64Array(n * classes), dlogits = new Float64Array(n * classes);
  let loss = 0;
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[i * classes + c]);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[i * classes + c] - max);
    for (let c = 0; c < classes; c++) probs[i * classes + c] = Math.exp(logits[i * classes + c] - max) / sum;
    loss += -(logits[i * classes + labels[i]] - max - Math.log(sum));
    for (let c = 0; c < classes; c++) dlogits[i * classes + c] = (probs[i * classes + c] - (c === labels[i] ? 1 : 0)) / n;
  }
  return { loss: loss / n, probs, dlogits };
}

/** torch.optim.SGD's update, in place on float64 state; `first` = the momentum buffer does not exist yet. */
export function sgdStep(p: Float64Array, grad: Num, v: Float64Array | null, o: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean; first: boolean }): void {
  for (let i = 0; i < p.length; i++) {
    let g = grad[i] + o.weightDecay * p[i];
    if (o.momentum !== 0 && v) {
      v[i] = o.first ? g : o.momentum * v[i] + (1 - o.dampening) * g;
      g = o.nesterov ? g + o.momentum * v[i] : v[i];
    }
    p[i] -= o.lr * g;
  }
}

/** torch.optim.Adam's update (L2 weight decay, no amsgrad), in place; `step` is 1-based. */
export function adamStep(p: Float64Array, grad: Num, m: Float64Array, v: Float64Array, o: { step: number; lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }): void {
  const bc1 = 1 - o.beta1 ** o.step, bc2 = 1 - o.beta2 ** o.step;
  for (let i = 0; i < p.length; i++) {
    const g = grad[i] + o.weightDecay * p[i];
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
    p[i] -= (o.lr * m[i] / bc1) / (Math.sqrt(v[i] / bc2) + o.eps);
  }
}
