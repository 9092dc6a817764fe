// Argument groups that every batch-norm entry point (plain and fused with
// pooling) reads the same way, so their checks and messages stay identical.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "glue.h"
#include "kernels/batchnorm/batchnorm.h"

namespace bnkit::glue {

inline float epsArg(const Napi::CallbackInfo& info, size_t i) {
  const double eps = number(info, i, "eps");
  // The kernels use it in float: it must not round to 0 or overflow.
  const float f = static_cast<float>(eps);
  if (!(f > 0.0f) || !std::isfinite(f)) {
    char text[32];
    std::snprintf(text, sizeof text, "%.9g", eps);
    throwRange(info.Env(), std::string("eps must be > 0 and within float32's range, got ") + text);
  }
  return f;
}

// What a training forward does to the running statistics afterwards.
struct RunningStatsUpdate {
  float* mean = nullptr;  // nullptr: not tracked
  float* var = nullptr;
  float factor = 0;

  void apply(const BnForwardTrainArgs& a) const {
    if (mean || var) updateRunningStats(a, factor, mean, var);
  }
};

// (gamma, beta, eps, relu, saveMean, saveInvstd, runningMean, runningVar,
// momentum) from info[first] into a training forward's arguments, for c channels.
inline RunningStatsUpdate trainingArgs(const Napi::CallbackInfo& info, size_t first, int64_t c,
                                       BnForwardTrainArgs* a) {
  a->gamma = optionalFloats(info, first, "weight (gamma)", c);
  a->beta = optionalFloats(info, first + 1, "bias (beta)", c);
  a->eps = epsArg(info, first + 2);
  a->relu = flag(info, first + 3, "relu");
  a->saveMean = floats(info, first + 4, "saveMean", c);
  a->saveInvstd = floats(info, first + 5, "saveInvstd", c);
  RunningStatsUpdate update;
  update.mean = optionalFloats(info, first + 6, "runningMean", c);
  update.var = optionalFloats(info, first + 7, "runningVar", c);
  const double factor = number(info, first + 8, "momentum");
  if (factor < 0 || factor > 1) throwRange(info.Env(), "momentum must be in [0, 1], got " + std::to_string(factor));
  update.factor = static_cast<float>(factor);
  // Reused per calling thread: a training step allocates nothing. Not kernel
  // scratch, which the kernel itself claims while this is still needed.
  thread_local std::vector<double> variance;
  variance.resize(static_cast<size_t>(c));
  a->batchVariance = variance.data();
  return update;
}

// (runningMean, runningVar, gamma, beta, eps, relu) from info[first] into an
// eval forward's arguments, for c channels; a negative variance is an error.
inline void evalArgs(const Napi::CallbackInfo& info, size_t first, int64_t c, BnForwardEvalArgs* a) {
  a->mean = floats(info, first, "runningMean", c);
  a->variance = floats(info, first + 1, "runningVar", c);
  a->gamma = optionalFloats(info, first + 2, "weight (gamma)", c);
  a->beta = optionalFloats(info, first + 3, "bias (beta)", c);
  a->eps = epsArg(info, first + 4);
  a->relu = flag(info, first + 5, "relu");
  for (int64_t i = 0; i < c; ++i) {
    if (!(a->variance[i] >= 0)) {
      throwRange(info.Env(),
                 "runningVar[" + std::to_string(i) + "] must be >= 0, got " + std::to_string(a->variance[i]));
    }
  }
}

// (mean, invstd, gamma, beta, relu, batchStatistics, dgamma, dbeta) from
// info[first] into a backward's arguments, for c channels.
inline void backwardArgs(const Napi::CallbackInfo& info, size_t first, int64_t c, BnBackwardArgs* a) {
  a->mean = floats(info, first, "mean", c);
  a->invstd = floats(info, first + 1, "invstd", c);
  a->gamma = optionalFloats(info, first + 2, "weight (gamma)", c);
  a->beta = optionalFloats(info, first + 3, "bias (beta)", c);
  a->relu = flag(info, first + 4, "relu");
  a->batchStatistics = flag(info, first + 5, "batchStatistics");
  a->dgamma = optionalFloats(info, first + 6, "dgamma", c);
  a->dbeta = optionalFloats(info, first + 7, "dbeta", c);
}

}  // namespace bnkit::glue
