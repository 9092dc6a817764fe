// Pieces every batch-norm layout shares: the affine map and its constants,
// the statistics epilogue, the gradient coefficients and the streaming-store
// policy. Internal linkage on purpose: each ISA's translation unit compiles
// its own copy with its own flags.
#pragma once
#include <cstdint>
#include <type_traits>

#include "../simd/vector_loop.h"
#include "batchnorm.h"
#include "moments.h"

namespace bnkit {
namespace {

// 16 KiB of floats: two passes over a chunk hit L1 on every target core.
constexpr int64_t kChunkElements = 4096;
// Below this much work per thread, waking another thread costs more than it saves.
constexpr int64_t kMinElementsPerThread = 16384;

// The normalized value (before ReLU): one expression shared by forward and by
// backward's ReLU mask so both see exactly the same sign.
template <class V>
inline typename V::Reg affine(typename V::Reg x, typename V::Reg mean, typename V::Reg scale,
                              typename V::Reg beta) {
  return V::fma(V::sub(x, mean), scale, beta);
}

// Outputs this large cannot stay in the last-level cache for the next layer
// anyway, so they are written with non-temporal stores.
constexpr int64_t kStreamingBytes = int64_t{48} << 20;
inline bool streamOutput(const BnLayout& l) {
  return l.elements() * static_cast<int64_t>(sizeof(float)) >= kStreamingBytes;
}

inline bool usesRows(const BnLayout& layout) { return layout.channelsLast || layout.spatial == 1; }

// Per-channel constants of the affine map, laid out for vector loads.
struct ChannelAffine {
  float* mean;
  float* scale;
  float* beta;
};

inline ChannelAffine channelAffineScratch(float* base, int64_t channels) {
  return ChannelAffine{base, base + channels, base + 2 * channels};
}

template <class V>
void finishChannelStats(const BnForwardTrainArgs& a, int64_t c, const Moments& m) {
  const double variance = m.count > 0 ? m.m2 / m.count : 0.0;
  a.saveMean[c] = static_cast<float>(m.mean);
  a.saveInvstd[c] = invstdFromVariance(variance, a.eps);
  if (a.batchVariance) a.batchVariance[c] = variance;
}

// dx = k * dy' + b * (x - mean) + c0, where dy' is dy under the ReLU mask.
struct GradCoefficients {
  float k, b, c0;
};

inline GradCoefficients gradCoefficients(const BnBackwardArgs& a, int64_t c, double sumDy, double sumDyXc,
                                         double count) {
  const double invstd = a.invstd[c];
  if (a.dbeta) a.dbeta[c] = static_cast<float>(sumDy);
  if (a.dgamma) a.dgamma[c] = static_cast<float>(sumDyXc * invstd);
  const double k = channelScale(a.gamma, c, a.invstd[c]);
  if (!a.batchStatistics) return GradCoefficients{static_cast<float>(k), 0.0f, 0.0f};
  return GradCoefficients{static_cast<float>(k), static_cast<float>(-k * invstd * invstd * sumDyXc / count),
                          static_cast<float>(-k * sumDy / count)};
}

template <class V>
inline typename V::Reg maskedDy(bool relu, typename V::Reg x, typename V::Reg dy, typename V::Reg mean,
                                typename V::Reg scale, typename V::Reg beta) {
  return relu ? V::selectPositive(affine<V>(x, mean, scale, beta), dy) : dy;
}

// A run-time flag as a compile-time one, so loops carry no branch on it.
template <class F>
inline void withFlag(bool flag, F&& f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

}  // namespace
}  // namespace bnkit
