// 2-D convolution (NCHW, dilation 1, zero padding, PyTorch output size) on top
// of the packed GEMM. Kernels trust their arguments: the glue validates.
#pragma once
#include <cstdint>

namespace bnkit {

struct ConvShape {
  int64_t batch = 0, inC = 0, H = 0, W = 0;
  int64_t outC = 0, kh = 0, kw = 0;
  int64_t strideH = 1, strideW = 1, padH = 0, padW = 0;

  int64_t outH() const { return (H + 2 * padH - kh) / strideH + 1; }
  int64_t outW() const { return (W + 2 * padW - kw) / strideW + 1; }
  // Depth of the GEMM: one row of the column matrix per (ic, ky, kx).
  int64_t patch() const { return inC * kh * kw; }
};

struct ConvForwardArgs {
  ConvShape s;
  const float* x = nullptr;       // [batch, inC, H, W]
  const float* weight = nullptr;  // [outC, inC, kh, kw]
  const float* bias = nullptr;    // [outC] or nullptr
  float* y = nullptr;             // [batch, outC, outH, outW], overwritten
};

struct ConvBackwardArgs {
  ConvShape s;
  const float* x = nullptr;
  const float* weight = nullptr;
  const float* dy = nullptr;  // [batch, outC, outH, outW]
  float* dx = nullptr;        // overwritten; nullptr skips the data gradient
  float* dweight = nullptr;   // accumulated (+=); nullptr skips it
  float* dbias = nullptr;     // accumulated (+=); nullptr skips it
};

struct ConvKernels {
  void (*forward)(const ConvForwardArgs& args);
  void (*backward)(const ConvBackwardArgs& args);
};

extern const ConvKernels kConvScalar;
extern const ConvKernels kConvAvx2;
extern const ConvKernels kConvAvx512;
extern const ConvKernels kConvNeon;

}  // namespace bnkit
