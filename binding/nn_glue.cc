// Node-API entry points for the training kernels: GEMM, linear, conv2d, max
// pooling, activations, softmax cross-entropy and optimizer steps. Arguments
// are positional (lib/ names them); every size, length, label and
// hyper-parameter is checked here so the kernels can trust them.
#include <string>

#include "dispatch.h"
#include "glue.h"

namespace bnkit::glue {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

int32_t* int32s(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t length) {
  return typedArray<int32_t>(info, i, name, length);
}

// Uint8Array or Int32Array of `batch` labels, each in [0, classes).
Labels labelsArg(const Napi::CallbackInfo& info, size_t i, int64_t batch, int64_t classes) {
  const Napi::Value v = info[i];
  Labels labels;
  TypedArrayView view;
  if (!typedArrayView(info.Env(), v, &view) || (view.type != napi_uint8_array && view.type != napi_int32_array)) {
    throwType(info.Env(), "labels must be a Uint8Array or Int32Array, got " + describe(v));
  }
  // The length is checked before any label is read: a detached array has 0.
  const int64_t length = static_cast<int64_t>(view.elements);
  if (view.type == napi_uint8_array) labels.u8 = static_cast<const uint8_t*>(view.data);
  if (view.type == napi_int32_array) labels.i32 = static_cast<const int32_t*>(view.data);
  if (length != batch) {
    throwRange(info.Env(), "labels has " + str(length) + " elements, expected batch = " + str(batch));
  }
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t label = labels.at(b);
    if (label < 0 || label >= classes) {
      throwRange(info.Env(), "labels[" + str(b) + "] = " + str(label) + " is outside [0, " + str(classes) + ")");
    }
  }
  return labels;
}

float nonNegative(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const double d = number(info, i, name);
  if (d < 0) throwRange(info.Env(), std::string(name) + " must be >= 0, got " + info[i].ToString().Utf8Value());
  return static_cast<float>(d);
}

float unitInterval(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const double d = number(info, i, name);
  if (!(d >= 0 && d < 1)) throwRange(info.Env(), std::string(name) + " must be in [0, 1), got " + info[i].ToString().Utf8Value());
  return static_cast<float>(d);
}

int64_t lengthOf(const Napi::CallbackInfo& info, size_t i, const char* name) {
  floats(info, i, name, -1);
  TypedArrayView view;
  typedArrayView(info.Env(), info[i], &view);
  return static_cast<int64_t>(view.elements);
}

// (transA, transB, M, N, K, alpha, A, B, beta, C)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  GemmArgs g;
  g.transA = flag(info, 0, "transA");
  g.transB = flag(info, 1, "transB");
  g.M = size(info, 2, "M");
  g.N = size(info, 3, "N");
  g.K = size(info, 4, "K");
  const Napi::Env env = info.Env();
  g.alpha = static_cast<float>(number(info, 5, "alpha"));
  g.A = floats(info, 6, "A", product(env, {g.M, g.K}));
  g.B = floats(info, 7, "B", product(env, {g.K, g.N}));
  g.beta = static_cast<float>(number(info, 8, "beta"));
  g.C = floats(info, 9, "C", product(env, {g.M, g.N}));
  checkAliasing(env, Aliasing::kNone, g.C, g.M * g.N, "C", g.A, g.M * g.K, "A");
  checkAliasing(env, Aliasing::kNone, g.C, g.M * g.N, "C", g.B, g.K * g.N, "B");
  g.lda = g.transA ? g.M : g.K;
  g.ldb = g.transB ? g.K : g.N;
  g.ldc = g.N;
  activeKernels().gemm.sgemm(g);
  return env.Undefined();
}

// (x, batch, inFeatures, weight, bias, outFeatures, y)
Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const int64_t batch = size(info, 1, "batch"), in = size(info, 2, "inFeatures"), out = size(info, 5, "outFeatures");
  GemmArgs g;
  g.M = batch;
  g.N = out;
  g.K = in;
  g.A = floats(info, 0, "x", product(env, {batch, in}));
  g.lda = in;
  g.B = floats(info, 3, "weight", product(env, {out, in}));
  g.transB = true;
  g.ldb = in;
  g.colBias = optionalFloats(info, 4, "bias", out);
  g.C = floats(info, 6, "y", product(env, {batch, out}));
  checkAliasing(env, Aliasing::kNone, g.C, batch * out, "y", g.A, batch * in, "x");
  g.ldc = out;
  activeKernels().gemm.sgemm(g);
  return env.Undefined();
}

// (x, batch, inFeatures, weight, outFeatures, dy, dx, dweight, dbias)
Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const int64_t batch = size(info, 1, "batch"), in = size(info, 2, "inFeatures"), out = size(info, 4, "outFeatures");
  const float* x = floats(info, 0, "x", product(env, {batch, in}));
  const float* weight = floats(info, 3, "weight", product(env, {out, in}));
  const float* dy = floats(info, 5, "dy", product(env, {batch, out}));
  float* dx = optionalFloats(info, 6, "dx", product(env, {batch, in}));
  float* dweight = floats(info, 7, "dweight", product(env, {out, in}));
  float* dbias = optionalFloats(info, 8, "dbias", out);
  checkAliasing(env, Aliasing::kNone, dx, batch * in, "dx", dy, batch * out, "dy");
  checkAliasing(env, Aliasing::kNone, dx, batch * in, "dx", x, batch * in, "x");
  const KernelTable& k = activeKernels();
  // Both products in one batch: one parallel pass instead of two.
  GemmArgs g[2];
  int count = 0;
  {  // dW[out, in] += dy^T[out, batch] * x[batch, in]
    GemmArgs& w = g[count++];
    w.M = out; w.N = in; w.K = batch;
    w.transA = true;
    w.A = dy; w.lda = out;
    w.B = x; w.ldb = in;
    w.beta = 1.0f;
    w.C = dweight; w.ldc = in;
  }
  if (dx != nullptr) {  // dx[batch, in] = dy[batch, out] * W[out, in]
    GemmArgs& d = g[count++];
    d.M = batch; d.N = in; d.K = out;
    d.A = dy; d.lda = out;
    d.B = weight; d.ldb = in;
    d.C = dx; d.ldc = in;
  }
  k.gemm.sgemmBatch(g, count);
  if (dbias != nullptr) k.elementwise.addColumnSums(dy, batch, out, dbias);
  return env.Undefined();
}

// Reads (batch, inC, H, W) at `first` and (outC, kh, kw, strideH, strideW, padH, padW) at `second`.
ConvShape convShapeArg(const Napi::CallbackInfo& info, size_t first, size_t second) {
  ConvShape s;
  s.batch = size(info, first, "batch");
  s.inC = size(info, first + 1, "inC");
  s.H = size(info, first + 2, "H");
  s.W = size(info, first + 3, "W");
  s.outC = size(info, second, "outC");
  s.kh = size(info, second + 1, "kh");
  s.kw = size(info, second + 2, "kw");
  s.strideH = size(info, second + 3, "strideH");
  s.strideW = size(info, second + 4, "strideW");
  s.padH = size(info, second + 5, "padH", 0);
  s.padW = size(info, second + 6, "padW", 0);
  const Napi::Env env = info.Env();
  product(env, {s.batch, s.inC, s.H, s.W});
  product(env, {s.outC, s.inC, s.kh, s.kw});
  if (s.H + 2 * s.padH < s.kh || s.W + 2 * s.padW < s.kw) {
    throwRange(env, "conv2d output size would be < 1: input " + str(s.H) + "x" + str(s.W) + " with padding " +
                        str(s.padH) + "x" + str(s.padW) + " is smaller than the kernel " + str(s.kh) + "x" + str(s.kw));
  }
  product(env, {s.batch, s.outC, s.outH(), s.outW()});
  product(env, {s.inC * s.kh * s.kw, s.outH(), s.outW()});
  return s;
}

std::string convShapeText(const ConvShape& s, const char* which) {
  return std::string(which) + " [" + str(s.batch) + ", " + str(which[0] == 'x' ? s.inC : s.outC) + ", " +
         str(which[0] == 'x' ? s.H : s.outH()) + ", " + str(which[0] == 'x' ? s.W : s.outW()) + "]";
}

// (x, batch, inC, H, W, weight, bias, outC, kh, kw, strideH, strideW, padH, padW, y)
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  ConvForwardArgs a;
  a.s = convShapeArg(info, 1, 7);
  const ConvShape& s = a.s;
  const int64_t xLength = s.batch * s.inC * s.H * s.W, yLength = s.batch * s.outC * s.outH() * s.outW();
  a.x = floats(info, 0, convShapeText(s, "x").c_str(), xLength);
  a.weight = floats(info, 5, "weight [outC, inC, kh, kw]", s.outC * s.patch());
  a.bias = optionalFloats(info, 6, "bias [outC]", s.outC);
  a.y = floats(info, 14, convShapeText(s, "y").c_str(), yLength);
  checkAliasing(env, Aliasing::kNone, a.y, yLength, "y", a.x, xLength, "x");
  activeKernels().conv.forward(a);
  return env.Undefined();
}

// (x, batch, inC, H, W, weight, outC, kh, kw, strideH, strideW, padH, padW, dy, dx, dweight, dbias)
Napi::Value Conv2dBackward(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  ConvBackwardArgs a;
  a.s = convShapeArg(info, 1, 6);
  const ConvShape& s = a.s;
  const int64_t xLength = s.batch * s.inC * s.H * s.W, yLength = s.batch * s.outC * s.outH() * s.outW();
  a.x = floats(info, 0, convShapeText(s, "x").c_str(), xLength);
  a.weight = floats(info, 5, "weight [outC, inC, kh, kw]", s.outC * s.patch());
  a.dy = floats(info, 13, convShapeText(s, "dy").c_str(), yLength);
  a.dx = optionalFloats(info, 14, convShapeText(s, "dx").c_str(), xLength);
  a.dweight = floats(info, 15, "dweight [outC, inC, kh, kw]", s.outC * s.patch());
  a.dbias = optionalFloats(info, 16, "dbias [outC]", s.outC);
  checkAliasing(env, Aliasing::kNone, a.dx, xLength, "dx", a.dy, yLength, "dy");
  checkAliasing(env, Aliasing::kNone, a.dx, xLength, "dx", a.x, xLength, "x");
  activeKernels().conv.backward(a);
  return env.Undefined();
}

// (x, batch, channels, H, W, kernel, stride, y, argmax)
Napi::Value MaxPool2dForward(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const int64_t batch = size(info, 1, "batch"), channels = size(info, 2, "channels");
  MaxPoolShape s;
  s.H = size(info, 3, "H");
  s.W = size(info, 4, "W");
  s.kernel = size(info, 5, "kernel");
  s.stride = size(info, 6, "stride");
  s.planes = product(env, {batch, channels});
  if (s.kernel > s.H || s.kernel > s.W) {
    throwRange(env, "maxPool2d kernel " + str(s.kernel) + " is larger than the input " + str(s.H) + "x" + str(s.W));
  }
  const int64_t inLength = product(env, {s.planes, s.H, s.W}), outLength = s.planes * s.outH() * s.outW();
  if (inLength > INT32_MAX) throwRange(env, "maxPool2d input has " + str(inLength) + " elements; argmax (Int32Array) limits it to 2^31 - 1");
  const std::string shape = "[" + str(batch) + ", " + str(channels) + ", ";
  const float* x = floats(info, 0, ("x " + shape + str(s.H) + ", " + str(s.W) + "]").c_str(), inLength);
  float* y = floats(info, 7, ("y " + shape + str(s.outH()) + ", " + str(s.outW()) + "]").c_str(), outLength);
  int32_t* argmax = int32s(info, 8, "argmax", outLength);
  activeKernels().elementwise.maxPool2dForward(s, x, y, argmax);
  return env.Undefined();
}

// (dy, argmax, dx)
Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const int64_t n = lengthOf(info, 0, "dy");
  const float* dy = floats(info, 0, "dy", n);
  const int32_t* argmax = int32s(info, 1, "argmax", n);
  const int64_t dxLength = lengthOf(info, 2, "dx");
  float* dx = floats(info, 2, "dx", dxLength);
  for (int64_t i = 0; i < n; ++i) {
    if (argmax[i] < 0 || argmax[i] >= dxLength) {
      throwRange(env, "argmax[" + str(i) + "] = " + str(argmax[i]) + " is outside dx (length " + str(dxLength) + ")");
    }
  }
  activeKernels().elementwise.maxPool2dBackward(dy, argmax, n, dx, dxLength);
  return env.Undefined();
}

using UnaryFn = void (*)(const float*, float*, int64_t);
using BinaryFn = void (*)(const float*, const float*, float*, int64_t);

// (x, y)
template <UnaryFn ElementwiseKernels::*Kernel>
Napi::Value Unary(const Napi::CallbackInfo& info) {
  const int64_t n = lengthOf(info, 0, "x");
  const float* x = floats(info, 0, "x", n);
  float* y = floats(info, 1, "y", n);
  (activeKernels().elementwise.*Kernel)(x, y, n);
  return info.Env().Undefined();
}

// (y, dy, dx)
template <BinaryFn ElementwiseKernels::*Kernel>
Napi::Value Backward(const Napi::CallbackInfo& info) {
  const int64_t n = lengthOf(info, 0, "y");
  const float* y = floats(info, 0, "y", n);
  const float* dy = floats(info, 1, "dy", n);
  float* dx = floats(info, 2, "dx", n);
  (activeKernels().elementwise.*Kernel)(y, dy, dx, n);
  return info.Env().Undefined();
}

// (logits, batch, classes, labels, probs) -> mean loss
Napi::Value SoftmaxCrossEntropyForward(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const int64_t batch = size(info, 1, "batch"), classes = size(info, 2, "classes");
  const int64_t n = product(env, {batch, classes});
  const float* logits = floats(info, 0, "logits [batch, classes]", n);
  const Labels labels = labelsArg(info, 3, batch, classes);
  float* probs = floats(info, 4, "probs [batch, classes]", n);
  return Napi::Number::New(env, activeKernels().elementwise.softmaxCrossEntropyForward(logits, batch, classes, labels, probs));
}

// (probs, batch, classes, labels, dlogits)
Napi::Value SoftmaxCrossEntropyBackward(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const int64_t batch = size(info, 1, "batch"), classes = size(info, 2, "classes");
  const int64_t n = product(env, {batch, classes});
  const float* probs = floats(info, 0, "probs [batch, classes]", n);
  const Labels labels = labelsArg(info, 3, batch, classes);
  float* dlogits = floats(info, 4, "dlogits [batch, classes]", n);
  activeKernels().elementwise.softmaxCrossEntropyBackward(probs, batch, classes, labels, dlogits);
  return env.Undefined();
}

// (param, grad, velocity, lr, momentum, dampening, weightDecay, nesterov[, firstStep])
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  SgdArgs a;
  a.length = lengthOf(info, 0, "param");
  a.param = floats(info, 0, "param", a.length);
  a.grad = floats(info, 1, "grad", a.length);
  a.velocity = optionalFloats(info, 2, "velocity", a.length);
  a.lr = nonNegative(info, 3, "lr");
  a.momentum = nonNegative(info, 4, "momentum");
  a.dampening = static_cast<float>(number(info, 5, "dampening"));
  a.weightDecay = nonNegative(info, 6, "weightDecay");
  a.nesterov = flag(info, 7, "nesterov");
  a.firstStep = info.Length() > 8 && !info[8].IsUndefined() ? flag(info, 8, "firstStep") : false;
  if (a.momentum != 0 && a.velocity == nullptr) {
    throwType(env, "velocity must be a Float32Array when momentum != 0, got " + describe(info[2]));
  }
  if (a.nesterov && (a.momentum <= 0 || a.dampening != 0)) {
    throwRange(env, "nesterov momentum requires momentum > 0 and dampening = 0");
  }
  activeKernels().elementwise.sgdStep(a);
  return env.Undefined();
}

// (param, grad, m, v, step, lr, beta1, beta2, eps, weightDecay)
Napi::Value AdamStep(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  AdamArgs a;
  a.length = lengthOf(info, 0, "param");
  a.param = floats(info, 0, "param", a.length);
  a.grad = floats(info, 1, "grad", a.length);
  a.m = floats(info, 2, "m", a.length);
  a.v = floats(info, 3, "v", a.length);
  const int64_t step = size(info, 4, "step");
  a.lr = nonNegative(info, 5, "lr");
  a.beta1 = unitInterval(info, 6, "beta1");
  a.beta2 = unitInterval(info, 7, "beta2");
  a.eps = nonNegative(info, 8, "eps");
  a.weightDecay = nonNegative(info, 9, "weightDecay");
  a.biasCorrection1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(step)));
  a.biasCorrection2 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(step)));
  if (!(a.biasCorrection1 > 0 && a.biasCorrection2 > 0)) {
    throwRange(env, "Adam bias correction 1 - beta^step underflows to 0 in float; use betas further from 1");
  }
  activeKernels().elementwise.adamStep(a);
  return env.Undefined();
}

}  // namespace

void registerNn(Napi::Env env, Napi::Object exports) {
  const auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    exportFunction(env, exports, name, fn);
  };
  add("gemm", Gemm);
  add("linearForward", LinearForward);
  add("linearBackward", LinearBackward);
  add("conv2dForward", Conv2dForward);
  add("conv2dBackward", Conv2dBackward);
  add("maxPool2dForward", MaxPool2dForward);
  add("maxPool2dBackward", MaxPool2dBackward);
  add("reluForward", Unary<&ElementwiseKernels::reluForward>);
  add("reluBackward", Backward<&ElementwiseKernels::reluBackward>);
  add("sigmoidForward", Unary<&ElementwiseKernels::sigmoidForward>);
  add("sigmoidBackward", Backward<&ElementwiseKernels::sigmoidBackward>);
  add("softmaxCrossEntropyForward", SoftmaxCrossEntropyForward);
  add("softmaxCrossEntropyBackward", SoftmaxCrossEntropyBackward);
  add("sgdStep", SgdStep);
  add("adamStep", AdamStep);
}

}  // namespace bnkit::glue
