// Smoke test of the batch-norm benchmark (bench/bn.mjs): it runs end to end
// and writes a well-formed results file. No timing assertions: CI machines
// are too noisy for them, and the numbers are for people to read.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakePythonDir } from './fake-python';
import { Tensor, availableIsas, batchNormForward, getNumThreads, setNumThreads } from '../lib/index';
import { native } from '../lib/native';

const repo = path.resolve(__dirname, '..');
const runner = path.join(repo, 'bench', 'run.mjs');

function runBench(args: string[]) {
  return spawnSync(process.execPath, [runner, ...args], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
}

const positive = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;

describe('bench/run.mjs', () => {
  it('bn --quick writes finite, positive results for every ISA, layout and op', () => {
    expect(fs.existsSync(path.join(repo, 'dist', 'index.js')), 'run `npm run build:ts` first').toBe(true);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bnkit-bench-'));
    const json = path.join(dir, 'bn.json');
    try {
      const r = runBench(['bn', '--quick', '--shapes', 'S5', '--threads', '1', '--json', json]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('S5 NHWC bwd');
      expect(fs.readdirSync(dir)).toEqual(['bn.json']); // no temporary file left behind
      const out = JSON.parse(fs.readFileSync(json, 'utf8'));

      expect(out.benchmark).toBe('bn');
      expect(typeof out.machine.cpuModel).toBe('string');
      expect(out.machine.node).toBe(process.version);
      expect(out.machine.isas).toEqual(availableIsas());
      expect(Number.isNaN(Date.parse(out.machine.date))).toBe(false);
      expect(out.options).toMatchObject({ quick: true, threads: [1], shapes: ['S5'] });
      for (const kind of ['stream', 'memcpy']) expect(positive(out.copyDram['1'][kind].gbps), kind).toBe(true);

      const isas = availableIsas();
      expect(out.results).toHaveLength(isas.length * 2 * 3);
      const seen = new Set<string>();
      for (const r of out.results) {
        seen.add(`${r.isa} ${r.layout} ${r.op}`);
        expect(r).toMatchObject({ shape: 'S5', threads: 1, bytes: 8 * 256 * 49 * 4 });
        expect(r.trafficBytes).toBe((r.op === 'bwd' ? 3 : 2) * r.bytes);
        expect(r.dims).toEqual(r.layout === 'NHWC' ? [8, 7, 7, 256] : [8, 256, 7, 7]);
        for (const key of ['medianUs', 'q1Us', 'q3Us', 'minUs', 'gbps', 'copySameGbps', 'copyDramGbps', 'ratioCopySame', 'ratioCopyDram']) {
          expect(positive(r[key]), `${key} of ${r.isa} ${r.layout} ${r.op} = ${r[key]}`).toBe(true);
        }
        expect(r.q1Us).toBeLessThanOrEqual(r.medianUs);
        expect(r.medianUs).toBeLessThanOrEqual(r.q3Us);
        expect(r.samples).toBeGreaterThanOrEqual(3);
        if (isas.includes('scalar')) expect(positive(r.speedupVsScalar)).toBe(true);
        expect(r.reference).toBeNull(); // the recorded figures are for 2 threads
        expect(r.copyDramInterleavedGbps).toBeNull(); // S5 is cache-sized
      }
      expect(seen.size).toBe(out.results.length);
      for (const c of out.copySameSize) expect(positive(c.gbps) && positive(c.medianUs)).toBe(true);
      expect(out.references.figures.length).toBeGreaterThan(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parkWorkers (used between oneDNN and bnkit samples) leaves the pool working, results unchanged', () => {
    const before = getNumThreads();
    setNumThreads(2);
    try {
      const x = new Tensor(Float32Array.from({ length: 64 * 32 * 49 }, (_, i) => Math.sin(i * 0.37) * 3 + 1), [64, 32, 7, 7]);
      const first = batchNormForward(x, { training: true }).y.data.slice();
      for (let i = 0; i < 20; i++) {
        native.parkWorkers();
        const y = batchNormForward(x, { training: true }).y.data;
        let differing = 0;
        for (let j = 0; j < y.length; j++) if (!Object.is(y[j], first[j])) differing++;
        expect(differing, `call ${i}`).toBe(0);
      }
    } finally {
      setNumThreads(before);
    }
  });

  it('bn --pytorch interleaves a PyTorch worker and reports its figures and the ratios', () => {
    // A stand-in for python: answers the import probe, then speaks
    // bench/lib/torch_bn.py's protocol with 1 ms per call.
    const { dir, python: fake } = fakePythonDir('fake-2.0', [
      'while read -r cmd rest; do',
      '  case "$cmd" in',
      '    quit) exit 0 ;;',
      '    setup) echo "$rest" >> "$(dirname "$0")/setups"; echo ok ;;',
      '    run) echo "s 0.001" ;;',
      '  esac',
      'done',
    ]);
    const json = path.join(dir, 'bn.json');
    const run = (...args: string[]) => runBench(['bn', '--quick', '--shapes', 'S5', '--threads', '1', '--json', json, ...args]);
    try {
      const r = run('--isa', availableIsas()[0], '--pytorch', '--python', fake);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('Side by side with PyTorch fake-2.0');
      // One setup per layout, in the worker's argument order: N C threads channelsLast spatial...
      expect(fs.readFileSync(path.join(dir, 'setups'), 'utf8').trim().split('\n')).toEqual(['8 256 1 0 7 7', '8 256 1 1 7 7']);
      const out = JSON.parse(fs.readFileSync(json, 'utf8'));
      expect(out.options.pytorch).toBe(true);
      expect(out.pytorch).toMatchObject({ version: 'fake-2.0', python: fake });
      expect(out.pytorch.results).toHaveLength(2 * 3);
      for (const row of out.pytorch.results) expect(row.medianUs).toBeCloseTo(1000, 6);
      for (const row of out.results) {
        expect(row.pytorch.medianUs).toBeCloseTo(1000, 6);
        expect(row.pytorch.speedup).toBeCloseTo(1000 / row.medianUs, 6);
        expect(row.onednn).toBeNull();
      }
      expect(out.summary.pytorchSideBySide).toHaveLength(2 * 3);

      fs.writeFileSync(fake, '#!/usr/bin/env bash\nif [ "$1" = "-c" ]; then exit 0; fi\necho "hello"\n', { mode: 0o755 });
      const broken = run('--pytorch', '--python', fake);
      expect(broken.status).toBe(1);
      expect(broken.stderr).toContain("--pytorch: the PyTorch worker (" + fake + ") said 'hello'");
      // A worker that goes away between requests: the next write fails (EPIPE) and its exit is reported.
      fs.writeFileSync(fake, '#!/usr/bin/env bash\nif [ "$1" = "-c" ]; then exit 0; fi\necho "ready fake-2.0"\nread -r line\necho ok\nexit 3\n',
        { mode: 0o755 });
      const gone = run('--pytorch', '--python', fake);
      expect(gone.status).toBe(1);
      expect(gone.stderr).toContain(`error: --pytorch: the PyTorch worker (${fake}) exited with status 3`);
      expect(gone.stderr).not.toMatch(/EPIPE|\n\s+at /);
      fs.writeFileSync(fake, '#!/usr/bin/env bash\nexit 1\n', { mode: 0o755 });
      const missing = run('--pytorch', '--python', fake);
      expect(missing.status).toBe(1);
      expect(missing.stderr).toContain('--pytorch needs a python with torch');
      const stray = run('--python', fake);
      expect(stray.status).toBe(2);
      expect(stray.stderr).toContain('--python goes with --pytorch');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects an unknown benchmark or flag with usage and exit code 2', () => {
    const unknown = runBench(['nope']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown benchmark 'nope'[\s\S]*usage/);
    const badFlag = runBench(['bn', '--bogus']);
    expect(badFlag.status).toBe(2);
    expect(badFlag.stderr).toMatch(/unknown flag --bogus[\s\S]*usage/);
    const badShape = runBench(['bn', '--shapes', 'S9']);
    expect(badShape.status).toBe(2);
    expect(badShape.stderr).toContain("unknown value 'S9'");
  });
});
