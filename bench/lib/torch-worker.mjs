// A PyTorch worker in a child python: the benchmarks' --pytorch modes send it
// one line per request and read one line back, so PyTorch runs only while
// bnkit waits (and waits on stdin, using no CPU, while bnkit runs).
import { spawn, spawnSync } from 'node:child_process';
import * as readline from 'node:readline';

/** Why --pytorch could not go on: the benchmarks print the message, not a stack. */
export class TorchWorkerError extends Error {}

/**
 * The first python that imports `modules`: `explicit` (a --python flag) if
 * given, else $BNKIT_PYTHON, python3, /usr/bin/python3 (Debian's python3-torch).
 */
export function findTorchPython(explicit, modules = 'torch') {
  const candidates = explicit ? [explicit] : [process.env.BNKIT_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean);
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', `import ${modules}`], { stdio: 'ignore' });
    if (probe.status === 0) return python;
  }
  throw new TorchWorkerError(`--pytorch needs a python with ${modules.split(',').map((m) => m.trim()).join(' and ')}; ` +
    `tried ${candidates.join(', ')} (set --python or BNKIT_PYTHON)`);
}

/**
 * Starts `python script ...args` and waits for its "ready <torch version>"
 * line. request(line, prefix) writes a line and resolves to the reply
 * without `prefix`. A reply without it, the worker's exit or no reply within
 * `timeoutMs` rejects with a TorchWorkerError (and stops the worker).
 */
export async function startTorchWorker(python, script, args, { timeoutMs = 300_000 } = {}) {
  const worker = spawn(python, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => {
    worker.on('exit', (code, signal) => resolve(signal ? `was killed by ${signal}` : `exited with status ${code}`));
  });
  // Writing to a worker that has gone fails with EPIPE; the reply that
  // follows reports how it ended.
  worker.stdin.on('error', () => {});
  const lines = readline.createInterface({ input: worker.stdout })[Symbol.asyncIterator]();
  const fail = (why) => {
    worker.kill();
    return new TorchWorkerError(`the PyTorch worker (${python}) ${why}`);
  };
  const reply = async (prefix) => {
    let timer;
    const silence = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    try {
      const line = await Promise.race([lines.next(), silence]);
      if (line === null) throw fail(`gave no answer in ${timeoutMs / 1000} s`);
      if (line.done) throw fail(await exited);
      if (!line.value.startsWith(prefix)) throw fail(`said '${line.value}'`);
      return line.value.slice(prefix.length);
    } finally {
      clearTimeout(timer);
    }
  };
  const version = await reply('ready ');
  return {
    version,
    request: (line, prefix) => {
      worker.stdin.write(`${line}\n`);
      return reply(prefix);
    },
    async close() {
      worker.stdin.write('quit\n');
      await exited;
    },
    kill: () => worker.kill(),
  };
}
