// Tiny flag parser shared by the benchmarks: --name value, --name=value,
// boolean --name, comma lists. Unknown flags are errors (exit code 2).

export class UsageError extends Error {}

/**
 * @param {string[]} argv
 * @param {Record<string, 'boolean' | 'string' | 'list'>} spec
 */
export function parseFlags(argv, spec) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const match = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!match) throw new UsageError(`unexpected argument '${arg}'`);
    const [, name, inline] = match;
    const kind = spec[name];
    if (!kind) throw new UsageError(`unknown flag --${name}`);
    if (kind === 'boolean') {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
      out[name] = true;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined || value === '' || (inline === undefined && value.startsWith('--'))) {
      throw new UsageError(`--${name} needs a value`);
    }
    out[name] = kind === 'list' ? value.split(',').map((v) => v.trim()).filter((v) => v !== '') : value;
  }
  return out;
}

/** Prints the error and usage to stderr and exits with code 2. */
export function exitUsage(error, usage) {
  if (error) process.stderr.write(`error: ${error.message ?? error}\n`);
  process.stderr.write(usage.endsWith('\n') ? usage : `${usage}\n`);
  process.exit(2);
}
