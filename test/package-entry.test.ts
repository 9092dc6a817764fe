// The package as users load it: by name, from CommonJS and ESM, with types.
// Uses the compiled dist/ (built by `npm ci` / `npm run build:ts`).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..');

function runNode(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: { ...process.env, ...env } });
}

const smoke = `
  const bn = new BatchNorm2d(2);
  const x = new Tensor(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 9]), [2, 2, 2, 1]);
  const y = bn.forward(x);
  console.log(JSON.stringify({ isa: isa(), y0: y.data[0], rv: Array.from(bn.runningVar) }));
`;

function checkSmoke(stdout: string) {
  const out = JSON.parse(stdout.trim().split('\n').pop()!);
  // channel 0 holds 1, 2, 5, 6: mean 3.5, biased var 4.25
  expect(out.y0).toBeCloseTo((1 - 3.5) / Math.sqrt(4.25 + 1e-5), 5);
  expect(out.rv[0]).toBeCloseTo(0.9 + 0.1 * (4.25 * 4) / 3, 5);
  return out;
}

describe('package entry points', () => {
  it('loads by name from CommonJS', () => {
    const r = runNode(['-e', `const { BatchNorm2d, Tensor, isa } = require('bnkit');${smoke}`]);
    expect(r.stderr).toBe('');
    checkSmoke(r.stdout);
  });

  it('loads by name from ESM with named exports, sharing one instance with CommonJS', () => {
    const r = runNode(['--input-type=module', '-e', `
      import { BatchNorm2d, Tensor, isa } from 'bnkit';
      import { createRequire } from 'node:module';
      const cjs = createRequire(import.meta.url)('bnkit');
      if (cjs.BatchNorm2d !== BatchNorm2d) throw new Error('two copies of the classes');
      ${smoke}`]);
    expect(r.stderr).toBe('');
    checkSmoke(r.stdout);
  });

  it('honours BNKIT_ISA and refuses an unknown or unsupported one with a clear error', () => {
    const forced = runNode(['-e', `const { BatchNorm2d, Tensor, isa } = require('bnkit');${smoke}`], { BNKIT_ISA: 'scalar' });
    expect(checkSmoke(forced.stdout).isa).toBe('scalar');
    const bogus = runNode(['-e', `require('bnkit')`], { BNKIT_ISA: 'sse9' });
    expect(bogus.status).not.toBe(0);
    expect(bogus.stderr).toMatch(/BNKIT_ISA=sse9 is not one of scalar, avx2, avx512, neon/);
    const foreign = process.arch === 'arm64' ? 'avx2' : 'neon';
    const unsupported = runNode(['-e', `require('bnkit')`], { BNKIT_ISA: foreign });
    expect(unsupported.status).not.toBe(0);
    expect(unsupported.stderr).toMatch(new RegExp(`BNKIT_ISA=${foreign} is not supported on this CPU or build`));
    expect(unsupported.signal).toBeNull();
  });

  it('BNKIT_SPIN_US (worker spin before sleeping) never changes results, even 0 or garbage', () => {
    // Two threads, with pauses long enough for workers to go to sleep between kernels
    // (BNKIT_SPIN_US=0 sleeps at once), so the wake-up path is exercised too.
    const script = `
      const { setNumThreads, batchNormForward, Tensor } = require('bnkit');
      setNumThreads(2);
      const n = 64 * 32 * 14 * 14, x = new Float32Array(n);
      for (let i = 0; i < n; i++) x[i] = Math.sin(i * 0.37) * 3 + (i % 7);
      let hash = 0;
      for (let r = 0; r < 20; r++) {
        const { y } = batchNormForward(new Tensor(x, [64, 32, 14, 14]), { training: true });
        for (let i = r; i < n; i += 997) hash = (hash * 31 + Math.round(y.data[i] * 1e5)) | 0;
        const until = Date.now() + 3; while (Date.now() < until);
      }
      console.log(hash);`;
    const outputs = ['', '0', '5000', 'soon'].map((spin) => {
      const r = runNode(['-e', script], { BNKIT_SPIN_US: spin });
      expect(r.stderr, `BNKIT_SPIN_US=${spin}`).toBe('');
      expect(r.status).toBe(0);
      return r.stdout.trim();
    });
    expect(outputs[0]).toMatch(/^-?\d+$/);
    expect(new Set(outputs).size).toBe(1);
  });

  it('ships declarations that type-check a consumer and reject misuse', () => {
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = runNode([tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext',
      '--target', 'es2022', '--types', 'node', path.join(root, 'test', 'fixtures', 'consumer.ts')]);
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
