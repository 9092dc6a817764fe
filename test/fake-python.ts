// A stand-in for python in the benchmarks' --pytorch tests: it answers the
// `python -c "import torch..."` probe, says "ready <version>", then runs
// `loop` (bash reading the worker's requests on stdin).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * A new temporary folder holding the stand-in as `python`. Overwrite that
 * file to simulate a broken worker; remove the folder when done.
 */
export function fakePythonDir(version: string, loop: string[]): { dir: string; python: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bnkit-fake-python-'));
  const python = path.join(dir, 'python');
  fs.writeFileSync(python, ['#!/usr/bin/env bash', 'if [ "$1" = "-c" ]; then exit 0; fi', `echo "ready ${version}"`, ...loop].join('\n'),
    { mode: 0o755 });
  return { dir, python };
}
