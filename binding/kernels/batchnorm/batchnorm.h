// Batch-norm kernel interface shared by every ISA. Kernels trust their
// arguments: the Node-API glue validates shapes and values once per call.
#pragma once
#include <cstdint>

namespace bnkit {

// Planar (NCHW, NC L, and NC with spatial = 1): x[(n * channels + c) * spatial + s].
// Channels-last (NHWC, NLC):                   x[(n * spatial + s) * channels + c].
struct BnLayout {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t spatial = 1;
  bool channelsLast = false;

  int64_t perChannel() const { return batch * spatial; }
  int64_t elements() const { return batch * channels * spatial; }
};

struct BnForwardTrainArgs {
  BnLayout layout;
  const float* x = nullptr;
  float* y = nullptr;
  const float* gamma = nullptr;  // nullptr means 1 (affine = false)
  const float* beta = nullptr;   // nullptr means 0
  float eps = 1e-5f;
  bool relu = false;
  float* saveMean = nullptr;     // [C] batch mean, for backward
  float* saveInvstd = nullptr;   // [C] 1 / sqrt(biased var + eps)
  double* batchVariance = nullptr;  // [C] biased variance, for running stats
};

struct BnForwardEvalArgs {
  BnLayout layout;
  const float* x = nullptr;
  float* y = nullptr;
  const float* mean = nullptr;      // [C] running mean
  const float* variance = nullptr;  // [C] running variance
  const float* gamma = nullptr;
  const float* beta = nullptr;
  float eps = 1e-5f;
  bool relu = false;
};

struct BnBackwardArgs {
  BnLayout layout;
  const float* x = nullptr;
  const float* dy = nullptr;
  float* dx = nullptr;              // may be nullptr when only parameter gradients are wanted
  const float* mean = nullptr;      // [C] the mean and invstd the forward pass used
  const float* invstd = nullptr;
  const float* gamma = nullptr;
  const float* beta = nullptr;      // needed with relu: the mask is recomputed from x
  bool relu = false;
  // true: the statistics came from this batch (training), so dx gets the terms
  // through mean and variance; false: they were constants (eval mode).
  bool batchStatistics = true;
  float* dgamma = nullptr;          // [C], overwritten; may be nullptr
  float* dbeta = nullptr;           // [C], overwritten; may be nullptr
};

// BatchNorm2d (+ optional ReLU) followed by MaxPool2d(2) on NCHW, fused
// (batchnorm_pool.h): only pooled-size arrays [N, C, H/2, W/2] (floor) are
// written: the output, a window code per output (2 * ky + kx of the maximum;
// >= 4 when the ReLU clipped it, so no gradient flows) and `picked`, the input
// x at each maximum, which backward's sums need. bn.layout is the planar
// input [N, C, H * W]; bn.y is unused, bn.dy is the pooled gradient.
struct BnPoolShape {
  int64_t H = 0, W = 0;
  int64_t outH() const { return H / 2; }
  int64_t outW() const { return W / 2; }
};

struct BnPoolForwardTrainArgs {
  BnForwardTrainArgs bn;
  BnPoolShape shape;
  float* pooled = nullptr;
  uint8_t* window = nullptr;
  float* picked = nullptr;
};

struct BnPoolForwardEvalArgs {
  BnForwardEvalArgs bn;
  BnPoolShape shape;
  float* pooled = nullptr;
  uint8_t* window = nullptr;
  float* picked = nullptr;
};

struct BnPoolBackwardArgs {
  BnBackwardArgs bn;  // bn.dy: gradient of the pooled output
  BnPoolShape shape;
  const uint8_t* window = nullptr;
  const float* picked = nullptr;
};

// The stem of the MNIST CNNs as one kernel (batchnorm_stem.h): a stride-1
// 3x3 convolution of a one-channel input, then the fused BatchNorm2d (+ ReLU)
// + MaxPool2d(2) above on its [N, C, outH, outW] output, which is recomputed
// from the input whenever needed and never stored. pool.bn.layout is that
// output's planar layout; pool.bn.x / y / dx are unused.
struct StemConv {
  const float* input = nullptr;   // [N, 1, inH, inW]
  const float* weight = nullptr;  // [C, 1, 3, 3]
  const float* bias = nullptr;    // [C]; nullptr: no bias
  int64_t inH = 0, inW = 0, padH = 0, padW = 0;
  int64_t outH() const { return inH + 2 * padH - 2; }
  int64_t outW() const { return inW + 2 * padW - 2; }
};

// The input's patch moments the training forward derives its statistics
// from, kept for backward: the mean of each of the 9 taps, then their 9 x 9
// covariance, over every output position of the batch.
constexpr int64_t kStemMomentsLength = 9 + 81;

struct StemForwardTrainArgs {
  StemConv conv;
  BnPoolForwardTrainArgs pool;
  double* patchMoments = nullptr;  // [kStemMomentsLength] written; may be nullptr
};

struct StemForwardEvalArgs {
  StemConv conv;
  BnPoolForwardEvalArgs pool;
};

struct StemBackwardArgs {
  StemConv conv;
  BnPoolBackwardArgs pool;   // pool.bn.dy: gradient of the pooled output
  float* dWeight = nullptr;  // [C, 1, 3, 3], accumulated (+=); may be nullptr
  float* dBias = nullptr;    // [C], accumulated (+=); may be nullptr
  float* dInput = nullptr;   // [N, 1, inH, inW], overwritten; may be nullptr
  // The training forward's patchMoments for the same input; nullptr: recomputed.
  const double* patchMoments = nullptr;
};

struct BatchNormKernels {
  void (*forwardTrain)(const BnForwardTrainArgs& args);
  void (*forwardEval)(const BnForwardEvalArgs& args);
  void (*backward)(const BnBackwardArgs& args);
  void (*forwardTrainPool)(const BnPoolForwardTrainArgs& args);
  void (*forwardEvalPool)(const BnPoolForwardEvalArgs& args);
  void (*backwardPool)(const BnPoolBackwardArgs& args);
  void (*stemForwardTrain)(const StemForwardTrainArgs& args);
  void (*stemForwardEval)(const StemForwardEvalArgs& args);
  void (*stemBackward)(const StemBackwardArgs& args);
};

extern const BatchNormKernels kBatchNormScalar;
extern const BatchNormKernels kBatchNormAvx2;
extern const BatchNormKernels kBatchNormAvx512;
extern const BatchNormKernels kBatchNormNeon;

// Running-statistics update after a training forward (PyTorch rule):
// running = (1 - factor) * running + factor * batch, with the unbiased
// variance n / (n - 1). factor is momentum, or 1 / numBatchesTracked for a
// cumulative average.
void updateRunningStats(const BnForwardTrainArgs& args, float factor, float* runningMean,
                        float* runningVar);

}  // namespace bnkit
