// The training kernels through the addon: every ISA forced in turn against an
// independent float64 reference, finite-difference checks of every backward
// pass, thread-count determinism and argument validation.
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../lib/native';
import * as R from './reference/nn';
import { centralDifference, relError, rngArray } from './reference/util';

const initialIsa = native.isa();
const initialThreads = native.getNumThreads();
afterAll(() => {
  native.setIsa(initialIsa);
  native.setNumThreads(initialThreads);
});

// Sizes around every register-tile width in use (4, 8, 12, 16, 24, 32, 48) and
// around the K block (320).
const GEMM_SHAPES: [number, number, number][] = [
  [1, 1, 1], [3, 5, 7], [4, 12, 9], [7, 31, 17], [8, 32, 33], [9, 33, 16], [15, 47, 5], [16, 48, 64],
  [17, 49, 3], [23, 25, 320], [24, 24, 321], [33, 17, 700], [64, 196, 288], [5, 130, 41],
];

interface ConvCfg {
  batch: number; inC: number; H: number; W: number; outC: number; kh: number; kw: number;
  sh: number; sw: number; ph: number; pw: number;
}

// Adapters from this file's conv/optimizer parameter shapes to test/reference/nn.
const geometry = (c: ConvCfg): R.ConvGeometry => ({
  n: c.batch, c: c.inC, h: c.H, w: c.W, oc: c.outC, kh: c.kh, kw: c.kw, sh: c.sh, sw: c.sw, ph: c.ph, pw: c.pw,
});
const outSize = (c: ConvCfg) => {
  const [oH, oW] = R.convOutput(geometry(c));
  return { oH, oW };
};
const refConvForward = (c: ConvCfg, x: Float32Array, w: Float32Array, b: Float32Array | null) => R.conv2dForward(x, w, b, geometry(c));
const refConvBackward = (c: ConvCfg, x: Float32Array, w: Float32Array, dy: Float32Array) => R.conv2dBackward(x, w, dy, geometry(c));

function refSgd(
  param: Float64Array, grads: Float64Array[], o: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean },
): Float64Array {
  const p = Float64Array.from(param), buf = new Float64Array(p.length);
  grads.forEach((g, t) => R.sgdStep(p, g, o.momentum ? buf : null, { ...o, first: t === 0 }));
  return p;
}

function refAdam(
  param: Float64Array, grads: Float64Array[], o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number },
): Float64Array {
  const p = Float64Array.from(param), m = new Float64Array(p.length), v = new Float64Array(p.length);
  grads.forEach((g, t) => R.adamStep(p, g, m, v, { ...o, step: t + 1 }));
  return p;
}

const CONVS: ConvCfg[] = [
  { batch: 2, inC: 1, H: 28, W: 28, outC: 32, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { batch: 3, inC: 32, H: 14, W: 14, outC: 64, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { batch: 2, inC: 3, H: 9, W: 11, outC: 5, kh: 3, kw: 2, sh: 2, sw: 1, ph: 0, pw: 1 },
  { batch: 1, inC: 4, H: 7, W: 6, outC: 9, kh: 5, kw: 5, sh: 3, sw: 2, ph: 2, pw: 2 },
  { batch: 5, inC: 2, H: 5, W: 5, outC: 3, kh: 1, kw: 1, sh: 1, sw: 1, ph: 0, pw: 0 },
  { batch: 2, inC: 2, H: 4, W: 4, outC: 2, kh: 4, kw: 4, sh: 1, sw: 1, ph: 3, pw: 0 },
  { batch: 3, inC: 3, H: 6, W: 5, outC: 4, kh: 2, kw: 3, sh: 1, sw: 1, ph: 2, pw: 1 },
  { batch: 2, inC: 5, H: 8, W: 9, outC: 7, kh: 3, kw: 3, sh: 2, sw: 1, ph: 1, pw: 1 },
  { batch: 17, inC: 3, H: 5, W: 21, outC: 9, kh: 3, kw: 3, sh: 1, sw: 1, ph: 0, pw: 2 },
  // Winograd F(2x2, 3x3) (3x3 stride 1, >= 8 channels each side): odd output
  // sizes, every padding 0..2 (the data gradient runs with padding 2 - p), a
  // tile block spanning several images.
  { batch: 3, inC: 9, H: 7, W: 9, outC: 10, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { batch: 11, inC: 8, H: 5, W: 6, outC: 12, kh: 3, kw: 3, sh: 1, sw: 1, ph: 2, pw: 0 },
  { batch: 2, inC: 16, H: 9, W: 4, outC: 8, kh: 3, kw: 3, sh: 1, sw: 1, ph: 0, pw: 2 },
  // AVX-512 splits two input rows per permute while 2 tile rows and an input row
  // (plus a zero lane) fit 16 lanes: W = 15 is the widest such image, 16 and 20 take
  // the general row split.
  { batch: 2, inC: 8, H: 6, W: 15, outC: 8, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { batch: 2, inC: 8, H: 5, W: 16, outC: 9, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 0 },
  { batch: 2, inC: 8, H: 4, W: 20, outC: 8, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  // Most of the above take F(4x4, 3x3) in the gradients; F(2x2) stays where
  // its GEMMs are no larger: 2-row and 5x5 outputs (paired rows on AVX-512,
  // and past them). The forward pass is always F(2x2) (conv_body.h).
  { batch: 3, inC: 8, H: 4, W: 12, outC: 8, kh: 3, kw: 3, sh: 1, sw: 1, ph: 0, pw: 1 },
  { batch: 2, inC: 9, H: 5, W: 5, outC: 10, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 },
  { batch: 2, inC: 8, H: 4, W: 40, outC: 8, kh: 3, kw: 3, sh: 1, sw: 1, ph: 0, pw: 1 },
];

// Independent restatement of the kernels' choice for the gradients (conv_winograd.h): 3x3
// stride 1, padding <= 2, >= 8 channels on both sides, outputs >= 2x2, and
// 4x4 tiles when their 36-point GEMMs are smaller than 2x2 tiles' 16-point ones.
function winogradF4(c: ConvCfg): boolean {
  const { oH, oW } = outSize(c);
  if (c.kh !== 3 || c.kw !== 3 || c.sh !== 1 || c.sw !== 1 || c.ph > 2 || c.pw > 2 || c.inC < 8 || c.outC < 8 || oH < 2 || oW < 2) return false;
  const columns = (m: number) => Math.ceil(oH / m) * Math.ceil(oW / m) * (m + 2) ** 2;
  return columns(4) < columns(2);
}

// The stride-1 convolution the data gradient runs: dy with the flipped kernel, padding k - 1 - p.
const dataGradientCfg = (c: ConvCfg): ConvCfg => {
  const { oH, oW } = outSize(c);
  return { ...c, inC: c.outC, outC: c.inC, H: oH, W: oW, ph: c.kh - 1 - c.ph, pw: c.kw - 1 - c.pw };
};

function conv(c: ConvCfg) {
  const { oH, oW } = outSize(c);
  return {
    xLen: c.batch * c.inC * c.H * c.W,
    wLen: c.outC * c.inC * c.kh * c.kw,
    yLen: c.batch * c.outC * oH * oW,
    fwd(x: Float32Array, w: Float32Array, b: Float32Array | null, y: Float32Array) {
      native.conv2dForward(x, c.batch, c.inC, c.H, c.W, w, b, c.outC, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, y);
    },
    bwd(x: Float32Array, w: Float32Array, dy: Float32Array, dx: Float32Array | null, dw: Float32Array, db: Float32Array | null) {
      native.conv2dBackward(x, c.batch, c.inC, c.H, c.W, w, c.outC, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, dy, dx, dw, db);
    },
  };
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/**
 * Central differences of loss(v) at a few coordinates of v compared with the
 * analytic gradient. `h` is large where loss is linear in v (exact up to rounding).
 */
function checkFiniteDifferences(v: Float32Array, grad: ArrayLike<number>, loss: () => number, h: number, tol: number) {
  const picks = [0, v.length - 1, Math.floor(v.length / 3), Math.floor((2 * v.length) / 3), Math.floor(v.length / 2) + 1];
  for (const i of picks) {
    if (i < 0 || i >= v.length) continue;
    const fd = centralDifference(v, i, h, loss);
    expect(Math.abs(fd - grad[i]), `coordinate ${i}: fd ${fd} vs analytic ${grad[i]}`).toBeLessThan(tol * (1 + Math.abs(fd)));
  }
}

describe.each(native.availableIsas())('ISA %s', (isaName) => {
  const use = () => native.setIsa(isaName);

  it('gemm matches the float64 reference for every transpose and tile edge', () => {
    use();
    let seed = 1;
    for (const [M, N, K] of GEMM_SHAPES) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const [alpha, beta] of [[1, 0], [0.5, 1], [-2, 0.25]]) {
            const A = rngArray(M * K, seed++), B = rngArray(K * N, seed++), C0 = rngArray(M * N, seed++);
            const C = Float32Array.from(C0);
            if (beta === 0) C.fill(NaN);
            native.gemm(transA, transB, M, N, K, alpha, A, B, beta, C);
            const want = R.refGemm(transA, transB, M, N, K, alpha, A, B, beta, C0);
            expect(relError(C, want), `${M}x${N}x${K} tA=${transA} tB=${transB} a=${alpha} b=${beta}`).toBeLessThan(1e-5 * Math.sqrt(K));
          }
        }
      }
    }
  });

  it('linear forward/backward match the reference and finite differences', () => {
    use();
    for (const [batch, inF, outF] of [[1, 1, 1], [3, 7, 5], [64, 3136 / 16, 128], [10, 100, 10]]) {
      const x = rngArray(batch * inF, 11), w = rngArray(outF * inF, 12), b = rngArray(outF, 13);
      const y = new Float32Array(batch * outF);
      native.linearForward(x, batch, inF, w, b, outF, y);
      const wT = new Float32Array(inF * outF);
      for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) wT[i * outF + o] = w[o * inF + i];
      const yRef = R.refGemm(false, false, batch, outF, inF, 1, x, wT, 0, y);
      for (let n = 0; n < batch; n++) for (let o = 0; o < outF; o++) yRef[n * outF + o] += b[o];
      expect(relError(y, yRef)).toBeLessThan(1e-5);

      const dy = rngArray(batch * outF, 14), dx = new Float32Array(batch * inF);
      const dw = rngArray(outF * inF, 15), db = rngArray(outF, 16);
      const dw0 = Float32Array.from(dw), db0 = Float32Array.from(db);
      native.linearBackward(x, batch, inF, w, outF, dy, dx, dw, db);
      expect(relError(dx, R.refGemm(false, false, batch, inF, outF, 1, dy, w, 0, dx))).toBeLessThan(1e-5);
      expect(relError(dw, R.refGemm(true, false, outF, inF, batch, 1, dy, x, 1, dw0))).toBeLessThan(1e-5);
      const dbRef = Float64Array.from(db0);
      for (let n = 0; n < batch; n++) for (let o = 0; o < outF; o++) dbRef[o] += dy[n * outF + o];
      expect(relError(db, dbRef)).toBeLessThan(1e-5);

      // loss = sum(dy * y) is linear in x, w and b.
      const loss = () => { native.linearForward(x, batch, inF, w, b, outF, y); return dot(dy, y); };
      const gw = new Float32Array(outF * inF), gb = new Float32Array(outF);
      native.linearBackward(x, batch, inF, w, outF, dy, null, gw, gb);
      checkFiniteDifferences(x, dx, loss, 0.25, 1e-3);
      checkFiniteDifferences(w, gw, loss, 0.25, 1e-3);
      checkFiniteDifferences(b, gb, loss, 0.25, 1e-3);
    }
  });

  it.each(CONVS.map((c, i) => [i, c] as const))('conv2d config %i matches the reference and finite differences', (_i, c) => {
    use();
    const k = conv(c);
    const x = rngArray(k.xLen, 21), w = rngArray(k.wLen, 22), b = rngArray(c.outC, 23);
    const y = new Float32Array(k.yLen);
    y.fill(NaN);
    // Rounding grows with the length of each sum (and Winograd's transforms
    // add a few roundings per term): tolerance ~ sqrt(terms), as in the C++
    // tests; F(4x4, 3x3) (gradients only) scales terms by up to 64 and rounds
    // 1/6 and 1/24 in its weights, ~10x the direct sum's error.
    const scale = (f4: boolean) => (f4 ? 2e-5 : 2e-6);
    const yTol = scale(false) * Math.sqrt(c.inC * c.kh * c.kw) + 1e-6;
    const dxTol = scale(winogradF4(dataGradientCfg(c))) * Math.sqrt(c.outC * c.kh * c.kw) + 1e-6;
    k.fwd(x, w, b, y);
    expect(relError(y, refConvForward(c, x, w, b))).toBeLessThan(yTol);
    k.fwd(x, w, null, y);
    expect(relError(y, refConvForward(c, x, w, null))).toBeLessThan(yTol);

    const dy = rngArray(k.yLen, 24);
    const dx = new Float32Array(k.xLen).fill(NaN), dw = rngArray(k.wLen, 25), db = rngArray(c.outC, 26);
    const dw0 = Float32Array.from(dw), db0 = Float32Array.from(db);
    k.bwd(x, w, dy, dx, dw, db);
    const ref = refConvBackward(c, x, w, dy);
    expect(relError(dx, ref.dx)).toBeLessThan(dxTol);
    // The weight gradient uses the forward's tiles; F(4x4)'s dy transform scales by up to 64.
    expect(relError(dw, ref.dw.map((v, i) => v + dw0[i]))).toBeLessThan(winogradF4(c) ? 4e-4 : 1e-4);
    expect(relError(db, ref.db.map((v, i) => v + db0[i]))).toBeLessThan(1e-4);

    const gw = new Float32Array(k.wLen), gb = new Float32Array(c.outC), gx = new Float32Array(k.xLen);
    k.bwd(x, w, dy, gx, gw, gb);
    const loss = () => { k.fwd(x, w, b, y); return dot(dy, y); };
    checkFiniteDifferences(x, gx, loss, 0.25, 1e-3);
    checkFiniteDifferences(w, gw, loss, 0.25, 1e-3);
    checkFiniteDifferences(b, gb, loss, 0.25, 1e-3);
  });

  it('conv2d forward: equal inputs over a 2x2 window\'s receptive field give bit-equal outputs (max-pool ties stay ties)', () => {
    use();
    // conv2's shape; each image is a constant per channel except for a
    // random 5x5 patch, as MNIST's blank areas are after the stem. A direct
    // convolution gives bit-equal outputs wherever the 4x4 receptive field of
    // a 2x2 window is constant, and max pooling then picks the first element
    // (PyTorch's rule). Winograd must not break those ties by rounding the
    // window's positions differently (F(4x4) did, for 18% of conv2's ties).
    const c: ConvCfg = { batch: 4, inC: 32, H: 14, W: 14, outC: 64, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 };
    const k = conv(c);
    const x = new Float32Array(k.xLen), w = rngArray(k.wLen, 31), b = rngArray(c.outC, 32), y = new Float32Array(k.yLen);
    const level = rngArray(c.inC, 33), noise = rngArray(k.xLen, 34);
    const patch = (n: number, r: number, col: number) => r >= 2 + n && r < 7 + n && col >= 3 * n && col < 3 * n + 5;
    for (let n = 0; n < c.batch; n++)
      for (let ch = 0; ch < c.inC; ch++)
        for (let r = 0; r < c.H; r++)
          for (let col = 0; col < c.W; col++) {
            const i = ((n * c.inC + ch) * c.H + r) * c.W + col;
            x[i] = patch(n, r, col) ? noise[i] : level[ch];
          }
    k.fwd(x, w, b, y);
    let constantWindows = 0;
    for (let n = 0; n < c.batch; n++)
      for (let py = 0; py < c.H / 2; py++)
        for (let px = 0; px < c.W / 2; px++) {
          // The window's receptive field: rows 2py-1..2py+2, columns 2px-1..2px+2, inside the image and the constant area.
          let constant = 2 * py >= 1 && 2 * py + 2 < c.H && 2 * px >= 1 && 2 * px + 2 < c.W;
          for (let r = 2 * py - 1; constant && r <= 2 * py + 2; r++)
            for (let col = 2 * px - 1; col <= 2 * px + 2; col++) if (patch(n, r, col)) constant = false;
          if (!constant) continue;
          constantWindows++;
          for (let oc = 0; oc < c.outC; oc++) {
            const at = (dy: number, dx: number) => y[((n * c.outC + oc) * c.H + 2 * py + dy) * c.W + 2 * px + dx];
            expect([at(0, 1), at(1, 0), at(1, 1)]).toEqual([at(0, 0), at(0, 0), at(0, 0)]);
          }
        }
    expect(constantWindows).toBeGreaterThan(40);
  });

  it('maxPool2d forward/backward match the reference and finite differences', () => {
    use();
    for (const [batch, ch, H, W, kern, stride] of [[2, 3, 28, 28, 2, 2], [1, 2, 7, 9, 3, 2], [3, 1, 5, 5, 2, 1], [1, 1, 3, 3, 3, 3]]) {
      const planes = batch * ch;
      // A permutation of distinct values spaced 1 apart: no ties, and +-0.25 never changes the argmax.
      const x = new Float32Array(planes * H * W);
      const order = rngArray(x.length, 31);
      const idx = Array.from(x.keys()).sort((a, b) => order[a] - order[b]);
      idx.forEach((at, rank) => { x[at] = rank - x.length / 2; });
      const ref = R.maxPool2dForward(x, planes, 1, H, W, kern, stride);
      const y = new Float32Array(ref.y.length), arg = new Int32Array(ref.y.length);
      native.maxPool2dForward(x, batch, ch, H, W, kern, stride, y, arg);
      expect(Array.from(y)).toEqual(Array.from(ref.y));
      expect(Array.from(arg)).toEqual(Array.from(ref.from));
      const dy = rngArray(y.length, 32), dx = new Float32Array(x.length).fill(NaN);
      native.maxPool2dBackward(dy, arg, dx);
      const dxRef = R.maxPool2dBackward(dy, ref.from, x.length);
      expect(relError(dx, dxRef)).toBeLessThan(1e-6);
      const loss = () => { native.maxPool2dForward(x, batch, ch, H, W, kern, stride, y, arg); return dot(dy, y); };
      checkFiniteDifferences(x, dx, loss, 0.25, 1e-4);
    }
  });

  it('maxPool2dBackward sums repeated and unordered indices in dy order', () => {
    use();
    const n = 40000, dxLength = 1000;
    const arg = Int32Array.from({ length: n }, (_, i) => (i * 7919) % dxLength); // unordered, each index hit 40 times
    const dy = rngArray(n, 33), dx = new Float32Array(dxLength).fill(NaN);
    native.maxPool2dBackward(dy, arg, dx);
    const want = R.maxPool2dBackward(dy, arg, dxLength);
    expect(relError(dx, want)).toBeLessThan(1e-5);
    // Increasing pieces (as produced by the forward pass) take the parallel path: same bits for 1 and 2 threads.
    const sorted = Int32Array.from({ length: n }, (_, i) => Math.floor(i / 40));
    const run = (threads: number) => {
      native.setNumThreads(threads);
      const out = new Float32Array(dxLength);
      native.maxPool2dBackward(dy, sorted, out);
      return Array.from(out);
    };
    const one = run(1), two = run(2);
    native.setNumThreads(initialThreads);
    expect(two).toEqual(one);
  });

  it('maxPool2d propagates NaN and takes the first of equal maxima', () => {
    use();
    const x = new Float32Array([1, 3, 3, 2, NaN, 0, 0, 0]);
    const y = new Float32Array(2), arg = new Int32Array(2);
    native.maxPool2dForward(x, 1, 2, 2, 2, 2, 2, y, arg);
    expect(y[0]).toBe(3);
    expect(arg[0]).toBe(1);
    expect(Number.isNaN(y[1])).toBe(true);
    expect(arg[1]).toBe(4);
  });

  it('relu and sigmoid forward/backward (in place too)', () => {
    use();
    for (const n of [1, 7, 16, 33, 100003]) {
      const x = rngArray(n, 41, -4, 4);
      x[0] = n > 1 ? 0 : x[0];
      const y = new Float32Array(n), dy = rngArray(n, 42), dx = new Float32Array(n);
      native.reluForward(x, y);
      expect(Array.from(y)).toEqual(Array.from(x, (v) => Math.max(0, v)));
      native.reluBackward(y, dy, dx);
      expect(Array.from(dx)).toEqual(Array.from(dy, (g, i) => (y[i] > 0 ? g : 0)));
      const inPlace = Float32Array.from(dy);
      native.reluBackward(y, inPlace, inPlace);
      expect(Array.from(inPlace)).toEqual(Array.from(dx));

      native.sigmoidForward(x, y);
      expect(relError(y, R.sigmoid(x))).toBeLessThan(1e-6);
      native.sigmoidBackward(y, dy, dx);
      expect(relError(dx, R.sigmoidGrad(y, dy))).toBeLessThan(1e-6);
      const copy = Float32Array.from(x);
      native.sigmoidForward(copy, copy);
      expect(Array.from(copy)).toEqual(Array.from(y));
    }
    const y = new Float32Array(3);
    native.sigmoidForward(new Float32Array([-1000, 1000, NaN]), y);
    expect(y[0]).toBe(0);
    expect(y[1]).toBe(1);
    native.reluForward(new Float32Array([NaN, -0, 5]), y);
    expect(Number.isNaN(y[0])).toBe(true);
  });

  it('softmax cross-entropy matches the reference, stays finite and passes finite differences', () => {
    use();
    for (const [batch, classes, scale] of [[1, 1, 1], [3, 10, 1], [64, 10, 5], [4, 37, 1000]]) {
      const logits = rngArray(batch * classes, 51, -scale, scale);
      const labels8 = Uint8Array.from({ length: batch }, (_, i) => (i * 7) % classes);
      const labels32 = Int32Array.from(labels8);
      const ref = R.softmaxCrossEntropy(logits, batch, classes, labels8);
      const probs = new Float32Array(batch * classes);
      for (const labels of [labels8, labels32]) {
        const loss = native.softmaxCrossEntropyForward(logits, batch, classes, labels, probs);
        expect(Number.isFinite(loss)).toBe(true);
        expect(Math.abs(loss - ref.loss) / (1 + Math.abs(ref.loss))).toBeLessThan(1e-5);
        expect(relError(probs, ref.probs)).toBeLessThan(1e-6);
        const d = new Float32Array(batch * classes);
        native.softmaxCrossEntropyBackward(probs, batch, classes, labels, d);
        const dRef = ref.dlogits;
        expect(relError(d, dRef)).toBeLessThan(1e-6);
        if (scale <= 5) {
          const loss2 = () => native.softmaxCrossEntropyForward(logits, batch, classes, labels, probs);
          checkFiniteDifferences(logits, d, loss2, 1e-2, 2e-3);
        }
      }
    }
  });

  it('sgdStep follows torch.optim.SGD over several steps', () => {
    use();
    const n = 1000;
    for (const o of [
      { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false },
      { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-2, nesterov: true },
      { lr: 0.01, momentum: 0.5, dampening: 0.3, weightDecay: 1e-3, nesterov: false },
      { lr: 0.2, momentum: 0, dampening: 0, weightDecay: 0.1, nesterov: false },
    ]) {
      const p0 = rngArray(n, 61), grads = [0, 1, 2, 3].map((s) => Float64Array.from(rngArray(n, 62 + s)));
      const p = Float32Array.from(p0), vel = new Float32Array(n);
      grads.forEach((g, step) => {
        native.sgdStep(p, Float32Array.from(g), o.momentum ? vel : null, o.lr, o.momentum, o.dampening, o.weightDecay,
          o.nesterov, step === 0);
      });
      expect(relError(p, refSgd(Float64Array.from(p0), grads, o))).toBeLessThan(1e-5);
    }
  });

  it('adamStep follows torch.optim.Adam over several steps', () => {
    use();
    const n = 1000;
    for (const o of [
      { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
      { lr: 0.01, beta1: 0.5, beta2: 0.9, eps: 1e-6, weightDecay: 0.01 },
    ]) {
      const p0 = rngArray(n, 71), grads = [0, 1, 2, 3, 4].map((s) => Float64Array.from(rngArray(n, 72 + s)));
      const p = Float32Array.from(p0), m = new Float32Array(n), v = new Float32Array(n);
      grads.forEach((g, t) => native.adamStep(p, Float32Array.from(g), m, v, t + 1, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay));
      expect(relError(p, refAdam(Float64Array.from(p0), grads, o))).toBeLessThan(1e-5);
    }
  });

  it('linear forward and backward (fc1 and odd shapes) are bit-identical for 1, 2 and 3 threads', () => {
    use();
    // fc1 computes its forward transposed (swapPays) and both gradients in one batch.
    const cases = [[64, 3136, 128], [19, 301, 70], [5, 200, 33]].map(([batch, inF, outF]) => ({
      batch, inF, outF, x: rngArray(batch * inF, 91), w: rngArray(outF * inF, 92), b: rngArray(outF, 93), dy: rngArray(batch * outF, 94),
    }));
    const run = (threads: number) => {
      native.setNumThreads(threads);
      return cases.flatMap(({ batch, inF, outF, x, w, b, dy }) => {
        const y = new Float32Array(batch * outF), dx = new Float32Array(batch * inF);
        const dw = rngArray(outF * inF, 95), db = rngArray(outF, 96);
        native.linearForward(x, batch, inF, w, b, outF, y);
        native.linearBackward(x, batch, inF, w, outF, dy, dx, dw, db);
        return [y, dx, dw, db].map((a) => Buffer.from(a.buffer).toString('base64'));
      });
    };
    const one = run(1), two = run(2), three = run(3);
    native.setNumThreads(initialThreads);
    expect(two).toEqual(one);
    expect(three).toEqual(one);
  });

  it('gemm and conv results are bit-identical for 1 and 2 threads', () => {
    use();
    // conv1 (direct forward) and conv2 (Winograd forward and data gradient, several tile blocks).
    const convs = [CONVS[0], CONVS[1]].map((c) => ({ c, k: conv({ ...c, batch: 16 }) }));
    const data = convs.map(({ k }) => ({ x: rngArray(k.xLen, 81), w: rngArray(k.wLen, 82), dy: rngArray(k.yLen, 83) }));
    const run = (threads: number) => {
      native.setNumThreads(threads);
      const out: Float32Array[] = [];
      convs.forEach(({ c, k }, i) => {
        const { x, w, dy } = data[i];
        const y = new Float32Array(k.yLen), dx = new Float32Array(k.xLen), dw = new Float32Array(k.wLen), db = new Float32Array(c.outC);
        k.fwd(x, w, null, y);
        k.bwd(x, w, dy, dx, dw, db);
        out.push(y, dx, dw, db);
      });
      const C = new Float32Array(200 * 300);
      native.gemm(true, false, 200, 300, 500, 1, rngArray(200 * 500, 84), rngArray(500 * 300, 85), 0, C);
      return [...out, C].map((a) => Buffer.from(a.buffer).toString('base64'));
    };
    const one = run(1), two = run(2);
    native.setNumThreads(initialThreads);
    expect(two).toEqual(one);
  });
});

describe('argument validation', () => {
  const f = (n: number) => new Float32Array(n);

  it('gemm checks types, sizes and lengths', () => {
    expect(() => native.gemm(false, false, 2, 2, 2, 1, f(4), f(4), 0, f(3))).toThrow(/C has 3 elements, expected 4/);
    expect(() => native.gemm(false, false, 2, 2, 2, 1, f(3), f(4), 0, f(4))).toThrow(RangeError);
    expect(() => native.gemm(false, false, 0, 2, 2, 1, f(0), f(4), 0, f(0))).toThrow(/M must be an integer >= 1/);
    expect(() => native.gemm(false, false, 2.5, 2, 2, 1, f(5), f(4), 0, f(5))).toThrow(RangeError);
    expect(() => native.gemm(false, false, 2, 2, 2, NaN, f(4), f(4), 0, f(4))).toThrow(/alpha must be finite/);
    expect(() => native.gemm(false, false, 2, 2, 2, 1, new Float64Array(4) as never, f(4), 0, f(4))).toThrow(TypeError);
    expect(() => native.gemm(1 as never, false, 2, 2, 2, 1, f(4), f(4), 0, f(4))).toThrow(/transA must be a boolean/);
  });

  it('linear and conv check every tensor against the shape', () => {
    expect(() => native.linearForward(f(6), 2, 3, f(6), f(3), 2, f(4))).toThrow(/bias has 3 elements, expected 2/);
    expect(() => native.linearBackward(f(6), 2, 3, f(6), 2, f(4), null, f(5), null)).toThrow(/dweight/);
    expect(() => native.conv2dForward(f(16), 1, 1, 4, 4, f(9), null, 1, 3, 3, 1, 1, 0, 0, f(5))).toThrow(/y \[1, 1, 2, 2\].*expected 4/);
    expect(() => native.conv2dForward(f(4), 1, 1, 2, 2, f(9), null, 1, 3, 3, 1, 1, 0, 0, f(1))).toThrow(/output size/);
    expect(() => native.conv2dForward(f(16), 1, 1, 4, 4, f(9), null, 1, 3, 3, 0, 1, 0, 0, f(4))).toThrow(/strideH/);
    expect(() => native.conv2dForward(f(16), 1, 1, 4, 4, f(9), null, 1, 3, 3, 1, 1, -1, 0, f(4))).toThrow(/padH/);
    expect(() => native.conv2dBackward(f(16), 1, 1, 4, 4, f(9), 1, 3, 3, 1, 1, 0, 0, f(4), f(15), f(9), null)).toThrow(/dx/);
    expect(() => native.conv2dBackward(f(16), 1, 1, 4, 4, f(9), 1, 3, 3, 1, 1, 0, 0, f(4), null, null as never, null)).toThrow(TypeError);
  });

  it('pooling, losses and optimizers reject bad input without crashing', () => {
    expect(() => native.maxPool2dForward(f(16), 1, 1, 4, 4, 5, 1, f(1), new Int32Array(1))).toThrow(/kernel 5 is larger/);
    expect(() => native.maxPool2dForward(f(16), 1, 1, 4, 4, 2, 2, f(4), new Int32Array(3))).toThrow(/argmax/);
    expect(() => native.maxPool2dForward(f(16), 1, 1, 4, 4, 2, 2, f(4), f(4) as never)).toThrow(TypeError);
    expect(() => native.maxPool2dBackward(f(2), new Int32Array([0, 16]), f(16))).toThrow(/argmax\[1\] = 16/);
    expect(() => native.maxPool2dBackward(f(2), new Int32Array([-1, 0]), f(16))).toThrow(/argmax\[0\] = -1/);
    expect(() => native.reluForward(f(3), f(4))).toThrow(/y has 4 elements, expected 3/);
    expect(() => native.reluBackward(f(3), f(3), f(2))).toThrow(RangeError);
    expect(() => native.sigmoidForward([1, 2] as never, f(2))).toThrow(TypeError);
    expect(() => native.softmaxCrossEntropyForward(f(20), 2, 10, new Uint8Array([1, 10]), f(20))).toThrow(/labels\[1\] = 10/);
    expect(() => native.softmaxCrossEntropyForward(f(20), 2, 10, new Int32Array([-3, 1]), f(20))).toThrow(/labels\[0\] = -3/);
    expect(() => native.softmaxCrossEntropyForward(f(20), 2, 10, new Float32Array(2) as never, f(20))).toThrow(TypeError);
    expect(() => native.softmaxCrossEntropyForward(f(20), 2, 10, new Uint8Array(3), f(20))).toThrow(/labels has 3/);
    expect(() => native.softmaxCrossEntropyBackward(f(20), 2, 10, new Uint8Array(2), f(19))).toThrow(/dlogits/);
    expect(() => native.sgdStep(f(3), f(3), null, 0.1, 0.9, 0, 0, false)).toThrow(/velocity/);
    expect(() => native.sgdStep(f(3), f(3), f(3), Infinity, 0.9, 0, 0, false)).toThrow(/lr must be finite/);
    expect(() => native.sgdStep(f(3), f(3), f(3), -1, 0.9, 0, 0, false)).toThrow(/lr must be >= 0/);
    expect(() => native.sgdStep(f(3), f(3), f(3), 0.1, 0.9, 0.1, 0, true)).toThrow(/nesterov/);
    expect(() => native.sgdStep(f(3), f(2), f(3), 0.1, 0.9, 0, 0, false)).toThrow(/grad has 2/);
    expect(() => native.adamStep(f(3), f(3), f(3), f(3), 0, 1e-3, 0.9, 0.999, 1e-8, 0)).toThrow(/step must be an integer >= 1/);
    expect(() => native.adamStep(f(3), f(3), f(3), f(3), 1, 1e-3, 1, 0.999, 1e-8, 0)).toThrow(/beta1 must be in \[0, 1\)/);
    expect(() => native.adamStep(f(3), f(3), f(3), f(2), 1, 1e-3, 0.9, 0.999, 1e-8, 0)).toThrow(/v has 2/);
  });
});
