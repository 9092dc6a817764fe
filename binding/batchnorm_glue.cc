// Node-API entry points for batch norm. Arguments are positional (the
// TypeScript layer gives them names) to keep per-call overhead low on small
// tensors.
#include "dispatch.h"
#include "batchnorm_args.h"
#include "glue.h"

namespace bnkit::glue {
namespace {

BnLayout layoutArg(const Napi::CallbackInfo& info, size_t first) {
  BnLayout l;
  l.batch = size(info, first, "batch");
  l.channels = size(info, first + 1, "channels");
  l.spatial = size(info, first + 2, "spatial");
  l.channelsLast = flag(info, first + 3, "channelsLast");
  product(info.Env(), {l.batch, l.channels, l.spatial});
  return l;
}

std::string shapeText(const BnLayout& l) {
  return "[batch=" + std::to_string(l.batch) + ", channels=" + std::to_string(l.channels) +
         ", spatial=" + std::to_string(l.spatial) + "]";
}

// (x, y, batch, channels, spatial, channelsLast, gamma, beta, eps, relu,
//  saveMean, saveInvstd, runningMean, runningVar, factor)
Napi::Value ForwardTrain(const Napi::CallbackInfo& info) {
  BnForwardTrainArgs a;
  a.layout = layoutArg(info, 2);
  const int64_t n = a.layout.elements(), c = a.layout.channels;
  if (a.layout.perChannel() <= 1) {
    throwRange(info.Env(), "Expected more than 1 value per channel when training, got input of shape " +
                               shapeText(a.layout));
  }
  a.x = floats(info, 0, "x", n);
  a.y = floats(info, 1, "y (out)", n);
  checkAliasing(info.Env(), Aliasing::kSameArrayOk, a.y, n, "y (out)", a.x, n, "x");
  const RunningStatsUpdate update = trainingArgs(info, 6, c, &a);
  activeKernels().batchNorm.forwardTrain(a);
  update.apply(a);
  return info.Env().Undefined();
}

// (x, y, batch, channels, spatial, channelsLast, mean, var, gamma, beta, eps, relu)
Napi::Value ForwardEval(const Napi::CallbackInfo& info) {
  BnForwardEvalArgs a;
  a.layout = layoutArg(info, 2);
  const int64_t n = a.layout.elements(), c = a.layout.channels;
  a.x = floats(info, 0, "x", n);
  a.y = floats(info, 1, "y (out)", n);
  checkAliasing(info.Env(), Aliasing::kSameArrayOk, a.y, n, "y (out)", a.x, n, "x");
  evalArgs(info, 6, c, &a);
  activeKernels().batchNorm.forwardEval(a);
  return info.Env().Undefined();
}

// (x, dy, dx, batch, channels, spatial, channelsLast, mean, invstd, gamma, beta,
//  relu, batchStatistics, dgamma, dbeta)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  BnBackwardArgs a;
  a.layout = layoutArg(info, 3);
  const int64_t n = a.layout.elements(), c = a.layout.channels;
  a.x = floats(info, 0, "x", n);
  a.dy = floats(info, 1, "dy", n);
  a.dx = optionalFloats(info, 2, "dx", n);
  checkAliasing(info.Env(), Aliasing::kSameArrayOk, a.dx, n, "dx", a.x, n, "x");
  checkAliasing(info.Env(), Aliasing::kSameArrayOk, a.dx, n, "dx", a.dy, n, "dy");
  backwardArgs(info, 7, c, &a);
  activeKernels().batchNorm.backward(a);
  return info.Env().Undefined();
}

}  // namespace

void registerBatchNorm(Napi::Env env, Napi::Object exports) {
  exportFunction(env, exports, "batchNormForwardTrain", ForwardTrain);
  exportFunction(env, exports, "batchNormForwardEval", ForwardEval);
  exportFunction(env, exports, "batchNormBackward", Backward);
}

}  // namespace bnkit::glue
