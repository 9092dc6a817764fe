#!/usr/bin/env node
// Batch-norm benchmark: forward-train, forward-eval and backward on the
// reference shapes (DESIGN.md section 6), per layout, thread count and ISA,
// each reported in GB/s of minimal traffic next to a memcpy measured in the
// same run on the same threads (native streamCopy), next to the scalar path,
// next to the recorded reference figures of issue 2 and, with --onednn and
// --pytorch, next to oneDNN and PyTorch themselves, timed in the same run,
// sample for sample.
//
//   node bench/run.mjs bn [--quick] [--isa a,b] [--threads 1,2] [--shapes S1,S3]
//                         [--ops fwd-train,fwd-eval,bwd] [--layouts NCHW,NHWC]
//                         [--onednn] [--pytorch [--python PATH]] [--json path]
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseFlags, exitUsage, UsageError } from './lib/cli.mjs';
import { interleave } from './lib/timing.mjs';
import { loadOneDnn } from './lib/onednn.mjs';
import { TorchWorkerError, findTorchPython, startTorchWorker } from './lib/torch-worker.mjs';
import { summarize } from './lib/stats.mjs';
import { machineInfo, writeJsonAtomic, formatTable, fixed, microseconds } from './lib/report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');

const USAGE = `usage: node bench/run.mjs bn [flags]
  --quick              few repetitions (CI smoke test; numbers are rough)
  --isa a,b            kernel paths to time (default: every one availableIsas() lists)
  --threads 1,2        thread counts (default: 1,2)
  --shapes S1,S3       reference shapes S1..S5 (default: all)
  --ops a,b            fwd-train, fwd-eval, bwd (default: all)
  --layouts a,b        NCHW, NHWC (default: both; S4 is 2-D and has one layout, NC)
  --onednn             also time oneDNN's batch norm (the system library: apt-get install libdnnl-dev)
                       in the same run, interleaved with bnkit; builds bench/onednn on first use
  --pytorch            also time PyTorch's batch norm the same way (bench/lib/torch_bn.py in a child python)
  --python PATH        the python for --pytorch (default: $BNKIT_PYTHON, then python3, then /usr/bin/python3)
  --json path          results file (default: bench/results/bn.json)
Needs the addon (npx cmake-js compile --out build) and dist/ (npm run build:ts).`;

// DESIGN.md section 6. S4 is BatchNorm1d on a 2-D (N, C) input.
const SHAPES = {
  S1: { n: 64, c: 32, spatial: [28, 28] },
  S2: { n: 64, c: 64, spatial: [14, 14] },
  S3: { n: 32, c: 64, spatial: [112, 112] },
  S4: { n: 256, c: 1024, spatial: [] },
  S5: { n: 8, c: 256, spatial: [7, 7] },
};
const OPS = ['fwd-train', 'fwd-eval', 'bwd'];
// Minimal traffic in tensor sizes: forward reads x and writes y; backward
// reads x and dy and writes dx.
const TRAFFIC = { 'fwd-train': 2, 'fwd-eval': 2, bwd: 3 };

// Issue 2's figures, recorded on this machine type by the issue author; they
// are NOT measured by this script. Microseconds.
const REFERENCES = [
  ...Object.entries({ S1: [217, 146, 256], S2: [100, 74, 112], S3: [6500, 3300, 8300], S5: [12, 10, 14] })
    .flatMap(([shape, us]) => OPS.map((op, i) => ({
      source: 'oneDNN 2.6 AVX-512 JIT', shape, op, layout: 'NHWC', threads: 2, us: us[i], goal: 1,
    }))),
  // The issue gives no thread count for PyTorch; it uses all cores by default.
  { source: 'PyTorch 1.13', shape: 'S1', op: 'fwd-train', layout: 'NCHW', threads: 2, us: 906, goal: 3 },
  { source: 'PyTorch 1.13', shape: 'S3', op: 'fwd-train', layout: 'NCHW', threads: 2, us: 41000, goal: 3 },
];
const S3_COPY_GOAL = 0.85;
// Tensors at least this large live in DRAM (L3 is 32 MB here): their groups
// also interleave a same-size non-temporal copy, the xDRAM anchor for them.
const DRAM_BYTES = 64 << 20;

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  let flags;
  try {
    flags = parseFlags(argv, {
      quick: 'boolean', help: 'boolean', isa: 'list', threads: 'list', shapes: 'list', ops: 'list',
      layouts: 'list', json: 'string', onednn: 'boolean', pytorch: 'boolean', python: 'string',
    });
    if (flags.python !== undefined && !flags.pytorch) throw new UsageError('--python goes with --pytorch');
  } catch (error) {
    if (error instanceof UsageError) exitUsage(error, USAGE);
    throw error;
  }
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const pick = (values, allowed, name, normalize = (v) => v) => {
    if (!values) return allowed;
    const out = [];
    for (const v of values.map(normalize)) {
      if (!allowed.includes(v)) exitUsage(new UsageError(`--${name}: unknown value '${v}' (expected ${allowed.join(', ')})`), USAGE);
      if (!out.includes(v)) out.push(v);
    }
    return out;
  };
  const threads = (flags.threads ?? ['1', '2']).map((t) => {
    if (!/^[1-9][0-9]*$/.test(t) || Number(t) > 256) exitUsage(new UsageError(`--threads: '${t}' is not a thread count`), USAGE);
    return Number(t);
  });
  return {
    quick: flags.quick ?? false,
    isas: flags.isa ?? null, // checked once the addon is loaded
    threads: [...new Set(threads)],
    shapes: pick(flags.shapes, Object.keys(SHAPES), 'shapes', (v) => v.toUpperCase()),
    ops: pick(flags.ops, OPS, 'ops', (v) => v.toLowerCase()),
    layouts: pick(flags.layouts, ['NCHW', 'NHWC'], 'layouts', (v) => v.toUpperCase()),
    onednn: flags.onednn ?? false,
    pytorch: flags.pytorch ?? false,
    python: flags.python,
    json: path.resolve(flags.json ?? path.join(here, 'results', 'bn.json')),
  };
}

function loadBnkit() {
  const require = createRequire(import.meta.url);
  try {
    return { bnkit: require('../dist/index.js'), native: require('../dist/native.js').native };
  } catch (error) {
    process.stderr.write(`error: cannot load bnkit from ${path.join(repo, 'dist')}: ${error.message}\n` +
      'Build it first: npx cmake-js compile --out build && npm run build:ts\n');
    process.exit(1);
  }
}

// ------------------------------------------------------------------ buffers

function fillRandom(a, offset, spread) {
  // A cheap LCG: Math.random on 25M values costs seconds we would rather time with.
  let s = 12345;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = offset + spread * (s / 4294967296 - 0.5);
  }
  return a;
}

/** All buffers of one shape, allocated once; NCHW and NHWC share them (the data is random). */
function shapeBuffers(def) {
  const spatial = def.spatial.reduce((a, b) => a * b, 1);
  const elements = def.n * def.c * spatial;
  const channel = () => new Float32Array(def.c);
  const b = {
    elements,
    x: fillRandom(new Float32Array(elements), 0.5, 4),
    y: new Float32Array(elements),
    dy: fillRandom(new Float32Array(elements), 0, 2),
    dx: new Float32Array(elements),
    gamma: fillRandom(channel(), 1, 0.5),
    beta: fillRandom(channel(), 0, 0.5),
    runningMean: fillRandom(channel(), 0.5, 0.2),
    runningVar: fillRandom(channel(), 1.3, 0.4),
    saveMean: channel(),
    saveInvstd: channel(),
    dgamma: channel(),
    dbeta: channel(),
  };
  b.y.fill(0.25); // fault the pages in before anything is timed
  b.dx.fill(0.25);
  return b;
}

/** A closure running one op through the public API with preallocated buffers only. */
function opRunner(bnkit, op, b, shape, channelsLast) {
  const x = new bnkit.Tensor(b.x, shape);
  const dy = new bnkit.Tensor(b.dy, shape);
  const saved = { mean: b.saveMean, invstd: b.saveInvstd };
  const train = {
    training: true, weight: b.gamma, bias: b.beta, runningMean: b.runningMean, runningVar: b.runningVar,
    momentum: 0.1, channelsLast, out: b.y, saveMean: b.saveMean, saveInvstd: b.saveInvstd,
  };
  // Eval must not clobber the batch statistics backward uses.
  const evalMean = new Float32Array(b.saveMean.length);
  const evalInvstd = new Float32Array(b.saveInvstd.length);
  const evaluate = {
    training: false, weight: b.gamma, bias: b.beta, runningMean: b.runningMean, runningVar: b.runningVar,
    channelsLast, out: b.y, saveMean: evalMean, saveInvstd: evalInvstd,
  };
  const backward = { weight: b.gamma, bias: b.beta, channelsLast, training: true, dx: b.dx, dgamma: b.dgamma, dbeta: b.dbeta };
  if (op === 'fwd-train') return () => bnkit.batchNormForward(x, train);
  if (op === 'fwd-eval') return () => bnkit.batchNormForward(x, evaluate);
  return () => bnkit.batchNormBackward(x, dy, saved, backward);
}

// ----------------------------------------------------- other libraries

function exitRivalFailed(flag, error) {
  process.stderr.write(`error: ${error.message.startsWith(`--${flag}`) ? '' : `--${flag}: `}${error.message}\n`);
  process.exit(1);
}

// A library timed next to bnkit: participant() gives its interleave()
// participant for a group (same shape, layout, threads and op), rows collects
// its figures, rowExtra(g) adds what it says about itself to a row.

function oneDnnRival(settle) {
  const lib = loadOneDnn();
  // One handle at a time, replaced when the shape, layout or thread count
  // changes (oneDNN fixes a primitive's thread count when it creates it):
  // groups come in that order, and S3's handle holds four 103 MB tensors.
  let current = null;
  const drop = () => {
    if (current) lib.release(current.handle);
    current = null;
  };
  return {
    key: 'onednn', name: 'oneDNN', info: { version: lib.version() }, rows: [],
    note: 'the system oneDNN, timed in this run, interleaved sample for sample with bnkit (same data, same threads)',
    participant(g, b, def, channelsLast) {
      const key = `${g.shape}|${g.layout}|${g.threads}`;
      if (current?.key !== key) {
        drop();
        lib.setThreads(g.threads);
        const handle = lib.create(b.x, b.dy, def.n, def.c, def.spatial, channelsLast, b.gamma, b.beta);
        current = { key, handle, implementation: lib.implementation(handle) };
      }
      const { handle } = current;
      return {
        name: 'oneDNN',
        prepare: () => {
          settle();
          lib.run(handle, g.op, 1);
        },
        measure: (calls) => lib.run(handle, g.op, calls),
      };
    },
    rowExtra: (g) => ({ implementation: current.implementation[g.op] }),
    close: drop,
    kill: drop,
  };
}

async function pyTorchRival(explicitPython, settle) {
  const python = findTorchPython(explicitPython);
  const worker = await startTorchWorker(python, path.join(here, 'lib', 'torch_bn.py'), []);
  let current = null;
  return {
    key: 'pytorch', name: 'PyTorch', info: { version: worker.version, python }, rows: [],
    note: 'PyTorch in a child process (bench/lib/torch_bn.py), its calls timed there, interleaved sample for sample with bnkit (same shapes and threads, its own random data)',
    async participant(g, b, def, channelsLast) {
      const setup = ['setup', def.n, def.c, g.threads, channelsLast ? 1 : 0, ...def.spatial].join(' ');
      if (setup !== current) {
        await worker.request(setup, 'ok');
        current = setup;
      }
      const run = async (calls) => Number(await worker.request(`run ${g.op} ${calls}`, 's '));
      return {
        name: 'PyTorch',
        prepare: async () => {
          settle();
          await run(1);
        },
        measure: run,
      };
    },
    rowExtra: () => ({}),
    close: () => worker.close(),
    kill: () => worker.kill(),
  };
}

// ------------------------------------------------------------------- driver

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { bnkit, native } = loadBnkit();
  const available = bnkit.availableIsas();
  const defaultIsa = bnkit.isa();
  const isas = args.isas ?? available;
  for (const isa of isas) {
    if (!available.includes(isa)) exitUsage(new UsageError(`--isa: '${isa}' is not available here (available: ${available.join(', ')})`), USAGE);
  }
  const plan = args.quick
    ? { budgetSec: 0.05, minRounds: 3, maxRounds: 20, sampleSec: 2e-4, warmupSec: 0.005 }
    : { budgetSec: 2.2, minRounds: 9, maxRounds: 250, sampleSec: 2e-3, warmupSec: 0.05 };
  const dramRepsPerGroup = args.quick ? 1 : 3;
  // Two thread pools share the cores when another library is timed: before
  // each sample the other pool's idle workers must stop spinning, or they
  // hold a core this sample needs (bnkit's are parked at once, OpenMP's stop
  // after their spin count, well within the pause). One untimed call then
  // wakes the sampled library's own workers, so neither side pays a wake-up
  // inside its timed calls.
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const withRivals = args.onednn || args.pytorch;
  const settle = withRivals ? () => { native.parkWorkers(); Atomics.wait(pause, 0, 0, 1); } : () => {};
  // OpenMP's idle workers (oneDNN's here, PyTorch's in its worker) spin
  // ~300,000 pauses by default before they sleep; 10,000 (a fraction of a
  // millisecond) still covers the gaps between back-to-back calls within a
  // sample. libgomp reads it when it loads.
  if (withRivals) process.env.GOMP_SPINCOUNT ??= '10000';
  const rivals = [];
  const requested = [['onednn', () => oneDnnRival(settle)], ['pytorch', () => pyTorchRival(args.python, settle)]];
  for (const [flag, start] of requested.filter(([flag]) => args[flag])) {
    try {
      rivals.push(await start());
    } catch (error) {
      for (const rival of rivals) rival.kill();
      exitRivalFailed(flag, error);
    }
  }

  // The DRAM anchors: copies 3x larger than L3 (the size of S3), sampled once
  // per group throughout the run so they see the same machine as the kernels.
  // "stream" (non-temporal stores: one read + one write, nothing else) is the
  // physical limit; plain memcpy is kept alongside because on this VM glibc
  // misjudges the L3 size and copies 100 MB with ordinary stores.
  const dramElements = 32 * 64 * 112 * 112;
  const dramSrc = fillRandom(new Float32Array(dramElements), 1, 1);
  const dramDst = new Float32Array(dramElements).fill(0.5);
  const dramSamples = new Map(args.threads.map((t) => [t, { stream: [], memcpy: [] }]));

  const layoutsOf = (name) => (SHAPES[name].spatial.length === 0 ? ['NC'] : args.layouts);
  const groups = [];
  for (const shape of args.shapes) for (const layout of layoutsOf(shape)) for (const threads of args.threads) for (const op of args.ops) {
    groups.push({ shape, layout, threads, op });
  }

  const started = performance.now();
  const loadAverageAtStart = os.loadavg();
  const results = [];
  const copies = [];
  let buffers = null;
  let buffersOf = null;
  try {
    for (const [index, g] of groups.entries()) {
      const def = SHAPES[g.shape];
      if (buffersOf !== g.shape) {
        buffers = null; // let the previous shape's arrays go before allocating the next
        buffers = shapeBuffers(def);
        buffersOf = g.shape;
        // Backward needs saved statistics from a training forward.
        bnkit.batchNormForward(new bnkit.Tensor(buffers.x, [def.n, def.c, ...def.spatial]), {
          training: true, weight: buffers.gamma, bias: buffers.beta, out: buffers.y,
          saveMean: buffers.saveMean, saveInvstd: buffers.saveInvstd,
        });
      }
      const b = buffers;
      const channelsLast = g.layout === 'NHWC';
      const shape = channelsLast ? [def.n, ...def.spatial, def.c] : [def.n, def.c, ...def.spatial];
      bnkit.setNumThreads(g.threads);
      settle(); // the DRAM anchor copies use bnkit's pool too
      const dramNow = dramSamples.get(g.threads);
      const streamFirst = index % 2 === 0;
      if (streamFirst) dramNow.stream.push(native.streamCopy(dramSrc, dramDst, dramRepsPerGroup, true));
      dramNow.memcpy.push(native.streamCopy(dramSrc, dramDst, dramRepsPerGroup));
      if (!streamFirst) dramNow.stream.push(native.streamCopy(dramSrc, dramDst, dramRepsPerGroup, true));

      const run = opRunner(bnkit, g.op, b, shape, channelsLast);
      const participants = isas.map((isa) => ({
        name: isa,
        prepare: () => {
          settle();
          bnkit.setIsa(isa);
          if (withRivals) run();
        },
        measure: (calls) => {
          const start = process.hrtime.bigint();
          for (let i = 0; i < calls; i++) run();
          return Number(process.hrtime.bigint() - start) / 1e9 / calls;
        },
      }));
      const bytes = b.elements * 4;
      participants.push({ name: 'copy', prepare: settle, measure: (calls) => native.streamCopy(b.x, b.y, calls) });
      if (bytes >= DRAM_BYTES) participants.push({ name: 'copy-nt', prepare: settle, measure: (calls) => native.streamCopy(b.x, b.y, calls, true) });
      for (const rival of rivals) participants.push(await rival.participant(g, b, def, channelsLast));
      const t0 = performance.now();
      const measured = await interleave(participants, plan);
      bnkit.setIsa(defaultIsa);

      const copyRecords = {};
      for (const copy of measured.filter((m) => m.name.startsWith('copy'))) {
        copyRecords[copy.name] = {
          shape: g.shape, layout: g.layout, op: g.op, threads: g.threads, bytes, nonTemporal: copy.name === 'copy-nt',
          ...secondsStats(copy.stats), samples: copy.stats.n, gbps: (2 * bytes) / copy.stats.median / 1e9,
        };
        copies.push(copyRecords[copy.name]);
      }
      const rivalMeasured = {};
      for (const rival of rivals) {
        const m = measured.find((p) => p.name === rival.name);
        rivalMeasured[rival.key] = m;
        rival.rows.push({
          shape: g.shape, dims: shape, layout: g.layout, op: g.op, threads: g.threads, ...rival.rowExtra(g),
          ...secondsStats(m.stats), samples: m.stats.n, callsPerSample: m.callsPerSample,
        });
      }
      const versus = (key, m) => (rivalMeasured[key]
        ? { medianUs: rivalMeasured[key].stats.median * 1e6, speedup: rivalMeasured[key].stats.median / m.stats.median }
        : null);
      for (const m of measured.slice(0, isas.length)) {
        results.push({
          shape: g.shape, dims: shape, layout: g.layout, op: g.op, threads: g.threads, isa: m.name,
          bytes, trafficBytes: TRAFFIC[g.op] * bytes,
          ...secondsStats(m.stats), samples: m.stats.n, callsPerSample: m.callsPerSample,
          copySameGbps: copyRecords.copy.gbps,
          copyDramInterleavedGbps: copyRecords['copy-nt']?.gbps ?? null,
          onednn: versus('onednn', m),
          pytorch: versus('pytorch', m),
        });
      }
      process.stderr.write(`[${index + 1}/${groups.length}] ${g.shape} ${g.layout} ${g.op} threads=${g.threads}: ` +
        `${measured.map((m) => `${m.name} ${microseconds(m.stats.median)} us`).join(', ')} ` +
        `(${measured[0].stats.n} rounds, ${((performance.now() - t0) / 1e3).toFixed(1)} s)\n`);
    }
  } catch (error) {
    for (const rival of rivals) rival.kill();
    if (error instanceof TorchWorkerError) exitRivalFailed('pytorch', error);
    throw error;
  }
  buffers = null;
  for (const rival of rivals) await rival.close();

  // Derived figures, once every DRAM sample is in.
  const dramStats = (samples) => {
    const s = summarize(samples);
    return { ...secondsStats(s), samples: s.n, bytes: dramElements * 4, gbps: (2 * dramElements * 4) / s.median / 1e9 };
  };
  const dram = Object.fromEntries([...dramSamples].map(([t, d]) => [t, { stream: dramStats(d.stream), memcpy: dramStats(d.memcpy) }]));
  const key = (r) => `${r.shape}|${r.layout}|${r.op}|${r.threads}`;
  const scalarOf = new Map(results.filter((r) => r.isa === 'scalar').map((r) => [key(r), r]));
  for (const r of results) {
    r.gbps = r.trafficBytes / (r.medianUs * 1e-6) / 1e9;
    // Interleaved with the kernel when the tensor itself is DRAM-sized,
    // otherwise the median of the samples taken throughout the run.
    r.copyDramSource = r.copyDramInterleavedGbps ? 'interleaved same-size non-temporal copy' : 'run median of 103 MB non-temporal copies';
    r.copyDramGbps = r.copyDramInterleavedGbps ?? dram[r.threads].stream.gbps;
    r.ratioCopyDram = r.gbps / r.copyDramGbps;
    r.copyDramMemcpyGbps = dram[r.threads].memcpy.gbps;
    r.ratioCopyDramMemcpy = r.gbps / r.copyDramMemcpyGbps;
    r.ratioCopySame = r.gbps / r.copySameGbps;
    const scalar = scalarOf.get(key(r));
    r.speedupVsScalar = scalar ? scalar.medianUs / r.medianUs : null;
    const ref = REFERENCES.find((f) => f.shape === r.shape && f.op === r.op && f.layout === r.layout && f.threads === r.threads);
    r.reference = ref ? { source: ref.source, us: ref.us, speedup: ref.us / r.medianUs, recordedNotMeasured: true } : null;
  }

  const summary = targetSummary(results, defaultIsa);
  const elapsedSec = (performance.now() - started) / 1e3;
  printReport(args, results, dram, summary, elapsedSec, loadAverageAtStart, rivals);
  writeJsonAtomic(args.json, {
    benchmark: 'bn',
    machine: machineInfo({ isas: available, defaultIsa, hardwareThreads: native.hardwareThreads, loadAverageAtStart }, repo),
    options: {
      quick: args.quick, isas, threads: args.threads, shapes: args.shapes, ops: args.ops, layouts: args.layouts,
      onednn: args.onednn, pytorch: args.pytorch, plan,
    },
    units: { time: 'microseconds', bandwidth: 'GB/s (1e9 bytes/s) of minimal traffic: fwd 2x tensor bytes, bwd 3x; copy: read + write = 2x' },
    elapsedSec,
    copyDram: dram,
    copySameSize: copies,
    results,
    ...Object.fromEntries(['onednn', 'pytorch'].map((key) => {
      const rival = rivals.find((r) => r.key === key);
      return [key, rival ? { ...rival.info, note: rival.note, results: rival.rows } : null];
    })),
    references: { note: 'Recorded on this machine type by the issue author (issue 2); not measured in this run.', figures: REFERENCES },
    summary,
  });
  process.stdout.write(`\nwrote ${args.json}\n`);
}

function secondsStats(s) {
  return { medianUs: s.median * 1e6, q1Us: s.q1 * 1e6, q3Us: s.q3 * 1e6, iqrUs: s.iqr * 1e6, minUs: s.min * 1e6 };
}

/** Our figure for each reference target (the default ISA, else the fastest measured). */
function targetSummary(results, defaultIsa) {
  const pickBest = (rows) => rows.find((r) => r.isa === defaultIsa) ?? rows.reduce((a, r) => (r.medianUs < a.medianUs ? r : a), rows[0]);
  const targets = [];
  for (const ref of REFERENCES) {
    const rows = results.filter((r) => r.shape === ref.shape && r.op === ref.op && r.layout === ref.layout && r.threads === ref.threads);
    if (rows.length === 0) continue;
    const best = pickBest(rows);
    const speedup = ref.us / best.medianUs;
    targets.push({ ...ref, isa: best.isa, oursUs: best.medianUs, speedup, met: speedup >= ref.goal });
  }
  // Against a library timed in this run (--onednn, --pytorch), every configuration measured.
  const sideBySide = (key) => {
    const rows = [];
    const seen = new Set();
    for (const r of results) {
      const cfg = `${r.shape}|${r.layout}|${r.op}|${r.threads}`;
      if (r[key] === null || seen.has(cfg)) continue;
      seen.add(cfg);
      const best = pickBest(results.filter((q) => `${q.shape}|${q.layout}|${q.op}|${q.threads}` === cfg));
      rows.push({
        shape: r.shape, layout: r.layout, op: r.op, threads: r.threads, isa: best.isa, oursUs: best.medianUs,
        theirUs: best[key].medianUs, speedup: best[key].speedup, faster: best[key].speedup > 1,
      });
    }
    return rows;
  };
  const s3Isa = results.some((r) => r.isa === defaultIsa) ? defaultIsa : null;
  const s3 = results.filter((r) => r.shape === 'S3' && (s3Isa === null || r.isa === s3Isa)).map((r) => ({
    layout: r.layout, op: r.op, threads: r.threads, isa: r.isa, gbps: r.gbps, ratioCopyDram: r.ratioCopyDram,
    ratioCopySameMemcpy: r.ratioCopySame, met: r.ratioCopyDram >= S3_COPY_GOAL,
  }));
  return {
    targets, onednnSideBySide: sideBySide('onednn'), pytorchSideBySide: sideBySide('pytorch'),
    s3CopyRatio: { goal: S3_COPY_GOAL, rows: s3 },
  };
}

function printReport(args, results, dram, summary, elapsedSec, loadAverageAtStart, rivals) {
  const out = [];
  out.push(`bnkit batch-norm benchmark  (${args.quick ? 'QUICK: rough numbers' : 'full'}; ${elapsedSec.toFixed(0)} s)`);
  out.push('median of interleaved samples; IQR% = interquartile range / median; GB/s of minimal traffic');
  out.push('(fwd: read x + write y; bwd: read x, dy + write dx). Anchors, same threads, this run: xDRAM = GB/s over');
  out.push('a 103 MB non-temporal copy (the physical limit; for S3 an interleaved same-size one, else the run median);');
  out.push('copy GB/s / xsame = a memcpy of the same tensor size, interleaved with the kernels');
  out.push('(cache-resident for small tensors); xscalar = speed-up over the scalar path;');
  out.push('ref = issue 2 figure RECORDED EARLIER on this machine type (not measured now), ref/us > 1 = we are faster.');
  const cpus = os.cpus().length;
  const load = [loadAverageAtStart[0], os.loadavg()[0]];
  out.push(`load average (1 min) at start ${fixed(load[0], 2)}, at end ${fixed(load[1], 2)} on ${cpus} CPUs`);
  if (Math.max(...load) > 0.5 * cpus) {
    out.push(`WARNING: the machine was busy with other work; figures are unreliable, multi-thread ones most of all`);
    out.push('(a pool worker that cannot get a core stalls every parallel call).');
  }
  out.push('');
  const bw = (d) => `${fixed(d.gbps, 1)} GB/s (IQR ${fixed((100 * d.iqrUs) / d.medianUs, 0)}%)`;
  for (const [t, d] of Object.entries(dram)) {
    out.push(`DRAM copy, 103 MB, ${t} thread${t === '1' ? '' : 's'}: non-temporal stores ${bw(d.stream)} = the xDRAM anchor; memcpy ${bw(d.memcpy)}`);
  }
  out.push('');
  const columns = [
    { key: 'cfg', title: 'shape layout op', align: 'left' }, { key: 'threads', title: 'thr' }, { key: 'isa', title: 'isa', align: 'left' },
    { key: 'us', title: 'median us' }, { key: 'iqr', title: 'IQR%' }, { key: 'gbps', title: 'GB/s' },
    { key: 'dram', title: 'xDRAM' }, { key: 'copy', title: 'copy GB/s' }, { key: 'same', title: 'xsame' },
    { key: 'scalar', title: 'xscalar' }, { key: 'ref', title: 'ref us', align: 'left' }, { key: 'refx', title: 'ref/us' },
  ];
  for (const rival of rivals) {
    columns.push({ key: `${rival.key}Us`, title: `${rival.name} us` }, { key: `${rival.key}X`, title: `${rival.name}/us` });
  }
  const rows = [];
  let last = null;
  for (const r of results) {
    const group = `${r.shape}|${r.layout}|${r.threads}`;
    if (last !== null && group !== last) rows.push(null);
    last = group;
    rows.push({
      cfg: `${r.shape} ${r.layout} ${r.op}`, threads: String(r.threads), isa: r.isa, us: microseconds(r.medianUs * 1e-6),
      iqr: fixed((100 * r.iqrUs) / r.medianUs, 0), gbps: fixed(r.gbps, 1), dram: fixed(r.ratioCopyDram, 2),
      copy: fixed(r.copySameGbps, 1), same: fixed(r.ratioCopySame, 2), scalar: fixed(r.speedupVsScalar, 1),
      ref: r.reference ? `${r.reference.us} ${r.reference.source.startsWith('oneDNN') ? 'oneDNN' : 'PyTorch'}` : '',
      refx: r.reference ? fixed(r.reference.speedup, 2) : '',
      ...Object.fromEntries(rivals.flatMap((rival) => [
        [`${rival.key}Us`, r[rival.key] ? microseconds(r[rival.key].medianUs * 1e-6) : ''],
        [`${rival.key}X`, r[rival.key] ? fixed(r[rival.key].speedup, 2) : ''],
      ])),
    });
  }
  out.push(formatTable(columns, rows));
  if (summary.targets.length > 0) {
    out.push('');
    out.push('Targets (issue 2; reference figures recorded earlier on this machine type, NOT measured in this run):');
    out.push(formatTable([
      { key: 'what', title: 'reference', align: 'left' }, { key: 'cfg', title: 'config', align: 'left' },
      { key: 'ref', title: 'ref us' }, { key: 'ours', title: 'bnkit us' }, { key: 'x', title: 'speed-up' },
      { key: 'goal', title: 'goal' }, { key: 'met', title: 'met', align: 'left' },
    ], summary.targets.map((t) => ({
      what: t.source, cfg: `${t.shape} ${t.layout} ${t.op} ${t.threads}t ${t.isa}`, ref: String(t.us),
      ours: microseconds(t.oursUs * 1e-6), x: `${fixed(t.speedup, 2)}x`, goal: `>=${t.goal}x`, met: t.met ? 'yes' : 'NO',
    }))));
  }
  for (const rival of rivals) {
    const rows = summary[`${rival.key}SideBySide`];
    if (rows.length === 0) continue;
    out.push('');
    out.push(`Side by side with ${rival.name} ${rival.info.version} (timed in THIS run, interleaved sample for sample):`);
    out.push(formatTable([
      { key: 'cfg', title: 'config', align: 'left' }, { key: 'theirs', title: `${rival.name} us` }, { key: 'ours', title: 'bnkit us' },
      { key: 'x', title: 'speed-up' }, { key: 'faster', title: 'bnkit faster', align: 'left' },
    ], rows.map((t) => ({
      cfg: `${t.shape} ${t.layout} ${t.op} ${t.threads}t ${t.isa}`, theirs: microseconds(t.theirUs * 1e-6),
      ours: microseconds(t.oursUs * 1e-6), x: `${fixed(t.speedup, 2)}x`, faster: t.faster ? 'yes' : 'NO',
    }))));
  }
  if (summary.s3CopyRatio.rows.length > 0) {
    out.push('');
    out.push(`S3 (103 MB, DRAM-bound): GB/s of minimal traffic over same-size copies interleaved with it (non-temporal`);
    out.push(`stores; plain memcpy), goal >= ${S3_COPY_GOAL} of the non-temporal copy:`);
    out.push(formatTable([
      { key: 'cfg', title: 'config', align: 'left' }, { key: 'gbps', title: 'GB/s' }, { key: 'nt', title: 'x NT copy' },
      { key: 'mc', title: 'x memcpy' }, { key: 'met', title: 'met', align: 'left' },
    ], summary.s3CopyRatio.rows.map((r) => ({
      cfg: `S3 ${r.layout} ${r.op} ${r.threads}t ${r.isa}`, gbps: fixed(r.gbps, 1), nt: fixed(r.ratioCopyDram, 2),
      mc: fixed(r.ratioCopySameMemcpy, 2), met: r.met ? 'yes' : 'NO',
    }))));
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
