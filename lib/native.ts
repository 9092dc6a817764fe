// The one place that loads the compiled addon and gives it types. Everything
// else in lib/ imports `native` from here.
import * as fs from 'node:fs';
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

  /**
   * Benchmark anchor: copies src into dst (same length, no overlap) with memcpy
   * split over the kernel thread pool, `repetitions` times after one warm-up
   * copy, and returns the median seconds of one copy. `nonTemporal` copies
   * with streaming stores instead (for arrays far larger than the L3).
   */
  streamCopy(src: Float32Array, dst: Float32Array, repetitions: number, nonTemporal?: boolean): number;
  /** Benchmark helper: idle pool workers sleep now instead of spinning out their window. */
  parkWorkers(): void;

  // ---- Training kernels (binding/nn_glue.cc). Tensors are row-major NCHW Float32Arrays;
  // "+=" arguments are accumulated into, all others overwritten. Every entry checks lengths
  // against the sizes (RangeError naming the argument), types (TypeError), integer sizes >= 1,
  // finite hyper-parameters and labels in [0, classes).

  /**
   * C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C. op(A) = A^T when transA (A stored
   * [K,M]), op(B) = B^T when transB (B stored [N,K]). beta = 0 never reads C (NaN ignored).
   * Deterministic: the same bits for any thread count.
   */
  gemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: Float32Array, B: Float32Array, beta: number, C: Float32Array,
  ): void;
  /** y[batch,out] = x[batch,in] * weight[out,in]^T + bias[out] (bias may be null). */
  linearForward(
    x: Float32Array, batch: number, inFeatures: number, weight: Float32Array, bias: Float32Array | null,
    outFeatures: number, y: Float32Array,
  ): void;
  /**
   * dx[batch,in] = dy * weight (overwritten; null skips it), dweight[out,in] += dy^T * x,
   * dbias[out] += column sums of dy (null skips it).
   */
  linearBackward(
    x: Float32Array, batch: number, inFeatures: number, weight: Float32Array, outFeatures: number,
    dy: Float32Array, dx: Float32Array | null, dweight: Float32Array, dbias: Float32Array | null,
  ): void;
  /**
   * 2-D convolution (cross-correlation, dilation 1, zero padding), PyTorch output size
   * oH = floor((H + 2*padH - kh) / strideH) + 1. x [batch,inC,H,W], weight [outC,inC,kh,kw],
   * bias [outC] or null, y [batch,outC,oH,oW] (overwritten).
   */
  conv2dForward(
    x: Float32Array, batch: number, inC: number, H: number, W: number, weight: Float32Array,
    bias: Float32Array | null, outC: number, kh: number, kw: number, strideH: number, strideW: number,
    padH: number, padW: number, y: Float32Array,
  ): void;
  /**
   * Gradients of conv2dForward given dy [batch,outC,oH,oW]: dx [batch,inC,H,W] overwritten
   * (null skips it, e.g. for the first layer), dweight += , dbias += (null skips it).
   */
  conv2dBackward(
    x: Float32Array, batch: number, inC: number, H: number, W: number, weight: Float32Array, outC: number,
    kh: number, kw: number, strideH: number, strideW: number, padH: number, padW: number,
    dy: Float32Array, dx: Float32Array | null, dweight: Float32Array, dbias: Float32Array | null,
  ): void;
  /**
   * Max pooling, floor mode, no padding: y [batch,channels,oH,oW] with oH = floor((H-kernel)/stride)+1;
   * argmax[i] = flat index into x of the maximum (first one on ties; NaN wins).
   */
  maxPool2dForward(
    x: Float32Array, batch: number, channels: number, H: number, W: number, kernel: number, stride: number,
    y: Float32Array, argmax: Int32Array,
  ): void;
  /** dx is overwritten: zeros, then dy[i] added at argmax[i] (each index checked against dx). */
  maxPool2dBackward(dy: Float32Array, argmax: Int32Array, dx: Float32Array): void;
  /**
   * 2x2 max pooling, stride 2, floor mode: y [batch,channels,H/2,W/2], window[i] = 2*ky + kx of
   * the maximum (first one on ties; NaN wins): the same choices as maxPool2dForward.
   */
  maxPool2x2Forward(
    x: Float32Array, batch: number, channels: number, H: number, W: number, y: Float32Array, window: Uint8Array,
  ): void;
  /** dx [batch,channels,H,W] overwritten: dy[i] at the input window[i] names, zeros elsewhere (codes >= 4: none). */
  maxPool2x2Backward(
    dy: Float32Array, window: Uint8Array, batch: number, channels: number, H: number, W: number, dx: Float32Array,
  ): void;
  /**
   * BatchNorm2d (NCHW, batch statistics) + optional ReLU + maxPool2x2 in one kernel: writes only
   * pooled-size arrays [batch,channels,H/2,W/2]: pooled, window (codes as maxPool2x2Forward; >= 4
   * where the ReLU clipped the maximum) and picked (x at each maximum, for backward).
   * saveMean/saveInvstd and the running stats as batchNormForwardTrain.
   */
  batchNormMaxPoolForwardTrain(
    x: Float32Array, pooled: Float32Array, window: Uint8Array, picked: Float32Array, batch: number, channels: number,
    H: number, W: number, gamma: Float32Array | null, beta: Float32Array | null, eps: number, relu: boolean,
    saveMean: Float32Array, saveInvstd: Float32Array,
    runningMean: Float32Array | null, runningVar: Float32Array | null, momentumFactor: number,
  ): void;
  /** The eval-mode (running statistics) counterpart of batchNormMaxPoolForwardTrain. */
  batchNormMaxPoolForwardEval(
    x: Float32Array, pooled: Float32Array, window: Uint8Array, picked: Float32Array, batch: number, channels: number,
    H: number, W: number, runningMean: Float32Array, runningVar: Float32Array, gamma: Float32Array | null,
    beta: Float32Array | null, eps: number, relu: boolean,
  ): void;
  /**
   * Backward of the fused op from the pooled gradient dy, given the forward's window and picked;
   * dx (may be null), dgamma, dbeta overwritten.
   */
  batchNormMaxPoolBackward(
    x: Float32Array, dy: Float32Array, dx: Float32Array | null, window: Uint8Array, picked: Float32Array,
    batch: number, channels: number, H: number, W: number, mean: Float32Array, invstd: Float32Array,
    gamma: Float32Array | null, beta: Float32Array | null, relu: boolean, batchStatistics: boolean,
    dgamma: Float32Array | null, dbeta: Float32Array | null,
  ): void;
  /**
   * The stem Conv2d(1 -> channels, 3x3, stride 1, padding padH x padW) + BatchNorm2d (+ ReLU) +
   * maxPool2x2 in one kernel. input [batch,1,H,W]; the convolution's output [batch,channels,oH,oW]
   * (oH = H + 2*padH - 2) is recomputed from the input and never stored; pooled, window, picked as
   * batchNormMaxPoolForwardTrain on that output. weight [channels,1,3,3]; convBias may be null.
   * patchMoments (90 doubles, may be null) receives the input's patch moments for backward.
   */
  convBatchNormMaxPoolForwardTrain(
    input: Float32Array, pooled: Float32Array, window: Uint8Array, picked: Float32Array, batch: number,
    channels: number, H: number, W: number, padH: number, padW: number, weight: Float32Array,
    convBias: Float32Array | null, gamma: Float32Array | null, beta: Float32Array | null, eps: number, relu: boolean,
    saveMean: Float32Array, saveInvstd: Float32Array,
    runningMean: Float32Array | null, runningVar: Float32Array | null, momentumFactor: number,
    patchMoments?: Float64Array | null,
  ): void;
  /** The eval-mode (running statistics) counterpart of convBatchNormMaxPoolForwardTrain. */
  convBatchNormMaxPoolForwardEval(
    input: Float32Array, pooled: Float32Array, window: Uint8Array, picked: Float32Array, batch: number,
    channels: number, H: number, W: number, padH: number, padW: number, weight: Float32Array,
    convBias: Float32Array | null, runningMean: Float32Array, runningVar: Float32Array, gamma: Float32Array | null,
    beta: Float32Array | null, eps: number, relu: boolean,
  ): void;
  /**
   * Backward of the fused stem from the pooled gradient dy: dWeight and dBias accumulated (+=),
   * dInput [batch,1,H,W] (may be null), dgamma and dbeta overwritten. patchMoments: what the
   * training forward wrote for the same input (90 doubles: the 3x3 patches' mean and covariance),
   * or null to recompute them.
   */
  convBatchNormMaxPoolBackward(
    input: Float32Array, dy: Float32Array, dInput: Float32Array | null, window: Uint8Array, picked: Float32Array,
    batch: number, channels: number, H: number, W: number, padH: number, padW: number, weight: Float32Array,
    convBias: Float32Array | null, dWeight: Float32Array | null, dBias: Float32Array | null, mean: Float32Array,
    invstd: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, relu: boolean,
    batchStatistics: boolean, dgamma: Float32Array | null, dbeta: Float32Array | null,
    patchMoments?: Float64Array | null,
  ): void;
  /** y = max(0, x) (NaN stays NaN); y may be x. */
  reluForward(x: Float32Array, y: Float32Array): void;
  /** dx = dy where y > 0, else 0; dx may be dy. */
  reluBackward(y: Float32Array, dy: Float32Array, dx: Float32Array): void;
  /** y = 1 / (1 + exp(-x)); y may be x. */
  sigmoidForward(x: Float32Array, y: Float32Array): void;
  /** dx = dy * y * (1 - y), y being the forward output; dx may be dy. */
  sigmoidBackward(y: Float32Array, dy: Float32Array, dx: Float32Array): void;
  /**
   * Softmax of logits [batch,classes] into probs, and the mean over the batch of
   * -log softmax[label] (log-sum-exp with the row maximum subtracted). Labels in [0, classes).
   */
  softmaxCrossEntropyForward(
    logits: Float32Array, batch: number, classes: number, labels: Uint8Array | Int32Array, probs: Float32Array,
  ): number;
  /** dlogits = (probs - onehot(labels)) / batch, the gradient of the mean loss. */
  softmaxCrossEntropyBackward(
    probs: Float32Array, batch: number, classes: number, labels: Uint8Array | Int32Array, dlogits: Float32Array,
  ): void;
  /**
   * One torch.optim.SGD step in place: d = grad + weightDecay*param; with momentum,
   * velocity = momentum*velocity + (1-dampening)*d (velocity = d when firstStep), and
   * d = nesterov ? d + momentum*velocity : velocity; param -= lr*d. velocity may be null only
   * when momentum = 0. A zero-initialized velocity matches PyTorch's first step exactly when
   * dampening = 0; with dampening != 0 pass firstStep = true on the first call.
   */
  sgdStep(
    param: Float32Array, grad: Float32Array, velocity: Float32Array | null, lr: number, momentum: number,
    dampening: number, weightDecay: number, nesterov: boolean, firstStep?: boolean,
  ): void;
  /**
   * One torch.optim.Adam step in place (L2 weightDecay added to grad, no amsgrad):
   * m = beta1*m + (1-beta1)*g, v = beta2*v + (1-beta2)*g^2,
   * param -= lr/(1-beta1^step) * m / (sqrt(v)/sqrt(1-beta2^step) + eps). step counts from 1.
   */
  adamStep(
    param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, step: number, lr: number,
    beta1: number, beta2: number, eps: number, weightDecay: number,
  ): void;
}

/** Directory of the package (holds package.json, prebuilds/ and build/). */
export const packageRoot = path.resolve(__dirname, '..');

type NodeGypBuild = ((dir: string) => unknown) & { resolve(dir: string): string };

/** "glibc 2.36", "musl" or "unknown": the part of a prebuild's tag a user can act on. */
function describeLibc(): string {
  try {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    if (header?.glibcVersionRuntime) return `glibc ${header.glibcVersionRuntime}`;
    return process.platform === 'linux' ? 'musl' : 'n/a';
  } catch {
    return 'unknown';
  }
}

/** The command that builds the addon from source for this install. */
function buildCommand(): string {
  const parent = path.dirname(packageRoot);
  const inNodeModules = path.basename(parent) === 'node_modules' || path.basename(path.dirname(parent)) === 'node_modules';
  if (!inNodeModules) return `cd ${packageRoot} && npm run build:native`;
  // Scoped or not, the project is the folder holding node_modules/.
  const project = path.basename(parent) === 'node_modules' ? path.dirname(parent) : path.dirname(path.dirname(parent));
  return (
    `cd ${project} && npm install --no-save cmake-js@^8 node-addon-api@^8 && ` +
    `BNKIT_BUILD_FROM_SOURCE=1 node ${path.join(packageRoot, 'scripts', 'install.cjs')}`
  );
}

// Compiling inside require() is opt-in (BNKIT_BUILD_ON_LOAD=1): it takes a
// minute, needs cmake and a compiler, and writes into node_modules, none of
// which an import should do behind the user's back. The install script
// (scripts/install.cjs) already builds when no prebuild matches, and a build
// in build/Release is what node-gyp-build loads first.
function buildOnLoad(): string | null {
  if (process.env.BNKIT_BUILD_ON_LOAD !== '1') return null;
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
  process.stderr.write('bnkit: BNKIT_BUILD_ON_LOAD=1 and no usable binary: building with cmake-js...\n');
  const result = spawnSync(process.execPath, [path.join(packageRoot, 'scripts', 'install.cjs')], {
    cwd: packageRoot,
    env: { ...process.env, BNKIT_BUILD_FROM_SOURCE: '1' },
    stdio: ['ignore', 2, 2],
  });
  const built = path.join(packageRoot, 'build', 'Release', 'bnkit.node');
  return result.status === 0 && fs.existsSync(built) ? built : null;
}

function loadAddon(): NativeAddon {
  // node-gyp-build looks in build/Release/ (a local build) first, then in
  // prebuilds/<platform>-<arch>/ for a file whose tags (glibc/musl, ...) match.
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const load = require('node-gyp-build') as NodeGypBuild;
  let found: string | null = null;
  try {
    found = load.resolve(packageRoot);
    return require(found) as NativeAddon;
  } catch (cause) {
    const message = (cause as Error).message ?? String(cause);
    // A forced ISA the CPU lacks is a user error with its own clear message.
    if (/BNKIT_ISA/.test(message)) throw cause;
    const rebuilt = buildOnLoad();
    if (rebuilt) return require(rebuilt) as NativeAddon;
    const where =
      `platform=${process.platform} arch=${process.arch} libc=${describeLibc()} ` +
      `(node ${process.versions.node}, N-API ${process.versions.napi ?? '?'}, ${os.cpus()[0]?.model ?? 'unknown cpu'})`;
    const what = found
      ? `bnkit: the native addon ${found} does not load on ${where}.`
      : `bnkit: no prebuilt native addon matches ${where}, and there is no local build in ${path.join(packageRoot, 'build', 'Release')}.\n` +
        `Prebuilt: linux-x64 and linux-arm64 with glibc >= 2.34 (${path.join(packageRoot, 'prebuilds')}).`;
    throw new Error(
      `${what}\n` +
        `Build it from source (needs cmake >= 3.16 and a C++17 compiler):\n  ${buildCommand()}\n` +
        `or set BNKIT_BUILD_ON_LOAD=1 to build on first load.\nCause: ${message}`,
      { cause },
    );
  }
}

export const native: NativeAddon = loadAddon();
