#!/usr/bin/env node
// Benchmark dispatcher: `npm run bench -- <name> [flags]`. Each benchmark is a
// standalone script (node bench/<name>.mjs [flags]) run in its own process, so
// one benchmark's heap, thread pool and ISA choice never leak into another.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const benches = {
  bn: { file: 'bn.mjs', what: 'batch-norm kernels vs memory bandwidth and reference figures' },
  mnist: { file: 'mnist.mjs', what: 'MNIST training throughput' },
};

function usage() {
  const names = Object.entries(benches).map(([name, b]) => `  ${name.padEnd(6)} ${b.what}`).join('\n');
  return `usage: npm run bench -- <name> [flags]   (or: node bench/run.mjs <name> [flags])\n` +
    `benchmarks:\n${names}\n` +
    `flags are passed to the benchmark; try: node bench/run.mjs <name> --help\n`;
}

const [name, ...rest] = process.argv.slice(2);
if (name === '--help' || name === '-h') {
  process.stdout.write(usage());
  process.exit(0);
}
if (!name || !Object.hasOwn(benches, name)) {
  process.stderr.write(`${name ? `error: unknown benchmark '${name}'\n` : 'error: no benchmark named\n'}${usage()}`);
  process.exit(2);
}
const file = fileURLToPath(new URL(benches[name].file, import.meta.url));
if (!existsSync(file)) {
  process.stderr.write(`error: benchmark '${name}' is not available (${file} is missing)\n`);
  process.exit(2);
}
const child = spawnSync(process.execPath, [...process.execArgv, file, ...rest], { stdio: 'inherit' });
if (child.error) throw child.error;
if (child.signal) process.kill(process.pid, child.signal);
process.exit(child.status ?? 1);
