// A PyTorch worker in a child python: the benchmarks' --pytorch modes send it
// one line per request and read one line back, so PyTorch runs only while
// bnkit waits (and waits on stdin, using no CPU, while bnkit runs).
import { spawn, spawnSync } from 'node:child_process';
import * as readline from 'node:readline';

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
  throw new Error(`--pytorch needs a python with ${modules.split(',').map((m) => m.trim()).join(' and ')}; ` +
    `tried ${candidates.join(', ')} (set --python or BNKIT_PYTHON)`);
}

/**
 * Starts `python script ...args` and waits for its "ready <torch version>"
 * line. request(line, prefix) writes a line and resolves to the reply
 * without `prefix`; a reply without it, or the worker's exit, rejects.
 */
export async function startTorchWorker(python, script, args, { env = process.env } = {}) {
  const worker = spawn(python, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'], env });
  const exited = new Promise((resolve) => worker.on('exit', (code) => resolve(code)));
  const lines = readline.createInterface({ input: worker.stdout })[Symbol.asyncIterator]();
  const reply = async (prefix) => {
    const line = await lines.next();
    if (line.done || !line.value.startsWith(prefix)) {
      throw new Error(`the PyTorch worker (${python}) ${line.done ? `exited with status ${await exited}` : `said '${line.value}'`}`);
    }
    return line.value.slice(prefix.length);
  };
  try {
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
  } catch (error) {
    worker.kill();
    throw error;
  }
}
