// The bnkit CLI: short training runs in-process (hidden --limit), saved
// models evaluated in-process and in a new process, usage errors (exit 2).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { main, type CliIo } from '../lib/cli';
import { Sequential } from '../lib/sequential';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], tty = false): Promise<Run> {
  let stdout = '', stderr = '';
  const io: CliIo = {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t), isTTY: tty },
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

const lastJson = (text: string): Record<string, unknown> => JSON.parse(text.trim().split('\n').pop()!);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bnkit-cli-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('bnkit train / eval', () => {
  const mlpFile = () => path.join(dir, 'mlp-bn.bnk');
  let trained: Record<string, unknown>;

  it('trains with --json: one JSON line on stdout, progress and per-epoch accuracy on stderr', async () => {
    const r = await cli(['train', '--model', 'mlp-bn', '--epochs', '2', '--batch-size=32', '--lr', '0.05', '--seed', '3', '--limit', '2000', '--json', '--save', mlpFile()]);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    trained = lastJson(r.stdout);
    expect(Object.keys(trained).slice(0, 5)).toEqual(['model', 'epochs', 'testAccuracy', 'epochSeconds', 'samplesPerSecond']);
    expect(trained.model).toBe('mlp-bn');
    expect(trained.epochs).toBe(2);
    expect(trained.epochSeconds).toHaveLength(2);
    expect(trained.testAccuracy as number).toBeGreaterThan(0.8);
    expect(trained.samplesPerSecond as number).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/epoch 1\/2 \[[#.]+\] +\d+% [\d,]+\/2,000 [\d,]+ samples\/s loss \d+\.\d{4} ETA/);
    expect(r.stderr).toMatch(/epoch 2\/2: train loss \d\.\d{4}, test accuracy \d+\.\d\d%/);
    expect(fs.existsSync(mlpFile())).toBe(true);
  });

  it('eval of the saved model reproduces the test accuracy', async () => {
    const r = await cli(['eval', mlpFile(), '--limit', '2000', '--json']);
    expect(r.code).toBe(0);
    const result = lastJson(r.stdout);
    expect(result.testAccuracy).toBe(trained.testAccuracy);
    expect(result.count).toBe(2000);
    const text = await cli(['eval', mlpFile(), '--limit', '2000']);
    expect(text.stdout).toMatch(/\(mlp-bn\): test accuracy \d+\.\d\d% \(\d+\/2000\)/);
  });

  it('a new process (dist/cli.js) gets the same accuracy from the saved file', () => {
    const bin = path.join(__dirname, '..', 'dist', 'cli.js');
    expect(fs.existsSync(bin), 'dist/cli.js is missing: run npm run build:ts').toBe(true);
    const r = spawnSync(process.execPath, [bin, 'eval', mlpFile(), '--limit', '2000', '--json'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(lastJson(r.stdout).testAccuracy).toBe(trained.testAccuracy);
    const bad = spawnSync(process.execPath, [bin, 'train', '--epoch', '3'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown option --epoch for 'train'/);
  });

  it('cnn-bn with --normalize stores the normalization and eval applies it', async () => {
    const file = path.join(dir, 'cnn.bnk');
    const r = await cli(['train', '--model', 'cnn-bn', '--epochs', '1', '--limit', '512', '--normalize', '--no-progress', '--save', file, '--threads', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/inputs normalized with mean 0\.\d{4} std 0\.\d{4}/);
    const accuracy = Number(/test accuracy (\d+\.\d+)%/.exec(r.stdout)![1]);
    const meta = Sequential.load(file).metadata as { model: string; normalization: { mean: number; std: number } };
    expect(meta.model).toBe('cnn-bn');
    expect(meta.normalization.std).toBeGreaterThan(0);
    const e = await cli(['eval', file, '--limit', '512']);
    expect(e.code).toBe(0);
    expect(Number(/test accuracy (\d+\.\d+)%/.exec(e.stdout)![1])).toBe(accuracy);
  });

  it('draws the progress bar in place on a terminal', async () => {
    const r = await cli(['train', '--model', 'mlp', '--epochs', '1', '--limit', '256'], true);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('\r');
    expect(r.stderr).toContain('\x1b[K');
  });
});

describe('usage errors exit with code 2 and say what is wrong', () => {
  const cases: Array<[string[], RegExp]> = [
    [['train', '--bogus'], /unknown option --bogus for 'train'/],
    [['train', '--model', 'resnet'], /invalid value 'resnet' for --model; expected one of cnn-bn, cnn, mlp-bn, mlp/],
    [['train', '--epochs', 'abc'], /invalid value 'abc' for --epochs; expected an integer/],
    [['train', '--epochs', '0'], /invalid value '0' for --epochs; must be >= 1/],
    [['train', '--batch-size', '1.5'], /expected an integer/],
    [['train', '--lr', '-1'], /invalid value '-1' for --lr; must be >= 0/],
    [['train', '--lr'], /option --lr needs a value/],
    [['train', '--json=yes'], /option --json takes no value/],
    [['train', '--seed', '1', '--seed', '2'], /option --seed given twice/],
    [['train', 'extra'], /unexpected argument 'extra'/],
    [['train', '--optimizer', 'adam', '--momentum', '0.9'], /--momentum applies to --optimizer sgd only/],
    [['eval'], /'eval' needs a model file/],
    [['eval', 'a.bnk', '--model', 'cnn'], /unknown option --model for 'eval'/],
    [['fly'], /unknown command 'fly'/],
    [['-x'], /unknown command '-x'/],
  ];
  for (const [args, message] of cases) {
    it(args.join(' '), async () => {
      const r = await cli(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/Run 'bnkit( train| eval)? --help' for usage/);
      expect(r.stdout).toBe('');
    });
  }

  it('no command prints the usage to stderr (exit 2); --help and --version succeed', async () => {
    const none = await cli([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/Usage: bnkit <command>/);
    expect((await cli(['--help'])).code).toBe(0);
    const train = await cli(['train', '--help']);
    expect(train.code).toBe(0);
    expect(train.stdout).toMatch(/--batch-size N/);
    expect(train.stdout).not.toMatch(/--limit/);
    expect((await cli(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('runtime errors exit with code 1', () => {
  it('a corrupted model file', async () => {
    const file = path.join(dir, 'broken.bnk');
    fs.writeFileSync(file, 'not a model');
    const r = await cli(['eval', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bnkit: error: bnkit model file .*broken\.bnk: not a bnkit model/);
  });

  it('a data folder without MNIST', async () => {
    const r = await cli(['train', '--data', dir, '--limit', '10']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/MNIST train images not found in/);
  });
});
