// Activations, pooling, softmax cross-entropy and optimizer steps, written once
// over a vector wrapper V (elementwise_<isa>.cc instantiates them). The
// optimizer and sigmoid loops are plain scalar code on purpose: each ISA unit
// auto-vectorizes them with its own flags, and with contraction disabled every
// path rounds exactly like the scalar reference.
#pragma once
#include <cmath>
#include <cstdint>
#include <climits>
#include <cstring>

#include "../gemm/gemm_body.h"
#include "../simd/vector_loop.h"
#include "../threadpool.h"
#include "elementwise.h"
#include "maxpool2x2.h"

namespace bnkit {
namespace {

// Elementwise passes are memory-bound; smaller slices are not worth a wake-up.
constexpr int64_t kElementwiseGrain = 1 << 15;

template <class V>
void reluForward(const float* x, float* y, int64_t n) {
  parallelForEach(0, n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    // max(0, x) with x second keeps NaN (x86 max returns its second operand on NaN).
    simd::vectorLoop<V>(hi - lo, [&](auto full, int, int64_t i, int64_t valid) {
      simd::storeN<V>(full, y + lo + i, V::max(V::zero(), simd::loadN<V>(full, x + lo + i, valid, 0.0f)), valid);
    });
  });
}

template <class V>
void reluBackward(const float* y, const float* dy, float* dx, int64_t n) {
  parallelForEach(0, n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    simd::vectorLoop<V>(hi - lo, [&](auto full, int, int64_t i, int64_t valid) {
      const auto mask = simd::loadN<V>(full, y + lo + i, valid, 0.0f);
      simd::storeN<V>(full, dx + lo + i, V::selectPositive(mask, simd::loadN<V>(full, dy + lo + i, valid, 0.0f)), valid);
    });
  });
}

template <class V>
void sigmoidForward(const float* x, float* y, int64_t n) {
  parallelForEach(0, n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    // exp(-x) overflows to inf for x < -88, giving exactly 0: no NaN.
    for (int64_t i = lo; i < hi; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
  });
}

template <class V>
void sigmoidBackward(const float* y, const float* dy, float* dx, int64_t n) {
  parallelForEach(0, n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    const auto one = V::set1(1.0f);
    simd::vectorLoop<V>(hi - lo, [&](auto full, int, int64_t i, int64_t valid) {
      const auto yv = simd::loadN<V>(full, y + lo + i, valid, 0.0f);
      const auto g = simd::loadN<V>(full, dy + lo + i, valid, 0.0f);
      simd::storeN<V>(full, dx + lo + i, V::mul(g, V::mul(yv, V::sub(one, yv))), valid);
    });
  });
}

// A NaN wins (as in PyTorch), otherwise the first maximum.
// Bitwise (not short-circuit) so the select loops vectorize.
inline bool poolTakes(float candidate, float best) {
  return (candidate > best) | ((candidate != candidate) & (best == best));
}

// Exact scalar pooling of one window (any kernel/stride): row-major order,
// the first maximum wins, a NaN wins over numbers.
inline void maxPoolWindow(const float* in, int64_t W, int64_t kernel, int64_t y0, int64_t x0, float* value,
                          int64_t* at) {
  int64_t best = y0 * W + x0;
  float bestValue = in[best];
  for (int64_t ky = 0; ky < kernel; ++ky)
    for (int64_t kx = 0; kx < kernel; ++kx) {
      const int64_t i = (y0 + ky) * W + x0 + kx;
      if (poolTakes(in[i], bestValue)) {
        bestValue = in[i];
        best = i;
      }
    }
  *value = bestValue;
  *at = best;
}

// The MNIST case, kernel 2 stride 2, vectorized along the input row: lane i
// holds the pair (x+i, x+i+1), valid for even x+i. "b > a" comes from
// selectPositive(b - a) (strict, so ties keep the first element), the winning
// offset is built as an exact small float, and values are re-read at it. A
// NaN or infinity anywhere in the two rows (x - x is then NaN) sends the row
// to the exact scalar path, which also gives NaN priority.
template <class V>
void maxPool2x2Plane(const float* in, int64_t W, int64_t oH, int64_t oW, int32_t base, float* y, int32_t* argmax) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  if constexpr (L < 2) {  // the scalar reference: one exact window at a time
    for (int64_t oy = 0; oy < oH; ++oy)
      for (int64_t ox = 0; ox < oW; ++ox) {
        float value;
        int64_t at;
        maxPoolWindow(in, W, 2, 2 * oy, 2 * ox, &value, &at);
        y[oy * oW + ox] = value;
        argmax[oy * oW + ox] = base + static_cast<int32_t>(at);
      }
    return;
  }
  float laneIndex[L], offsets[L];
  for (int i = 0; i < L; ++i) laneIndex[i] = static_cast<float>(i);
  const Reg lanes = V::load(laneIndex), one = V::set1(1.0f), below = V::set1(static_cast<float>(W));
  const int64_t span = 2 * oW;
  for (int64_t oy = 0; oy < oH; ++oy) {
    const float* r0 = in + 2 * oy * W;
    const float* r1 = r0 + W;
    float* yRow = y + oy * oW;
    int32_t* aRow = argmax + oy * oW;
    Reg probe = V::zero();
    for (int64_t x = 0; x < span; x += L) {
      const int64_t valid = minI(L, span - x), shifted = minI(valid, W - x - 1);
      const Reg a = V::loadPartial(r0 + x, valid, 0.0f), b = V::loadPartial(r0 + x + 1, shifted, 0.0f);
      const Reg c = V::loadPartial(r1 + x, valid, 0.0f), d = V::loadPartial(r1 + x + 1, shifted, 0.0f);
      probe = V::add(probe, V::add(V::add(V::sub(a, a), V::sub(b, b)), V::add(V::sub(c, c), V::sub(d, d))));
      const Reg right0 = V::selectPositive(V::sub(b, a), one), right1 = V::selectPositive(V::sub(d, c), one);
      const Reg down = V::selectPositive(V::sub(V::max(c, d), V::max(a, b)), one);
      // offset = lane + right0 + down * (W + right1 - right0)
      const Reg offset = V::add(V::add(lanes, right0), V::mul(down, V::sub(V::add(below, right1), right0)));
      V::store(offsets, offset);
      for (int64_t i = 0; i < valid; i += 2) {
        const int32_t at = static_cast<int32_t>(x) + static_cast<int32_t>(offsets[i]);
        yRow[(x + i) / 2] = r0[at];
        aRow[(x + i) / 2] = base + static_cast<int32_t>(2 * oy * W) + at;
      }
    }
    if (V::reduceAdd(probe) != 0.0f) {
      for (int64_t ox = 0; ox < oW; ++ox) {
        float value;
        int64_t at;
        maxPoolWindow(in, W, 2, 2 * oy, 2 * ox, &value, &at);
        yRow[ox] = value;
        aRow[ox] = base + static_cast<int32_t>(at);
      }
    }
  }
}

template <class V>
void maxPool2dForward(const MaxPoolShape& s, const float* x, float* y, int32_t* argmax) {
  const int64_t oH = s.outH(), oW = s.outW(), inPlane = s.H * s.W, outPlane = oH * oW;
  parallelForEach(0, s.planes, 1 + kElementwiseGrain / (inPlane + 1), [&](int64_t lo, int64_t hi) {
    if (s.kernel == 2 && s.stride == 2) {
      for (int64_t plane = lo; plane < hi; ++plane) {
        maxPool2x2Plane<V>(x + plane * inPlane, s.W, oH, oW, static_cast<int32_t>(plane * inPlane),
                        y + plane * outPlane, argmax + plane * outPlane);
      }
      return;
    }
    for (int64_t plane = lo; plane < hi; ++plane) {
      const float* in = x + plane * inPlane;
      for (int64_t oy = 0; oy < oH; ++oy)
        for (int64_t ox = 0; ox < oW; ++ox) {
          float value;
          int64_t at;
          maxPoolWindow(in, s.W, s.kernel, oy * s.stride, ox * s.stride, &value, &at);
          const int64_t o = plane * outPlane + oy * oW + ox;
          y[o] = value;
          argmax[o] = static_cast<int32_t>(plane * inPlane + at);
        }
    }
  });
}

// Fixed-size pieces of dy for the backward scatter (never thread-dependent).
constexpr int64_t kScatterPiece = 1 << 14;

template <class V>
void maxPool2dBackward(const float* dy, const int32_t* argmax, int64_t n, float* dx, int64_t dxLength) {
  parallelForEach(0, dxLength, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    simd::vectorLoop<V>(hi - lo, [&](auto full, int, int64_t i, int64_t valid) {
      simd::storeN<V>(full, dx + lo + i, V::zero(), valid);
    });
  });
  // Pieces of dy may scatter in parallel when the dx ranges they touch are
  // disjoint and increasing, as they are for argmax from maxPool2dForward
  // (planes in order). Otherwise (overlap is possible with hand-made argmax)
  // the scatter is sequential. Either way each dx element sums its
  // contributions in dy order, so the result never depends on the threads.
  const int64_t pieces = ceilDiv(n, kScatterPiece);
  bool ordered = true;
  int32_t previousMax = -1;
  for (int64_t p = 0; p < pieces && ordered; ++p) {
    int32_t lo = INT32_MAX, hi = -1;
    for (int64_t i = p * kScatterPiece; i < minI(n, (p + 1) * kScatterPiece); ++i) {
      lo = argmax[i] < lo ? argmax[i] : lo;
      hi = argmax[i] > hi ? argmax[i] : hi;
    }
    ordered = lo > previousMax;
    previousMax = hi;
  }
  if (!ordered) {
    for (int64_t i = 0; i < n; ++i) dx[argmax[i]] += dy[i];
    return;
  }
  parallelForEach(0, pieces, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo * kScatterPiece; i < minI(n, hi * kScatterPiece); ++i) dx[argmax[i]] += dy[i];
  });
}

// Planes are independent and each output is written by exactly one of them,
// so any split over threads gives the same bits.
template <class V>
void maxPool2x2Forward(const MaxPoolShape& s, const float* x, float* y, uint8_t* window) {
  const int64_t oH = s.H / 2, oW = s.W / 2, inPlane = s.H * s.W, outPlane = oH * oW;
  parallelForEach(0, s.planes, 1 + kElementwiseGrain / (inPlane + 1), [&](int64_t lo, int64_t hi) {
    float top[2 * kPoolBlock], bottom[2 * kPoolBlock];
    forEachPoolPiece(hi - lo, oH, oW, [&](const PoolPiece& p) {
      gatherPoolRows<V>(x + lo * inPlane, inPlane, s.W, p, top, bottom);
      const int64_t o = (lo + p.plane) * outPlane + p.oy * oW + p.ox;
      poolWindows<V, false>(top, bottom, p.outputs(), [](typename V::Reg v) { return v; }, y + o, window + o, nullptr);
    });
  });
}

// dx is written once, densely: no zero fill followed by a scatter.
template <class V>
void maxPool2x2Backward(const MaxPoolShape& s, const float* dy, const uint8_t* window, float* dx) {
  const int64_t oH = s.H / 2, oW = s.W / 2, inPlane = s.H * s.W, outPlane = oH * oW;
  parallelForEach(0, s.planes, 1 + kElementwiseGrain / (inPlane + 1), [&](int64_t lo, int64_t hi) {
    float top[2 * kPoolBlock], bottom[2 * kPoolBlock];
    forEachPoolPiece(hi - lo, oH, oW, [&](const PoolPiece& p) {
      const int64_t o = (lo + p.plane) * outPlane + p.oy * oW + p.ox;
      unpoolWindows<V>(dy + o, window + o, p.outputs(), top, bottom);
      scatterPoolRows<V>(top, bottom, inPlane, s.W, p, dx + lo * inPlane);
    });
    for (int64_t plane = lo; plane < hi; ++plane) {
      forEachUncovered(s.H, s.W, [&](int64_t at, int64_t n) { std::memset(dx + plane * inPlane + at, 0, sizeof(float) * n); });
    }
  });
}

template <class V>
double softmaxCrossEntropyForward(const float* logits, int64_t batch, int64_t classes, Labels labels, float* probs) {
  double total = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const float* row = logits + b * classes;
    float* p = probs + b * classes;
    float mx = row[0];
    for (int64_t c = 1; c < classes; ++c) mx = row[c] > mx ? row[c] : mx;
    double sum = 0;
    for (int64_t c = 0; c < classes; ++c) {
      const float e = std::exp(row[c] - mx);
      p[c] = e;
      sum += e;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t c = 0; c < classes; ++c) p[c] *= inv;
    // -log softmax[label] = log(sum exp(x - max)) - (x[label] - max)
    total += std::log(sum) - (static_cast<double>(row[labels.at(b)]) - mx);
  }
  return total / static_cast<double>(batch);
}

template <class V>
void softmaxCrossEntropyBackward(const float* probs, int64_t batch, int64_t classes, Labels labels, float* dlogits) {
  const float scale = static_cast<float>(1.0 / static_cast<double>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const float* p = probs + b * classes;
    float* d = dlogits + b * classes;
    const int64_t label = labels.at(b);
    for (int64_t c = 0; c < classes; ++c) d[c] = (p[c] - (c == label ? 1.0f : 0.0f)) * scale;
  }
}

template <class V>
void addColumnSums(const float* x, int64_t rows, int64_t cols, float* sums) {
  // Columns are independent, so splitting them keeps each sum's order fixed.
  parallelForEach(0, cols, 1 + kElementwiseGrain / (rows + 1), [&](int64_t lo, int64_t hi) {
    simd::vectorLoop<V>(hi - lo, [&](auto full, int, int64_t i, int64_t valid) {
      auto acc = V::zero();
      for (int64_t r = 0; r < rows; ++r) acc = V::add(acc, simd::loadN<V>(full, x + r * cols + lo + i, valid, 0.0f));
      simd::storeN<V>(full, sums + lo + i, V::add(simd::loadN<V>(full, sums + lo + i, valid, 0.0f), acc), valid);
    });
  });
}

// PyTorch's torch.optim.SGD, per element.
template <class V>
void sgdStep(const SgdArgs& a) {
  parallelForEach(0, a.length, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    float* __restrict param = a.param;
    const float* __restrict grad = a.grad;
    float* __restrict velocity = a.velocity;
    const float lr = a.lr, wd = a.weightDecay, mom = a.momentum, keep = 1.0f - a.dampening;
    if (velocity == nullptr || mom == 0.0f) {
      for (int64_t i = lo; i < hi; ++i) param[i] -= lr * (grad[i] + wd * param[i]);
    } else if (a.firstStep) {
      for (int64_t i = lo; i < hi; ++i) {
        const float d = grad[i] + wd * param[i];
        velocity[i] = d;
        param[i] -= lr * (a.nesterov ? d + mom * d : d);
      }
    } else {
      for (int64_t i = lo; i < hi; ++i) {
        const float d = grad[i] + wd * param[i];
        const float buf = mom * velocity[i] + keep * d;
        velocity[i] = buf;
        param[i] -= lr * (a.nesterov ? d + mom * buf : buf);
      }
    }
  });
}

// PyTorch's torch.optim.Adam (L2 weight decay added to the gradient, no amsgrad).
template <class V>
void adamStep(const AdamArgs& a) {
  const float stepSize = static_cast<float>(static_cast<double>(a.lr) / a.biasCorrection1);
  const float bc2Sqrt = static_cast<float>(std::sqrt(static_cast<double>(a.biasCorrection2)));
  parallelForEach(0, a.length, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    float* __restrict param = a.param;
    const float* __restrict grad = a.grad;
    float* __restrict m = a.m;
    float* __restrict v = a.v;
    const float b1 = a.beta1, b2 = a.beta2, wd = a.weightDecay, eps = a.eps;
    for (int64_t i = lo; i < hi; ++i) {
      const float g = grad[i] + wd * param[i];
      const float mi = m[i] * b1 + (1.0f - b1) * g;
      const float vi = v[i] * b2 + (1.0f - b2) * (g * g);
      m[i] = mi;
      v[i] = vi;
      param[i] -= stepSize * (mi / (std::sqrt(vi) / bc2Sqrt + eps));
    }
  });
}

template <class V>
constexpr ElementwiseKernels elementwiseKernels() {
  return ElementwiseKernels{&reluForward<V>,
                            &reluBackward<V>,
                            &sigmoidForward<V>,
                            &sigmoidBackward<V>,
                            &maxPool2dForward<V>,
                            &maxPool2dBackward<V>,
                            &maxPool2x2Forward<V>,
                            &maxPool2x2Backward<V>,
                            &softmaxCrossEntropyForward<V>,
                            &softmaxCrossEntropyBackward<V>,
                            &addColumnSums<V>,
                            &sgdStep<V>,
                            &adamStep<V>};
}

}  // namespace
}  // namespace bnkit
