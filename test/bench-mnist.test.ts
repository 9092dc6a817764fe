// Smoke test of the MNIST benchmark (bench/mnist.mjs through bench/run.mjs):
// runs end to end on a small subset and writes a well-formed results file.
// No timing assertions: the numbers are for people to read.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakePythonDir } from './fake-python';

const repo = path.resolve(__dirname, '..');

describe('npm run bench -- mnist', () => {
  it('prints the per-layer table and the epoch time, and writes JSON', () => {
    expect(fs.existsSync(path.join(repo, 'dist', 'index.js')), 'run `npm run build:ts` first').toBe(true);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bnkit-bench-mnist-'));
    const json = path.join(dir, 'mnist.json');
    try {
      const r = spawnSync(process.execPath, [path.join(repo, 'bench', 'run.mjs'), 'mnist', '--steps', '3', '--limit', '320', '--json', json],
        { cwd: repo, encoding: 'utf8', timeout: 120_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/Conv2d\(32, 64, kernel=3x3/);
      expect(r.stdout).toMatch(/step: [\d.]+ ms \(3 steps\)/);
      expect(r.stdout).toMatch(/epoch \(fit, 320 samples\): [\d.]+ s/);
      const out = JSON.parse(fs.readFileSync(json, 'utf8'));
      expect(out.benchmark).toBe('mnist');
      expect(out.config).toMatchObject({ model: 'cnn-bn', batchSize: 64, trainSamples: 320 });
      expect(out.epochSeconds).toHaveLength(1);
      expect(out.epochSeconds[0]).toBeGreaterThan(0);
      expect(out.step.layers).toHaveLength(13);
      for (const layer of out.step.layers) expect(Number.isFinite(layer.forwardMs)).toBe(true);
      expect(out.step.layers[4].forwardGflops).toBeGreaterThan(0);
      const bad = spawnSync(process.execPath, [path.join(repo, 'bench', 'run.mjs'), 'mnist', '--model', 'resnet'], { cwd: repo, encoding: 'utf8' });
      expect(bad.status).toBe(2);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--pytorch alternates rounds with a PyTorch worker and reports the per-round speed-up', () => {
    // A stand-in for python: answers the import probe, then speaks the
    // worker's protocol (bench/lib/torch_steps.py) with 40 ms per step.
    const { dir, python: fake } = fakePythonDir('fake-1.0', [
      'while read -r cmd n; do',
      '  if [ "$cmd" = quit ]; then exit 0; fi',
      '  echo "ms $((n * 40))"',
      'done',
    ]);
    const json = path.join(dir, 'mnist.json');
    const run = (...args: string[]) => spawnSync(process.execPath, [path.join(repo, 'bench', 'run.mjs'), 'mnist', ...args],
      { cwd: repo, encoding: 'utf8', timeout: 120_000 });
    try {
      const r = run('--no-epoch', '--steps', '2', '--limit', '320', '--pytorch', '--python', fake, '--rounds', '2', '--json', json);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/side by side \(2 alternating rounds, \d+ threads, PyTorch fake-1\.0\): bnkit [\d.]+ ms\/step, PyTorch 40\.00 ms\/step/);
      const { pytorch } = JSON.parse(fs.readFileSync(json, 'utf8'));
      expect(pytorch.torch).toBe('fake-1.0');
      expect(pytorch.rounds).toHaveLength(2);
      for (const round of pytorch.rounds) {
        expect(round.torchMs).toBe(40);
        expect(round.bnkitMs).toBeGreaterThan(0);
        expect(round.ratio).toBeCloseTo(40 / round.bnkitMs, 10);
      }
      expect(pytorch.speedup).toBeCloseTo((pytorch.rounds[0].ratio + pytorch.rounds[1].ratio) / 2, 10);
      // A worker that breaks the protocol is an error naming what it said.
      fs.writeFileSync(fake, '#!/usr/bin/env bash\nif [ "$1" = "-c" ]; then exit 0; fi\necho "hello"\n', { mode: 0o755 });
      const broken = run('--no-epoch', '--steps', '1', '--limit', '128', '--pytorch', '--python', fake, '--json', json);
      expect(broken.status).not.toBe(0);
      expect(broken.stderr).toMatch(/PyTorch worker .* said 'hello'/);
      // A python without torch is named in the error.
      fs.writeFileSync(fake, '#!/usr/bin/env bash\nexit 1\n', { mode: 0o755 });
      const missing = run('--no-epoch', '--steps', '1', '--limit', '128', '--pytorch', '--python', fake, '--json', json);
      expect(missing.status).not.toBe(0);
      expect(missing.stderr).toMatch(/--pytorch needs a python with torch and numpy; tried .*python/);
      expect(run('--rounds', '3').status).toBe(2);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
