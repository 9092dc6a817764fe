// The one place that loads the compiled addon and gives it types. Everything
// else in lib/ imports `native` from here.
import * as path from 'node:path';
import * as os from 'node:os';

/** Names of the kernel paths bnkit can be built with. */
export type IsaName = 'scalar' | 'avx2' | 'avx512' | 'neon';

/** Raw addon interface. Positional arguments; lib/ wraps them with names and checks. */
export interface NativeAddon {
  isa(): IsaName;
  availableIsas(): IsaName[];
  setIsa(name: string): void;
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  readonly hardwareThreads: number;

  batchNormForwardTrain(
    x: Float32Array, y: Float32Array, batch: number, channels: number, spatial: number, channelsLast: boolean,
    gamma: Float32Array | null, beta: Float32Array | null, eps: number, relu: boolean,
    saveMean: Float32Array, saveInvstd: Float32Array,
    runningMean: Float32Array | null, runningVar: Float32Array | null, momentumFactor: number,
  ): void;
  batchNormForwardEval(
    x: Float32Array, y: Float32Array, batch: number, channels: number, spatial: number, channelsLast: boolean,
    runningMean: Float32Array, runningVar: Float32Array, gamma: Float32Array | null, beta: Float32Array | null,
    eps: number, relu: boolean,
  ): void;
  batchNormBackward(
    x: Float32Array, dy: Float32Array, dx: Float32Array | null, batch: number, channels: number, spatial: number,
    channelsLast: boolean, mean: Float32Array, invstd: Float32Array, gamma: Float32Array | null,
    beta: Float32Array | null, relu: boolean, batchStatistics: boolean,
    dgamma: Float32Array | null, dbeta: Float32Array | null,
  ): void;
}

/** Directory of the package (holds package.json, prebuilds/ and build/). */
export const packageRoot = path.resolve(__dirname, '..');

function loadAddon(): NativeAddon {
  // node-gyp-build looks in prebuilds/<platform>-<arch>/ and build/Release/.
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const load = require('node-gyp-build') as (dir: string) => unknown;
  try {
    return load(packageRoot) as NativeAddon;
  } catch (cause) {
    const message = (cause as Error).message ?? String(cause);
    if (/BNKIT_ISA/.test(message)) throw cause;
    const libc = process.report?.getReport
      ? ((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime
          ? 'glibc'
          : 'musl')
      : 'unknown';
    throw new Error(
      `bnkit: no native addon for platform=${process.platform} arch=${process.arch} libc=${libc} ` +
        `(node ${process.versions.node}, ${os.cpus()[0]?.model ?? 'unknown cpu'}).\n` +
        `Build it from source with: cd ${packageRoot} && npx cmake-js compile --out build\n` +
        `(needs cmake and a C++17 compiler). Cause: ${message}`,
      { cause },
    );
  }
}

export const native: NativeAddon = loadAddon();
