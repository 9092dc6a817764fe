// Smoke test of the MNIST benchmark (bench/mnist.mjs through bench/run.mjs):
// runs end to end on a small subset and writes a well-formed results file.
// No timing assertions: the numbers are for people to read.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

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
});
