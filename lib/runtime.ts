import { describeValue } from './tensor';
import { native, type IsaName } from './native';

export type { IsaName };

/** The kernel path in use: 'avx512', 'avx2', 'neon' or 'scalar'. */
export function isa(): IsaName {
  return native.isa();
}

/** Every path this CPU and this build can run, e.g. ['scalar', 'avx2', 'avx512']. */
export function availableIsas(): IsaName[] {
  return native.availableIsas();
}

/**
 * Switches the kernel path for the whole process (meant for tests and
 * benchmarks; BNKIT_ISA=<name> does the same at load). Throws a RangeError if
 * the CPU or the build cannot run it.
 */
export function setIsa(name: IsaName): void {
  native.setIsa(name);
}

/** Sets the size of the native thread pool (default: the number of cores). */
export function setNumThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1) {
    throw new RangeError(`threads must be a positive integer, got ${describeValue(threads)}`);
  }
  native.setNumThreads(threads);
}

export function getNumThreads(): number {
  return native.getNumThreads();
}
