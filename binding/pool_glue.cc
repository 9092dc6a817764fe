// Node-API entry points for 2x2 / stride-2 max pooling with window codes (a
// byte per output) and for BatchNorm2d (+ ReLU) fused with that pooling.
// Arguments are positional (lib/ names them) and checked here: sizes,
// lengths, eps, momentum; window codes need no check (every byte value has a
// defined meaning: codes >= 4 pass no gradient).
#include <string>

#include "dispatch.h"
#include "batchnorm_args.h"
#include "glue.h"

namespace bnkit::glue {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

uint8_t* bytes(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t length) {
  return typedArray<uint8_t>(info, i, name, length);
}

// A Float64Array of `length` elements, or nullptr for null/undefined.
double* optionalDoubles(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t length) {
  return isNullish(info, i) ? nullptr : typedArray<double>(info, i, name, length);
}

// batch, channels, H, W at info[first..first+3]; H and W must hold one window.
struct PoolGeometry {
  int64_t batch, channels, H, W;
  int64_t inLength() const { return batch * channels * H * W; }
  int64_t outLength() const { return batch * channels * (H / 2) * (W / 2); }
  std::string in(const char* name) const {
    return std::string(name) + " [" + str(batch) + ", " + str(channels) + ", " + str(H) + ", " + str(W) + "]";
  }
  std::string out(const char* name) const {
    return std::string(name) + " [" + str(batch) + ", " + str(channels) + ", " + str(H / 2) + ", " + str(W / 2) + "]";
  }
};

PoolGeometry geometryArg(const Napi::CallbackInfo& info, size_t first) {
  PoolGeometry g{size(info, first, "batch"), size(info, first + 1, "channels"), size(info, first + 2, "H"),
                 size(info, first + 3, "W")};
  product(info.Env(), {g.batch, g.channels, g.H, g.W});
  if (g.H < 2 || g.W < 2) {
    throwRange(info.Env(), "2x2 max pooling needs H and W >= 2, got " + str(g.H) + "x" + str(g.W));
  }
  return g;
}

MaxPoolShape poolShape(const PoolGeometry& g) {
  MaxPoolShape s;
  s.planes = g.batch * g.channels;
  s.H = g.H;
  s.W = g.W;
  s.kernel = 2;
  s.stride = 2;
  return s;
}

// (x, batch, channels, H, W, y, window)
Napi::Value MaxPool2x2Forward(const Napi::CallbackInfo& info) {
  const PoolGeometry g = geometryArg(info, 1);
  const float* x = floats(info, 0, g.in("x").c_str(), g.inLength());
  float* y = floats(info, 5, g.out("y").c_str(), g.outLength());
  uint8_t* window = bytes(info, 6, g.out("window").c_str(), g.outLength());
  activeKernels().elementwise.maxPool2x2Forward(poolShape(g), x, y, window);
  return info.Env().Undefined();
}

// (dy, window, batch, channels, H, W, dx)
Napi::Value MaxPool2x2Backward(const Napi::CallbackInfo& info) {
  const PoolGeometry g = geometryArg(info, 2);
  const float* dy = floats(info, 0, g.out("dy").c_str(), g.outLength());
  const uint8_t* window = bytes(info, 1, g.out("window").c_str(), g.outLength());
  float* dx = floats(info, 6, g.in("dx").c_str(), g.inLength());
  activeKernels().elementwise.maxPool2x2Backward(poolShape(g), dy, window, dx);
  return info.Env().Undefined();
}

BnLayout planarLayout(const PoolGeometry& g) {
  BnLayout l;
  l.batch = g.batch;
  l.channels = g.channels;
  l.spatial = g.H * g.W;
  l.channelsLast = false;
  return l;
}

BnPoolShape fusedPoolShape(const PoolGeometry& g) {
  BnPoolShape shape;
  shape.H = g.H;
  shape.W = g.W;
  return shape;
}

// (pooled, window, picked) at info[1..3] of both forwards, and the shape.
template <class PoolForwardArgs>
void pooledOutputs(const Napi::CallbackInfo& info, const PoolGeometry& g, PoolForwardArgs* p) {
  p->pooled = floats(info, 1, g.out("pooled").c_str(), g.outLength());
  p->window = bytes(info, 2, g.out("window").c_str(), g.outLength());
  p->picked = floats(info, 3, g.out("picked").c_str(), g.outLength());
  p->shape = fusedPoolShape(g);
}

// (x, pooled, window, picked, batch, channels, H, W, gamma, beta, eps, relu,
//  saveMean, saveInvstd, runningMean, runningVar, factor)
Napi::Value BatchNormMaxPoolForwardTrain(const Napi::CallbackInfo& info) {
  const PoolGeometry g = geometryArg(info, 4);
  BnPoolForwardTrainArgs p;
  BnForwardTrainArgs& a = p.bn;
  a.layout = planarLayout(g);
  const int64_t c = g.channels;
  if (a.layout.perChannel() <= 1) {
    throwRange(info.Env(), "Expected more than 1 value per channel when training, got input of shape " +
                               g.in("x").substr(2));
  }
  a.x = floats(info, 0, g.in("x").c_str(), g.inLength());
  pooledOutputs(info, g, &p);
  checkAliasing(info.Env(), Aliasing::kNone, p.pooled, g.outLength(), "pooled", a.x, g.inLength(), "x");
  const RunningStatsUpdate update = trainingArgs(info, 8, c, &a);
  activeKernels().batchNorm.forwardTrainPool(p);
  update.apply(a);
  return info.Env().Undefined();
}

// (x, pooled, window, picked, batch, channels, H, W, runningMean, runningVar, gamma, beta, eps, relu)
Napi::Value BatchNormMaxPoolForwardEval(const Napi::CallbackInfo& info) {
  const PoolGeometry g = geometryArg(info, 4);
  BnPoolForwardEvalArgs p;
  BnForwardEvalArgs& a = p.bn;
  a.layout = planarLayout(g);
  const int64_t c = g.channels;
  a.x = floats(info, 0, g.in("x").c_str(), g.inLength());
  pooledOutputs(info, g, &p);
  checkAliasing(info.Env(), Aliasing::kNone, p.pooled, g.outLength(), "pooled", a.x, g.inLength(), "x");
  evalArgs(info, 8, c, &a);
  activeKernels().batchNorm.forwardEvalPool(p);
  return info.Env().Undefined();
}

// (x, dy, dx, window, picked, batch, channels, H, W, mean, invstd, gamma, beta,
//  relu, batchStatistics, dgamma, dbeta)
Napi::Value BatchNormMaxPoolBackward(const Napi::CallbackInfo& info) {
  const PoolGeometry g = geometryArg(info, 5);
  BnPoolBackwardArgs p;
  BnBackwardArgs& a = p.bn;
  a.layout = planarLayout(g);
  const int64_t c = g.channels;
  a.x = floats(info, 0, g.in("x").c_str(), g.inLength());
  a.dy = floats(info, 1, g.out("dy").c_str(), g.outLength());
  a.dx = optionalFloats(info, 2, g.in("dx").c_str(), g.inLength());
  p.window = bytes(info, 3, g.out("window").c_str(), g.outLength());
  p.picked = floats(info, 4, g.out("picked").c_str(), g.outLength());
  p.shape = fusedPoolShape(g);
  checkAliasing(info.Env(), Aliasing::kNone, a.dx, g.inLength(), "dx", a.dy, g.outLength(), "dy");
  checkAliasing(info.Env(), Aliasing::kNone, a.dx, g.inLength(), "dx", a.x, g.inLength(), "x");
  backwardArgs(info, 9, c, &a);
  activeKernels().batchNorm.backwardPool(p);
  return info.Env().Undefined();
}

// The fused stem (batchnorm_stem.h): batch, channels, H, W, padH, padW of a
// one-channel input at info[first..first+5]; the convolution's output must
// hold one pooling window.
struct StemInput {
  int64_t batch, H, W;
  StemConv conv;
  PoolGeometry out;  // the convolution's output
  int64_t inLength() const { return batch * H * W; }
  std::string in(const char* name) const {
    return std::string(name) + " [" + str(batch) + ", 1, " + str(H) + ", " + str(W) + "]";
  }
};

StemInput stemInputArg(const Napi::CallbackInfo& info, size_t first) {
  StemInput g;
  g.batch = size(info, first, "batch");
  const int64_t channels = size(info, first + 1, "channels");
  g.H = size(info, first + 2, "H");
  g.W = size(info, first + 3, "W");
  g.conv.inH = g.H;
  g.conv.inW = g.W;
  g.conv.padH = size(info, first + 4, "padH", 0);
  g.conv.padW = size(info, first + 5, "padW", 0);
  if (g.conv.padH > 2 || g.conv.padW > 2) {
    throwRange(info.Env(), "the fused 3x3 convolution takes padding 0..2, got " + str(g.conv.padH) + "x" + str(g.conv.padW));
  }
  g.out = PoolGeometry{g.batch, channels, g.conv.outH(), g.conv.outW()};
  if (g.out.H < 2 || g.out.W < 2) {
    throwRange(info.Env(), "the 3x3 convolution of a " + str(g.H) + "x" + str(g.W) + " input with padding " +
                               str(g.conv.padH) + "x" + str(g.conv.padW) + " gives " + str(g.out.H) + "x" +
                               str(g.out.W) + ", smaller than one 2x2 pooling window");
  }
  product(info.Env(), {g.batch, channels, g.out.H, g.out.W});
  product(info.Env(), {g.batch, g.H, g.W});
  return g;
}

// (input, weight, convBias) at info[0], info[first], info[first + 1].
void stemConvArgs(const Napi::CallbackInfo& info, size_t first, StemInput* g) {
  const int64_t c = g->out.channels;
  g->conv.input = floats(info, 0, g->in("input").c_str(), g->inLength());
  g->conv.weight = floats(info, first, ("weight [" + str(c) + ", 1, 3, 3]").c_str(), c * 9);
  g->conv.bias = optionalFloats(info, first + 1, "convBias", c);
}

// (input, pooled, window, picked, batch, channels, H, W, padH, padW, weight,
//  convBias, gamma, beta, eps, relu, saveMean, saveInvstd, runningMean,
//  runningVar, factor, patchMoments?)
Napi::Value ConvBatchNormMaxPoolForwardTrain(const Napi::CallbackInfo& info) {
  StemInput g = stemInputArg(info, 4);
  StemForwardTrainArgs p;
  BnForwardTrainArgs& a = p.pool.bn;
  a.layout = planarLayout(g.out);
  if (a.layout.perChannel() <= 1) {
    throwRange(info.Env(), "Expected more than 1 value per channel when training, got convolution output of shape " +
                               g.out.in("y").substr(2));
  }
  stemConvArgs(info, 10, &g);
  p.conv = g.conv;
  pooledOutputs(info, g.out, &p.pool);
  const RunningStatsUpdate update = trainingArgs(info, 12, g.out.channels, &a);
  p.patchMoments = optionalDoubles(info, 21, "patchMoments", kStemMomentsLength);
  activeKernels().batchNorm.stemForwardTrain(p);
  update.apply(a);
  return info.Env().Undefined();
}

// (input, pooled, window, picked, batch, channels, H, W, padH, padW, weight,
//  convBias, runningMean, runningVar, gamma, beta, eps, relu)
Napi::Value ConvBatchNormMaxPoolForwardEval(const Napi::CallbackInfo& info) {
  StemInput g = stemInputArg(info, 4);
  StemForwardEvalArgs p;
  p.pool.bn.layout = planarLayout(g.out);
  stemConvArgs(info, 10, &g);
  p.conv = g.conv;
  pooledOutputs(info, g.out, &p.pool);
  evalArgs(info, 12, g.out.channels, &p.pool.bn);
  activeKernels().batchNorm.stemForwardEval(p);
  return info.Env().Undefined();
}

// (input, dy, dInput, window, picked, batch, channels, H, W, padH, padW,
//  weight, convBias, dWeight, dBias, mean, invstd, gamma, beta, relu,
//  batchStatistics, dgamma, dbeta, patchMoments?)
Napi::Value ConvBatchNormMaxPoolBackward(const Napi::CallbackInfo& info) {
  StemInput g = stemInputArg(info, 5);
  StemBackwardArgs p;
  BnBackwardArgs& a = p.pool.bn;
  a.layout = planarLayout(g.out);
  const int64_t c = g.out.channels;
  stemConvArgs(info, 11, &g);
  p.conv = g.conv;
  a.dy = floats(info, 1, g.out.out("dy").c_str(), g.out.outLength());
  p.dInput = optionalFloats(info, 2, g.in("dInput").c_str(), g.inLength());
  p.pool.window = bytes(info, 3, g.out.out("window").c_str(), g.out.outLength());
  p.pool.picked = floats(info, 4, g.out.out("picked").c_str(), g.out.outLength());
  p.pool.shape = fusedPoolShape(g.out);
  p.dWeight = optionalFloats(info, 13, ("dWeight [" + str(c) + ", 1, 3, 3]").c_str(), c * 9);
  p.dBias = optionalFloats(info, 14, "dBias", c);
  backwardArgs(info, 15, c, &a);
  p.patchMoments = optionalDoubles(info, 23, "patchMoments", kStemMomentsLength);
  activeKernels().batchNorm.stemBackward(p);
  return info.Env().Undefined();
}

}  // namespace

void registerPool(Napi::Env env, Napi::Object exports) {
  const auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    exportFunction(env, exports, name, fn);
  };
  add("maxPool2x2Forward", MaxPool2x2Forward);
  add("maxPool2x2Backward", MaxPool2x2Backward);
  add("batchNormMaxPoolForwardTrain", BatchNormMaxPoolForwardTrain);
  add("batchNormMaxPoolForwardEval", BatchNormMaxPoolForwardEval);
  add("batchNormMaxPoolBackward", BatchNormMaxPoolBackward);
  add("convBatchNormMaxPoolForwardTrain", ConvBatchNormMaxPoolForwardTrain);
  add("convBatchNormMaxPoolForwardEval", ConvBatchNormMaxPoolForwardEval);
  add("convBatchNormMaxPoolBackward", ConvBatchNormMaxPoolBackward);
}

}  // namespace bnkit::glue
