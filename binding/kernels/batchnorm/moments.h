// Mergeable per-channel moments (count, mean, M2) shared by batch norm and the
// streaming statistics. Header-only and internal-linkage on purpose: it is
// compiled into each ISA's translation unit with that unit's flags.
#pragma once
#include <cmath>
#include <cstdint>

namespace bnkit {
namespace {

struct Moments {
  double count = 0;
  double mean = 0;
  double m2 = 0;  // sum of squared deviations from the mean
};

// Chan et al. parallel merge; stable for any relative sizes of a and b.
inline Moments mergeMoments(const Moments& a, const Moments& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const double count = a.count + b.count;
  const double delta = b.mean - a.mean;
  Moments out;
  out.count = count;
  out.mean = a.mean + delta * (b.count / count);
  out.m2 = a.m2 + b.m2 + delta * delta * (a.count * b.count / count);
  return out;
}

// A chunk's moments from float sums taken around a provisional mean `pivot`:
// d = sum(x - pivot), q = sum((x - pivot)^2). Correcting by d makes the result
// exact to rounding even when the pivot is off (e.g. a float mean of 1e6 + noise).
inline Moments momentsAroundPivot(double count, float pivot, double d, double q) {
  Moments out;
  out.count = count;
  out.mean = pivot + d / count;
  out.m2 = q - d * d / count;
  if (out.m2 < 0) out.m2 = 0;
  return out;
}

// The per-channel affine map y = (x - mean) * scale + beta that forward and
// backward (for the ReLU mask) must both compute bit for bit the same way.
inline float channelScale(const float* gamma, int64_t c, float invstd) {
  return (gamma ? gamma[c] : 1.0f) * invstd;
}
inline float channelBeta(const float* beta, int64_t c) { return beta ? beta[c] : 0.0f; }
inline float invstdFromVariance(double variance, float eps) {
  return static_cast<float>(1.0 / std::sqrt(variance + static_cast<double>(eps)));
}

}  // namespace
}  // namespace bnkit
