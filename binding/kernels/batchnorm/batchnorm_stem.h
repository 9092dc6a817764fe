// The stem of the MNIST CNNs fused into one kernel: a stride-1 3x3
// convolution of a one-channel image, BatchNorm2d (+ ReLU) and MaxPool2d(2).
// The convolution's output is C times the size of its input and costs nine
// multiply-adds per value, so it is never stored, and mostly never computed:
//   forward (training): the convolution is linear, so each channel's batch
//     mean and variance follow from the first and second moments of the nine
//     taps' inputs (StemPatchMoments, one pass over the images, not C);
//     then each plane is computed into L1 and handed to the fused batch-norm
//     + pooling code of batchnorm_pool.h (normalize, clip, pool).
//   backward: the per-channel sums come from the pooled-size arrays alone (as
//     in backwardPool), and the convolution's weight and bias gradients from
//     those sums, the patch moments and the pooled gradient routed to each
//     window's chosen input (see stemBackward). Only an input gradient needs
//     the planes: each is then recomputed and its dx built in L1.
// Every image and plane is computed the same way whatever the thread split,
// and their records are merged in batch order, so results do not depend on
// the number of threads.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>

#include "../scratch.h"
#include "../threadpool.h"
#include "batchnorm_pool.h"

namespace bnkit {
namespace {

constexpr int64_t kStemTaps = 9;
static_assert(kStemMomentsLength == kStemTaps + kStemTaps * kStemTaps, "saved moments: 9 means, 9 x 9 covariance");

// Sizes of one image's working buffers. Padded rows are read and conv rows
// written a whole vector at a time, so both carry a vector of slack.
struct StemGeometry {
  int64_t pH, pW, oH, oW, paddedFloats, planeFloats;
  StemGeometry(const StemConv& s, int64_t lanes)
      : pH(s.inH + 2 * s.padH),
        pW(s.inW + 2 * s.padW),
        oH(s.outH()),
        oW(s.outW()),
        paddedFloats(roundUp(pH * pW + lanes + 2, 16)),
        planeFloats(roundUp(oH * oW + lanes, 16)) {}
  int64_t plane() const { return oH * oW; }
  static int64_t roundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
};

// Buffers of the parallel blocks of one pass: the pool runs at most
// numThreads() blocks per call, and each block claims the next slot.
class StemSlots {
 public:
  StemSlots(float* base, int64_t floatsPerSlot) : perSlot_(floatsPerSlot), base_(base) {}
  float* claim() { return base_ + next_.fetch_add(1, std::memory_order_relaxed) * perSlot_; }

 private:
  int64_t perSlot_;
  float* base_;
  std::atomic<int64_t> next_{0};
};

// One scratch request (a second one would invalidate the first): `headBytes`
// for the caller's records, then the slots of every thread.
struct StemScratch {
  void* head;
  float* slots;
  StemScratch(size_t headBytes, int64_t floatsPerSlot) {
    const size_t slotOffset = (headBytes + 63) / 64 * 64;
    const int64_t threads = numThreads() > 0 ? numThreads() : 1;
    head = scratchBytes(slotOffset + sizeof(float) * static_cast<size_t>(floatsPerSlot * threads));
    slots = reinterpret_cast<float*>(static_cast<char*>(head) + slotOffset);
  }
};

// Image n with padH / padW zeros around it, rows pW apart.
inline void padStemImage(const StemConv& s, const StemGeometry& g, int64_t n, float* padded) {
  std::memset(padded, 0, sizeof(float) * static_cast<size_t>(g.paddedFloats));
  const float* image = s.input + n * s.inH * s.inW;
  for (int64_t y = 0; y < s.inH; ++y) {
    std::memcpy(padded + (y + s.padH) * g.pW + s.padW, image + y * s.inW, sizeof(float) * static_cast<size_t>(s.inW));
  }
}

// Output rows [y0, y0 + R) of channel c: R rows at a time so that each
// padded row is loaded once for every output row it feeds and R independent
// chains of multiply-adds hide their latency. Each output still sums bias,
// then the taps in row-major order (ky = padded row - output row ascends).
// Whole vectors: a row's last store spills onto the next row's start, so
// columns go last first and rows in order, and every spill is overwritten.
template <class V, int R>
inline void stemConvRows(const StemGeometry& g, const float* padded, const typename V::Reg (&w)[kStemTaps],
                         typename V::Reg bias, int64_t y0, float* out) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  for (int64_t x = (g.oW - 1) / L * L; x >= 0; x -= L) {
    // Fully unrolled, or the accumulators live in memory.
    Reg acc[R];
    for (int r = 0; r < R; ++r) acc[r] = bias;
#pragma GCC unroll 16
    for (int pr = 0; pr < R + 2; ++pr) {
#pragma GCC unroll 3
      for (int kx = 0; kx < 3; ++kx) {
        const Reg v = V::load(padded + (y0 + pr) * g.pW + x + kx);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const int ky = pr - r;
          if (ky >= 0 && ky < 3) acc[r] = V::fma(w[3 * ky + kx], v, acc[r]);
        }
      }
    }
    for (int r = 0; r < R; ++r) V::store(out + (y0 + r) * g.oW + x, acc[r]);
  }
}

// Channel c of the convolution over one padded image, [oH][oW] in `out`.
template <class V>
void stemConvPlane(const StemConv& s, const StemGeometry& g, const float* padded, int64_t c, float* out) {
  using Reg = typename V::Reg;
  Reg w[kStemTaps];
  for (int t = 0; t < kStemTaps; ++t) w[t] = V::set1(s.weight[c * kStemTaps + t]);
  const Reg bias = V::set1(s.bias ? s.bias[c] : 0.0f);
  int64_t y = 0;
  for (; y + 8 <= g.oH; y += 8) stemConvRows<V, 8>(g, padded, w, bias, y, out);
  for (; y + 4 <= g.oH; y += 4) stemConvRows<V, 4>(g, padded, w, bias, y, out);
  for (; y < g.oH; ++y) stemConvRows<V, 1>(g, padded, w, bias, y, out);
}

// Runs fn(n, c, padded) for planes [q0, q1) (q = n * C + c), padding each
// image once into `padded`.
template <class Fn>
inline void forEachStemPlane(const StemConv& s, const StemGeometry& g, int64_t channels, int64_t q0, int64_t q1,
                             float* padded, Fn&& fn) {
  int64_t image = -1;
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t n = q / channels;
    if (n != image) {
      padStemImage(s, g, n, padded);
      image = n;
    }
    fn(n, q % channels, padded);
  }
}

inline int64_t stemPlaneGrain(const StemGeometry& g) { return kMinElementsPerThread / (g.plane() + 1) + 1; }

// Recomputes each plane, normalizes, clips and pools it: constants(c, &mean, &scale, &beta).
// slotMemory: StemScratch slots of g.paddedFloats + g.planeFloats floats.
template <class V, class Constants>
void stemNormalizeAndPool(const StemConv& s, const BnLayout& l, const BnPoolShape& shape, bool relu, float* pooled,
                          uint8_t* window, float* picked, float* slotMemory, Constants&& constants) {
  const StemGeometry g(s, V::kLanes);
  const BnLayout plane{1, 1, g.plane(), false};
  const int64_t outPlane = shape.outH() * shape.outW();
  StemSlots slots(slotMemory, g.paddedFloats + g.planeFloats);
  parallelForEach(0, l.batch * l.channels, stemPlaneGrain(g), [&](int64_t q0, int64_t q1) {
    float* padded = slots.claim();
    float* y = padded + g.paddedFloats;
    forEachStemPlane(s, g, l.channels, q0, q1, padded, [&](int64_t n, int64_t c, const float* image) {
      stemConvPlane<V>(s, g, image, c, y);
      float mean, scale, beta;
      constants(c, &mean, &scale, &beta);
      const int64_t out = (n * l.channels + c) * outPlane;
      normalizeAndPoolChannel<V>(plane, shape, 0, y, mean, scale, beta, relu, pooled + out, window + out,
                                 picked + out);
    });
  });
}

// The first and second moments of the nine taps' input values over every
// output position of the batch (zero padding included). The convolution is
// linear, so each channel's output has mean bias + w . mean and variance
// w^T cov w: batch-norm statistics without computing the output at all.
struct StemPatchMoments {
  double count = 0;
  double mean[kStemTaps] = {};
  double cov[kStemTaps][kStemTaps] = {};

  double outputMean(const StemConv& s, int64_t c) const {
    double m = s.bias ? s.bias[c] : 0.0;
    for (int t = 0; t < kStemTaps; ++t) m += s.weight[c * kStemTaps + t] * mean[t];
    return m;
  }
  // sum over positions of (output - outputMean) * tap t's input, / count.
  double outputCovariance(const StemConv& s, int64_t c, int t) const {
    double v = 0;
    for (int u = 0; u < kStemTaps; ++u) v += cov[t][u] * s.weight[c * kStemTaps + u];
    return v;
  }
  void save(double* out) const {
    for (int t = 0; t < kStemTaps; ++t) out[t] = mean[t];
    for (int t = 0; t < kStemTaps; ++t)
      for (int u = 0; u < kStemTaps; ++u) out[kStemTaps + kStemTaps * t + u] = cov[t][u];
  }
  static StemPatchMoments load(const double* in, double positions) {
    StemPatchMoments m;
    m.count = positions;
    for (int t = 0; t < kStemTaps; ++t) m.mean[t] = in[t];
    for (int t = 0; t < kStemTaps; ++t)
      for (int u = 0; u < kStemTaps; ++u) m.cov[t][u] = in[kStemTaps + kStemTaps * t + u];
    return m;
  }
  double outputVariance(const StemConv& s, int64_t c) const {
    double v = 0;
    for (int t = 0; t < kStemTaps; ++t) v += s.weight[c * kStemTaps + t] * outputCovariance(s, c, t);
    return v > 0 ? v : 0.0;
  }
};

// Per image, a moments pass takes the sums of the products of every tap
// pair (t, u) at [9 t + u], then of every single tap at [81 + t].
constexpr int kStemSums = kStemTaps * kStemTaps + kStemTaps;

// Eight doubles as one GCC vector: each ISA's unit compiles it to its own
// registers (one zmm, two ymm, four NEON or SSE2 registers), so the moments
// pass needs no double-precision wrapper of its own.
typedef double StemDoubles __attribute__((vector_size(64)));
constexpr int64_t kStemDoubleLanes = 8;

inline StemDoubles loadDoubles(const double* p) {
  StemDoubles v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The padded image minus `shift`, in double (padding included, so it holds
// -shift): float differences are exact there, and moments about a value
// near the data's mean do not lose their digits when the data sits far from
// zero; covariances do not depend on the shift. Rows pW apart; the slack
// after the image stays zero.
inline int64_t stemShiftedDoubles(const StemGeometry& g) {
  return StemGeometry::roundUp(g.pH * g.pW + kStemDoubleLanes + 2, kStemDoubleLanes);
}

inline void shiftStemImage(const StemGeometry& g, const float* padded, double shift, double* shifted) {
  for (int64_t i = 0; i < g.pH * g.pW; ++i) shifted[i] = static_cast<double>(padded[i]) - shift;
}

// Tap t's sums with taps u >= t over one image (sums of products at
// [9 t + u] and [9 u + t], the tap alone at [81 + t]). T is a constant so
// the 9 - T accumulators stay in registers.
template <int T>
inline void stemTapSums(const StemGeometry& g, const double* shifted, StemDoubles tailKeep, double* sums) {
  constexpr int64_t K = kStemDoubleLanes;
  constexpr int kPartners = kStemTaps - T;
  StemDoubles acc[kPartners] = {}, single = {};
  for (int64_t y = 0; y < g.oH; ++y) {
    const double* rows = shifted + y * g.pW;
    const double* a = rows + (T / 3) * g.pW + T % 3;
    for (int64_t x = 0; x < g.oW; x += K) {
      // Lanes past the row are zeroed in `a`; the partners read finite slack.
      StemDoubles av = loadDoubles(a + x);
      if (x + K > g.oW) av *= tailKeep;
      single += av;
#pragma GCC unroll 9
      for (int i = 0; i < kPartners; ++i) {
        const int u = T + i;
        acc[i] += av * loadDoubles(rows + (u / 3) * g.pW + u % 3 + x);
      }
    }
  }
  const auto total = [](const StemDoubles& v) {
    double sum = 0;
    for (int64_t i = 0; i < K; ++i) sum += v[i];
    return sum;
  };
  for (int i = 0; i < kPartners; ++i) sums[kStemTaps * T + T + i] = sums[kStemTaps * (T + i) + T] = total(acc[i]);
  sums[kStemTaps * kStemTaps + T] = total(single);
}

template <int... T>
inline void stemAllTapSums(std::integer_sequence<int, T...>, const StemGeometry& g, const double* shifted,
                           StemDoubles tailKeep, double* sums) {
  (stemTapSums<T>(g, shifted, tailKeep, sums), ...);
}

// One image's sums over its output positions, all in double: products of
// floats are exact there, and the moments must be far more precise than
// float because w^T cov w cancels whenever a filter's output varies much
// less than its input (difference filters on smooth images).
inline void stemImageSums(const StemGeometry& g, const double* shifted, double* sums) {
  StemDoubles tailKeep;
  const int64_t tail = g.oW % kStemDoubleLanes == 0 ? kStemDoubleLanes : g.oW % kStemDoubleLanes;
  for (int64_t i = 0; i < kStemDoubleLanes; ++i) tailKeep[i] = i < tail ? 1.0 : 0.0;
  stemAllTapSums(std::make_integer_sequence<int, kStemTaps>{}, g, shifted, tailKeep, sums);
}

// Per-block memory of a moments pass: the padded image, then its shifted
// copy in double.
inline int64_t stemMomentsSlotFloats(const StemGeometry& g) { return g.paddedFloats + 2 * stemShiftedDoubles(g); }

// The batch's patch moments; `records` has kStemSums doubles per image and
// `slotMemory` StemScratch slots of stemMomentsSlotFloats(g) floats. Images
// are summed in order, so the result does not depend on the threads.
template <class V>
StemPatchMoments stemPatchMoments(const StemConv& s, const StemGeometry& g, int64_t batch, double* records,
                                  float* slotMemory) {
  // Any value near the data's mean serves as the shift (see shiftStemImage).
  const double shift = planarChannelMoments<V>(s.input, 0, PlanarChunks(1, batch * s.inH * s.inW)).mean;
  StemSlots slots(slotMemory, stemMomentsSlotFloats(g));
  parallelForEach(0, batch, 1, [&](int64_t n0, int64_t n1) {
    float* padded = slots.claim();
    // paddedFloats is a multiple of 16 floats, so the doubles are aligned.
    auto* shifted = reinterpret_cast<double*>(padded + g.paddedFloats);
    std::memset(shifted, 0, sizeof(double) * static_cast<size_t>(stemShiftedDoubles(g)));
    for (int64_t n = n0; n < n1; ++n) {
      padStemImage(s, g, n, padded);
      shiftStemImage(g, padded, shift, shifted);
      stemImageSums(g, shifted, records + n * kStemSums);
    }
  });
  double total[kStemSums] = {};
  for (int64_t n = 0; n < batch; ++n) {
    for (int k = 0; k < kStemSums; ++k) total[k] += records[n * kStemSums + k];
  }
  StemPatchMoments m;
  m.count = static_cast<double>(batch * g.plane());
  double centered[kStemTaps];
  for (int t = 0; t < kStemTaps; ++t) {
    centered[t] = total[kStemTaps * kStemTaps + t] / m.count;
    m.mean[t] = shift + centered[t];
  }
  for (int t = 0; t < kStemTaps; ++t) {
    for (int u = 0; u < kStemTaps; ++u) m.cov[t][u] = total[kStemTaps * t + u] / m.count - centered[t] * centered[u];
  }
  return m;
}

template <class V>
void stemForwardTrain(const StemForwardTrainArgs& a) {
  const StemConv& s = a.conv;
  const BnForwardTrainArgs& bn = a.pool.bn;
  const BnLayout& l = bn.layout;
  const StemGeometry g(s, V::kLanes);
  const int64_t slotFloats = std::max(stemMomentsSlotFloats(g), g.paddedFloats + g.planeFloats);
  const StemScratch scratch(sizeof(double) * static_cast<size_t>(l.batch * kStemSums), slotFloats);
  const StemPatchMoments patch = stemPatchMoments<V>(s, g, l.batch, static_cast<double*>(scratch.head), scratch.slots);
  if (a.patchMoments) patch.save(a.patchMoments);
  for (int64_t c = 0; c < l.channels; ++c) {
    Moments m;
    m.count = patch.count;
    m.mean = patch.outputMean(s, c);
    m.m2 = patch.outputVariance(s, c) * patch.count;
    finishChannelStats<V>(bn, c, m);
  }
  stemNormalizeAndPool<V>(s, l, a.pool.shape, bn.relu, a.pool.pooled, a.pool.window, a.pool.picked, scratch.slots,
                          [&](int64_t c, float* mean, float* scale, float* beta) {
                            *mean = bn.saveMean[c];
                            *scale = channelScale(bn.gamma, c, bn.saveInvstd[c]);
                            *beta = channelBeta(bn.beta, c);
                          });
}

template <class V>
void stemForwardEval(const StemForwardEvalArgs& a) {
  const BnForwardEvalArgs& bn = a.pool.bn;
  const StemGeometry g(a.conv, V::kLanes);
  const StemScratch scratch(0, g.paddedFloats + g.planeFloats);
  // The constants exactly as forwardEval computes them.
  stemNormalizeAndPool<V>(a.conv, bn.layout, a.pool.shape, bn.relu, a.pool.pooled, a.pool.window, a.pool.picked,
                          scratch.slots, [&](int64_t c, float* mean, float* scale, float* beta) {
                            *mean = bn.mean[c];
                            *scale = channelScale(bn.gamma, c, invstdFromVariance(bn.variance[c], bn.eps));
                            *beta = channelBeta(bn.beta, c);
                          });
}

// Adds the input gradient of one plane's dx (the transposed convolution with
// channel c's taps) into the padded image gradient.
template <class V>
void stemInputGradient(const StemConv& s, const StemGeometry& g, int64_t c, const float* dx, float* dPadded) {
  using Reg = typename V::Reg;
  for (int ky = 0; ky < 3; ++ky) {
    for (int kx = 0; kx < 3; ++kx) {
      const Reg w = V::set1(s.weight[c * kStemTaps + 3 * ky + kx]);
      for (int64_t y = 0; y < g.oH; ++y) {
        float* target = dPadded + (y + ky) * g.pW + kx;
        const float* d = dx + y * g.oW;
        simd::vectorLoop<V>(g.oW, [&](auto full, int, int64_t x, int64_t valid) {
          const Reg sum = V::fma(w, simd::loadN<V>(full, d + x, valid, 0.0f),
                                 simd::loadN<V>(full, target + x, valid, 0.0f));
          simd::storeN<V>(full, target + x, sum, valid);
        });
      }
    }
  }
}

// The 16 views of a padded image that pooling windows pick from: view
// (a, b)[oy * poW + ox] = padded[(2 oy + a) * pW + 2 ox + b], so tap (ky, kx)
// under the window quadrant (qy, qx) that a window code names reads view
// (qy + ky, qx + kx) at the window's index. Views are viewFloats apart; the
// slack after each is zero (read by whole vectors).
inline void stemWindowViews(const StemGeometry& g, const BnPoolShape& shape, const float* padded, int64_t viewFloats,
                            float* views) {
  const int64_t poH = shape.outH(), poW = shape.outW();
  for (int a = 0; a < 4; ++a) {
    for (int b = 0; b < 4; ++b) {
      float* view = views + (4 * a + b) * viewFloats;
      for (int64_t oy = 0; oy < poH; ++oy) {
        const float* row = padded + (2 * oy + a) * g.pW + b;
        for (int64_t ox = 0; ox < poW; ++ox) view[oy * poW + ox] = row[2 * ox];
      }
      for (int64_t j = poH * poW; j < viewFloats; ++j) view[j] = 0.0f;
    }
  }
}

// sum over the plane's windows of the routed gradient times the input under
// each tap (sums[9]): dy goes to the window's chosen position only (code
// 0..3; codes >= 4 pass nothing), so per quadrant it is a dot product with
// that quadrant's views, the gradient masked by code == quadrant in registers.
template <class V>
void stemRoutedTapSums(const float* dy, const uint8_t* code, int64_t windows, const float* views, int64_t viewFloats,
                       float* sums) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  Reg acc[kStemTaps];
  for (Reg& r : acc) r = V::zero();
  for (int64_t j = 0; j < windows; j += L) {
    const int64_t valid = windows - j < L ? windows - j : L;
    // Lanes past the windows carry a zero gradient (and the views are zero there).
    const Reg g = valid == L ? V::load(dy + j) : V::loadPartial(dy + j, valid, 0.0f);
    const Reg codes = V::loadBytes(code + j, valid);
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const Reg gq = V::select(V::equal(codes, V::set1(static_cast<float>(q))), g, V::zero());
      const float* quadrant = views + (4 * (q >> 1) + (q & 1)) * viewFloats + j;
#pragma GCC unroll 9
      for (int t = 0; t < kStemTaps; ++t) {
        acc[t] = V::fma(gq, V::load(quadrant + (4 * (t / 3) + t % 3) * viewFloats), acc[t]);
      }
    }
  }
  for (int t = 0; t < kStemTaps; ++t) sums[t] = V::reduceAdd(acc[t]);
}

// Backward never forms dx of the convolution's output for the parameter
// gradients: dx is k * dy' + b * (y - mean) + c0 per channel
// (batchnorm_shared.h), so its correlation with the input under each tap is
//   k * (dy' routed through the windows, against the chosen inputs' taps)
//   + b * (count * cov(y, tap) + (mean(y) - mean) * sum(tap)) + c0 * sum(tap),
// the middle and last terms from the patch moments (y is linear in the taps)
// and the first from pooled-size arrays. Only an input gradient needs dx:
// then each plane is recomputed and its dx built in L1 (poolGradient).
template <class V>
void stemBackward(const StemBackwardArgs& a) {
  const StemConv& s = a.conv;
  const BnBackwardArgs& bn = a.pool.bn;
  const BnLayout& l = bn.layout;
  const BnPoolShape& shape = a.pool.shape;
  const StemGeometry g(s, V::kLanes);
  const int64_t planes = l.batch * l.channels, outPlane = shape.outH() * shape.outW();
  const double count = static_cast<double>(l.perChannel());
  const int64_t viewFloats = StemGeometry::roundUp(outPlane + V::kLanes, 16);
  // Per block: padded image, then either 16 window views, or (conv plane, its
  // dx, padded image gradient), or a moments pass.
  const int64_t perSlot = std::max({g.paddedFloats + 16 * viewFloats, g.paddedFloats + 2 * g.planeFloats + g.paddedFloats,
                                    stemMomentsSlotFloats(g)});
  // Head: image moment records (doubles), plane gradient sums, channel
  // coefficients, plane routed-gradient sums.
  const StemScratch scratch(sizeof(double) * static_cast<size_t>(l.batch * kStemSums) +
                                sizeof(PlanarGradSums) * static_cast<size_t>(planes) +
                                sizeof(GradCoefficients) * static_cast<size_t>(l.channels) +
                                sizeof(float) * static_cast<size_t>(planes * kStemTaps),
                            perSlot);
  auto* momentRecords = static_cast<double*>(scratch.head);
  auto* gradSums = reinterpret_cast<PlanarGradSums*>(momentRecords + l.batch * kStemSums);
  auto* coefficients = reinterpret_cast<GradCoefficients*>(gradSums + planes);
  auto* routedSums = reinterpret_cast<float*>(coefficients + l.channels);
  const BnLayout plane{1, 1, g.plane(), false};
  const auto pooledView = [&](int64_t q, const float* x, float* dx) {
    return PoolBackwardView{plane, x, bn.dy + q * outPlane, dx, a.pool.window + q * outPlane,
                            a.pool.picked + q * outPlane};
  };
  // The batch-norm sums need only the pooled-size arrays.
  planeGradientCoefficients(bn, kMinElementsPerThread / (outPlane + 1) + 1, gradSums, coefficients, [&](int64_t q) {
    const int64_t at = q * outPlane;
    return planeGradientSums<V>(bn.dy + at, a.pool.window + at, a.pool.picked + at, outPlane,
                                bn.mean[q % l.channels]);
  });
  if (a.dWeight || a.dBias) {
    StemPatchMoments patch;
    if (bn.batchStatistics) {
      patch = a.patchMoments ? StemPatchMoments::load(a.patchMoments, count)
                             : stemPatchMoments<V>(s, g, l.batch, momentRecords, scratch.slots);
    }
    StemSlots slots(scratch.slots, perSlot);
    parallelForEach(0, planes, stemPlaneGrain(g), [&](int64_t q0, int64_t q1) {
      float* padded = slots.claim();
      float* views = padded + g.paddedFloats;
      forEachStemPlane(s, g, l.channels, q0, q1, padded, [&](int64_t n, int64_t c, const float* image) {
        const int64_t q = n * l.channels + c;
        if (c == 0 || q == q0) stemWindowViews(g, shape, image, viewFloats, views);
        stemRoutedTapSums<V>(bn.dy + q * outPlane, a.pool.window + q * outPlane, outPlane, views, viewFloats,
                             routedSums + q * kStemTaps);
      });
    });
    for (int64_t c = 0; c < l.channels; ++c) {
      double routedSum[kStemTaps] = {}, dySum = 0;
      for (int64_t n = 0; n < l.batch; ++n) {
        const float* r = routedSums + (n * l.channels + c) * kStemTaps;
        for (int t = 0; t < kStemTaps; ++t) routedSum[t] += r[t];
        dySum += gradSums[n * l.channels + c].dy;
      }
      const GradCoefficients k = coefficients[c];
      // Without batch statistics b and c0 are zero and the moments unused.
      const double meanGap = bn.batchStatistics ? patch.outputMean(s, c) - static_cast<double>(bn.mean[c]) : 0.0;
      if (a.dWeight) {
        for (int t = 0; t < kStemTaps; ++t) {
          const double tapSum = count * patch.mean[t];
          const double centered = count * patch.outputCovariance(s, c, t) + meanGap * tapSum;
          a.dWeight[c * kStemTaps + t] += static_cast<float>(k.k * routedSum[t] + k.b * centered + k.c0 * tapSum);
        }
      }
      if (a.dBias) a.dBias[c] += static_cast<float>(k.k * dySum + k.b * count * meanGap + k.c0 * count);
    }
  }
  if (!a.dInput) return;
  // A block owns whole images: their input gradient sums over channels.
  StemSlots slots(scratch.slots, perSlot);
  parallelForEach(0, l.batch, 1, [&](int64_t n0, int64_t n1) {
    float* padded = slots.claim();
    float* y = padded + g.paddedFloats;
    float* dy = y + g.planeFloats;
    float* dPadded = dy + g.planeFloats;
    forEachStemPlane(s, g, l.channels, n0 * l.channels, n1 * l.channels, padded,
                     [&](int64_t n, int64_t c, const float* image) {
                       stemConvPlane<V>(s, g, image, c, y);
                       poolGradient<V>(pooledView(n * l.channels + c, y, dy), shape, 0, bn.mean[c], coefficients[c]);
                       if (c == 0) std::memset(dPadded, 0, sizeof(float) * static_cast<size_t>(g.paddedFloats));
                       stemInputGradient<V>(s, g, c, dy, dPadded);
                       if (c + 1 < l.channels) return;
                       float* dImage = a.dInput + n * s.inH * s.inW;
                       for (int64_t r = 0; r < s.inH; ++r) {
                         std::memcpy(dImage + r * s.inW, dPadded + (r + s.padH) * g.pW + s.padW,
                                     sizeof(float) * static_cast<size_t>(s.inW));
                       }
                     });
  });
}

}  // namespace
}  // namespace bnkit
