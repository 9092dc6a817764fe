// Micro-benchmark of the training kernels on the MNIST "cnn-bn" shapes:
// GFLOP/s per ISA and thread count, and one whole cnn-bn training step through
// the addon alone (no JavaScript layers).
//   node bench/nn-kernels.mjs [--isa=NAME] [--json]   kernels x ISAs x {1, 2} threads
//   node bench/nn-kernels.mjs --breakdown             per-call times of one step
//   node bench/nn-kernels.mjs --breakdown --compare=OTHER/bnkit.node
//        the same step with a second build of the addon, interleaved step by
//        step so both see the same machine load (the machine is shared)
// Times are medians of repeated runs (the breakdown also shows minima).
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const defaultNative = require('node-gyp-build')(new URL('..', import.meta.url).pathname);
const native = defaultNative;

const rand = (n) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);

function timeIt(fn, minSeconds = 0.4) {
  fn();
  const times = [];
  const start = performance.now();
  while (performance.now() - start < minSeconds * 1000 || times.length < 5) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] / 1000;
}

function convCase(name, batch, inC, H, W, outC, withDx) {
  const oH = H, oW = W, K = inC * 9;
  const x = rand(batch * inC * H * W), w = rand(outC * K), b = rand(outC);
  const y = new Float32Array(batch * outC * oH * oW), dy = rand(y.length);
  const dx = withDx ? new Float32Array(x.length) : null, dw = new Float32Array(w.length), db = new Float32Array(outC);
  const macs = batch * outC * oH * oW * K;
  return [
    { name: `${name} fwd`, flops: 2 * macs, run: () => native.conv2dForward(x, batch, inC, H, W, w, b, outC, 3, 3, 1, 1, 1, 1, y) },
    { name: `${name} bwd${withDx ? '' : ' (no dx)'}`, flops: 2 * macs * (withDx ? 2 : 1),
      run: () => native.conv2dBackward(x, batch, inC, H, W, w, outC, 3, 3, 1, 1, 1, 1, dy, dx, dw, db) },
  ];
}

function linearCase(name, batch, inF, outF) {
  const x = rand(batch * inF), w = rand(outF * inF), b = rand(outF), y = new Float32Array(batch * outF);
  const dy = rand(y.length), dx = new Float32Array(x.length), dw = new Float32Array(w.length), db = new Float32Array(outF);
  const macs = batch * inF * outF;
  return [
    { name: `${name} fwd`, flops: 2 * macs, run: () => native.linearForward(x, batch, inF, w, b, outF, y) },
    { name: `${name} bwd`, flops: 4 * macs, run: () => native.linearBackward(x, batch, inF, w, outF, dy, dx, dw, db) },
  ];
}

function gemmCase(M, N, K) {
  const A = rand(M * K), B = rand(K * N), C = new Float32Array(M * N);
  return [{ name: `gemm ${M}x${N}x${K}`, flops: 2 * M * N * K, run: () => native.gemm(false, false, M, N, K, 1, A, B, 0, C) }];
}

// One cnn-bn training step (batch 64) through the addon alone: every layer's
// forward and backward plus the SGD update, no JavaScript layer objects.
function cnnBnStep(times = null, native = defaultNative) {
  const B = 64;
  const buf = (n) => new Float32Array(n);
  const conv1 = { w: rand(32 * 9), b: rand(32), dw: buf(32 * 9), db: buf(32) };
  const conv2 = { w: rand(64 * 32 * 9), b: rand(64), dw: buf(64 * 288), db: buf(64) };
  const fc1 = { w: rand(128 * 3136), b: rand(128), dw: buf(128 * 3136), db: buf(128) };
  const fc2 = { w: rand(10 * 128), b: rand(10), dw: buf(1280), db: buf(10) };
  const bn = (c, spatial) => ({ c, spatial, g: rand(c).map((v) => 1 + v), be: rand(c), mean: buf(c), invstd: buf(c),
    rm: buf(c), rv: buf(c).fill(1), dg: buf(c), db: buf(c) });
  const bn1 = bn(32, 784), bn2 = bn(64, 196), bn3 = bn(128, 1);
  const x = rand(B * 784), labels = Uint8Array.from({ length: B }, (_, i) => i % 10);
  const a1 = buf(B * 32 * 784), r1 = buf(a1.length), p1 = buf(B * 32 * 196), i1 = new Int32Array(p1.length);
  const a2 = buf(B * 64 * 196), r2 = buf(a2.length), p2 = buf(B * 64 * 49), i2 = new Int32Array(p2.length);
  const a3 = buf(B * 128), r3 = buf(a3.length), logits = buf(B * 10), probs = buf(B * 10);
  const g = { logits: buf(B * 10), r3: buf(B * 128), a3: buf(B * 128), p2: buf(p2.length), r2: buf(a2.length),
    a2: buf(a2.length), p1: buf(p1.length), r1: buf(a1.length), a1: buf(a1.length) };
  const bnF = (l, inp, out, n) => native.batchNormForwardTrain(inp, out, n, l.c, l.spatial, false, l.g, l.be, 1e-5, true,
    l.mean, l.invstd, l.rm, l.rv, 0.1);
  const bnB = (l, inp, dy, dx, n) => native.batchNormBackward(inp, dy, dx, n, l.c, l.spatial, false, l.mean, l.invstd,
    l.g, l.be, true, true, l.dg, l.db);
  const params = [conv1, conv2, fc1, fc2].flatMap((p) => [[p.w, p.dw], [p.b, p.db]])
    .concat([bn1, bn2, bn3].flatMap((l) => [[l.g, l.dg], [l.be, l.db]]))
    .map(([p, gr]) => [p, gr, buf(p.length)]);
  const t = (label, f) => {
    if (!times) return f();
    const t0 = performance.now();
    f();
    const ms = performance.now() - t0;
    if (!times.has(label)) times.set(label, []);
    times.get(label).push(ms);
  };
  return () => {
    t('conv1 forward', () => native.conv2dForward(x, B, 1, 28, 28, conv1.w, conv1.b, 32, 3, 3, 1, 1, 1, 1, a1));
    t('bn1 forward (+relu)', () => bnF(bn1, a1, r1, B));
    t('pool1 forward', () => native.maxPool2dForward(r1, B, 32, 28, 28, 2, 2, p1, i1));
    t('conv2 forward', () => native.conv2dForward(p1, B, 32, 14, 14, conv2.w, conv2.b, 64, 3, 3, 1, 1, 1, 1, a2));
    t('bn2 forward (+relu)', () => bnF(bn2, a2, r2, B));
    t('pool2 forward', () => native.maxPool2dForward(r2, B, 64, 14, 14, 2, 2, p2, i2));
    t('fc1 forward', () => native.linearForward(p2, B, 3136, fc1.w, fc1.b, 128, a3));
    t('bn3 forward (+relu)', () => bnF(bn3, a3, r3, B));
    t('fc2 forward', () => native.linearForward(r3, B, 128, fc2.w, fc2.b, 10, logits));
    t('loss forward', () => native.softmaxCrossEntropyForward(logits, B, 10, labels, probs));
    t('loss backward', () => native.softmaxCrossEntropyBackward(probs, B, 10, labels, g.logits));
    t('fc2 backward', () => native.linearBackward(r3, B, 128, fc2.w, 10, g.logits, g.r3, fc2.dw, fc2.db));
    t('bn3 backward', () => bnB(bn3, a3, g.r3, g.a3, B));
    t('fc1 backward', () => native.linearBackward(p2, B, 3136, fc1.w, 128, g.a3, g.p2, fc1.dw, fc1.db));
    t('pool2 backward', () => native.maxPool2dBackward(g.p2, i2, g.r2));
    t('bn2 backward', () => bnB(bn2, a2, g.r2, g.a2, B));
    t('conv2 backward (dx, dW, db)', () => native.conv2dBackward(p1, B, 32, 14, 14, conv2.w, 64, 3, 3, 1, 1, 1, 1, g.a2, g.p1, conv2.dw, conv2.db));
    t('pool1 backward', () => native.maxPool2dBackward(g.p1, i1, g.r1));
    t('bn1 backward', () => bnB(bn1, a1, g.r1, g.a1, B));
    t('conv1 backward (dW, db)', () => native.conv2dBackward(x, B, 1, 28, 28, conv1.w, 32, 3, 3, 1, 1, 1, 1, g.a1, null, conv1.dw, conv1.db));
    t('sgdStep (all 14 parameters)', () => {
      for (const [p, gr, v] of params) native.sgdStep(p, gr, v, 0.05, 0.9, 0, 0, false);
    });
    for (const [, gr] of params) gr.fill(0);
  };
}

const only = process.argv.includes('--breakdown') ? 'none' : process.argv.find((a) => a.startsWith('--isa='))?.slice(6);
const cases = [
  ...convCase('conv1 1->32 28x28', 64, 1, 28, 28, 32, false),
  ...convCase('conv2 32->64 14x14', 64, 32, 14, 14, 64, true),
  ...linearCase('linear 3136->128', 64, 3136, 128),
  ...linearCase('linear 128->10', 64, 128, 10),
  ...gemmCase(64, 784, 288),
  ...gemmCase(512, 512, 512),
  { name: 'cnn-bn training step (b=64)', flops: 1.6e9, run: cnnBnStep() },
];
const results = [];
const initial = native.isa();
for (const isa of native.availableIsas().filter((i) => !only || i === only)) {
  native.setIsa(isa);
  for (const threads of [1, 2]) {
    native.setNumThreads(threads);
    for (const c of cases) {
      const seconds = timeIt(c.run);
      results.push({ isa, threads, kernel: c.name, ms: +(seconds * 1e3).toFixed(3), gflops: +(c.flops / seconds / 1e9).toFixed(1) });
    }
  }
}
if (process.argv.includes('--breakdown')) {
  const other = process.argv.find((a) => a.startsWith('--compare='))?.slice(10);
  const builds = [['this build', native]];
  if (other) builds.push([other, require(other)]);
  const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  for (const threads of [1, 2]) {
    const runs = builds.map(([name, addon]) => {
      addon.setNumThreads(threads);
      const times = new Map();
      return { name, addon, times, step: cnnBnStep(times, addon), totals: [] };
    });
    // Each build has its own thread pool, whose workers spin a little after
    // each call: a pause between builds lets them fall asleep so one build's
    // spinning never steals the other's second core.
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 60; i++) {
      for (const r of runs) {
        if (runs.length > 1) Atomics.wait(pause, 0, 0, 5);
        const t0 = performance.now();
        r.step();
        r.totals.push(performance.now() - t0);
      }
    }
    console.log(`cnn-bn step breakdown, ${native.isa()}, ${threads} thread(s), median (min) of 60 calls, ms:`);
    console.log(`  ${''.padEnd(34)} ${runs.map((r) => r.name.slice(-24).padStart(24)).join(' ')}`);
    for (const label of runs[0].times.keys()) {
      const cols = runs.map((r) => `${median(r.times.get(label)).toFixed(3)} (${Math.min(...r.times.get(label)).toFixed(3)})`);
      console.log(`  ${label.padEnd(34)} ${cols.map((c) => c.padStart(24)).join(' ')}`);
    }
    const cols = runs.map((r) => `${median(r.totals).toFixed(3)} (${Math.min(...r.totals).toFixed(3)})`);
    console.log(`  ${'whole step'.padEnd(34)} ${cols.map((c) => c.padStart(24)).join(' ')}`);
    // On a shared machine the sum of per-call minima is the steadier figure.
    const sums = runs.map((r) => {
      let med = 0, min = 0;
      for (const v of r.times.values()) { med += median(v); min += Math.min(...v); }
      return `${med.toFixed(3)} (${min.toFixed(3)})`;
    });
    console.log(`  ${'sum of per-call medians (minima)'.padEnd(34)} ${sums.map((c) => c.padStart(24)).join(' ')}`);
  }
}
native.setIsa(initial);
if (process.argv.includes('--json')) {
  console.log(JSON.stringify(results));
} else {
  for (const r of results) {
    console.log(`${r.isa.padEnd(7)} t=${r.threads}  ${r.kernel.padEnd(32)} ${String(r.ms).padStart(9)} ms ${String(r.gflops).padStart(7)} GFLOP/s`);
  }
}
