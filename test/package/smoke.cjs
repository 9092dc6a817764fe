// Installation smoke test: loads bnkit the way a user would, prints the kernel
// path chosen for this CPU, and checks BatchNorm1d/2d forward and backward in
// training and eval mode (NCHW and NHWC, with and without fused ReLU) against
// a float64 reference written here from the formulas, independent of lib/.
// Small on purpose: it also runs under qemu, where node is 20-100x slower.
//
//   node smoke.cjs [module]      module: what to require (default 'bnkit',
//                                resolved from the current directory, then
//                                the repository this file lives in)
// Environment:
//   SMOKE_EXPECT_ISA=avx2            isa() must report this path
//   SMOKE_EXPECT_AVAILABLE=scalar,avx2   availableIsas() must be exactly this set
//   SMOKE_ALL_ISAS=0                 only test the chosen path (default: every available one)
// Exit status 1 on any mismatch; last line "smoke: N passed, N failed".
'use strict';
const path = require('node:path');

// Deterministic data: mulberry32 and Box-Muller, so a failure reproduces.
function rng(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

// Index of element (n, c, s) in the flat array, for either layout.
function indexer(N, C, S, channelsLast) {
  return channelsLast ? (n, c, s) => (n * S + s) * C + c : (n, c, s) => (n * C + c) * S + s;
}

// float64 reference of one training step (PyTorch semantics): biased variance
// to normalize, unbiased for the running variance, momentum weights the new value.
function referenceTrain(x, N, C, S, channelsLast, gamma, beta, eps, relu, momentum, runMean, runVar) {
  const at = indexer(N, C, S, channelsLast);
  const m = N * S;
  const y = new Float64Array(x.length);
  const mean = new Float64Array(C);
  const invstd = new Float64Array(C);
  const newRunMean = new Float64Array(C);
  const newRunVar = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let sum = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sum += x[at(n, c, s)];
    const mu = sum / m;
    let sq = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sq += (x[at(n, c, s)] - mu) ** 2;
    const varBiased = sq / m;
    mean[c] = mu;
    invstd[c] = 1 / Math.sqrt(varBiased + eps);
    newRunMean[c] = (1 - momentum) * runMean[c] + momentum * mu;
    newRunVar[c] = (1 - momentum) * runVar[c] + momentum * (sq / (m - 1));
    for (let n = 0; n < N; n++) {
      for (let s = 0; s < S; s++) {
        const i = at(n, c, s);
        const v = gamma[c] * (x[i] - mu) * invstd[c] + beta[c];
        y[i] = relu ? Math.max(0, v) : v;
      }
    }
  }
  return { y, mean, invstd, newRunMean, newRunVar };
}

function referenceEval(x, N, C, S, channelsLast, gamma, beta, eps, relu, runMean, runVar) {
  const at = indexer(N, C, S, channelsLast);
  const y = new Float64Array(x.length);
  const mean = new Float64Array(C);
  const invstd = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    mean[c] = runMean[c];
    invstd[c] = 1 / Math.sqrt(runVar[c] + eps);
    for (let n = 0; n < N; n++) {
      for (let s = 0; s < S; s++) {
        const i = at(n, c, s);
        const v = gamma[c] * (x[i] - mean[c]) * invstd[c] + beta[c];
        y[i] = relu ? Math.max(0, v) : v;
      }
    }
  }
  return { y, mean, invstd };
}

// Backward through y = relu?(gamma * xhat + beta). With batch statistics the
// mean and variance depend on x (the two projection terms); in eval mode they
// are constants and dx is a per-channel scale of dy. The ReLU mask is taken
// from the addon's own float32 output (y <= 0), as the design specifies, so an
// element within rounding of 0 cannot flip the mask between the two sides.
function referenceBackward(x, dyIn, y, N, C, S, channelsLast, gamma, mean, invstd, relu, batchStatistics) {
  const at = indexer(N, C, S, channelsLast);
  const m = N * S;
  const dx = new Float64Array(x.length);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let sumDy = 0;
    let sumDyXhat = 0;
    for (let n = 0; n < N; n++) {
      for (let s = 0; s < S; s++) {
        const i = at(n, c, s);
        const dy = relu && y[i] <= 0 ? 0 : dyIn[i];
        sumDy += dy;
        sumDyXhat += dy * (x[i] - mean[c]) * invstd[c];
      }
    }
    dgamma[c] = sumDyXhat;
    dbeta[c] = sumDy;
    for (let n = 0; n < N; n++) {
      for (let s = 0; s < S; s++) {
        const i = at(n, c, s);
        const dy = relu && y[i] <= 0 ? 0 : dyIn[i];
        const xhat = (x[i] - mean[c]) * invstd[c];
        dx[i] = batchStatistics
          ? gamma[c] * invstd[c] * (dy - sumDy / m - (xhat * sumDyXhat) / m)
          : gamma[c] * invstd[c] * dy;
      }
    }
  }
  return { dx, dgamma, dbeta };
}

// Errors are measured relative to the array's largest reference value, so
// entries that cancel to ~0 (dx, centered sums) are judged against the scale
// of their inputs rather than against themselves. NaN always fails.
function compare(name, got, want, tol = 2e-4) {
  if (got.length !== want.length) return `${name}: length ${got.length}, expected ${want.length}`;
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) / (1 + scale);
    if (Number.isNaN(err)) return `${name}: NaN at ${i} (got ${got[i]}, want ${want[i]})`;
    if (err > worst) {
      worst = err;
      worstAt = i;
    }
  }
  if (worst > tol) return `${name}: error ${worst.toExponential(2)} at ${worstAt} (got ${got[worstAt]}, want ${want[worstAt]})`;
  return null;
}

const CASES = [
  // [layer, shape, options]; sizes chosen to hit vector tails (C, H*W not multiples of 4/8/16).
  ['BatchNorm2d', [2, 3, 4, 5], {}],
  ['BatchNorm2d', [3, 5, 3, 7], { relu: true }],
  ['BatchNorm2d', [2, 4, 3, 19], { channelsLast: true }], // NHWC, C = 19
  ['BatchNorm2d', [4, 2, 2, 17], { channelsLast: true, relu: true }],
  ['BatchNorm1d', [9, 33], {}],
];

function runCase(bnkit, [layer, shape, options], seed) {
  const r = rng(seed);
  const channelsLast = !!options.channelsLast;
  const relu = !!options.relu;
  const N = shape[0];
  const C = channelsLast ? shape[shape.length - 1] : shape[1];
  const S = shape.reduce((a, b) => a * b, 1) / (N * C);
  const eps = 1e-5;
  const momentum = 0.1;
  const mod = new bnkit[layer](C, { ...options, eps, momentum });
  for (let c = 0; c < C; c++) {
    mod.weight.data[c] = 0.5 + r.uniform();
    mod.bias.data[c] = r.normal() * 0.5;
    mod.runningMean[c] = r.normal();
    mod.runningVar[c] = 0.5 + r.uniform();
  }
  const gamma = Float64Array.from(mod.weight.data);
  const beta = Float64Array.from(mod.bias.data);
  const runMean0 = Float64Array.from(mod.runningMean);
  const runVar0 = Float64Array.from(mod.runningVar);
  const size = shape.reduce((a, b) => a * b, 1);
  // A large common offset: a float E[x^2] - E[x]^2 variance would fail here.
  const x = new bnkit.Tensor(Float32Array.from({ length: size }, () => 100 + 3 * r.normal()), shape);
  const dy = new bnkit.Tensor(Float32Array.from({ length: size }, () => r.normal()), shape);
  const errors = [];
  const push = (e) => e && errors.push(e);

  // Training step.
  mod.train();
  mod.zeroGrad();
  const y = Float32Array.from(mod.forward(x).data);
  const ref = referenceTrain(x.data, N, C, S, channelsLast, gamma, beta, eps, relu, momentum, runMean0, runVar0);
  push(compare('train y', y, ref.y));
  push(compare('runningMean', mod.runningMean, ref.newRunMean));
  push(compare('runningVar', mod.runningVar, ref.newRunVar));
  const dx = Float32Array.from(mod.backward(dy).data);
  const refB = referenceBackward(x.data, dy.data, y, N, C, S, channelsLast, gamma, ref.mean, ref.invstd, relu, true);
  push(compare('train dx', dx, refB.dx));
  push(compare('train dgamma', mod.weight.grad, refB.dgamma));
  push(compare('train dbeta', mod.bias.grad, refB.dbeta));

  // Eval with the running statistics just updated.
  mod.eval();
  mod.zeroGrad();
  const runMean1 = Float64Array.from(mod.runningMean);
  const runVar1 = Float64Array.from(mod.runningVar);
  const ye = Float32Array.from(mod.forward(x).data);
  const refE = referenceEval(x.data, N, C, S, channelsLast, gamma, beta, eps, relu, runMean1, runVar1);
  push(compare('eval y', ye, refE.y));
  push(compare('eval leaves runningMean alone', mod.runningMean, runMean1, 0));
  const dxe = Float32Array.from(mod.backward(dy).data);
  const refEB = referenceBackward(x.data, dy.data, ye, N, C, S, channelsLast, gamma, refE.mean, refE.invstd, relu, false);
  push(compare('eval dx', dxe, refEB.dx));
  push(compare('eval dgamma', mod.weight.grad, refEB.dgamma));
  push(compare('eval dbeta', mod.bias.grad, refEB.dbeta));
  return errors;
}

function run(bnkit, env = process.env) {
  let passed = 0;
  let failed = 0;
  const report = (ok, what) => {
    if (ok) passed++;
    else failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} - ${what}`);
  };
  const chosen = bnkit.isa();
  const available = bnkit.availableIsas();
  console.log(`smoke: ${process.platform}-${process.arch} node ${process.version}, isa() = ${chosen}, available = [${available.join(', ')}]`);
  if (env.SMOKE_EXPECT_ISA) report(chosen === env.SMOKE_EXPECT_ISA, `isa() is ${env.SMOKE_EXPECT_ISA} (got ${chosen})`);
  if (env.SMOKE_EXPECT_AVAILABLE) {
    const want = env.SMOKE_EXPECT_AVAILABLE.split(',').sort().join(',');
    report([...available].sort().join(',') === want, `availableIsas() is [${want}] (got [${available.join(', ')}])`);
  }
  const isas = env.SMOKE_ALL_ISAS === '0' ? [chosen] : [chosen, ...available.filter((i) => i !== chosen)];
  for (const isa of isas) {
    bnkit.setIsa(isa);
    CASES.forEach((c, k) => {
      const label = `${isa}: ${c[0]}([${c[1].join(', ')}]${Object.keys(c[2]).length ? `, ${JSON.stringify(c[2])}` : ''})`;
      let errors;
      try {
        errors = runCase(bnkit, c, 1234 + k);
      } catch (err) {
        errors = [`threw ${err && err.stack ? err.stack : err}`];
      }
      report(errors.length === 0, errors.length ? `${label}: ${errors.join('; ')}` : `${label} train+eval forward/backward`);
    });
  }
  bnkit.setIsa(chosen);
  console.log(`smoke: ${passed} passed, ${failed} failed`);
  return failed === 0;
}

module.exports = { run };

if (require.main === module) {
  const spec = process.argv[2] ?? 'bnkit';
  let target;
  try {
    target = require.resolve(spec, { paths: [process.cwd()] });
  } catch {
    target = spec === 'bnkit' ? path.resolve(__dirname, '..', '..') : path.resolve(spec);
  }
  process.exitCode = run(require(target)) ? 0 : 1;
}
